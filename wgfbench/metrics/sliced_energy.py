r"""Sliced energy distance in Hertrich & Gruhlke's convention (ICML 2025, §5), with its floor.

For laws P, Q on R^d the energy distance in their convention is the half of Székely's,

    D(P, Q) = E|X - Y| - ½ E|X - X'| - ½ E|Y - Y'|,        X, X' ~ P,  Y, Y' ~ Q independent,

computed by slicing. In one dimension D equals the Cramér distance ∫ (F_P(s) - F_Q(s))^2 ds (Székely 2002;
Baringhaus & Franz 2004); for empirical measures (V-statistics, i = j included) the identity is exact, and the
integral of the squared difference of two step functions is a finite sum over the sorted pooled sample. In d
dimensions |z| = c_d E_theta |<theta, z>| for theta uniform on the sphere, with

    c_d = 1 / E|theta_1| = sqrt(pi) Gamma((d+1)/2) / Gamma(d/2)     (c_2 = pi/2, c_3 = 2),

so D(P, Q) = c_d E_theta D(<theta, X>, <theta, Y>): the mean of the 1-d Cramér distances over random directions,
times c_d, is an unbiased estimate (over the directions) of the full-dimensional D of the two samples. Their
published numbers use this rescaled value (``rescale=True``, the default), 1000 directions and 50,000 samples
against 50,000 exact samples of the target.

The V-statistic of two samples of sizes n, m from the same law has expectation ∫F(1-F) (1/n + 1/m) > 0, so
D is positive even for a perfect sampler: :func:`sliced_energy_floor` is the same statistic between two
independent exact samples of the target (their "reference error").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sphere_slicing_factor(dim: int) -> float:
    """c_d = 1 / E|theta_1| for theta uniform on S^{d-1}: sqrt(pi) Gamma((d+1)/2) / Gamma(d/2)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return math.exp(0.5 * math.log(math.pi) + math.lgamma(0.5 * (dim + 1)) - math.lgamma(0.5 * dim))


def cramer_distance_1d(px: Tensor, py: Tensor) -> Tensor:
    """∫ (F_x - F_y)^2 ds for each column of px (n, P) and py (m, P): the exact value for the empirical CDFs."""
    n, m = px.shape[0], py.shape[0]
    values, order = torch.sort(torch.cat([px, py]), dim=0)
    from_x = (order < n).to(values.dtype)
    diff = torch.cumsum(from_x, dim=0) / n - torch.cumsum(1.0 - from_x, dim=0) / m
    gaps = values[1:] - values[:-1]
    return ((diff[:-1] ** 2) * gaps).sum(0)


def sliced_energy_distance(
    x: Tensor,
    y: Tensor,
    n_projections: int = 1000,
    generator: torch.Generator | None = None,
    rescale: bool = True,
    chunk: int = 32,
) -> float:
    """D(x, y) by ``n_projections`` random directions (module docstring), in float64 on the CPU.

    ``rescale``: multiply by c_d (Hertrich & Gruhlke's convention: an estimate of the full-dimensional D);
    without it, the plain mean over directions. ``chunk`` directions are sorted at a time (memory).
    """
    x = x.detach().to(torch.float64).cpu()
    y = y.detach().to(torch.float64).cpu()
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need samples (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    d = x.shape[1]
    theta = torch.randn(d, n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    total = sum(float(cramer_distance_1d(x @ th, y @ th).sum()) for th in torch.split(theta, chunk, dim=1))
    mean = total / n_projections
    return mean * sphere_slicing_factor(d) if rescale else mean


def sliced_energy_floor(
    target, n: int, n_projections: int = 1000, generator: torch.Generator | None = None, rescale: bool = True
) -> float:
    """The statistic between two independent exact samples of size n of ``target``: what a perfect sampler scores."""
    return sliced_energy_distance(
        target.sample(n, generator), target.sample(n, generator), n_projections, generator, rescale
    )
