r"""Error metrics between a method's P_k and an exact reference law.

Every sample metric has the fixed signature ``metric(reference, samples, generator) -> float``:
``reference`` is an exact :class:`~wgfbench.problems.base.Law` (the PDE solution P_t or the exact
JKO iterate), ``samples`` are n samples of the method's P_k. :func:`noise_floor` evaluates the same
metric with an independent exact sample of the same size in place of the method's samples: the
value a perfect method would get, i.e. the metric's sampling noise.

Closed forms (closed-forms-and-pitfalls.md §4c, §4d):

* KL(N0 || N1) = ½ [tr(S1^-1 S0) + (m1-m0)^T S1^-1 (m1-m0) - d + log det S1 - log det S0]
* SymKL = KL(0||1) + KL(1||0)
        = ½ [tr(S1^-1 S0) + tr(S0^-1 S1) - 2d + (m1-m0)^T (S0^-1 + S1^-1) (m1-m0)]
  (the sum, "Jeffreys", as Mokrov, Fan and SCVM use; log-determinants cancel)
* W2^2(N0, N1) = |m0-m1|^2 + tr(S0 + S1 - 2 (S1^½ S0 S1^½)^½)   (Bures-Wasserstein)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import ot
import torch
from torch import Tensor

from wgfbench.problems.base import Law
from wgfbench.problems.gaussian import GaussianLaw, moment_fit, sqrtm_psd, sym

SampleMetric = Callable[[Law, Tensor, torch.Generator], float]


class MetricError(RuntimeError):
    """A metric could not be computed (e.g. the exact OT solver did not converge)."""


# --- closed forms between Gaussians ---------------------------------------------------------------
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


# --- sample metrics (fixed signature) ---------------------------------------------------------------
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


def w2_emd(x: Tensor, y: Tensor, num_iter_max: int = 10_000_000) -> float:
    """Exact W2 between two uniform empirical measures with POT's network simplex (ot.emd2).

    numItermax is raised well above POT's default, and the solver's result code is checked: any
    outcome but OPTIMAL raises :class:`MetricError` rather than returning a wrong number.
    """
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


# --- Monte-Carlo SymKL from densities -----------------------------------------------------------
def mc_symkl(
    reference: Law,
    model_samples: Tensor,
    model_log_density_at_samples: Tensor,
    model_log_density: Callable[[Tensor], Tensor],
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Monte-Carlo SymKL = E_P[log p - log q] + E_Q[log q - log p] and its standard error.

    P is the model (log-density known at its own samples and at arbitrary points), Q the exact
    reference (exact sampler and density). Both directions use n samples, n = len(model_samples).
    Estimates are not clamped: a negative value is reported as it is, with its standard error.
    """
    n = model_samples.shape[0]
    ref_samples = reference.sample(n, generator)
    lp_p = model_log_density_at_samples.detach().to(torch.float64).cpu()
    lq_p = reference.log_density(model_samples).to(torch.float64)
    lq_q = reference.log_density(ref_samples).to(torch.float64)
    lp_q = model_log_density(ref_samples).detach().to(torch.float64).cpu()
    a = lp_p - lq_p
    b = lq_q - lp_q
    value = float(a.mean() + b.mean())
    se = float(torch.sqrt(a.var() / n + b.var() / n))
    return value, se


def log10_or_nan(x: float) -> float:
    """log10 for positive values, NaN otherwise (a clamp would hide a negative MC estimate)."""
    return math.log10(x) if x > 0 and math.isfinite(x) else float("nan")


# --- kernel Stein discrepancy (targets known through their score) ---------------------------------------
def median_heuristic_beta(samples: Tensor) -> float:
    """RBF inverse bandwidth beta = 1/(2 med^2), med the median distance of the disjoint pairs (x_0,x_1), (x_2,x_3)...

    Fan et al.'s rule for their KSD (variational-jko.md §2.3), applied to exact target samples.
    """
    x = samples.detach().to(torch.float64).cpu()
    n = x.shape[0] // 2
    if n < 1:
        raise ValueError("the median heuristic needs at least 2 samples")
    med = float((x[0 : 2 * n : 2] - x[1 : 2 * n : 2]).norm(dim=1).median())
    if not med > 0:
        raise ValueError("the median heuristic got a zero median distance (duplicated samples)")
    return 1.0 / (2.0 * med**2)


