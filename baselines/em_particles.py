r"""Euler-Maruyama particles (unadjusted Langevin): the SDE of the KL gradient flow, simulated with N particles.

For F = tau KL(P || Q), Q ∝ exp(log_target), the Wasserstein gradient flow dP/dt = div(P grad(tau log(P/Q))) is
the Fokker-Planck equation of the Langevin SDE

    dX = tau grad log_target(X) dt + sqrt(2 tau) dW,

simulated with the JKO step size h as the time step (``substeps`` > 1 splits each step into that many EM steps):

    X_{k+1} = X_k + h tau grad log_target(X_k) + sqrt(2 h tau) xi_k,   xi_k ~ N(0, I) i.i.d.

The drift comes from autograd on ``problem.log_target``, so the method is generic over KL problems; for OU
(tau = 1/beta, log_target = -beta V) it is -A(x - b) and the noise sqrt(2h/beta): from a Gaussian start the law of
the particles stays Gaussian, m_{k+1} = m_k - h A (m_k - b), S_{k+1} = (I - hA) S_k (I - hA) + (2h/beta) I (checked in
tests/test_baselines.py).

**A time-dependent target** (``problem.time_dependent``): each EM step from t to t + dt takes the drift of the
target at its start, ``problem.at_time(t)`` (the explicit scheme; the substeps of a JKO step start at
t_k + j h/substeps).

**An interaction** (``kl_interaction``, F = tau KL(P || Q) + ½ ∫∫ W(x - y) dP dP): the mean-field SDE
dX = [tau grad log_target(X) - (grad W * P_t)(X)] dt + sqrt(2 tau) dW, with P_t the empirical law of the
particles: (grad W * P)(x_i) = (1/M) sum_j grad W(x_i - y_j) over ``interaction_particles`` = M particles y_j
drawn afresh without replacement at every EM step (all N when M >= N: the exact N-particle system), by autograd
on ``problem.interaction`` in chunks (N M d evaluations of W per EM step). For W = kappa/2 |z|^2 it is
kappa (x_i - mean of the y_j): the subsample's error is a shift common to all particles, of standard deviation
kappa sqrt(S_ii / M) per coordinate and EM step (S the covariance), a random walk of the mean of size
dt kappa sqrt(K S_ii / M) after K steps (0.01 for dt = 0.05, K = 20, S_ii = 0.5, M = 256).

P_k is the empirical law of the particles: ``sample(n)`` returns n of the N particles, drawn without replacement
(n > N is an error). There is no density (Mokrov et al.'s EM columns use a KDE of the particles, which the
evaluation can build for d <= 3). The porous medium is not an SDE of this kind: UnsupportedProblem.
All noise comes from the method's generator (CPU), so a restored run continues exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from wgfbench.methods.base import DType, JKOMethod, MethodConfig, StepStats, check_finite
from wgfbench.params import Count, SampleSize
from wgfbench.problems.base import KLProblem
from wgfbench.timing import timed


@dataclasses.dataclass(frozen=True)
class EulerMaruyamaConfig(MethodConfig):
    """Defaults: 50,000 particles (the EM 50k column of Mokrov et al. / S-JKO), one EM step per JKO step."""

    n_particles: SampleSize = 50_000
    substeps: Count = 1
    interaction_particles: Count = 256  # kl_interaction only: the particles the mean-field drift is averaged over
    dtype: DType = "float64"


class EulerMaruyama(JKOMethod):
    """Euler-Maruyama / ULA particle system for the KL functional (module docstring)."""

    name = "em_particles"
    color = "#cc78bc"
    Config = EulerMaruyamaConfig
    functionals = frozenset({"kl", "kl_interaction"})
    requires = (KLProblem,)
    has_density = False
    time_dependent_ok = True  # the drift of problem.at_time(t) at each EM step's start
    tiny_params: ClassVar[dict[str, Any]] = {"n_particles": 1024}
    timing_params: ClassVar[dict[str, Any]] = {"n_particles": 8192}

    @classmethod
    def sample_limit(cls, config: EulerMaruyamaConfig) -> int:
        return config.n_particles

    def __init__(self, problem, step_size: float, config: EulerMaruyamaConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        self.tau = float(problem.temperature)
        self.particles = problem.initial().sample(config.n_particles, self.generator).to(self.device, self.dtype)

    def drift(self, x: Tensor, t: float = 0.0) -> Tensor:
        """tau grad log_target(x) (of the target at time t for a time-dependent problem), minus the mean-field
        interaction force, by autograd (rows are independent, so one backward gives every row)."""
        target = self.problem.at_time(t) if self.problem.time_dependent else self.problem
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(target.log_target(xr).sum(), xr)
        out = self.tau * g
        if self.problem.functional == "kl_interaction":
            out = out - self.mean_field_force(x)
        return out

    def mean_field_force(self, x: Tensor, chunk_pairs: int = 2**22) -> Tensor:
        """(grad W * P)(x) with P the empirical law of M = ``interaction_particles`` particles (module docstring)."""
        n = x.shape[0]
        m = min(self.config.interaction_particles, n)
        y = x if m == n else x[torch.randperm(n, generator=self.generator)[:m].to(x.device)]
        y = y.detach()
        rows = max(1, chunk_pairs // (m * x.shape[1]))
        out = []
        with torch.enable_grad():
            for xc in torch.split(x.detach(), rows):
                xr = xc.requires_grad_(True)
                pair = self.problem.interaction(xr[:, None, :] - y[None, :, :])
                (g,) = torch.autograd.grad(pair.sum(), xr)
                out.append(g / m)
        return torch.cat(out)

    def _advance(self) -> StepStats:
        dt = self.step_size / self.config.substeps
        t0 = self.problem.time_of_step(self.k, self.step_size)
        with timed(self.device) as m:
            x = self.particles
            for j in range(self.config.substeps):
                drift = self.drift(x, t0 + j * dt)
                noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float64).to(self.device, self.dtype)
                x = x + dt * drift + math.sqrt(2.0 * dt * self.tau) * noise
            check_finite("Euler-Maruyama particles", x)
            self.particles = x
        return StepStats(train_s=m.seconds, regen_s=0.0)

    def evaluation_particles(self) -> Tensor | None:
        """The particle set of P_k the method holds (fresh i.i.d. samples of P_k)."""
        return self.particles

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        n_part = self.particles.shape[0]
        if n > n_part:
            raise ValueError(f"em_particles holds {n_part} particles; asked for {n} samples (raise n_particles)")
        idx = torch.randperm(n_part, generator=generator)[:n]
        return self.particles[idx.to(self.device)].cpu()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "particles": self.particles.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.particles = state["particles"].to(self.device, self.dtype)
