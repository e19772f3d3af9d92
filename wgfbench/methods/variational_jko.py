r"""Variational JKO (Fan, Zhang, Taghvaei & Chen, ICML 2022, arXiv 2112.02424): the centrepiece.

Each JKO step is solved over maps, P_{k+1} = T#P_k with

    T_k = argmin_T  E_{X~P_k} |X - T(X)|^2 / (2h) + F(T#P_k)                        (paper Eq. 5)

and F replaced by its variational (Nguyen-Wainwright-Jordan) form, a min-max over T and a dual
function (paper Eq. 8): no Hessian log-determinant is ever formed. What depends on the functional is
a small "dual" object (reference measure Gamma and its refit, reference sampling, the dual's loss,
the energy term of the T-loss); the training loop is shared.

**KL** (:class:`KLDual`), F = tau KL(P || Q): the paper (Cor. 3.3) changes the reference measure to
the Gaussian Gamma_k = N(mean, cov of P_k):

    KL(T#P_k || Q) = KL(T#P_k || Gamma_k) + E_{T#P_k}[log Gamma_k - log Q],
    KL(P || Gamma)  = sup_{r > 0} 1 + E_P[log r] - E_Gamma[r]        (log-ratio NWJ form),

so one step is  min_T max_r  E_y[|y - T y|^2/(2h) + tau (log r(Ty) + log Gamma(Ty) - log Q(Ty))]
- tau E_{z~Gamma}[r(z)]. Only the unnormalised log Q is needed; for OU, tau log Q = -V.
Before the first step Gamma_0 = N(0, ``gamma0_var`` I).

**Generalised entropy** (:class:`EntropyDual`), F = G(P) = 1/(m-1) ∫P^m (porous medium): the paper
(Cor. 3.4, Eq. 10) uses Gamma = Unif(Omega_k) with density q = 1/|Omega_k| and the dual

    G(P) = sup_h  q^{m-1} ( m/(m-1) E_P[h^{m-1}] - E_Gamma[h^m] ),   optimum h = p/q,

valid when Omega_k contains the support of T#P_k. Writing rho = q h (the optimum is rho = p, the
density itself) this is  sup_rho m/(m-1) E_P[rho^{m-1}] - |Omega| E_Gamma[rho^m], the same problem in a
parameterisation that does not change scale when the box is refit. The network outputs
rho = s_k net(x), with s_k fixed at each refit: ``dual_scale="moment"`` (default) s_k = (4 pi)^{-d/2}
det(S_k)^{-1/2} = E[g] for g the moment-fit Gaussian of P_k (the typical density value, so net = O(1)
in every dimension); ``dual_scale="box"`` s_k = q, i.e. net = h, Fan's parameterisation exactly.
net is linear at the output (a final PReLU, as the paper's h) for m = 2, where the dual is a concave
quadratic, and softplus (rho > 0) otherwise. The T-loss energy term is m/(m-1) E[rho(Ty)^{m-1}].

Reference box, refit to the P_k particles after every step (and to P_0 before the first): the paper
uses [-s, s]^d with s = 1.5 max_i |x_i|_inf. One outlier particle inflates that box and lowers q, so
that Gamma samples miss the support (variational-jko.md §5.4). Here:

(a) the box is centred at the coordinate-wise median c, with half-width
    s = ``box_scale`` * quantile_{box_quantile}(|x_i - c|_inf): with the default ``box_quantile`` = 0.999
    fewer than 0.1 % of the particles can move it; ``box_quantile=1`` with a symmetric P_k is the paper's
    rule;
(b) points outside the box (in practice only outliers, thanks to the 1.5 margin) enter the dual and the
    energy at their projection onto the box, where rho is ~0 (Gamma samples there teach it so), with the
    projection detached: they neither blow up the dual (a point of P outside the support of Gamma would
    make the sup infinite) nor get a force from the energy term (only the transport term acts on them).
    The fraction of particles outside is logged (``box_outside_frac``).

``reference_shape="ball"`` replaces the cube by the ball of radius s around c (same rules with |x - c|_2).
A Barenblatt support of radius s/1.5 fills a fraction V_d (1/3)^d of the cube (7e-3 at d = 6, 4e-5 at
d = 10) but (2/3)^d of the ball (9e-2 and 2e-2), so in high dimension almost no cube samples land in the
support; the ball is an option, the cube is the paper's default.

**Maps** (``map``): ``"mlp"`` the residual MLP T(x) = x + g(x) (Fan's OU/GMM map); ``"icnn"`` T = grad psi
with psi a :class:`~wgfbench.nets.icnn.DenseICNN` (Fan's porous map; with ``icnn_layers=1`` it is affine,
variational-jko.md §5.8), identity-pretrained on P_0 before the first step. With ICNN maps the method has
densities (:mod:`wgfbench.densities`): at its samples by change of variables, at arbitrary points by
inverting each gradient map.

Training loop (variational-jko.md §1.5), every constant a config field; the defaults are Fan's OU
protocol and ``FAN_POROUS_PARAMS`` holds the porous one. Per JKO step, ``iters_per_step`` outer
iterations; each draws a minibatch y (``batch_size``) of the current particles and z ~ Gamma_k, takes
``h_steps`` Adam steps on the dual with T(y) detached (J2) and ``t_steps`` Adam steps on T (J3), on the
same (y, z). T and the dual are warm-started across steps and their Adam states persist. At the end of
the step T is frozen (eval mode, no dropout) as T_{k+1}, the particles of P_{k+1} are regenerated from
fresh P_0 samples through T_1..T_{k+1}, and Gamma is refit to them.

**Compiled losses** (``compile``): the networks are small (width 64), so on a GPU the inner loop is bound
by kernel launches, not arithmetic. ``compile="default"`` passes the two losses (the dual's h-loss and
the T-loss with T's forward) through ``torch.compile`` (forward and backward graphs fused by inductor);
``"reduce-overhead"`` also replays them as CUDA graphs on a GPU (on the CPU it is ``"default"``). The
minibatch draws, the optimiser steps and the regeneration stay eager; the losses compute the same
functions (tested against eager), and the reference's refit quantities are tensors, so a refit does not
recompile. The first step pays the compilation (seconds; on the CPU ~10 s per loss). With ICNN maps
(T = grad psi) the T-loss differentiates through a gradient (double backward), which torch.compile's
autograd does not support: only the h-loss is compiled there.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from wgfbench.methods.base import Diverged, JKOMethod, MethodConfig, StepStats, UnsupportedProblem, check_finite
from wgfbench.nets.adam import adam
from wgfbench.nets.mlp import RatioNet, ResidualMLP, mlp_trunk
from wgfbench.problems.gaussian import moment_fit
from wgfbench.timing import timed

CompileMode = Literal["off", "default", "reduce-overhead"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)

# Fan et al.'s porous-medium protocol (variational-jko.md §1.5 table and §2.2; step size 5e-4 and 50
# steps are suite values). t_steps is 2 for d = 3 and 1 for d = 6 in their scripts; h_hidden 2 / 3.
FAN_POROUS_PARAMS: dict[str, object] = {
    "map": "icnn",
    "icnn_width": 64,
    "icnn_layers": 1,
    "icnn_rank": 1,
    "iters_per_step": 1000,
    "batch_size": 1024,
    "h_steps": 3,
    "t_steps": 2,
    "lr_t": 1e-3,
    "lr_h": 1e-3,
    "weight_decay": 1e-7,
    "h_width": 16,
    "h_hidden": 2,
    "box_scale": 1.5,
}


@dataclasses.dataclass(frozen=True)
class VariationalJKOConfig(MethodConfig):
    """Defaults: Fan et al.'s OU protocol (variational-jko.md §1.5 and §2.1). Porous: FAN_POROUS_PARAMS."""

    n_particles: int = 512_000
    batch_size: int = 1024
    iters_per_step: int = 500
    h_steps: int = 3
    t_steps: int = 1
    lr_t: float = 5e-3
    lr_h: float = 5e-3
    weight_decay: float = 0.0
    map: Literal["mlp", "icnn"] = "mlp"  # "mlp" (residual MLP) or "icnn" (gradient of a DenseICNN)
    t_width: int = 64
    t_hidden: int = 2
    t_dropout: float = 0.02
    t_final_prelu: bool = False
    icnn_width: int = 64
    icnn_layers: int = 2
    icnn_rank: int = 1
    icnn_activation: Literal["celu", "softplus"] = "celu"
    icnn_strong_convexity: float = 1e-6
    icnn_pretrain_iters: int = 4000
    icnn_pretrain_lr: float = 8e-3
    h_width: int = 64
    h_hidden: int = 1
    ratio: Literal["quadratic", "smooth"] = "quadratic"  # KL only
    gamma0_var: float = 1.5  # KL only
    box_scale: float = 1.5  # generalised entropy only, from here on
    box_quantile: float = 0.999
    reference_shape: Literal["box", "ball"] = "box"  # "box" (the paper) or "ball"
    dual_scale: Literal["moment", "box"] = "moment"  # "moment" or "box" (Fan's h)
    regen_chunk: int = 65_536
    # torch.compile mode of the two losses: "off" (eager), "default", or "reduce-overhead" (CUDA graphs on a GPU)
    compile: CompileMode = "off"


