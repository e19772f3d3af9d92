r"""Noise floors as distributions: the law of a metric when the method is perfect.

A perfect method's n particles are n i.i.d. draws of the exact law P. Its metric value is then a random
variable, the *floor*: a method's value can only be told apart from zero error when it lies above the floor's
upper quantiles. This module gives the floor's mean, standard deviation and 95% quantile
(:class:`FloorDistribution`) in three ways:

* ``closed_form``: the moment-fit SymKL (:func:`symkl_moment_floor`), whose law depends on (d, n) only;
* ``expansion``: the moment-fit Bures W2 (:func:`bures_w2_moment_floor`), to leading order in 1/n for a given
  covariance spectrum;
* ``simulated``: every other metric (:func:`simulated_floor`), from R >= 20 repetitions of the metric between
  two independent exact samples (or an exact sample and the exact density), cached in memory and on disk: exact
  and sliced W2 and energy distance (:func:`sample_metric_floor`), KDE SymKL (:func:`kde_symkl_floor`), KSD and
  other statistics of the samples alone (:func:`statistic_floor`). Monte-Carlo SymKL from the model's density is
  the exception: with the exact density it is identically 0, and its resolution is set by the run's own
  standard error (:func:`standard_error_floor`).

**Moment-fit SymKL.** Let x_1..x_n ~ N(m, S) i.i.d., mean_hat = x̄ and cov_hat = Σ (x_i - x̄)(x_i - x̄)^T / ν,
ν = n - 1. SymKL and the moment fit are both affine-equivariant, so the law of
K = SymKL(N(x̄, cov_hat), N(m, S)) is that for m = 0, S = I, where x̄ = z / √n with z ~ N(0, I) independent of
W = ν cov_hat ~ Wishart_d(ν, I) (Anderson, *An Introduction to Multivariate Statistical Analysis*, 3rd ed.
2003, §3.3 and §7.2). With M = cov_hat^{-1} = ν W^{-1},

    2K = tr(cov_hat) + tr(M) - 2d + x̄^T (I + M) x̄.

The Wishart and inverse-Wishart moments (q = ν - d; von Rosen, Scand. J. Statist. 1988, for the inverse-Wishart
second moments; the covariance of tr W and tr W^{-1} from the Stein-Haff identity for the Wishart density, Haff,
J. Multivariate Anal. 1979, E[g tr W] = ν tr(Σ) E[g] - 2 Σ_i ∂E[g]/∂(Σ^{-1})_ii, here with g = tr W^{-1}):

    E tr W = ν d,  Var tr W = 2 ν d,  E tr W^{-1} = d / (q - 1),
    Var tr W^{-1} = 2 d (ν - 1) / (q (q - 1)^2 (q - 3)),  E tr W^{-2} = d (ν - 1) / (q (q - 1) (q - 3)),
    Cov(tr W, tr W^{-1}) = -2 d / (q - 1),

give, conditioning on W for the x̄ terms (E[z^T A z] = tr A, Var[z^T A z] = 2 tr A^2),

    E K   = d (d + 3) (n - 1) / (2 n (n - d - 2))                                  (exact, n > d + 2)
    Var K = ¼ [Var tr cov_hat + (1 + 1/n)^2 Var tr M + 2 (1 + 1/n) Cov(tr cov_hat, tr M)
               + (2 / n^2) E tr (I + M)^2]                                          (exact, n > d + 4)

To leading order K ≈ χ²_p / n with p = d (d + 3) / 2 (the number of free parameters of the fit): mean p / n,
variance 2 p / n^2. The 95% quantile is that of the Gamma law with the exact mean and variance (the χ²_p / n
law's own shape, corrected at finite n).

**Moment-fit Bures W2.** W2^2(N(x̄, cov_hat), N(m, S)) = |x̄ - m|^2 + B^2(cov_hat, S): the mean part is exactly
|x̄ - m|^2 = z^T S z / n. In S's eigenbasis (eigenvalues λ_i), cov_hat = S + Λ^½ E Λ^½ with E = W/ν - I, and the
Bures distance to second order in E is B^2 = ½ Σ_ij Δ_ij^2 / (λ_i + λ_j), Δ = Λ^½ E Λ^½ (the Bures-Wasserstein
Riemannian metric; Takatsu, Osaka J. Math. 2011; Bhatia, Jain & Lim, Expo. Math. 2019). The E_ij are
uncorrelated with variances 2/ν (i = j) and 1/ν (i ≠ j) and tend to normals, so to leading order W2^2 is the
weighted χ² sum

    W2^2 ≈ Σ_i (λ_i / n) z_i^2 + Σ_i (λ_i / (2ν)) g_ii^2 + Σ_{i<j} (λ_i λ_j / ((λ_i + λ_j) ν)) g_ij^2,

z, g i.i.d. N(0, 1): E W2^2 ≈ Σ_k w_k = tr(S)/n + [tr S + Σ_{i≠j} λ_i λ_j / (λ_i + λ_j)] / (2ν),
Var W2^2 ≈ 2 Σ_k w_k^2. For W2 itself, E √Q of the weighted sum is computed exactly from its Laplace transform,
E √Q = (2√π)^{-1} ∫_0^∞ (1 - Π_k (1 + 2 w_k t)^{-½}) t^{-3/2} dt, and the 95% quantile of W2 is the square
root of Q's, by Imhof's inversion of its characteristic function (Imhof, Biometrika 1961; a Gamma law matched to
the mean and variance is up to 3% low for ill-conditioned S, where two weights dominate). The neglected terms
(third and fourth Wishart moments) are of relative order d/n: the tests bound the relative error of the mean and sd
of W2^2 and W2 and of the q95 of W2 by 0.25 d/n against exact Wishart simulation (d = 2, 8, 32; n = 500, 5000;
well- and ill-conditioned S); the mean of W2^2 comes out about 0.12 d/n low.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from wgfbench import metrics
from wgfbench.problems.base import Law
from wgfbench.problems.gaussian import GaussianLaw, moment_fit

FloorMethod = Literal["closed_form", "expansion", "simulated"]
MIN_REPS = 20  # issue 11: a simulated floor takes at least 20 repetitions
QUANTILE = 0.95


@dataclasses.dataclass(frozen=True)
class FloorDistribution:
    """The law of a metric for a perfect method: mean, standard deviation and 95% quantile.

    ``n_reps`` is the number of simulated repetitions (0 for a closed form or an expansion); ``values`` holds them.
    """

    mean: float
    sd: float
    q95: float
    n_reps: int
    method: FloorMethod
    values: tuple[float, ...] = ()

    def columns(self, metric: str) -> dict[str, float]:
        """Record columns ``<metric>_floor_mean``, ``<metric>_floor_sd``, ``<metric>_floor_q95``."""
        return {f"{metric}_floor_mean": self.mean, f"{metric}_floor_sd": self.sd, f"{metric}_floor_q95": self.q95}


def gamma_quantile(mean: float, var: float, q: float = QUANTILE) -> float:
    """Quantile q of the Gamma law with the given mean and variance (shape mean^2/var, scale var/mean)."""
    if not (mean > 0 and var > 0):
        raise ValueError(f"a Gamma law needs a positive mean and variance, got {mean}, {var}")
    from scipy.special import gammaincinv  # (scipy.stats takes a second to import; scipy.special does not)

    return float(gammaincinv(mean**2 / var, q) * var / mean)


# --- moment-fit SymKL: closed form ------------------------------------------------------------------------------
def symkl_moment_floor_moments(d: int, n: int) -> tuple[float, float]:
    """Exact (mean, variance) of SymKL(moment fit of n samples of N(m, S), N(m, S)) in dimension d (module docs)."""
    if d < 1 or n <= d + 4:
        raise ValueError(f"the moment-fit SymKL floor's variance needs n > d + 4, got d = {d}, n = {n}")
    nu = n - 1.0
    q = nu - d
    var_tr_cov = 2.0 * d / nu
    e_tr_m = nu * d / (q - 1.0)
    var_tr_m = nu**2 * 2.0 * d * (nu - 1.0) / (q * (q - 1.0) ** 2 * (q - 3.0))
    e_tr_m2 = nu**2 * d * (nu - 1.0) / (q * (q - 1.0) * (q - 3.0))
    cov_tr = -2.0 * d / (q - 1.0)  # Cov(tr cov_hat, tr M) = Cov(tr W, tr W^{-1})
    c = 1.0 + 1.0 / n
    mean = d * (d + 3.0) * (n - 1.0) / (2.0 * n * (n - d - 2.0))
    var2k = var_tr_cov + c**2 * var_tr_m + 2.0 * c * cov_tr + (2.0 / n**2) * (d + 2.0 * e_tr_m + e_tr_m2)
    return mean, var2k / 4.0


def symkl_moment_floor(d: int, n: int) -> FloorDistribution:
    """The floor of :func:`wgfbench.metrics.symkl_moment` for n samples in dimension d: exact mean and sd, Gamma q95.

    The same for every Gaussian reference (affine invariance), so it serves P_t and the exact JKO iterate alike.
    """
    mean, var = symkl_moment_floor_moments(d, n)
    return FloorDistribution(mean, math.sqrt(var), gamma_quantile(mean, var), 0, "closed_form")


def symkl_moment_unbiased(reference: Law, samples: Tensor, generator: torch.Generator | None = None) -> float:
    r"""Exactly unbiased estimate of SymKL(Q, P) from n i.i.d. samples of a Gaussian Q (P the Gaussian reference).

    With x̄, cov_hat the moment fit (ν = n - 1), P = N(m, S), c = (n - d - 2)/(n - 1) (so that
    E[c cov_hat^{-1}] = Σ_Q^{-1}) and δ = x̄ - m, every term of 2 SymKL(Q, P) is replaced by its unbiased estimate:

        2U = tr(S^{-1} cov_hat) + c tr(cov_hat^{-1} S) - 2d + δ^T S^{-1} δ - tr(S^{-1} cov_hat)/n
             + c δ^T cov_hat^{-1} δ - d/n

    (E[δ^T A δ] = (μ-m)^T A (μ-m) + tr(A Σ_Q)/n, and x̄ is independent of cov_hat). It is zero in expectation for a
    perfect method and can be negative; for non-Gaussian samples it corrects the Gaussian part of the bias only.
    """
    if not isinstance(reference, GaussianLaw):
        raise TypeError(f"symkl_moment_unbiased needs a Gaussian reference, got {type(reference).__name__}")
    return symkl_unbiased_from_fit(moment_fit(samples), samples.shape[0], reference)


def symkl_unbiased_from_fit(fit: GaussianLaw, n: int, reference: GaussianLaw) -> float:
    """:func:`symkl_moment_unbiased` from the moment fit of n samples (the fit computed once per evaluation)."""
    d = fit.dim
    s_inv = torch.linalg.inv(reference.cov)
    fit_inv = torch.linalg.inv(fit.cov)
    c = (n - d - 2.0) / (n - 1.0)
    delta = fit.mean - reference.mean
    tr_s_inv_fit = float(torch.trace(s_inv @ fit.cov))
    two_u = (
        tr_s_inv_fit
        + c * float(torch.trace(fit_inv @ reference.cov))
        - 2.0 * d
        + float(delta @ s_inv @ delta)
        - tr_s_inv_fit / n
        + c * float(delta @ fit_inv @ delta)
        - d / n
    )
    return 0.5 * two_u


def smallest_resolving_n(d: int, error: float, decades: float = 1.0, n_max: int = 10**9) -> int:
    """Smallest n whose moment-fit SymKL floor q95 lies ``decades`` below ``error``: log10 q95 <= log10 error - decades.

    The floor shrinks like d (d + 3) / (2n), so the answer is found by bisection on n.
    """
    target = error * 10.0**-decades
    lo, hi = d + 5, d + 5
    while symkl_moment_floor(d, hi).q95 > target:
        lo, hi = hi, 2 * hi
        if hi > n_max:
            raise ValueError(f"no n <= {n_max} resolves {error} by {decades} decades in d = {d}")
    while lo < hi:
        mid = (lo + hi) // 2
        if symkl_moment_floor(d, mid).q95 > target:
            lo = mid + 1
        else:
            hi = mid
    return hi


# --- moment-fit Bures W2: leading-order expansion --------------------------------------------------------------
def bures_floor_weights(cov: Tensor, n: int) -> np.ndarray:
    """Weights w_k of the weighted χ² sum that W2^2(moment fit, N(m, cov)) tends to (module docstring)."""
    lam = torch.linalg.eigvalsh(cov.detach().to(torch.float64).cpu()).clamp_min(0.0).numpy()
    d = lam.shape[0]
    nu = n - 1.0
    i, j = np.triu_indices(d, k=1)
    off = lam[i] * lam[j] / (lam[i] + lam[j])
    return np.concatenate([lam / n, lam / (2.0 * nu), off / nu])


def sqrt_weighted_chi2_mean(weights: np.ndarray) -> float:
    """E √Q for Q = Σ_k w_k g_k^2, g_k i.i.d. N(0, 1): (2√π)^{-1} ∫_0^∞ (1 - E e^{-tQ}) t^{-3/2} dt, t = e^s / E Q."""
    w = np.asarray(weights, dtype=np.float64)
    scale = float(w.sum())

    def integrand(s: float) -> float:
        t = math.exp(s) / scale
        one_minus_laplace = -math.expm1(-0.5 * float(np.log1p(2.0 * w * t).sum()))
        return one_minus_laplace * t**-0.5  # (1 - φ(t)) t^{-3/2} dt with dt = t ds

    from scipy import integrate

    value, _ = integrate.quad(integrand, -60.0, 60.0, limit=400, epsabs=0.0, epsrel=1e-10)
    return value / (2.0 * math.sqrt(math.pi))


_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(16)


def weighted_chi2_sf(x: float, weights: np.ndarray, tol: float = 1e-9, max_points: int = 20_000_000) -> float:
    r"""P(Q > x) for Q = Σ_k w_k g_k^2, g_k i.i.d. N(0, 1), by Imhof's inversion (Imhof, Biometrika 1961):

        P(Q > x) = ½ + (1/π) ∫_0^∞ sin θ(u) / (u ρ(u)) du,  θ(u) = ½ Σ_k arctan(w_k u) - ½ x u,
        ρ(u) = Π_k (1 + w_k^2 u^2)^{1/4},

    with weights normalised to sum 1, composite 16-point Gauss-Legendre on panels of length π/x, truncated at the U
    where the oscillating tail, bounded through integration by parts by 2 g(U)/|θ'(U)| with g = 1/(u ρ), is < tol.
    """
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    w, x = w / total, x / total

    def log_rho(u: np.ndarray) -> np.ndarray:
        return 0.25 * np.log1p(np.multiply.outer(u, w) ** 2).sum(-1)

    def tail_bound(u: float) -> float:  # 2 g(u) / |θ'(u)|, with |θ'| increasing beyond u
        slope = 0.5 * (x - float((w / (1.0 + (w * u) ** 2)).sum()))
        return math.inf if slope <= 0 else 2.0 * math.exp(-float(log_rho(np.array([u]))[0])) / u / slope

    upper = 1.0
    while tail_bound(upper) > tol:
        upper *= 2.0
    panel = math.pi / max(x, 1.0)
    n_panels = math.ceil(upper / panel)
    if n_panels * len(_GAUSS_NODES) > max_points:
        raise ValueError(f"Imhof inversion needs {n_panels} panels: the weights are too uneven")
    u = (np.arange(n_panels)[:, None] * panel + (_GAUSS_NODES + 1.0) * panel / 2).ravel()
    theta = 0.5 * np.arctan(np.multiply.outer(u, w)).sum(-1) - 0.5 * x * u
    integrand = np.sin(theta) * np.exp(-log_rho(u)) / u
    return 0.5 + float((integrand.reshape(n_panels, -1) * _GAUSS_WEIGHTS).sum()) * panel / 2 / math.pi


def weighted_chi2_quantile(weights: np.ndarray, q: float = QUANTILE) -> float:
    """Quantile q (> the median) of Σ_k w_k g_k^2: Imhof inversion, root between the mean and Cantelli's bound."""
    w = np.asarray(weights, dtype=np.float64)
    mean, sd = float(w.sum()), math.sqrt(2.0 * float((w**2).sum()))
    cantelli = mean + sd * math.sqrt(q / (1.0 - q))  # P(Q - mean >= k sd) <= 1/(1 + k^2)
    from scipy import optimize

    return float(optimize.brentq(lambda x: weighted_chi2_sf(x, w) - (1.0 - q), mean, cantelli, rtol=1e-10))


