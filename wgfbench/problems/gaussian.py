"""Gaussian laws in float64: sampling, log-density, and the matrix functions the closed forms need.

Every closed-form reference of the suite that is Gaussian (OU marginals, exact JKO iterates,
moment fits) is a :class:`GaussianLaw`. Computations are done in float64 on the CPU; samples are
returned in the dtype/device asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def sym(m: Tensor) -> Tensor:
    """Symmetric part ``(M + M^T) / 2`` (removes round-off asymmetry)."""
    return 0.5 * (m + m.transpose(-1, -2))


def sym_fn(m: Tensor, fn) -> Tensor:
    """Apply a scalar function to a symmetric matrix through its eigendecomposition."""
    w, v = torch.linalg.eigh(sym(m))
    return (v * fn(w)) @ v.transpose(-1, -2)


def sqrtm_psd(m: Tensor) -> Tensor:
    """Principal square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    return sym_fn(m, lambda w: w.clamp_min(0.0).sqrt())


def inv_sqrtm_pd(m: Tensor) -> Tensor:
    """Inverse principal square root of a symmetric positive-definite matrix."""
    return sym_fn(m, lambda w: w.rsqrt())


@dataclass(frozen=True)
class GaussianLaw:
    """N(mean, cov) in dimension d, float64 on the CPU."""

    mean: Tensor
    cov: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", self.mean.detach().to(torch.float64).cpu())
        object.__setattr__(self, "cov", sym(self.cov.detach().to(torch.float64).cpu()))

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def is_gaussian(self) -> bool:
        return True

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n i.i.d. samples mean + L z (cov = L L^T, Cholesky in float64), shape (n, d), drawn in ``dtype``."""
        chol = torch.linalg.cholesky(self.cov).to(dtype)
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        return self.mean.to(dtype) + z @ chol.T

    def log_density(self, x: Tensor) -> Tensor:
        """log N(x; mean, cov) for x of shape (n, d); computed in float64."""
        x = x.to(torch.float64).cpu()
        chol = torch.linalg.cholesky(self.cov)
        diff = (x - self.mean).T
        sol = torch.linalg.solve_triangular(chol, diff, upper=False)
        maha = (sol**2).sum(0)
        logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (maha + logdet + self.dim * math.log(2.0 * math.pi))

    def entropy(self) -> float:
        """Differential entropy ½ log det(2πe Σ)."""
        return 0.5 * float(torch.logdet(2.0 * math.pi * math.e * self.cov))


def moment_fit(x: Tensor, chunk: int = 65_536) -> GaussianLaw:
    """Gaussian with the sample mean and the unbiased sample covariance of x (n, d), accumulated in float64.

    Two passes over chunks of ``chunk`` rows (the mean, then the centred cross-products), so that a method's whole
    particle set (hundreds of thousands of rows, any dtype, any device) is fitted without a float64 copy of it.
    """
    x = x.detach()
    n = x.shape[0]
    if n < 2:
        raise ValueError("moment fit needs at least 2 samples")
    chunks = torch.split(x, chunk)
    mean = sum(c.to("cpu", torch.float64).sum(0) for c in chunks) / n
    cov = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    for c in chunks:
        xc = c.to("cpu", torch.float64) - mean
        cov += xc.T @ xc
    return GaussianLaw(mean, cov / (n - 1))