class GaussianReference:
    """Gamma = N(mean, cov) on the method's device: sampling and log-density for the KL dual.

    With cov = L L^T (Cholesky, float64): z = mean + L eps, and log Gamma(x) = -|W (x - mean)|^2 / 2
    - log det L - (d/2) log 2 pi with the whitening matrix W = L^{-1}, formed once per refit in float64.
    Both are one matrix product per batch; a triangular solve per batch instead (``solve_triangular``,
    forward and backward) was ~2x slower on the CPU at d = 256 and is on the inner loop's hot path.
    """

    def __init__(self, mean: Tensor, cov: Tensor, device: torch.device, dtype: torch.dtype):
        cov = 0.5 * (cov + cov.T)
        eye = torch.eye(cov.shape[0], dtype=cov.dtype)
        scale = float(cov.diagonal().abs().mean()) or 1.0
        rel = 0.0
        while True:  # a singular fit (tiny N or collapsed particles) gets the smallest jitter that works
            chol, info = torch.linalg.cholesky_ex(cov + rel * scale * eye)
            if int(info) == 0:
                break
            rel = 1e-10 if rel == 0.0 else 10.0 * rel
            if rel > 1.0:
                raise Diverged("the reference Gaussian's covariance is not positive definite (collapsed particles?)")
        self.mean = mean.to(device, dtype)
        self.chol = chol.to(device, dtype)
        eye = torch.eye(cov.shape[0], dtype=chol.dtype)
        self.whiten = torch.linalg.solve_triangular(chol, eye, upper=False).to(device, dtype)
        log_norm = float(torch.log(torch.diagonal(chol)).sum()) + 0.5 * cov.shape[0] * math.log(2 * math.pi)
        self.log_norm = torch.tensor(log_norm, device=device, dtype=dtype)  # a tensor: see VariationalJKO.compile

    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + z @ self.chol.T

    def log_density(self, x: Tensor) -> Tensor:
        u = (x - self.mean) @ self.whiten.T
        return -0.5 * (u**2).sum(-1) - self.log_norm


