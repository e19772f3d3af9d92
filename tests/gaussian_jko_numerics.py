"""Test helper: the JKO step over Gaussians by direct numerical minimisation (numpy/scipy, no closed form reused).

J(m', S') = W2^2(N(m, S), N(m', S')) / (2h) + F(m', S') is minimised over m' and the Cholesky factor of S'
(log-parametrised diagonal) by BFGS; W2^2 is the Bures-Wasserstein formula with scipy's ``sqrtm``. Used by the
tests of the problems whose exact JKO iterates are Gaussian, as an independent check of their closed forms.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.optimize


def bures_w2_squared(m0: np.ndarray, s0: np.ndarray, m1: np.ndarray, s1: np.ndarray) -> float:
    root = scipy.linalg.sqrtm(s1)
    cross = scipy.linalg.sqrtm(root @ s0 @ root)
    return float(np.sum((m0 - m1) ** 2) + np.trace(s0 + s1 - 2 * np.real(cross)))


def minimise_jko_over_gaussians(
    energy: Callable[[np.ndarray, np.ndarray], float], mean: np.ndarray, cov: np.ndarray, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """argmin over (m', S') of W2^2(N(mean, cov), N(m', S'))/(2h) + energy(m', S'), started at (mean, cov)."""
    d = mean.shape[0]
    rows, cols = np.tril_indices(d)
    diag = rows == cols

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chol = np.zeros((d, d))
        entries = theta[d:].copy()
        entries[diag] = np.exp(entries[diag])
        chol[rows, cols] = entries
        return theta[:d], chol @ chol.T

    def objective(theta: np.ndarray) -> float:
        m1, s1 = unpack(theta)
        return bures_w2_squared(mean, cov, m1, s1) / (2 * h) + energy(m1, s1)

    start_chol = np.linalg.cholesky(cov)[rows, cols]
    start_chol[diag] = np.log(start_chol[diag])
    theta0 = np.concatenate([mean, start_chol])
    res = scipy.optimize.minimize(objective, theta0, method="BFGS", options={"gtol": 1e-11, "maxiter": 10_000})
    return unpack(res.x)


def gaussian_entropy_term(cov: np.ndarray, beta: float) -> float:
    """beta^-1 ∫ P log P for P = N(., cov): -(2 beta)^-1 log det(2 pi e cov)."""
    return -0.5 / beta * float(np.linalg.slogdet(2 * np.pi * np.e * cov)[1])
