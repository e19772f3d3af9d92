r"""Importance-corrected neural JKO sampling (Hertrich & Gruhlke, ICML 2025, §4): CNF steps and rejection steps.

A sampler of a stationary target Q ∝ exp(log_target), **never a time integrator**: its rejection steps are
non-local jumps (mass moves from where the model has too much of it to fresh model samples anywhere), not a
Wasserstein gradient flow. It refuses every transient problem (``problem.transient``: one whose reference(t)
changes with t), so that a suite pairing it with OU or the porous medium fails validation with that reason.

**Schedule** (as their public code): ``n_flow_steps`` CNF steps of :class:`~baselines.neural_jko.NeuralJKO`, then
blocks of [1 CNF step + ``rejection_steps_per_block`` rejection steps], repeated; one ``step()`` call is one
element of the schedule. The j-th CNF step has the step size h_j = h growth^j (our W2^2/(2h) convention: their
tau_j = 2 h_j; growth 4 by default, 2 for GMM-d). The method's own flow-time axis is reported in
``StepStats.extra``: ``flow_time`` = sum of h_j over the CNF steps so far (a rejection step adds nothing),
``step_kind`` (0 = CNF, 1 = rejection) and ``h_k`` (0 for a rejection step). The record's ``t`` column (k h) is
not a flow time for this method; the target, the reference of every t, is.

**Rejection step** (Hertrich & Gruhlke §4, Thm 4.2). Given the model P with density p, a constant
c > 0 and the acceptance probability

    alpha(x) = min(1, q(x) / (c p(x))) = exp(min(0, log_target(x) - log p(x) - log c)),

draw X ~ P and accept it with probability alpha(X); otherwise replace it by a fresh Y ~ P (not tested again).
The output law has density

    p~(x) = p(x) alpha(x) + (1 - E_P[alpha]) p(x) = p(x) (alpha(x) + r),    r = 1 - E_P[alpha],

since P(output in A) = E[alpha(X) 1_A(X)] + P(reject) P(Y in A). So log p~ = log p + log(alpha + r): the
density stays available in closed form. c is set by bisection on log c so that the rejection rate
r(c) = E_P[1 - alpha] on the current particles equals ``rejection_rate`` (0.2): r(c) is continuous and
non-decreasing in log c, 0 for log c <= min(log q/p) and >= rate for log c >= max(log q/p) - log(1 - rate), so
bisection on that bracket converges. The calibrated r (estimated on the particles, as theirs) enters the
density; its estimation error is the only approximation of the closed form. Thm 4.2 gives
KL(P~ || Q) <= KL(P || Q).

After a rejection step the training particles (with their log-densities) are the step applied to the current
ones, as theirs; after a CNF step they are regenerated from P_0 through every layer. Sampling the model draws
from P_0 through the stack; a rejection layer asks the layers below it for its candidates and for the fresh
replacements of the rejected ones at once (n (1 + rate) plus a margin; a deficit is drawn afterwards), so the
cost of a sample grows like (1 + rate)^(number of rejection steps) at the bottom of the stack, as in theirs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor
from wgfbench_baselines.cnf_flow import Draw, StackLayer
from wgfbench_baselines.neural_jko import NeuralJKO, NeuralJKOConfig

from wgfbench.methods.base import Diverged, MethodConfig, StepStats, UnsupportedProblem, check_finite
from wgfbench.params import NonNegCount, Range
from wgfbench.timing import timed

# Hertrich & Gruhlke's schedules per target (their public configuration): CNF steps before the first block, number of
# [1 CNF + 3 rejection] blocks, step growth, and the first step h_0 in our convention (their tau_0 / 2). A suite's
# n_steps for one is n_flow_steps + blocks * (1 + rejection_steps_per_block). The mustache runs their default
# tau_0 = 0.01: its config sets a misspelt ``inital_tau = 0.05`` that their code never reads.
HG_SCHEDULES: dict[str, dict[str, float]] = {
    "8modes": {"n_flow_steps": 2, "blocks": 4, "step_growth": 4.0, "h0": 0.025},
    "8peaky": {"n_flow_steps": 2, "blocks": 4, "step_growth": 4.0, "h0": 0.005},
    "mustache": {"n_flow_steps": 6, "blocks": 6, "step_growth": 4.0, "h0": 0.005},
    "funnel": {"n_flow_steps": 4, "blocks": 6, "step_growth": 4.0, "h0": 2.5},
    "gmm_d10_to_100": {"n_flow_steps": 4, "blocks": 6, "step_growth": 2.0, "h0": 0.00125},  # 7 blocks at d = 50, 100
    "gmm_d200": {"n_flow_steps": 5, "blocks": 8, "step_growth": 2.0, "h0": 0.0005},
}


@dataclasses.dataclass(frozen=True)
class NeuralJKOICConfig(NeuralJKOConfig):
    """The neural JKO's fields, their geometric step growth, and the schedule and rejection rate."""

    step_growth: float = 4.0
    n_flow_steps: NonNegCount = 2
    rejection_steps_per_block: NonNegCount = 3
    rejection_rate: Annotated[float, Range(0.0, 1.0, open_low=True)] = 0.2


