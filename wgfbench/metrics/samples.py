r"""Sample metrics: distances between a method's samples and an exact sample of the reference law.

Every sample metric has the fixed signature ``metric(reference, samples, generator) -> float``: ``reference``
is an exact :class:`~wgfbench.problems.base.Law` (the PDE solution P_t or the exact JKO iterate), ``samples``
are n samples of the method's P_k. :func:`noise_floor` evaluates the same metric with an independent exact
sample of the same size in place of the method's samples: the value a perfect method would get, i.e. the
metric's sampling noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from wgfbench.problems.base import Law

SampleMetric = Callable[[Law, Tensor, torch.Generator], float]


class MetricError(RuntimeError):
    """A metric could not be computed (e.g. the exact OT solver did not converge)."""


def w2_emd(x: Tensor, y: Tensor, num_iter_max: int = 10_000_000) -> float:
    """Exact W2 between two uniform empirical measures with POT's network simplex (ot.emd2).

    numItermax is raised well above POT's default, and the solver's result code is checked: any
    outcome but OPTIMAL raises :class:`MetricError` rather than returning a wrong number.
    """
    import ot  # POT takes seconds to import: only runs that compute exact W2 pay for it

    xn = x.detach().to(torch.float64).cpu().numpy()
    yn = y.detach().to(torch.float64).cpu().numpy()
    cost = ot.dist(xn, yn, metric="sqeuclidean")
    a = np.full(len(xn), 1.0 / len(xn))
    b = np.full(len(yn), 1.0 / len(yn))
    with warnings.catch_warnings():  # POT warns on early stop; we raise instead (below)
        warnings.simplefilter("ignore", UserWarning)
        value, log = ot.emd2(a, b, cost, numItermax=num_iter_max, log=True)
    if log["result_code"] != 1:
        raise MetricError(f"ot.emd2 did not reach the optimum: {log['warning']}")
    return math.sqrt(max(float(value), 0.0))


def w2_exact(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    """Exact W2 between the samples and an equally large exact sample of the reference."""
    return w2_emd(samples, reference.sample(samples.shape[0], generator))


def sliced_w2_between(x: Tensor, y: Tensor, n_projections: int = 256, projection_seed: int = 0) -> float:
    """Sliced W2: sqrt of the mean over fixed-seed random directions of the 1-d W2^2 (sorted samples)."""
    if x.shape != y.shape:
        raise ValueError(f"sliced W2 needs equal sample shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(projection_seed)
    theta = torch.randn(x.shape[1], n_projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px = torch.sort(x.detach().to(torch.float64).cpu() @ theta, dim=0).values
    py = torch.sort(y.detach().to(torch.float64).cpu() @ theta, dim=0).values
    return math.sqrt(float(((px - py) ** 2).mean()))


def sliced_w2(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    """Sliced W2 between the samples and an equally large exact sample of the reference."""
    return sliced_w2_between(samples, reference.sample(samples.shape[0], generator))


def energy_distance_between(x: Tensor, y: Tensor) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistic, diagonal excluded), >= 0 in expectation."""
    x = x.detach().to(torch.float64).cpu()
    y = y.detach().to(torch.float64).cpu()

    def mean_offdiag(a: Tensor) -> Tensor:
        d = torch.cdist(a, a)
        n = a.shape[0]
        return d.sum() / (n * (n - 1))

    return float(2 * torch.cdist(x, y).mean() - mean_offdiag(x) - mean_offdiag(y))


def energy_distance(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    """Energy distance between the samples and an equally large exact sample of the reference."""
    return energy_distance_between(samples, reference.sample(samples.shape[0], generator))


def noise_floor(metric: SampleMetric, reference: Law, n: int, generator: torch.Generator) -> float:
    """The metric evaluated on an independent exact sample of size n: what a perfect method scores."""
    return metric(reference, reference.sample(n, generator), generator)
