r"""JKO-ICNN (Mokrov et al., NeurIPS 2021; Alvarez-Melis et al., TMLR 2022): one convex potential per JKO step.

Each JKO step looks for P_{k+1} = (grad psi)#P_k with psi convex (a :class:`~wgfbench.nets.icnn.DenseICNN`), i.e.

    psi_{k+1} = argmin_psi  E_{x~P_k}[ |x - grad psi(x)|^2 / (2h) ] + F((grad psi)#P_k)          (Mokrov Eq. 9)

and, since log p_{k+1}(grad psi(x)) = log p_k(x) - log det Hess psi(x) (change of variables, Hess psi SPD):

* ``"kl"``, F = tau KL(P || Q), Q ∝ exp(log_target), tau = problem.temperature:
  F(T#P_k) = E_{P_k}[-tau log_target(T x)] - tau E_{P_k}[log det Hess psi(x)] - tau H(P_k),
  the last term a constant of the step (for OU tau = 1/beta and -tau log_target = V);
* ``"generalised_entropy"``, F = 1/(m-1) ∫ P^m (porous medium):
  F(T#P_k) = 1/(m-1) E_{x~P_k}[ (p_k(x) / det Hess psi(x))^{m-1} ],
  with p_k at the particles tracked by change of variables along the chain (:mod:`wgfbench.densities`).

Two variants share the step loop and differ only in how the log-det term and its gradient are obtained:

* :class:`JKOICNNExact` (``jko_icnn_exact``, Mokrov's JKO-ICNN-d): the exact batched Hessian, log det by
  Cholesky, its gradient by autograd through the Cholesky factor. ``hessian="analytic"`` (default) uses the
  DenseICNN's closed-form forward/reverse sweep (:meth:`~wgfbench.nets.icnn.DenseICNN.grad_and_hessian`),
  ``"torch_func"`` the generic ``vmap(jacfwd(grad psi))`` (:func:`wgfbench.densities.batched_grad_and_hessian`);
  both are one batched pass, not Mokrov's d separate backward passes, and agree to round-off (tests). The analytic
  sweep is several times faster on the CPU (no per-sample vmap of a third-order graph).
* :class:`JKOICNNStochastic` (``jko_icnn_stochastic``, JKO-ICNN-a, the CP-Flow estimator used by Alvarez-Melis
  et al.): the Hessian is never formed. d/dtheta log det H = tr(H^{-1} dH/dtheta) = E_v[v^T H^{-1} (dH/dtheta) v]
  (Hutchinson; v Rademacher, ``n_probes`` per sample); u = H^{-1} v by conjugate gradients on Hessian-vector
  products (double backward, at most ``cg_iters`` iterations, stop at relative residual ``cg_rtol``), then the
  surrogate u^T H v with u detached has the gradient u^T (dH/dtheta) v. KL functional only: the porous internal
  energy needs the value of log det as well, which this estimator does not give.

Protocol (Mokrov et al.'s OU configuration and their ``train_diffusion_model``), every
constant a config field:

* DenseICNN 2 hidden layers x 64, rank 5, softplus, strong convexity 1e-6 (``hidden_width``, ``hidden_layers``,
  ``rank``, ``activation``, ``strong_convexity``).
* Identity pretraining before the first step (lazily, inside the first ``step()``; its time is reported as
  ``extra["pretrain_s"]``, not in ``train_s``): Adam lr 8e-3, at most 4000 iterations, stop at MSE < 1e-5,
  batch 1024, X ~ P_0.
* Each step: psi warm-started from the previous step's potential, a **new** Adam (lr 5e-3, weight decay 1e-9),
  ``iters_per_step`` = 500 iterations of batch 1024.
* Training particles: Mokrov draws a fresh batch of P_k at every iteration (P_0 samples pushed through the frozen
  maps). Here a particle set of ``n_particles`` fresh P_0 samples pushed through T_1..T_k is regenerated at the
  end of every step and the iterations walk through a random permutation of it in disjoint minibatches; with the
  default ``n_particles = batch_size * iters_per_step`` every minibatch is a fresh independent draw from P_k, the
  same law of minibatches as Mokrov's, at one regeneration per step (the time is ``regen_s``).
* P_k for evaluation: fresh P_0 samples pushed through the frozen maps. Densities: at model samples by change of
  variables, at arbitrary points by Newton inversion of each gradient map (:mod:`wgfbench.densities`); both in
  float64 copies of the maps, whatever ``dtype`` the training used. A point whose inversion misses its
  tolerance gets a NaN log-density (with a warning), never a biased finite value.

All randomness of training (pretraining batches, minibatch order, probes) comes from the method's generator, so a
run restored from ``state_dict`` continues exactly as the original would have.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from wgfbench.densities import batched_grad_and_hessian, logdet_spd
from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, check_finite
from wgfbench.methods.pushforward import GradientOfPotential, MapChain
from wgfbench.nets.adam import adam
from wgfbench.nets.icnn import DenseICNN, pretrain_identity
from wgfbench.params import Count, NonNegative, NonNegCount, Positive
from wgfbench.timing import timed


@dataclasses.dataclass(frozen=True)
class JKOICNNConfig(MethodConfig):
    """Defaults: Mokrov et al.'s OU protocol (``configs/ornstein_uhlenbeck_vary_dim.yml``)."""

    hidden_width: Count = 64
    hidden_layers: Count = 2
    rank: Count = 5
    activation: Literal["softplus", "celu"] = "softplus"
    strong_convexity: NonNegative = 1e-6
    # exact variant: "analytic" (DenseICNN.grad_and_hessian) or "torch_func"
    hessian: Literal["analytic", "torch_func"] = "analytic"
    lr: Positive = 5e-3
    weight_decay: NonNegative = 1e-9
    batch_size: Count = 1024
    iters_per_step: Count = 500
    n_particles: NonNegCount = 0  # 0: batch_size * iters_per_step (a fresh minibatch of P_k per iteration)
    pretrain_iters: NonNegCount = 4000
    pretrain_lr: Positive = 8e-3
    pretrain_tol: NonNegative = 1e-5
    pretrain_batch: Count = 1024
    inversion_tol: Positive = 1e-9  # residual |grad psi(x) - y| of the float64 Newton inversion
    inversion_max_iter: Count = 100
    chunk: Count = 16_384  # rows per chunk when pushing particles through the maps