def stacked(fn: Callable[[Tensor], Tensor], a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(a), fn(b)) by one call on the rows of [a; b], for a row-wise fn (a network without batch statistics)."""
    out = fn(torch.cat([a, b]))
    return out[: a.shape[0]], out[a.shape[0] :]


# --- KL: Gaussian reference and density-ratio dual ---------------------------------------------------
class KLDual:
    """F = tau KL(P || Q) with Gamma = moment-fit Gaussian and the log-ratio NWJ dual (module docstring)."""

    def __init__(self, problem, config: VariationalJKOConfig, device: torch.device, dtype: torch.dtype) -> None:
        d = problem.dim
        self.problem = problem
        self.tau = float(problem.temperature)
        self.device, self.dtype = device, dtype
        self.net = RatioNet(d, config.h_width, config.h_hidden, config.ratio).to(device, dtype)
        eye = torch.eye(d, dtype=torch.float64)
        self.gamma = GaussianReference(torch.zeros(d, dtype=torch.float64), config.gamma0_var * eye, device, dtype)

    def refit(self, particles: Tensor) -> None:
        fit = moment_fit(particles)
        self.gamma = GaussianReference(fit.mean, fit.cov, self.device, self.dtype)

    def sample_reference(self, n: int) -> Tensor:
        return self.gamma.sample(n)

    def h_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        """- (E_P[log r] - E_Gamma[r]): minimised over r (ascent on the NWJ lower bound).

        r is evaluated on [Ty; z] in one pass (:func:`stacked`): the same values as two passes, half the
        operator calls (kernel launches on a GPU).
        """
        r_ty, r_z = stacked(self.net.ratio, ty, z)
        return -self.net.log_of(r_ty).mean() + r_z.mean()

    def energy(self, ty: Tensor) -> Tensor:
        """tau E[log r(Ty) + log Gamma(Ty) - log Q(Ty)]: the T-loss term of F(T#P_k)."""
        energy = self.net.log_ratio(ty) + self.gamma.log_density(ty) - self.problem.log_target(ty)
        return self.tau * energy.mean()

    def diagnostics(self, particles: Tensor) -> dict[str, float]:
        return {}


# --- generalised entropy: uniform reference on a robust box (or ball) and a density dual -------------------
@dataclasses.dataclass(frozen=True)
class UniformReference:
    """Unif(Omega) for Omega the cube c + [-s, s]^d or the ball B(c, s); on the method's device."""

    center: Tensor
    half_width: float
    shape: str
    # half_width and |Omega| as 0-d tensors on the device, for the losses: a compiled loss reads them as
    # inputs, where it would specialise on (and recompile for) every refit's Python float.
    half_width_t: Tensor = dataclasses.field(init=False, repr=False, compare=False)
    volume_t: Tensor = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = self.center
        object.__setattr__(self, "half_width_t", torch.tensor(self.half_width, device=c.device, dtype=c.dtype))
        object.__setattr__(self, "volume_t", torch.tensor(math.exp(self.log_volume), device=c.device, dtype=c.dtype))

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    @property
    def log_volume(self) -> float:
        d, s = self.dim, self.half_width
        if self.shape == "box":
            return d * math.log(2 * s)
        return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1) + d * math.log(s)

    def sample(self, n: int) -> Tensor:
        c = self.center
        if self.shape == "box":
            return c + self.half_width * (2 * torch.rand(n, self.dim, device=c.device, dtype=c.dtype) - 1)
        u = torch.randn(n, self.dim, device=c.device, dtype=c.dtype)
        u = u / u.norm(dim=1, keepdim=True)
        r = torch.rand(n, 1, device=c.device, dtype=c.dtype) ** (1.0 / self.dim)
        return c + self.half_width * r * u

    def norm(self, x: Tensor) -> Tensor:
        """|x - c| in the norm whose unit ball is Omega's shape (inf-norm for the cube)."""
        diff = x - self.center.to(x)
        return diff.abs().amax(-1) if self.shape == "box" else diff.norm(dim=-1)

    def project(self, x: Tensor) -> Tensor:
        """Nearest point of Omega (identity inside)."""
        c, s = self.center.to(x), self.half_width_t.to(x)
        if self.shape == "box":
            return c + torch.clamp(x - c, -s, s)
        scale = (s / self.norm(x).clamp_min(1e-30)).clamp(max=1.0)
        return c + (x - c) * scale.unsqueeze(-1)