def calibrate_log_c(log_ratio: Tensor, rate: float, iters: int = 200) -> tuple[float, float]:
    """log c with mean(1 - min(1, exp(log_ratio - log c))) = rate, by bisection (module docstring).

    ``log_ratio`` = log q - log p at samples of P. Returns (log c, the rejection rate it gives on them).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rejection rate must be in (0, 1), got {rate}")
    lr = log_ratio.detach().to(torch.float64)
    if not bool(torch.isfinite(lr).all()):
        raise Diverged("the rejection step got non-finite log-density ratios")

    def rejection(log_c: float) -> float:
        return float((1.0 - torch.exp((lr - log_c).clamp(max=0.0))).mean())

    lo, hi = float(lr.min()), float(lr.max()) - math.log1p(-rate) + 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if rejection(mid) < rate:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, abs(hi)):
            break
    return hi, rejection(hi)


@dataclasses.dataclass
class RejectionLayer:
    """Accept x with alpha(x) = min(1, q(x)/(c p(x))), else a fresh model sample; log p~ = log p + log(alpha + r)."""

    log_target: Callable[[Tensor], Tensor]
    log_c: float
    rate: float
    kind: ClassVar[str] = "rejection"

    def acceptance(self, x: Tensor, log_p: Tensor) -> Tensor:
        return torch.exp((self.log_target(x) - log_p - self.log_c).clamp(max=0.0))

    def log_density_after(self, y: Tensor, log_p_prev: Tensor, aux: Tensor | None) -> Tensor:
        return log_p_prev + torch.log(self.acceptance(y, log_p_prev) + self.rate)

    def pull(self, y: Tensor, generator: torch.Generator) -> tuple[Tensor, None]:
        return y, None

    def apply(
        self, x: Tensor, log_p: Tensor, draw_prev: Draw, generator: torch.Generator, pool: tuple[Tensor, Tensor] = ()
    ) -> tuple[Tensor, Tensor, float]:
        """The step applied to samples (x, log p) of P: (output samples, their log p~, accepted fraction).

        Replacements come from ``pool`` (fresh samples of P, independent of x) first, then from ``draw_prev``.
        """
        u = torch.rand(x.shape[0], generator=generator, dtype=torch.float64).to(x.device)
        reject = u >= self.acceptance(x, log_p).to(torch.float64)
        n_rej = int(reject.sum())
        pool_x, pool_lp = pool if pool else (x[:0], log_p[:0])
        if n_rej > pool_x.shape[0]:
            more_x, more_lp = draw_prev(n_rej - pool_x.shape[0])
            pool_x, pool_lp = torch.cat([pool_x, more_x]), torch.cat([pool_lp, more_lp])
        x, log_p = x.clone(), log_p.clone()
        x[reject], log_p[reject] = pool_x[:n_rej], pool_lp[:n_rej]
        return x, self.log_density_after(x, log_p, None), 1.0 - n_rej / max(x.shape[0], 1)

    def sample(
        self, n: int, draw_prev: Draw, generator: torch.Generator, with_log_density: bool
    ) -> tuple[Tensor, Tensor]:
        margin = math.ceil(self.rate * n + 4.0 * math.sqrt(self.rate * n) + 4.0)
        x, log_p = draw_prev(n + margin)
        if log_p is None:
            raise ValueError("a rejection layer needs the log-density of the layers below it")
        out_x, out_lp, _ = self.apply(x[:n], log_p[:n], draw_prev, generator, pool=(x[n:], log_p[n:]))
        return out_x, out_lp


class NeuralJKOIC(NeuralJKO):
    """Hertrich & Gruhlke's importance-corrected neural JKO sampler (module docstring)."""

    name = "neural_jko_ic"
    Config = NeuralJKOICConfig
    functionals = frozenset({"kl"})
    color = "#5b2a86"
    tiny_params: ClassVar[dict[str, Any]] = {**NeuralJKO.tiny_params, "n_flow_steps": 0}
    contract_problem = "hg_8modes"  # a stationary target: the sampler refuses the contract test's OU

    @classmethod
    def check_supports(cls, problem, config: MethodConfig | None = None) -> None:
        # the generic checks (functional, dimension) first, then this sampler's reason, then the neural JKO's
        super(NeuralJKO, cls).check_supports(problem, config)
        if problem.transient:
            raise UnsupportedProblem(
                f"method {cls.name!r} is a sampler of a stationary target, not a time integrator (its rejection "
                f"steps are non-local jumps): problem {problem.name!r} is transient (its reference(t) changes with "
                "t); use a stationary target (transient=False)"
            )
        super().check_supports(problem, config)

    def evaluation_particles(self) -> None:
        """None: after a rejection step the particle set is the output of a step calibrated on it, not a fresh
        sample of P_k; evaluation draws fresh samples instead."""
        return None

    def _training_needs_log_density(self) -> bool:
        return True  # the rejection steps are calibrated on the particles' log-densities

    def step_kind(self, k: int) -> str:
        """'cnf' or 'rejection' for the k-th element of the schedule (k from 0)."""
        cfg = self.config
        if k < cfg.n_flow_steps:
            return "cnf"
        return "cnf" if (k - cfg.n_flow_steps) % (1 + cfg.rejection_steps_per_block) == 0 else "rejection"

    def _rejection_step(self) -> StepStats:
        below = len(self.layers)

        def draw_below(m: int) -> tuple[Tensor, Tensor]:
            return self._draw(m, self.generator, self.dtype, True, upto=below)

        with timed(self.device) as calib:
            log_ratio = self.problem.log_target(self.particles) - self.particles_logp
            log_c, rate = calibrate_log_c(log_ratio, self.config.rejection_rate)
            layer = RejectionLayer(self.problem.log_target, log_c, rate)
        with timed(self.device) as apply:
            x, lp, accepted = layer.apply(self.particles, self.particles_logp, draw_below, self.generator)
            check_finite("importance-corrected particles", x)
            self.particles, self.particles_logp = x, lp
            self.layers.append(layer)
        extra = {
            "step_kind": 1.0,
            "h_k": 0.0,
            "flow_time": self.flow_time,
            "log_c": log_c,
            "rejection_rate": rate,
            "accepted_frac": accepted,
            "log_density_var": self.log_density_var,
        }
        return StepStats(train_s=calib.seconds, regen_s=apply.seconds, extra=extra)

    def _advance(self) -> StepStats:
        return self._cnf_step() if self.step_kind(self.k) == "cnf" else self._rejection_step()

    # --- checkpointing: rejection layers, and the particles themselves (a rejection step's output is not a
    # regeneration from P_0, so it is stored rather than replayed) ----------------------------------------------
    def _layer_state(self, layer: StackLayer) -> dict[str, Any]:
        if isinstance(layer, RejectionLayer):
            return {"kind": "rejection", "log_c": layer.log_c, "rate": layer.rate}
        return super()._layer_state(layer)

    def _layer_from_state(self, state: dict[str, Any]) -> StackLayer:
        if state["kind"] == "rejection":
            return RejectionLayer(self.problem.log_target, float(state["log_c"]), float(state["rate"]))
        return super()._layer_from_state(state)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "particles": self.particles.detach().cpu().clone(),
            "particles_logp": self.particles_logp.detach().cpu().clone(),
        }

    def _restore_particles(self, state: dict[str, Any]) -> None:
        self._particles_gen_state = state["particles_gen_state"]
        self.particles = state["particles"].to(self.device, self.dtype)
        self.particles_logp = state["particles_logp"].to(self.device, self.dtype)