@dataclasses.dataclass(frozen=True)
class JKOICNNStochasticConfig(JKOICNNConfig):
    """Adds the stochastic log-det gradient's settings (CP-Flow / Alvarez-Melis: CG with 50 iterations)."""

    n_probes: Count = 1
    cg_iters: Count = 50
    cg_rtol: Positive = 1e-5


# --- the stochastic log-det gradient ----------------------------------------------------------------------------
def batched_cg(hvp, b: Tensor, max_iter: int, rtol: float) -> tuple[Tensor, int, Tensor]:
    """Solve H_i u_i = b_i for every row i by conjugate gradients; ``hvp(p)`` returns the rows H_i p_i.

    Stops when every row's residual |b - H u| <= rtol |b| or after ``max_iter`` iterations. Returns
    (u, iterations, relative residual per row).
    """
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(-1)
    b_norm = b.norm(dim=-1).clamp_min(torch.finfo(b.dtype).tiny)
    it = 0
    while it < max_iter and bool((rs.sqrt() > rtol * b_norm).any()):
        it += 1
        hp = hvp(p)
        curv = (p * hp).sum(-1)
        alpha = torch.where(curv > 0, rs / curv.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
        u = u + alpha.unsqueeze(-1) * p
        r = r - alpha.unsqueeze(-1) * hp
        rs_new = (r * r).sum(-1)
        p = r + (rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny)).unsqueeze(-1) * p
        rs = rs_new
    return u, it, rs.sqrt() / b_norm