def fit_uniform_reference(particles: Tensor, scale: float, quantile: float, shape: str = "box") -> UniformReference:
    """Omega centred at the coordinate-wise median c with half-width scale * quantile_q(|x - c|).

    ``quantile=1`` takes the maximum (the paper's rule, 1.5 max |x|_inf, up to the centre).
    """
    if shape not in ("box", "ball"):
        raise ValueError(f"reference_shape must be 'box' or 'ball', got {shape!r}")
    if not 0 < quantile <= 1:
        raise ValueError(f"box_quantile must be in (0, 1], got {quantile}")
    x = particles.detach()
    center = x.median(dim=0).values
    ref = UniformReference(center, 1.0, shape)
    radii = ref.norm(x).to(torch.float64)
    idx = min(radii.shape[0] - 1, math.ceil(quantile * radii.shape[0]) - 1)
    s = scale * float(torch.kthvalue(radii.cpu(), idx + 1).values)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"cannot fit a reference domain to the particles (half-width {s})")
    return UniformReference(center, s, shape)


class DensityNet(nn.Module):
    """rho(x) = scale * out(u(x)), u an MLP trunk (PReLU), out = PReLU (m = 2) or softplus (rho > 0)."""

    def __init__(self, dim: int, width: int, n_hidden: int, positive: bool):
        super().__init__()
        self.trunk = mlp_trunk(dim, 1, width, n_hidden)
        self.out = nn.Softplus() if positive else nn.PReLU()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.out(self.trunk(x)).squeeze(-1)


