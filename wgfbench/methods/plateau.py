r"""Adaptive per-step budgets: stop a JKO step's inner optimisation once its objective has stopped changing.

A neural JKO step minimises (or finds the saddle of) a step objective J over network parameters with a fixed
number of stochastic-gradient iterations (500 in Fan et al.'s and Mokrov et al.'s OU protocols). With warm starts
many of them may be spent in the noise ball of the optimiser: at a fixed learning rate the parameters jitter around
the minimiser (or saddle point) and J no longer trends. The rule below detects that without any exact solution.

**Probe.** Every ``every`` iterations the method evaluates J on a *probe*: a minibatch drawn once at the start of
the step and kept for the whole step (common random numbers: two probe values differ only through the networks'
parameters, not through which samples were drawn, so a trend of a size far below the minibatch noise is visible).

**Test.** Over the last ``window`` probe values J_1..J_w, taken at iterations t_1..t_w, the ordinary least-squares
slope and its standard error are

    b = Σ_i (t_i - t̄)(J_i - J̄) / S_tt,        S_tt = Σ_i (t_i - t̄)^2,
    s_b^2 = Σ_i (J_i - J̄ - b (t_i - t̄))^2 / ((w - 2) S_tt)

(e.g. Seber & Lee, *Linear Regression Analysis*, 2nd ed. 2003, §4.4). The step stops at the first probe where at
least ``min_iters`` iterations are done, ``window`` values exist, and J no longer trends significantly:

    |b| <= z s_b,

that is, the t-statistic of the slope, b / s_b, is at most ``z`` in size. The test is two-sided because a min-max
step objective (the variational JKO's, where the dual's ascent tightens a lower bound while the map descends) may
approach its saddle value from below as well as from above. While J moves faster than it fluctuates |b| / s_b is
large; in the noise ball it is O(1) (for pure noise, a Student t with w - 2 degrees of freedom); a perfectly linear
trend (s_b = 0, b != 0) never stops. The cap is the method's fixed budget (``iters_per_step``): the rule can only
end a step earlier.
"""

from __future__ import annotations

import dataclasses
import math


def slope_and_standard_error(t: list[float], y: list[float]) -> tuple[float, float]:
    """(b, s_b): the least-squares slope of y on t and its standard error (module docstring); needs >= 3 points."""
    w = len(t)
    if w < 3 or len(y) != w:
        raise ValueError(f"a slope's standard error needs >= 3 paired points, got {len(t)} and {len(y)}")
    t_bar, y_bar = sum(t) / w, sum(y) / w
    s_tt = sum((ti - t_bar) ** 2 for ti in t)
    if s_tt == 0:
        raise ValueError("the probe iterations must not all be equal")
    b = sum((ti - t_bar) * (yi - y_bar) for ti, yi in zip(t, y, strict=True)) / s_tt
    rss = sum((yi - y_bar - b * (ti - t_bar)) ** 2 for ti, yi in zip(t, y, strict=True))
    return b, math.sqrt(rss / ((w - 2) * s_tt))


@dataclasses.dataclass
class PlateauRule:
    """The stopping rule of one JKO step (module docstring): feed it probe values with :meth:`record`."""

    every: int
    window: int
    min_iters: int
    z: float
    iters: list[float] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)
    t_stat: float = math.nan  # b / s_b at the last test (+-inf: an exact linear trend; nan: not tested yet)

    def __post_init__(self) -> None:
        if self.window < 3:
            raise ValueError(f"the plateau window needs >= 3 probe values, got {self.window}")

    def due(self, iteration: int) -> bool:
        """Whether a probe value is wanted after ``iteration`` (1-based) iterations."""
        return iteration % self.every == 0

    def record(self, iteration: int, value: float) -> bool:
        """Keep the probe value J after ``iteration`` iterations; True when the step should stop now."""
        self.iters.append(float(iteration))
        self.values.append(float(value))
        if len(self.values) < self.window:
            return False
        b, s_b = slope_and_standard_error(self.iters[-self.window :], self.values[-self.window :])
        self.t_stat = b / s_b if s_b > 0 else math.copysign(math.inf, b) if b != 0 else 0.0
        return iteration >= self.min_iters and abs(b) <= self.z * s_b


def plateau_rule(config) -> PlateauRule | None:
    """The rule of a method config with ``budget`` and the ``plateau_*`` fields; None for a fixed budget."""
    if config.budget == "fixed":
        return None
    return PlateauRule(config.plateau_every, config.plateau_window, config.plateau_min_iters, config.plateau_z)
