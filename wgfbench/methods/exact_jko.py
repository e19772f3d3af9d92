"""Exact Gaussian JKO oracle: the time-discretisation floor as a method row.

From a Gaussian P_0 the JKO minimiser for the OU free energy stays Gaussian and is given in closed form by
:func:`wgfbench.problems.ou.exact_jko_step` (derived there). Its error to the PDE solution is O(h): what any JKO
method with step h is measured against. It is not a lower bound on another method's error (errors of opposite
sign can cancel).

The same holds for every problem whose exact JKO iterates are Gaussian laws in closed form
(``problem.jko_reference(k, h)`` a :class:`~wgfbench.problems.gaussian.GaussianLaw`): the McKean-Vlasov OU with a
quadratic interaction (``kl_interaction``) and the OU with a moving centre (time-dependent, the potential frozen at
each step's end); for those the row is the problem's own exact iterate, P_{k+1} = ``problem.jko_reference(k+1, h)``,
and the loss is the free energy where the problem gives one in closed form (OU and its instances, McKean-Vlasov).
"""

from __future__ import annotations

import torch
from torch import Tensor

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, UnsupportedProblem
from wgfbench.problems.base import GaussianOUProblem
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import exact_jko_step
from wgfbench.timing import timed


class ExactJKO(JKOMethod):
    """The exact JKO iterates of a Gaussian problem, sampled exactly (module docstring)."""

    name = "exact_jko"
    role = "reference"
    color = "#262626"  # near-black, like the dashed discretisation line of the figures
    Config = MethodConfig
    functionals = frozenset({"kl", "kl_interaction"})
    has_density = True
    needs_gaussian_start = True
    time_dependent_ok = True  # the problem's own exact iterates carry the time dependence

    @classmethod
    def check_supports(cls, problem, config: MethodConfig | None = None) -> None:
        super().check_supports(problem, config)
        if not isinstance(problem.jko_reference(1, 0.01), GaussianLaw):
            raise UnsupportedProblem(
                f"method {cls.name!r} needs exact JKO iterates that are Gaussian laws in closed form "
                f"(problem {problem.name!r} has none)"
            )

    def __init__(self, problem, step_size: float, config: MethodConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        self.law = problem.initial()
        # OU and its instances: one closed-form step from the current law; otherwise the problem's own iterate
        self._ou = isinstance(problem, GaussianOUProblem) and problem.functional == "kl" and not problem.time_dependent

    def _advance(self) -> StepStats:
        p, h = self.problem, self.step_size
        with timed("cpu") as m:
            self.law = exact_jko_step(p, self.law, h) if self._ou else p.jko_reference(self.k + 1, h)
        loss = None if p.time_dependent else p.free_energy(self.law)
        return StepStats(train_s=m.seconds, regen_s=0.0, loss=loss)

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
        super().load_state_dict(state)
        self.law = GaussianLaw(state["mean"], state["cov"])
