r"""JKO-ICNN as Alvarez-Melis, Schiff & Mroueh (TMLR 2022) publish it: a fixed particle set, stochastic log-dets.

Each JKO step solves, over convex potentials u (a :class:`~wgfbench.nets.ficnn.FICNN`),

    min_u  (1/(2h)) mean_i |grad u(x_i) - x_i|^2 + F((grad u) # P_k)                      (their Eq. 6 / Alg. 1)

on ONE fixed particle set x_1..x_N ~ P_0 drawn at the start and carried forward, x_i <- grad u_k(x_i) after step
k (P_{k+1} = T_k # P_k on the particles). Each particle keeps its log-density, updated by change of variables at
the same time,

    log p_{k+1}(T_k x_i) = log p_k(x_i) - log det Hess u_k(x_i),

so a step costs the same at every k (O(K) per run; no regeneration through earlier maps, unlike Mokrov's
protocol in :mod:`wgfbench_baselines.jko_icnn`). Training is full batch (all N particles every iteration), Adam at
lr 1e-3 re-created at every step, u warm-started from the previous step, the FICNN's weights clamped after every
optimiser step. The Hessian is never formed; the log-det terms use the estimators of
:mod:`wgfbench_baselines.stochastic_logdet` (with one Rademacher probe per particle, drawn fresh at every iteration):

* log-det GRADIENT: Hutchinson + conjugate gradients, CG started at u_0 = v with the absolute stopping rule
  |r_ij| <= ``cg_atol`` = 1e-3 for every entry (CP-Flow's ``conjugate_gradient``), at most ``cg_iters``;
* log-det VALUE (where the functional needs it): stochastic Lanczos quadrature with
  m = max(2, min(``lanczos_steps``, d)) Lanczos steps from a normalised Rademacher probe.

In d = 1 both are exact, log Hess u(x) itself (their code does the same). The functionals:

* ``"kl"``, F = tau KL(P || Q) = E_P[-tau log Q] + tau ∫ P log P + const (their ``FokkerPlanckFunctional`` with
  temperature tau): the entropy of T#P_k is E_{P_k}[log p_k(x) - log det Hess u(x)], so its gradient is
  -tau E[grad_theta log det Hess u], by the CG surrogate; the potential term is E[-tau log_target(T x)].
* ``"generalised_entropy"``, F = ∫ f(rho) with f(r) = r^m/(m-1) (porous medium; their
  ``InternalEnergyFunctional``). Derivation of the gradient: with r(x) = p_k(x) / det H(x), H = Hess u, the
  density of T#P_k at T x,

      F(T#P_k) = ∫ f(p_{k+1}(y)) dy = E_{x~P_k}[ f(r(x)) / r(x) ]      (y = T x, dy = det H dx = (p_k/r) dx),

  and since dr/dtheta = -r d log det H/dtheta,

      d/dtheta [f(r)/r] = (f'(r)/r - f(r)/r^2) dr/dtheta = -(f'(r) - f(r)/r) d log det H/dtheta,

  so grad_theta F = -E[ mu(r) grad_theta log det H ] with the multiplier mu(r) = f'(r) - f(r)/r, here
  m r^{m-1}/(m-1) - r^{m-1}/(m-1) = r^{m-1} (:func:`internal_energy_multiplier`). The multiplier is held
  constant (its r from the tracked log p_k and the SLQ value of log det H at the current u) and
  multiplies the CG surrogate's gradient: the surrogate loss -mu(r) s(x). (Alvarez-Melis et al. pass
  ``multfun = exp((m-1) log r)`` for f(r) = r^m, i.e. the functional 1/(m-1) ∫ rho^m as here.) Tested against
  autograd of E[f(r)/r] with the exact log det (tests/test_jko_icnn_am.py).

The tracked log-densities are updated with the SLQ value of log det at the final u of each step (as their code
updates its ``logdet_composition``): exact in d = 1, an unbiased-in-the-trace estimate with one probe otherwise.
For the porous medium in d >= 2 the multiplier exp((m-1) log r) of a noisy log r is biased upwards (Jensen:
E[e^Z] > e^{E Z}), more so the more anisotropic Hess u is; that bias belongs to the published protocol.
The reported ``loss`` is the transport term plus the potential term (KL) or the internal-energy value from the
SLQ log-det (porous medium); the entropy's value is not computed in training (their code neither).

Evaluation (this suite's, not theirs): P_k is the pushforward of P_0 by T_k o ... o T_1, so ``sample`` pushes
fresh P_0 samples through the frozen maps (any number, not limited to the N training particles, which are
``self.particles``), and the densities are exact: change of variables with the exact Hessians at model samples,
Newton inversion of every map at arbitrary points (:class:`wgfbench.methods.pushforward.MapChain`; the FICNN's
closed-form Hessian). The training particles' tracked (SLQ) log-densities are ``self.particles_logp``.

Caveat for densities at arbitrary points: the FICNN is convex but not C^1 (every leaky-ReLU after the squared
first layer has a kink), so grad u jumps across the surfaces where a later pre-activation vanishes, the jump
being normal to the surface. The pushforward then has GAPS, sets of positive volume between the one-sided
gradients where its density is 0, and the Newton inversion stalls on the kink for points in them (and, on a
poorly trained map, for some points whose Newton path crosses a kink). Such points get a NaN log-density with a
warning (never a guessed value; a gap point's true value would be -inf), so the reference-side KL of a
density-based SymKL is unavailable wherever they occur; the model-side term (at model samples, by change of
variables) and every sample metric are unaffected.

Presets: :data:`AM_PME_PARAMS` is their porous-medium experiment (``notebooks/Experiments_PDE.ipynb``: 200
particles, FICNN [100, 20], Adam lr 1e-3, 400 + 1 iterations per step, CG 50 iterations, 10 Lanczos steps; their
h = 1e-2, 10 steps, 1D Barenblatt with m = 2, t0 = 1e-3). :data:`AM_OU_PARAMS` carries their settings to the
OU / Fokker-Planck problem, which they did not publish: their entropy functional's default of 10 CG iterations,
and 1000 particles (their largest PDE particle set, the aggregation experiment's; our choice).

All randomness (particles, probes, Lanczos restarts) comes from the method's generator: a run restored from
``state_dict`` continues bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from wgfbench_baselines.stochastic_logdet import (
    CGResult,
    Hvp,
    batched_cg,
    logdet_gradient_surrogate,
    potential_hvp,
    rademacher,
    slq_logdet,
)

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, check_finite
from wgfbench.methods.pushforward import GradientOfPotential, MapChain
from wgfbench.nets.adam import adam
from wgfbench.nets.ficnn import FICNN
from wgfbench.params import Count, NonNegative, Positive, SampleSize
from wgfbench.timing import timed


@dataclasses.dataclass(frozen=True)
class JKOICNNAMConfig(MethodConfig):
    """Defaults: Alvarez-Melis et al.'s porous-medium experiment (module docstring, :data:`AM_PME_PARAMS`)."""

    hidden: tuple[Count, ...] = (100, 20)
    negative_slope: NonNegative = 0.01
    n_particles: SampleSize = 200
    lr: Positive = 1e-3
    iters_per_step: Count = 401  # their loop runs opt_iters + 1 = 401 iterations
    cg_iters: Count = 50
    cg_atol: Positive = 1e-3
    lanczos_steps: Count = 10  # m = max(2, min(lanczos_steps, d))
    slq_eps: Positive = 1e-8
    inversion_tol: Positive = 1e-9  # evaluation: residual of the float64 Newton inversion
    inversion_max_iter: Count = 100
    chunk: Count = 16_384

    def __post_init__(self) -> None:  # a suite gives a list; keep the frozen config hashable
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))


