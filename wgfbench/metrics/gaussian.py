r"""Closed-form distances between Gaussians, and the moment-fit metrics built on them.

* KL(N0 || N1) = ½ [tr(S1^-1 S0) + (m1-m0)^T S1^-1 (m1-m0) - d + log det S1 - log det S0]
* SymKL = KL(0||1) + KL(1||0)
        = ½ [tr(S1^-1 S0) + tr(S0^-1 S1) - 2d + (m1-m0)^T (S0^-1 + S1^-1) (m1-m0)]
  (the sum, "Jeffreys" divergence, as Mokrov et al. (NeurIPS 2021) and Fan et al. (ICML 2022) report;
  log-determinants cancel)
* W2^2(N0, N1) = |m0-m1|^2 + tr(S0 + S1 - 2 (S1^½ S0 S1^½)^½)   (Bures-Wasserstein; Dowson & Landau, J.
  Multivariate Anal. 1982; Olkin & Pukelsheim, Linear Algebra Appl. 1982)

The moment-fit metrics compare the Gaussian with the sample mean and covariance of a method's samples with a
Gaussian reference: exact up to moment-estimation error for Gaussian flows, blind to everything beyond the
first two moments otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wgfbench.problems.base import Law
from wgfbench.problems.gaussian import GaussianLaw, moment_fit, sqrtm_psd, sym


def gaussian_kl(p: GaussianLaw, q: GaussianLaw) -> float:
    """KL(p || q) between Gaussians, in closed form."""
    d = p.dim
    q_inv = torch.linalg.inv(q.cov)
    diff = q.mean - p.mean
    logdet = torch.logdet(q.cov) - torch.logdet(p.cov)
    return float(0.5 * (torch.trace(q_inv @ p.cov) + diff @ q_inv @ diff - d + logdet))


def gaussian_symkl(p: GaussianLaw, q: GaussianLaw) -> float:
    """KL(p||q) + KL(q||p) in closed form (log-determinants cancel)."""
    p_inv = torch.linalg.inv(p.cov)
    q_inv = torch.linalg.inv(q.cov)
    diff = q.mean - p.mean
    val = torch.trace(q_inv @ p.cov) + torch.trace(p_inv @ q.cov) - 2 * p.dim + diff @ (p_inv + q_inv) @ diff
    return float(0.5 * val)


def bures_w2(p: GaussianLaw, q: GaussianLaw) -> float:
    """W2(p, q) between Gaussians: sqrt(|m_p - m_q|^2 + tr(S_p + S_q - 2 (S_q^½ S_p S_q^½)^½))."""
    q_half = sqrtm_psd(q.cov)
    cross = sqrtm_psd(sym(q_half @ p.cov @ q_half))
    w2sq = ((p.mean - q.mean) ** 2).sum() + torch.trace(p.cov + q.cov - 2 * cross)
    return math.sqrt(max(float(w2sq), 0.0))


def _require_gaussian(reference: Law, metric: str) -> GaussianLaw:
    if not isinstance(reference, GaussianLaw):
        raise TypeError(f"{metric} needs a Gaussian reference, got {type(reference).__name__}")
    return reference


def symkl_moment(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    """Closed-form SymKL between the moment-fitted Gaussian of the samples and a Gaussian reference.

    Blind to non-Gaussianity (it sees the first two moments only), as in Fan et al.'s OU metric.
    """
    return gaussian_symkl(moment_fit(samples), _require_gaussian(reference, "symkl_moment"))


def bures_w2_moment(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    """Bures-Wasserstein W2 between the moment fit of the samples and a Gaussian reference."""
    return bures_w2(moment_fit(samples), _require_gaussian(reference, "bures_w2_moment"))