def stochastic_logdet_surrogate(
    potential,
    x: Tensor,
    generator: torch.Generator,
    n_probes: int = 1,
    cg_iters: int = 50,
    cg_rtol: float = 1e-5,
    probes: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """(T(x), s(x), diagnostics): T = grad psi (differentiable in psi's parameters) and a surrogate s with

        d s_i / d theta = (1/P) sum_p u_p^T (dH_i/dtheta) v_p,   u_p = H_i^{-1} v_p (CG, detached),

    an unbiased estimate of d log det H_i / d theta for probes with E[v v^T] = I (Rademacher v here; the estimate
    is exact up to CG error when ``probes`` is the full standard basis, shape (d, n, d)). The value of s is
    meaningless (about d); only its gradient is used. The Hessian is never formed: every H p is a
    Hessian-vector product by double backward through the one graph of grad psi.
    """
    xr = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(potential(xr).sum(), xr, create_graph=True)
    if probes is None:
        v = torch.randint(0, 2, (n_probes, *x.shape), generator=generator).to(x) * 2.0 - 1.0
    else:
        v = probes.to(x)

    def hvp(p: Tensor) -> Tensor:
        return torch.autograd.grad(g, xr, grad_outputs=p, retain_graph=True)[0]

    surrogate = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    iters, worst = 0, 0.0
    for vp in v:
        u, it, rel = batched_cg(hvp, vp, cg_iters, cg_rtol)
        iters, worst = max(iters, it), max(worst, float(rel.max()))
        hv = torch.autograd.grad(g, xr, grad_outputs=vp, create_graph=True)[0]
        surrogate = surrogate + (u.detach() * hv).sum(-1)
    return g, surrogate / v.shape[0], {"cg_iters": float(iters), "cg_rel_residual": worst}


# --- the methods ------------------------------------------------------------------------------------------------
class _JKOICNN(JKOMethod):
    """Shared step loop (module docstring); subclasses define :meth:`_energy`."""

    Config = JKOICNNConfig
    has_density = True
    accelerated = True
    tiny_params: ClassVar[dict[str, Any]] = {
        "hidden_width": 8,
        "rank": 2,
        "batch_size": 64,
        "iters_per_step": 3,
        "n_particles": 256,
        "pretrain_iters": 5,
        "pretrain_batch": 64,
    }
    timing_params: ClassVar[dict[str, Any]] = {
        "iters_per_step": 10,
        "pretrain_iters": 20,
    }  # n_particles = batch * iters = 10240

    def __init__(self, problem, step_size: float, config: JKOICNNConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        self.psi = self._new_potential()
        # P_0 drawn in float64 (then cast), the random stream these baselines were defined with
        self.chain = MapChain(problem.initial(), self.device, self.dtype, config.chunk, p0_dtype=torch.float64)
        self.pretrained = False
        if problem.functional == "kl":
            self.tau = float(problem.temperature)
        else:
            self.m = float(problem.m)
        self.n_particles = config.n_particles or config.batch_size * config.iters_per_step
        self.particles: Tensor | None = None
        self.particles_logp: Tensor | None = None

    def _new_potential(self) -> DenseICNN:
        cfg = self.config
        net = DenseICNN(
            self.problem.dim,
            (cfg.hidden_width,) * cfg.hidden_layers,
            rank=cfg.rank,
            activation=cfg.activation,
            strong_convexity=cfg.strong_convexity,
        )
        return net.to(self.device, self.dtype)

    # --- particles of P_k -------------------------------------------------------------------------------------
    def _p0(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample_p0(n, generator)

    def _draw_particles(self, state: Tensor | None = None) -> None:
        """Fresh P_0 samples through T_1..T_k (and log p_k at them, for the internal energy); ``state``: redraw
        the set drawn from that generator state (a restore)."""
        if self.problem.functional == "kl":
            self.particles = self.chain.draw_particles(self.n_particles, self.generator, state)
            self.particles_logp = None
        else:
            after = self.generator.get_state()
            if state is not None:
                self.generator.set_state(state)
            self.chain.particles_gen_state = self.generator.get_state()
            x0 = self._p0(self.n_particles, self.generator)
            lp0 = self.problem.initial().log_density(x0)
            self.particles, self.particles_logp = self.chain.push_with_log_density(x0, lp0, self.dtype)
            if state is not None:
                self.generator.set_state(after)
        check_finite("JKO-ICNN particles", self.particles)

    # --- one JKO step -------------------------------------------------------------------------------------------
    def _pretrain(self) -> dict[str, float]:
        cfg = self.config
        with timed(self.device) as m:
            res = pretrain_identity(
                self.psi,
                lambda n: self._p0(n, self.generator).to(self.device, self.dtype),
                batch_size=cfg.pretrain_batch,
                lr=cfg.pretrain_lr,
                max_iters=cfg.pretrain_iters,
                tol=cfg.pretrain_tol,
                weight_decay=1e-8,
            )
        self.pretrained = True
        return {"pretrain_s": m.seconds, "pretrain_iters": float(res.iterations), "pretrain_loss": res.loss}

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """(T(x), per-sample objective minus transport, diagnostics) for a minibatch x of P_k."""
        raise NotImplementedError

    def _loss(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        tx, energy, diag = self._energy(x, logp)
        transport = ((tx - x) ** 2).sum(-1) / (2.0 * self.step_size)
        return (transport + energy).mean(), diag

    def _train_step(self) -> tuple[float, dict[str, float]]:
        cfg = self.config
        opt = adam(self.psi.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = self.particles.shape[0]
        order = torch.randperm(n, generator=self.generator)
        pos = 0
        loss, diag = torch.tensor(float("nan")), {}
        for _ in range(cfg.iters_per_step):
            if pos + cfg.batch_size > n:
                order, pos = torch.randperm(n, generator=self.generator), 0
            idx = order[pos : pos + cfg.batch_size].to(self.device)
            pos += cfg.batch_size
            logp = None if self.particles_logp is None else self.particles_logp[idx]
            loss, diag = self._loss(self.particles[idx], logp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                break
        return loss.item(), diag

    def _advance(self) -> StepStats:
        extra: dict[str, float] = {}
        if self.k == 0 and not self.pretrained:
            extra.update(self._pretrain())
        if self.particles is None:
            self._draw_particles()
        with timed(self.device) as train:
            loss, diag = self._train_step()
        self.finite_loss(loss)
        extra.update(diag)
        with timed(self.device) as regen:
            self.chain.append(GradientOfPotential(self.psi))
            self._draw_particles()
        extra["peak_mem_mb"] = train.peak_mem_mb
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra=extra)

    # --- sampling and densities ---------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample(n, generator)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.chain.sample_with_log_density(n, generator)

    def log_density(self, x: Tensor) -> Tensor:
        return self.chain.log_density(x, tol=self.config.inversion_tol, max_iter=self.config.inversion_max_iter)

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            psi=copy.deepcopy(self.psi.state_dict()),
            maps=copy.deepcopy(self.chain.state_dict()),
            pretrained=self.pretrained,
            particles_gen_state=self.chain.particles_gen_state,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.psi.load_state_dict(state["psi"])
        self.pretrained = bool(state["pretrained"])
        self.chain.load_state_dict(state["maps"], lambda: GradientOfPotential(self._new_potential()))
        self.particles = self.particles_logp = None
        if state["particles_gen_state"] is not None:  # rebuild the very particle set the run was using
            self._draw_particles(state["particles_gen_state"])


class JKOICNNExact(_JKOICNN):
    """Mokrov et al.'s JKO-ICNN with the exact Hessian log-determinant (torch.func Hessian + Cholesky)."""

    name = "jko_icnn_exact"
    color = "#de8f05"
    functionals = frozenset({"kl", "generalised_entropy"})

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        if self.config.hessian == "analytic":
            tx, hess = self.psi.grad_and_hessian(x)
        else:
            tx, hess = batched_grad_and_hessian(self.psi, x)
        logdet = logdet_spd(hess)
        if self.problem.functional == "kl":
            energy = -self.tau * (self.problem.log_target(tx) + logdet)
        else:
            energy = torch.exp((self.m - 1.0) * (logp - logdet)) / (self.m - 1.0)
        return tx, energy, {}


class JKOICNNStochastic(_JKOICNN):
    """JKO-ICNN with the Hutchinson + CG estimate of the log-det gradient (no Hessian formed); KL only."""

    name = "jko_icnn_stochastic"
    color = "#029e73"
    Config = JKOICNNStochasticConfig
    functionals = frozenset({"kl"})
    tiny_params: ClassVar[dict[str, Any]] = {**_JKOICNN.tiny_params, "cg_iters": 5}

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        cfg = self.config
        tx, surrogate, diag = stochastic_logdet_surrogate(
            self.psi, x, self.generator, n_probes=cfg.n_probes, cg_iters=cfg.cg_iters, cg_rtol=cfg.cg_rtol
        )
        # value = the potential term only; gradient = potential term + the log-det gradient estimate
        energy = -self.tau * (self.problem.log_target(tx) + (surrogate - surrogate.detach()))
        return tx, energy, diag