def bures_w2sq_moment_floor_moments(cov: Tensor, n: int) -> tuple[float, float]:
    """Leading-order (mean, variance) of W2^2(moment fit of n samples of N(m, cov), N(m, cov)); error O(d/n)."""
    w = bures_floor_weights(cov, n)
    return float(w.sum()), float(2.0 * (w**2).sum())


def bures_w2_moment_floor(cov: Tensor, n: int) -> FloorDistribution:
    """The floor of :func:`wgfbench.metrics.bures_w2_moment` (W2, not squared) to leading order in 1/n.

    mean = E √Q of the limiting weighted χ² sum Q, sd = sqrt(E Q - mean^2), q95 = sqrt(q95 of Q) (Imhof inversion).
    """
    w = bures_floor_weights(cov, n)
    mean_sq = float(w.sum())
    mean = sqrt_weighted_chi2_mean(w)
    return FloorDistribution(
        mean, math.sqrt(max(mean_sq - mean**2, 0.0)), math.sqrt(weighted_chi2_quantile(w)), 0, "expansion"
    )


# --- simulated floors ------------------------------------------------------------------------------------------
def law_fingerprint(law: object) -> str:
    """A hash of a law's class and parameters (a frozen dataclass of tensors, arrays, scalars and tuples of them).

    It changes whenever a parameter changes (tensor values are hashed as float64 bytes, with their shapes).
    """
    if not dataclasses.is_dataclass(law) or isinstance(law, type):
        raise TypeError(f"a law fingerprint needs a dataclass instance, got {type(law).__name__}")
    h = hashlib.sha256(f"{type(law).__module__}.{type(law).__qualname__}".encode())

    def feed(name: str, value: object) -> None:
        h.update(f"|{name}=".encode())
        if isinstance(value, Tensor):
            arr = value.detach().to(torch.float64).cpu().contiguous().numpy()
            h.update(repr(arr.shape).encode() + arr.tobytes())
        elif isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value, dtype=np.float64)
            h.update(repr(arr.shape).encode() + arr.tobytes())
        elif isinstance(value, bool | int | float | str) or value is None:
            h.update(repr(value).encode())
        elif isinstance(value, tuple | list):
            for i, item in enumerate(value):
                feed(f"{name}[{i}]", item)
        elif dataclasses.is_dataclass(value):
            h.update(law_fingerprint(value).encode())
        else:
            raise TypeError(f"cannot fingerprint field {name!r} of type {type(value).__name__}")

    for f in dataclasses.fields(law):
        feed(f.name, getattr(law, f.name))
    return h.hexdigest()[:32]


