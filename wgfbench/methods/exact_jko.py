"""Exact Gaussian JKO oracle for OU: the time-discretisation floor as a method row.

From a Gaussian P_0 the JKO minimiser for the OU free energy stays Gaussian and is given in closed
form by :func:`wgfbench.problems.ou.exact_jko_step` (derived there). Its error to
the PDE solution is O(h): what any JKO method with step h is measured against. It is not a lower
bound on another method's error (errors of opposite sign can cancel).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats
from wgfbench.problems.base import GaussianOUProblem
from wgfbench.problems.ou import exact_jko_step
from wgfbench.timing import timed


class ExactJKO(JKOMethod):
    """The exact JKO iterates of an OU problem, sampled exactly (module docstring)."""

    name = "exact_jko"
    role = "reference"
    color = "#262626"  # near-black, like the dashed discretisation line of the figures
    Config = MethodConfig
    requires = (GaussianOUProblem,)
    has_density = True
    needs_gaussian_start = True

    def __init__(self, problem: GaussianOUProblem, step_size: float, config: MethodConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        self.law = problem.initial()

    def _advance(self) -> StepStats:
        with timed("cpu") as m:
            self.law = exact_jko_step(self.problem, self.law, self.step_size)
        return StepStats(train_s=m.seconds, regen_s=0.0, loss=self.problem.free_energy(self.law))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.law.sample(n, generator).to(self.dtype)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = self.law.sample(n, generator)
        return x.to(self.dtype), self.law.log_density(x)

    def log_density(self, x: Tensor) -> Tensor:
        return self.law.log_density(x)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "mean": self.law.mean, "cov": self.law.cov}

    def load_state_dict(self, state: dict) -> None:
        from wgfbench.problems.gaussian import GaussianLaw

        super().load_state_dict(state)
        self.law = GaussianLaw(state["mean"], state["cov"])