class EntropyDual:
    """F = 1/(m-1) ∫P^m with Gamma uniform on a robust box and the density dual rho (module docstring)."""

    def __init__(self, problem, config: VariationalJKOConfig, device: torch.device, dtype: torch.dtype) -> None:
        if config.dual_scale not in ("moment", "box"):
            raise ValueError(f"dual_scale must be 'moment' or 'box', got {config.dual_scale!r}")
        self.m = float(problem.m)
        if not self.m > 1:
            raise UnsupportedProblem(f"generalised entropy needs m > 1, got {self.m}")
        self.config = config
        self.net = DensityNet(problem.dim, config.h_width, config.h_hidden, positive=self.m != 2.0).to(device, dtype)
        self.gamma: UniformReference | None = None
        self.outside_frac = math.nan

    def refit(self, particles: Tensor) -> None:
        cfg = self.config
        self.gamma = fit_uniform_reference(particles, cfg.box_scale, cfg.box_quantile, cfg.reference_shape)
        self.outside_frac = float((self.gamma.norm(particles) > self.gamma.half_width).double().mean())
        if cfg.dual_scale == "box":
            log_scale = -self.gamma.log_volume
        else:
            d = particles.shape[1]
            _, logdet = torch.linalg.slogdet(moment_fit(particles).cov)
            log_scale = -0.5 * d * math.log(4 * math.pi) - 0.5 * float(logdet)
        self.net.scale.fill_(math.exp(log_scale))

    def sample_reference(self, n: int) -> Tensor:
        return self.gamma.sample(n)

    def _power_m_minus_1(self, rho: Tensor) -> Tensor:
        return rho if self.m == 2.0 else rho ** (self.m - 1)

    def _inside(self, x: Tensor) -> Tensor:
        """x where it lies in Omega; elsewhere its projection onto Omega, detached (no force there)."""
        outside = (self.gamma.norm(x) > self.gamma.half_width_t).unsqueeze(-1)
        return torch.where(outside, self.gamma.project(x).detach(), x)

    def _energy_of(self, rho: Tensor) -> Tensor:
        """m/(m-1) E[rho^{m-1}] from values rho of the network at the (projected) samples."""
        return self.m / (self.m - 1) * self._power_m_minus_1(rho).mean()

    def energy(self, ty: Tensor) -> Tensor:
        """m/(m-1) E[rho(Ty)^{m-1}], Ty outside Omega taken at its projection: the T-loss term of G(T#P_k)."""
        return self._energy_of(self.net(self._inside(ty)))

    def dual_value(self, ty: Tensor, z: Tensor) -> Tensor:
        """m/(m-1) E_P[rho^{m-1}] - |Omega| E_Gamma[rho^m]: a lower bound on G(P), tight at rho = p.

        rho is evaluated on [Ty (projected onto Omega); z] in one pass (:func:`stacked`).
        """
        rho_ty, rho_z = stacked(self.net, self._inside(ty), z)
        return self._energy_of(rho_ty) - self.gamma.volume_t * (rho_z**self.m).mean()

    def h_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        return -self.dual_value(ty, z)

    @torch.no_grad()
    def diagnostics(self, particles: Tensor, n: int = 16_384) -> dict[str, float]:
        """The dual's estimate of G at the new particles (before the refit), and the reference's size."""
        idx = torch.randperm(particles.shape[0], device=particles.device)[:n]
        value = float(self.dual_value(particles[idx], self.sample_reference(n)))
        return {"gen_entropy_dual": value, "box_half_width": self.gamma.half_width}


DUALS = {"kl": KLDual, "generalised_entropy": EntropyDual}


# --- maps ------------------------------------------------------------------------------------------------
class GradientOfPotential(nn.Module):
    """T = grad psi as a module; differentiable in psi's parameters while training with grad enabled."""

    def __init__(self, potential: nn.Module):
        super().__init__()
        self.potential = potential

    def forward(self, x: Tensor) -> Tensor:
        return self.potential.gradient(x, create_graph=self.training and torch.is_grad_enabled())


