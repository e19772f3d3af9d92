r"""Variational JKO (Fan, Zhang, Taghvaei & Chen, ICML 2022, arXiv 2112.02424): the centrepiece.

Each JKO step is solved over maps, P_{k+1} = T#P_k with

    T_k = argmin_T  E_{X~P_k} |X - T(X)|^2 / (2h) + F(T#P_k)                        (paper Eq. 5)

and F replaced by its variational (Nguyen-Wainwright-Jordan) form, a min-max over T and a dual
function (paper Eq. 8): no Hessian log-determinant is ever formed. For F = tau KL(P || Q) the paper
(Cor. 3.3) changes the reference measure to the Gaussian Gamma_k = N(mean, cov of P_k):

    KL(T#P_k || Q) = KL(T#P_k || Gamma_k) + E_{T#P_k}[log Gamma_k - log Q],
    KL(P || Gamma)  = sup_{r > 0} 1 + E_P[log r] - E_Gamma[r]        (log-ratio NWJ form),

so one step is  min_T max_r  E_y[|y - T y|^2/(2h) + tau (log r(Ty) + log Gamma(Ty) - log Q(Ty))]
- tau E_{z~Gamma}[r(z)]. Only the unnormalised log Q is needed; for OU, tau log Q = -V.

Training loop (variational-jko.md §1.5), every constant a config field with the paper's OU default:
per JKO step, ``iters_per_step`` outer iterations; each draws a minibatch y (``batch_size``) of the
current particles and z ~ Gamma_k, takes ``h_steps`` Adam steps on r with T(y) detached (J2) and
``t_steps`` Adam steps on T (J3), on the same (y, z). T and r are warm-started across steps and their
Adam states persist. At the end of the step T is frozen (eval mode, no dropout) as T_{k+1}, the
particles of P_{k+1} are regenerated from fresh P_0 samples through T_1..T_{k+1}, and Gamma is refit
to them. Before the first step Gamma_0 = N(0, ``gamma0_var`` I).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor, nn

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, check_finite
from wgfbench.nets.mlp import RatioNet, ResidualMLP
from wgfbench.problems.gaussian import moment_fit
from wgfbench.timing import timed


@dataclasses.dataclass(frozen=True)
class VariationalJKOConfig(MethodConfig):
    """Defaults: Fan et al.'s OU protocol (variational-jko.md §1.5 and §2.1)."""

    n_particles: int = 512_000
    batch_size: int = 1024
    iters_per_step: int = 500
    h_steps: int = 3
    t_steps: int = 1
    lr_t: float = 5e-3
    lr_h: float = 5e-3
    weight_decay: float = 0.0
    t_width: int = 64
    t_hidden: int = 2
    t_dropout: float = 0.02
    t_final_prelu: bool = False
    h_width: int = 64
    h_hidden: int = 1
    ratio: str = "quadratic"
    gamma0_var: float = 1.5
    regen_chunk: int = 65_536


class GaussianReference:
    """Gamma = N(mean, cov) on the method's device: sampling and log-density for the KL dual."""

    def __init__(self, mean: Tensor, cov: Tensor, device: torch.device, dtype: torch.dtype):
        cov = 0.5 * (cov + cov.T)
        jitter = 0.0
        eye = torch.eye(cov.shape[0], dtype=cov.dtype)
        while True:  # a singular fit (tiny N or collapsed particles) gets the smallest jitter that works
            chol, info = torch.linalg.cholesky_ex(cov + jitter * eye)
            if int(info) == 0:
                break
            jitter = max(1e-10, 10 * jitter) * float(cov.diagonal().mean())
        self.mean = mean.to(device, dtype)
        self.chol = chol.to(device, dtype)
        self.log_norm = float(torch.log(torch.diagonal(chol)).sum() + 0.5 * cov.shape[0] * torch.log(torch.tensor(2 * torch.pi)))

    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + z @ self.chol.T

    def log_density(self, x: Tensor) -> Tensor:
        sol = torch.linalg.solve_triangular(self.chol, (x - self.mean).T, upper=False)
        return -0.5 * (sol**2).sum(0) - self.log_norm