AM_PME_PARAMS: dict[str, Any] = {
    "hidden": (100, 20),
    "negative_slope": 0.01,
    "n_particles": 200,
    "lr": 1e-3,
    "iters_per_step": 401,
    "cg_iters": 50,
    "cg_atol": 1e-3,
    "lanczos_steps": 10,
}
AM_OU_PARAMS: dict[str, Any] = {**AM_PME_PARAMS, "cg_iters": 10, "n_particles": 1000}


def internal_energy_multiplier(log_r: Tensor, m: float) -> Tensor:
    """mu(r) = f'(r) - f(r)/r for f(r) = r^m/(m-1): m r^{m-1}/(m-1) - r^{m-1}/(m-1) = r^{m-1}, from log r."""
    return torch.exp((m - 1.0) * log_r)


class JKOICNNAlvarezMelis(JKOMethod):
    """Alvarez-Melis, Schiff & Mroueh's JKO-ICNN as published (module docstring).

    Its carried particle set is the training set of every map, not a fresh sample of P_k: evaluation draws fresh
    P_0 samples through the maps instead (``evaluation_particles`` is None)."""

    name = "jko_icnn_am"
    color = "#56b4e9"
    Config = JKOICNNAMConfig
    functionals = frozenset({"kl", "generalised_entropy"})
    has_density = True
    accelerated = True
    density_gaps = (
        "the FICNN's gradient map is not C^1 (leaky-ReLU kinks): the pushforward has gaps where its density is 0, "
        "and Newton inversion stalls on a kink there; such points get NaN, never a guessed value"
    )
    tiny_params: ClassVar[dict[str, Any]] = {
        "hidden": (8, 8),
        "n_particles": 64,
        "iters_per_step": 3,
        "cg_iters": 5,
        "lanczos_steps": 2,
    }
    timing_params: ClassVar[dict[str, Any]] = {"iters_per_step": 10}

    def __init__(self, problem, step_size: float, config: JKOICNNAMConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        if problem.functional == "kl":
            self.tau = float(problem.temperature)
        else:
            self.m = float(problem.m)
        self.psi = self._new_potential()
        # P_0 drawn in float64 (then cast), as the training particles
        self.chain = MapChain(problem.initial(), self.device, self.dtype, config.chunk, p0_dtype=torch.float64)
        p0 = problem.initial()
        x0 = p0.sample(config.n_particles, self.generator)
        self.initial_particles = x0.to(self.device, self.dtype)
        self.initial_logp = p0.log_density(x0).to(self.device)  # float64
        self.particles = self.initial_particles.clone()
        self.particles_logp = self.initial_logp.clone()

    def _new_potential(self) -> FICNN:
        net = FICNN(self.problem.dim, self.config.hidden, self.config.negative_slope)
        return net.to(self.device, self.dtype)

    @property
    def lanczos_m(self) -> int:
        """Lanczos steps of the SLQ value: max(2, min(lanczos_steps, d)) (their rule; d = 1 is exact instead)."""
        return max(2, min(self.config.lanczos_steps, self.problem.dim))

    # --- the log-det terms at the particles -----------------------------------------------------------------
    def _cg(self, hvp: Hvp, b: Tensor) -> CGResult:
        cfg = self.config
        return batched_cg(hvp, b, cfg.cg_iters, atol=cfg.cg_atol, x0="b", norm="max")

    def _logdet_value(self, hvp: Hvp, x: Tensor) -> Tensor:
        """log det Hess u at the rows of x: exact in d = 1, SLQ otherwise (one fresh probe per row)."""
        with torch.no_grad():
            if self.problem.dim == 1:
                return torch.log(hvp(torch.ones_like(x))).squeeze(-1)
            probe = rademacher(tuple(x.shape), self.generator, x)
            return slq_logdet(hvp, probe, self.lanczos_m, eps=self.config.slq_eps, generator=self.generator)

    def _objective(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, float]]:
        """(T x, loss to minimise, its reported value, diagnostics) on the particles x."""
        xr = x.detach().requires_grad_(True)
        (tx,) = torch.autograd.grad(self.psi(xr).sum(), xr, create_graph=True)
        hvp, hvp_graph = potential_hvp(tx, xr), potential_hvp(tx, xr, create_graph=True)
        diag: dict[str, float] = {}
        value_logdet = None
        if self.problem.functional == "generalised_entropy":  # their order: SLQ value, then the CG probe
            value_logdet = self._logdet_value(hvp, xr)
        if self.problem.dim == 1:
            surrogate = torch.log(hvp_graph(torch.ones_like(xr))).squeeze(-1)  # exact log Hess u
        else:
            v = rademacher(tuple(x.shape), self.generator, x)
            surrogate, cg = logdet_gradient_surrogate(hvp_graph, hvp, v, self._cg)
            diag = {"cg_iters": float(cg.iterations), "cg_converged": float(cg.converged)}
        gradient_part = surrogate - surrogate.detach()  # value 0, gradient that of log det
        transport = ((tx - xr) ** 2).sum(-1) / (2.0 * self.step_size)
        if self.problem.functional == "kl":
            potential = -self.tau * self.problem.log_target(tx)
            value = transport + potential
            loss = value - self.tau * gradient_part
        else:
            log_r = self.particles_logp.to(x.dtype) - value_logdet
            energy = torch.exp((self.m - 1.0) * log_r) / (self.m - 1.0)
            value = transport + energy
            loss = value - internal_energy_multiplier(log_r, self.m) * gradient_part
        return tx, loss.mean(), value.mean(), diag

    # --- one JKO step -----------------------------------------------------------------------------------------
    def _advance(self) -> StepStats:
        cfg = self.config
        opt = adam(self.psi.parameters(), lr=cfg.lr)
        value, diag = torch.tensor(float("nan")), {}
        with timed(self.device) as train:
            for _ in range(cfg.iters_per_step):
                _, loss, value, diag = self._objective(self.particles)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                self.psi.convexify()
                if not math.isfinite(loss.item()):
                    break
        self.finite_loss(float(value.detach()))
        with timed(self.device) as carry:
            xr = self.particles.detach().requires_grad_(True)
            (tx,) = torch.autograd.grad(self.psi(xr).sum(), xr, create_graph=True)
            logdet = self._logdet_value(potential_hvp(tx, xr), xr)
            self.particles = tx.detach()
            self.particles_logp = self.particles_logp - logdet.to(self.particles_logp.dtype)
            check_finite("JKO-ICNN (Alvarez-Melis) particles", self.particles)
            check_finite("JKO-ICNN (Alvarez-Melis) log-densities", self.particles_logp)
            self.chain.append(GradientOfPotential(self.psi))
        extra = {**diag, "peak_mem_mb": train.peak_mem_mb}
        return StepStats(train_s=train.seconds, regen_s=carry.seconds, loss=float(value.detach()), extra=extra)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Fresh model samples and their log-densities, both in float64 (module docstring: the pushforward density
        is discontinuous across the kinks, so rounding a sample to float32 could move it onto a piece of another
        density)."""
        x0 = self.chain.sample_p0(n, generator)
        y, lp = self.chain.push_with_log_density(x0, self.problem.initial().log_density(x0))
        return y.cpu(), lp.cpu()

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample(n, generator)

    def log_density(self, x: Tensor) -> Tensor:
        return self.chain.log_density(x, tol=self.config.inversion_tol, max_iter=self.config.inversion_max_iter)

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            psi=copy.deepcopy(self.psi.state_dict()),
            maps=copy.deepcopy(self.chain.state_dict()),
            particles=self.particles.detach().cpu().clone(),
            particles_logp=self.particles_logp.detach().cpu().clone(),
            initial_particles=self.initial_particles.detach().cpu().clone(),
            initial_logp=self.initial_logp.detach().cpu().clone(),
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.psi.load_state_dict(state["psi"])
        self.chain.load_state_dict(state["maps"], lambda: GradientOfPotential(self._new_potential()))
        self.particles = state["particles"].to(self.device, self.dtype)
        self.particles_logp = state["particles_logp"].to(self.device)
        self.initial_particles = state["initial_particles"].to(self.device, self.dtype)
        self.initial_logp = state["initial_logp"].to(self.device)
