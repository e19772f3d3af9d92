r"""Time-to-accuracy helpers: errors of a method's P_k from many samples, and the seconds a budget ladder needs to
reach a stated error.

* :func:`streamed_moment_fit`: the moment fit (sample mean and unbiased covariance) of n samples drawn chunk by
  chunk, accumulated in float64 around a pilot mean (the first chunk's): with c the pilot and u_i = x_i - c,

      mean = c + (1/n) Σ u_i,   cov = (Σ u_i u_i^T - n ū ū^T) / (n - 1),   ū = (1/n) Σ u_i,

  the same numbers as :func:`wgfbench.problems.gaussian.moment_fit` of all n samples at once (up to float64
  round-off), without holding them: the moment-fit SymKL's noise floor falls like d (d + 3) / (2n)
  (:func:`wgfbench.metrics.floors.symkl_moment_floor`), so resolving small optimisation errors takes millions of
  samples.
* :func:`seconds_to_reach`: given (seconds, error) points of runs with increasing budgets, the seconds at which
  the error first falls to a target, by linear interpolation of log error against log seconds between the two
  bracketing points (errors and times of neural training decay roughly as powers of each other); None if no
  point reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from wgfbench.problems.gaussian import GaussianLaw


def streamed_moment_fit(draw: Callable[[int], Tensor], n: int, chunk: int = 262_144) -> GaussianLaw:
    """Moment fit of n samples obtained as ``draw(m)`` (m rows at a time, any dtype/device) (module docstring)."""
    if n < 2:
        raise ValueError("a moment fit needs at least 2 samples")
    pilot: Tensor | None = None
    total = 0
    s1 = s2 = None
    while total < n:
        x = draw(min(chunk, n - total)).detach().to("cpu", torch.float64)
        if pilot is None:
            pilot = x.mean(0)
            s1 = torch.zeros_like(pilot)
            s2 = torch.zeros(pilot.shape[0], pilot.shape[0], dtype=torch.float64)
        u = x - pilot
        s1 += u.sum(0)
        s2 += u.T @ u
        total += x.shape[0]
    u_bar = s1 / total
    cov = (s2 - total * torch.outer(u_bar, u_bar)) / (total - 1)
    return GaussianLaw(pilot + u_bar, cov)


def seconds_to_reach(seconds: Sequence[float], errors: Sequence[float], target: float) -> float | None:
    """Seconds at which the error falls to ``target`` along points sorted by seconds (module docstring).

    The first point at or below the target and its predecessor bracket the crossing; a first point already below
    the target is returned as it is (an upper bound: a smaller budget might have sufficed).
    """
    pts = sorted(zip(seconds, errors, strict=True))
    for i, (s, e) in enumerate(pts):
        if e <= target:
            if i == 0:
                return s
            s0, e0 = pts[i - 1]
            if e0 <= 0 or e <= 0 or s0 <= 0 or e0 == e:
                return s
            frac = (math.log(target) - math.log(e0)) / (math.log(e) - math.log(e0))
            return math.exp(math.log(s0) + frac * (math.log(s) - math.log(s0)))
    return None