class VariationalJKO(JKOMethod):
    """Fan et al.'s variational JKO for F = temperature * KL(P || Q). See the module docstring."""

    name = "variational_jko"
    Config = VariationalJKOConfig
    functionals = frozenset({"kl"})

    def __init__(self, problem, step_size: float, config: VariationalJKOConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        d = problem.dim
        self.tau = float(problem.temperature)
        self.T = ResidualMLP(d, config.t_width, config.t_hidden, config.t_dropout, config.t_final_prelu).to(
            self.device, self.dtype
        )
        self.r = RatioNet(d, config.h_width, config.h_hidden, config.ratio).to(self.device, self.dtype)
        self.opt_t = torch.optim.Adam(self.T.parameters(), lr=config.lr_t, weight_decay=config.weight_decay)
        self.opt_h = torch.optim.Adam(self.r.parameters(), lr=config.lr_h, weight_decay=config.weight_decay)
        self.maps: list[nn.Module] = []
        self.particles = self._push(self._sample_p0(config.n_particles, self.generator))
        eye = torch.eye(d, dtype=torch.float64)
        self.gamma = GaussianReference(torch.zeros(d, dtype=torch.float64), config.gamma0_var * eye, self.device, self.dtype)

    # --- sampling P_k = (T_k o ... o T_1) # P_0 --------------------------------------------------
    def _sample_p0(self, n: int, generator: torch.Generator) -> Tensor:
        return self.problem.initial().sample(n, generator)

    @torch.no_grad()
    def _push(self, x0: Tensor) -> Tensor:
        """Push P_0 samples (CPU) through the frozen maps, in chunks, on the device."""
        out = []
        for chunk in torch.split(x0, self.config.regen_chunk):
            x = chunk.to(self.device, self.dtype)
            for t_map in self.maps:
                x = t_map(x)
            out.append(x)
        return torch.cat(out)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._push(self._sample_p0(n, generator)).cpu()

    # --- one JKO step --------------------------------------------------------------------------------
    def _h_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        """- (E_P[log r] - E_Gamma[r]): minimised over r (ascent on the NWJ lower bound)."""
        return -self.r.log_ratio(ty).mean() + self.r.ratio(z).mean()

    def _t_loss(self, y: Tensor, ty: Tensor) -> Tensor:
        """E|y - Ty|^2/(2h) + tau E[log r(Ty) + log Gamma(Ty) - log Q(Ty)]."""
        transport = ((y - ty) ** 2).sum(-1).mean() / (2.0 * self.h)
        energy = self.r.log_ratio(ty) + self.gamma.log_density(ty) - self.problem.log_target(ty)
        return transport + self.tau * energy.mean()

    def _train_step(self) -> float:
        cfg = self.config
        n = self.particles.shape[0]
        self.T.train()
        loss_t = torch.zeros((), device=self.device)
        for _ in range(cfg.iters_per_step):
            idx = torch.randint(n, (cfg.batch_size,), device=self.device)
            y = self.particles[idx]
            z = self.gamma.sample(cfg.batch_size)
            with torch.no_grad():
                ty = self.T(y)
            self.r.requires_grad_(True)
            for _ in range(cfg.h_steps):
                self.opt_h.zero_grad(set_to_none=True)
                self._h_loss(ty, z).backward()
                self.opt_h.step()
            self.r.requires_grad_(False)
            for _ in range(cfg.t_steps):
                self.opt_t.zero_grad(set_to_none=True)
                loss_t = self._t_loss(y, self.T(y))
                loss_t.backward()
                self.opt_t.step()
        self.r.requires_grad_(True)
        return loss_t.item()

    def step(self) -> StepStats:
        with timed(self.device) as train:
            loss = self._train_step()
        check_finite("variational JKO loss", torch.tensor(loss))
        with timed(self.device) as regen:
            frozen = copy.deepcopy(self.T).eval().requires_grad_(False)
            self.maps.append(frozen)
            self.particles = self._push(self._sample_p0(self.config.n_particles, self.generator))
            check_finite("variational JKO particles", self.particles)
            fit = moment_fit(self.particles)
            self.gamma = GaussianReference(fit.mean, fit.cov, self.device, self.dtype)
        self.k += 1
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra={"peak_mem_mb": train.peak_mem_mb})

    # --- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            T=self.T.state_dict(),
            r=self.r.state_dict(),
            opt_t=self.opt_t.state_dict(),
            opt_h=self.opt_h.state_dict(),
            maps=[m.state_dict() for m in self.maps],
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.T.load_state_dict(state["T"])
        self.r.load_state_dict(state["r"])
        self.opt_t.load_state_dict(state["opt_t"])
        self.opt_h.load_state_dict(state["opt_h"])
        self.maps = []
        for sd in state["maps"]:
            m = copy.deepcopy(self.T).eval().requires_grad_(False)
            m.load_state_dict(sd)
            self.maps.append(m)
        self.particles = self._push(self._sample_p0(self.config.n_particles, self.generator))
        fit = moment_fit(self.particles)
        self.gamma = GaussianReference(fit.mean, fit.cov, self.device, self.dtype)