def stein_kernel_matrix(x: Tensor, score: Tensor, beta: float) -> Tensor:
    r"""Langevin-Stein kernel u_Q(x_i, x_j) for the RBF kernel k(x, y) = exp(-beta |x - y|^2), all pairs.

    With s = grad log Q and r = x - y (Liu, Lee & Jordan, ICML 2016; Chwialkowski et al., ICML 2016):

        u(x, y) = s(x)^T s(y) k + s(x)^T grad_y k + s(y)^T grad_x k + tr(grad_x grad_y k)
                = k(x, y) [ s(x)^T s(y) + 2 beta (s(x) - s(y))^T r + 2 beta d - 4 beta^2 |r|^2 ].
    """
    x = x.to(torch.float64)
    s = score.to(torch.float64)
    d = x.shape[1]
    sq = torch.cdist(x, x).pow(2)
    k = torch.exp(-beta * sq)
    sx = (s * x).sum(1)  # s_i . x_i
    cross = s @ x.T  # s_i . x_j
    s_dot_r = sx[:, None] - cross  # s_i . (x_i - x_j)
    # (s_i - s_j) . (x_i - x_j) = s_i.(x_i - x_j) + s_j.(x_j - x_i)
    diff_term = s_dot_r + s_dot_r.T
    return k * (s @ s.T + 2 * beta * diff_term + 2 * beta * d - 4 * beta**2 * sq)


def ksd_u_statistic(x: Tensor, score: Tensor, beta: float) -> float:
    """Unbiased (U-statistic) estimate of KSD^2 = E_{x,y~P} u_Q(x, y): the mean of u over pairs i != j.

    Zero in expectation when P = Q (so an estimate can be slightly negative), positive otherwise.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError("the KSD U-statistic needs at least 2 samples")
    u = stein_kernel_matrix(x, score, beta)
    return float((u.sum() - u.diagonal().sum()) / (n * (n - 1)))


def kernel_stein_discrepancy(
    x: Tensor, score: Tensor, beta: float, batch_size: int = 1000, max_batches: int | None = 10
) -> float:
    """KSD^2 U-statistic averaged over disjoint batches of ``batch_size`` rows (at most ``max_batches``).

    Fan et al.'s protocol (1000 particles per batch, 10 batches). With fewer than ``batch_size`` rows, one batch of
    all of them. ``score`` holds grad log Q at the rows of x.
    """
    n = x.shape[0]
    size = min(batch_size, n)
    n_batches = n // size if max_batches is None else min(n // size, max_batches)
    vals = [
        ksd_u_statistic(x[i * size : (i + 1) * size], score[i * size : (i + 1) * size], beta) for i in range(n_batches)
    ]
    return float(sum(vals) / len(vals))


def kde_symkl(
    reference: Law, samples: Tensor, generator: torch.Generator | None = None, max_dim: int = 3
) -> tuple[float, float]:
    """Monte-Carlo SymKL with the model density replaced by a Gaussian KDE of its samples (Scott's rule).

    Mokrov et al.'s way of scoring particle methods (their EM columns, with scipy's gaussian_kde);
    the KDE's own bias dominates beyond a few dimensions, so it is refused for d > ``max_dim``.
    Returns (value, standard error) like :func:`mc_symkl`.
    """
    from scipy.stats import gaussian_kde

    x = samples.detach().to(torch.float64).cpu()
    if x.shape[1] > max_dim:
        raise ValueError(f"KDE SymKL is only meaningful for d <= {max_dim}, got d = {x.shape[1]}")
    kde = gaussian_kde(x.numpy().T)

    def log_kde(y: Tensor) -> Tensor:
        return torch.from_numpy(kde.logpdf(y.detach().to(torch.float64).cpu().numpy().T))

    return mc_symkl(reference, x, log_kde(x), log_kde, generator)