def _summarise_draws(values: list[float]) -> FloorDistribution:
    v = np.asarray(values, dtype=np.float64)
    return FloorDistribution(
        float(v.mean()), float(v.std(ddof=1)), float(np.quantile(v, QUANTILE)), len(v), "simulated", tuple(values)
    )


class FloorCache:
    """Simulated floors by key, in memory and (when ``folder`` is given) as one JSON file of numbers per key."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, list[float]] = {}

    def _path(self, key: dict) -> Path | None:
        if self.folder is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.folder / f"{key['metric']}-n{key['n']}-{digest}.json"

    def get(self, key: dict) -> list[float] | None:
        text = json.dumps(key, sort_keys=True)
        if text in self._memory:
            return self._memory[text]
        path = self._path(key)
        if path is None or not path.exists():
            return None
        stored = json.loads(path.read_text())
        if stored.get("key") != key or len(stored.get("values", [])) != key["n_reps"]:
            return None  # a hash collision or a truncated file: recompute
        values = [float(v) for v in stored["values"]]
        self._memory[text] = values
        return values

    def put(self, key: dict, values: list[float]) -> None:
        self._memory[json.dumps(key, sort_keys=True)] = list(values)
        path = self._path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"key": key, "values": list(values)}, sort_keys=True))
            tmp.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one


def _rep_seed(key: dict, rep: int) -> int:
    """Seed of repetition ``rep``: a hash of the key (its own seed included) and rep, so streams never overlap."""
    base = {k: v for k, v in key.items() if k != "n_reps"}  # R = 40 extends R = 20 with the same first 20 draws
    digest = hashlib.sha256(f"{json.dumps(base, sort_keys=True)}#{rep}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def simulated_floor(
    metric: str,
    law: Law,
    n: int,
    draw: Callable[[torch.Generator], float],
    *,
    n_reps: int = MIN_REPS,
    seed: int = 0,
    params: Mapping[str, bool | int | float | str] | None = None,
    cache: FloorCache | None = None,
) -> FloorDistribution:
    """Floor of ``metric`` from ``n_reps`` calls of ``draw(generator)``, each one metric value for a perfect method.

    The key (metric, law fingerprint, n, n_reps, seed, params) names the result in ``cache``; ``params`` must hold
    every setting of the metric that changes its value (projections, bandwidth, batch size). Deterministic given the
    key: repetition r draws from its own generator seeded by a hash of the key and r. q95 is the empirical 95%
    quantile of the draws (numpy's linear interpolation), model-free but itself noisy at R = 20.
    """
    if n_reps < MIN_REPS:
        raise ValueError(f"a simulated floor needs at least {MIN_REPS} repetitions, got {n_reps}")
    key = {
        "metric": metric,
        "law": law_fingerprint(law),
        "n": int(n),
        "n_reps": int(n_reps),
        "seed": int(seed),
        "params": dict(sorted((params or {}).items())),
    }
    values = cache.get(key) if cache is not None else None
    if values is None:
        values = [float(draw(torch.Generator().manual_seed(_rep_seed(key, r)))) for r in range(n_reps)]
        if cache is not None:
            cache.put(key, values)
    return _summarise_draws(values)


def sample_metric_floor(metric: str, fn: metrics.SampleMetric, reference: Law, n: int, **kwargs) -> FloorDistribution:
    """Floor of a sample metric ``fn(reference, samples, generator)`` (W2, sliced W2, energy distance, ...).

    Each repetition is :func:`wgfbench.metrics.noise_floor`: an exact sample of size n scored against the reference,
    so the metrics that draw their own reference sample compare two independent exact samples.
    """
    return simulated_floor(metric, reference, n, lambda gen: metrics.noise_floor(fn, reference, n, gen), **kwargs)


def standard_error_floor(se: float, q: float = QUANTILE) -> FloorDistribution:
    """Floor of an unbiased estimator with a known standard error, such as :func:`wgfbench.metrics.mc_symkl`.

    Monte-Carlo SymKL with the model's own density is unbiased, and for the exact density every log-ratio
    log p - log q vanishes, so its simulated floor would be identically 0. What limits its resolution is the run's
    own sampling error: by the central limit theorem the estimate at zero error is ~ N(0, se^2), whose q quantile is
    z_q se (one-sided test that the SymKL is positive).
    """
    if not se >= 0:
        raise ValueError(f"a standard error must be >= 0, got {se}")
    from scipy.special import ndtri  # the standard normal quantile

    return FloorDistribution(0.0, float(se), float(ndtri(q) * se), 0, "expansion")


def kde_symkl_floor(reference: Law, n: int, n_eval: int | None = None, **kwargs) -> FloorDistribution:
    """Floor of :func:`wgfbench.metrics.kde_symkl` with a KDE of n exact samples evaluated at ``n_eval`` points
    (KDE bias included: it is the floor's mean)."""

    def draw(gen: torch.Generator) -> float:
        return metrics.kde_symkl(reference, reference.sample(n, gen), gen, n_eval=n_eval)[0]

    params = {**kwargs.pop("params", {}), "n_eval": n_eval if n_eval is not None else n}
    return simulated_floor("symkl_kde", reference, n, draw, params=params, **kwargs)


def statistic_floor(metric: str, statistic: Callable[[Tensor], float], law: Law, n: int, **kwargs) -> FloorDistribution:
    """Floor of a statistic of the samples alone against a fixed target, e.g. KSD^2 with the target's score:
    ``statistic(exact sample of size n)``. Pass the statistic's settings (bandwidth, batches) in ``params``."""
    return simulated_floor(metric, law, n, lambda gen: statistic(law.sample(n, gen)), **kwargs)