def build_map(dim: int, config: VariationalJKOConfig) -> nn.Module:
    if config.map == "mlp":
        return ResidualMLP(dim, config.t_width, config.t_hidden, config.t_dropout, config.t_final_prelu)
    if config.map == "icnn":
        from wgfbench.nets.icnn import DenseICNN

        hidden = [config.icnn_width] * config.icnn_layers
        psi = DenseICNN(dim, hidden, config.icnn_rank, config.icnn_activation, config.icnn_strong_convexity)
        return GradientOfPotential(psi)
    raise ValueError(f"map must be 'mlp' or 'icnn', got {config.map!r}")


def compile_losses(h_loss: Callable, t_loss: Callable, mode: str, compile_t: bool = True) -> tuple[Callable, Callable]:
    """The two losses as they are (``mode="off"``) or through ``torch.compile`` (module docstring).

    ``compile_t=False`` leaves the T-loss eager (ICNN maps: it needs a double backward).

    With CUDA graphs (``"reduce-overhead"``) each call first marks a new step: a loss's outputs are consumed
    (backward) before its next call, so the graphs may reuse their memory.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "off":
        return h_loss, t_loss

    def compiled(fn: Callable) -> Callable:
        fast = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
        if mode != "reduce-overhead":
            return fast

        def step_marked(*args: Tensor) -> Tensor:
            torch.compiler.cudagraph_mark_step_begin()
            return fast(*args)

        return step_marked

    return compiled(h_loss), compiled(t_loss) if compile_t else t_loss


class VariationalJKO(JKOMethod):
    """Fan et al.'s variational JKO for the KL and the generalised entropy. See the module docstring."""

    name = "variational_jko"
    Config = VariationalJKOConfig
    functionals = frozenset(DUALS)
    accelerated = True
    density_when = "map=icnn"  # with ICNN maps only (T = grad psi): an instance sets has_density

    def __init__(self, problem, step_size: float, config: VariationalJKOConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        d = problem.dim
        self.has_density = config.map == "icnn"
        self.T = build_map(d, config).to(self.device, self.dtype)
        self.dual = DUALS[problem.functional](problem, config, self.device, self.dtype)
        self.r = self.dual.net
        self.opt_t = adam(self.T.parameters(), lr=config.lr_t, weight_decay=config.weight_decay)
        self.opt_h = adam(self.r.parameters(), lr=config.lr_h, weight_decay=config.weight_decay)
        self._h_loss, self._t_loss_of = compile_losses(
            self.dual.h_loss, self._t_loss_at, config.compile, compile_t=config.map != "icnn"
        )
        self.maps: list[nn.Module] = []
        self._density_maps: list = []
        self._regenerate_particles()
        if isinstance(self.dual, EntropyDual):
            self.dual.refit(self.particles)
        self.pretrain_s = 0.0
        if config.map == "icnn" and config.icnn_pretrain_iters > 0:
            self._pretrain_identity()

    def _pretrain_identity(self) -> None:
        """Fit grad psi ~ id on P_0 particles (Mokrov et al.'s protocol; variational-jko.md §1.3)."""
        from wgfbench.nets.icnn import pretrain_identity

        cfg = self.config
        n = self.particles.shape[0]
        with timed(self.device) as m:
            pretrain_identity(
                self.T.potential,
                lambda b: self.particles[torch.randint(n, (b,), device=self.device)],
                batch_size=cfg.batch_size,
                lr=cfg.icnn_pretrain_lr,
                max_iters=cfg.icnn_pretrain_iters,
            )
        self.pretrain_s = m.seconds

    # --- sampling P_k = (T_k o ... o T_1) # P_0 --------------------------------------------------
    def _sample_p0(self, n: int, generator: torch.Generator) -> Tensor:
        """P_0 samples on the CPU in the method's dtype (the maps run in it; float64 normals cost ~5x more)."""
        return self.problem.initial().sample(n, generator, dtype=self.dtype)

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

    def _regenerate_particles(self) -> None:
        """Particles of P_k from fresh P_0 draws of the method's generator (its state before them is kept)."""
        self._particles_gen_state = self.generator.get_state()
        self.particles = self._push(self._sample_p0(self.config.n_particles, self.generator))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._push(self._sample_p0(n, generator)).cpu()

    # --- densities (ICNN maps only) --------------------------------------------------------------------
    def _gradient_maps(self) -> list:
        """float64 copies of the frozen potentials as :class:`~wgfbench.densities.GradientMap` (cached per k).

        Densities are evaluated in float64 whatever the training dtype: the Newton inversion then reaches
        its float64 tolerance (1e-9) and the log-determinants carry no float32 round-off.
        """
        from wgfbench.densities import GradientMap

        if len(self._density_maps) != len(self.maps):
            self._density_maps = [GradientMap(copy.deepcopy(m.potential).double()) for m in self.maps]
        return self._density_maps

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Samples of P_k and log p_k at them: log p_0(x_0) - sum_i log det Hess psi_i (change of variables)."""
        if not self.has_density:
            return super().sample_with_log_density(n, generator)
        from wgfbench.densities import push_with_log_density

        x0 = self._sample_p0(n, generator)
        log_p0 = self.problem.initial().log_density(x0).to(self.device)
        y, log_p = push_with_log_density(self._gradient_maps(), x0.to(self.device, torch.float64), log_p0)
        return y.to(self.dtype).cpu(), log_p.cpu()

    def log_density(self, x: Tensor) -> Tensor:
        """log p_k at arbitrary points by inverting T_k, ..., T_1 (NaN where an inversion fails)."""
        if not self.has_density:
            return super().log_density(x)
        from wgfbench.densities import log_density_by_inversion

        p0 = self.problem.initial()
        result = log_density_by_inversion(self._gradient_maps(), x.to(self.device, torch.float64), p0.log_density)
        return result.log_density.cpu()

    # --- one JKO step --------------------------------------------------------------------------------
    def _t_loss(self, y: Tensor, ty: Tensor) -> Tensor:
        """E|y - Ty|^2/(2h) + the dual's estimate of F(T#P_k) (up to terms constant in T)."""
        transport = ((y - ty) ** 2).sum(-1).mean() / (2.0 * self.h)
        return transport + self.dual.energy(ty)

    def _t_loss_at(self, y: Tensor) -> Tensor:
        """The T-loss at the minibatch y, T's forward included (the unit that ``compile`` compiles)."""
        return self._t_loss(y, self.T(y))

    def _train_step(self) -> float:
        cfg = self.config
        n = self.particles.shape[0]
        self.T.train()
        loss_t = torch.zeros((), device=self.device)
        for _ in range(cfg.iters_per_step):
            idx = torch.randint(n, (cfg.batch_size,), device=self.device)
            y = self.particles[idx]
            z = self.dual.sample_reference(cfg.batch_size)
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
                loss_t = self._t_loss_of(y)
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
            self._regenerate_particles()
            check_finite("variational JKO particles", self.particles)
            diagnostics = self.dual.diagnostics(self.particles)
            self.dual.refit(self.particles)
        extra = {"peak_mem_mb": train.peak_mem_mb, **diagnostics}
        if isinstance(self.dual, EntropyDual):
            extra["box_outside_frac"] = self.dual.outside_frac
        if self.k == 0 and self.pretrain_s:
            extra["pretrain_s"] = self.pretrain_s
        self.k += 1
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra=extra)

    # --- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            T=self.T.state_dict(),
            r=self.r.state_dict(),
            opt_t=self.opt_t.state_dict(),
            opt_h=self.opt_h.state_dict(),
            maps=[m.state_dict() for m in self.maps],
            particles_gen_state=self._particles_gen_state,
            # minibatch draws, reference samples and dropout use torch's global RNG (dropout cannot take a
            # generator): its state makes a resumed run continue exactly as the uninterrupted one
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.T.load_state_dict(state["T"])
        self.r.load_state_dict(state["r"])
        self.opt_t.load_state_dict(state["opt_t"])
        self.opt_h.load_state_dict(state["opt_h"])
        self.maps = []
        self._density_maps = []
        for sd in state["maps"]:
            m = copy.deepcopy(self.T).eval().requires_grad_(False)
            m.load_state_dict(sd)
            self.maps.append(m)
        # the very particle set the run was using, then the RNGs where the run left them (a checkpoint written
        # before these were saved resumes with fresh particles and the constructor's global RNG state)
        self._replay_particles(state.get("particles_gen_state"))
        self.dual.refit(self.particles)
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
