r"""Metrics for the porous medium (Barenblatt) problem, beyond the generic W2 / energy distance.

:func:`porous_metrics` returns one flat dict of floats, merged into the record row. Columns:

* ``second_moment_rel_err``: |mean|X|^2 - E_exact|X|^2| / E_exact|X|^2 over the model samples.
* ``gen_entropy_exact``: G(P_t) = ∫P_t^m/(m-1) in closed form.
* ``gen_entropy_rel_err``: relative error of the model's G from its **own densities**:
  ∫p^m = E_{X~p}[p(X)^{m-1}], estimated by the mean of exp((m-1) log p) at the model samples
  (needs ``model_log_density_at_samples``, NaN otherwise).
* ``gen_entropy_rel_err_knn``: relative error of a **sample-only** estimate, the k-nearest-neighbour
  estimator of ∫p^q of Leonenko, Pronzato & Savani (Ann. Statist. 36(5), 2008, Eq. 3.2 with
  q = m): (1/N) Σ_i Γ(k)/Γ(k+1-q) ((N-1) V_n ρ_{i,k}^n)^{1-q}, ρ_{i,k} the distance from X_i to its
  k-th nearest other sample, V_n the unit-ball volume. It is consistent for q < k + 1 (k = 5 here) and
  needs no bandwidth (no KDE). Its finite-N bias grows with n, so its floor (the same estimator on exact
  samples of the same size, computed by the evaluation) is what to compare it with, not 0.
* ``frac_outside_support``: fraction of model samples with |x| >= R(t), where the exact density is 0.
* ``kl_model_exact`` (+ ``_se``): Monte-Carlo KL(P_model || P_exact) = E_model[log p - log q]. It is
  +∞ as soon as the model puts mass outside the exact support. **Treatment:** it is computed only when
  ``frac_outside_support == 0`` and reported as NaN otherwise, with the fraction in its own column; no
  epsilon is ever added to a density.
* ``frac_exact_outside_model_support``, ``kl_exact_model`` (+ ``_se``): the reverse direction
  E_exact[log q - log p], which needs the model density at exact samples (``model_log_density``);
  exact samples where the model density is 0 (log p = -inf) make it +∞, treated the same way.

(The generic ``symkl_mc`` column of :mod:`wgfbench.evaluate` is the sum of both directions with no such
treatment: with a compactly supported reference it is +inf or NaN whenever either support condition
fails. The two directions here, with their support fractions, are the ones to read for the PME.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

KNN_K = 5
KNN_MAX_SAMPLES = 10_000


def knn_distances(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x (N, n) to its k-th nearest *other* row (exact, scipy's k-d tree; float64)."""
    from scipy.spatial import cKDTree

    pts = x.detach().to(torch.float64).cpu().numpy()
    if pts.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples, got {pts.shape[0]}")
    # the nearest point returned is the point itself (distance 0); the (k+1)-th is the k-th neighbour
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    return torch.from_numpy(dist[:, k])


def knn_integral_power(x: Tensor, q: float, k: int = KNN_K) -> float:
    """Leonenko-Pronzato-Savani estimate of ∫p^q from samples of p (module docstring); needs q < k+1."""
    if not q < k + 1:
        raise ValueError(f"the kNN estimator of ∫p^q needs q < k+1, got q={q}, k={k}")
    n_samples, dim = x.shape
    rho = knn_distances(x, k)
    if bool((rho <= 0).any()):
        return math.nan  # duplicated samples: the estimator is undefined (a collapsed model)
    log_vol = 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1)
    log_zeta = math.log(n_samples - 1) + log_vol + dim * torch.log(rho)
    log_terms = math.lgamma(k) - math.lgamma(k + 1 - q) + (1 - q) * log_zeta
    return float(torch.exp(log_terms).mean())


def _mean_se(v: Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.shape[0]))


def second_moment_rel_err(reference, x: Tensor) -> float:
    """|mean |x|^2 - E_exact |X|^2| / E_exact |X|^2."""
    sm = reference.second_moment()
    return abs(float((x.detach().to(torch.float64).cpu() ** 2).sum(1).mean()) - sm) / sm


def gen_entropy_rel_err_knn(reference, x: Tensor) -> float:
    """Relative error of the kNN estimate of ∫p^m from (at most KNN_MAX_SAMPLES of) the samples x."""
    ipm = reference.integral_pm()
    x = x.detach().to(torch.float64).cpu()[:KNN_MAX_SAMPLES]
    return abs(knn_integral_power(x, reference.m) - ipm) / ipm


def porous_metrics(
    reference,
    samples: Tensor,
    model_log_density_at_samples: Tensor | None = None,
    model_log_density: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """All porous-medium metrics of model ``samples`` against an exact :class:`BarenblattLaw` (see above).

    Their noise floors (the same statistics of exact samples) are computed by :mod:`wgfbench.evaluate` as
    distributions (:mod:`wgfbench.metrics.floors`), from :func:`second_moment_rel_err` and
    :func:`gen_entropy_rel_err_knn`.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    x = samples.detach().to(torch.float64).cpu()
    n = x.shape[0]
    m = reference.m
    out: dict[str, float] = {"second_moment_rel_err": second_moment_rel_err(reference, x)}
    ipm = reference.integral_pm()
    out["gen_entropy_exact"] = ipm / (m - 1)
    out["gen_entropy_rel_err_knn"] = gen_entropy_rel_err_knn(reference, x)

    outside = reference.outside_support(x)
    out["frac_outside_support"] = float(outside.double().mean())
    out["gen_entropy_rel_err"] = math.nan
    out["kl_model_exact"] = out["kl_model_exact_se"] = math.nan
    if model_log_density_at_samples is not None:
        lp = model_log_density_at_samples.detach().to(torch.float64).cpu()
        if lp.shape != (n,):
            raise ValueError(f"model log-densities must have shape ({n},), got {tuple(lp.shape)}")
        out["gen_entropy_rel_err"] = abs(float(torch.exp((m - 1) * lp).mean()) - ipm) / ipm
        if not bool(outside.any()):
            out["kl_model_exact"], out["kl_model_exact_se"] = _mean_se(lp - reference.log_density(x))

    out["frac_exact_outside_model_support"] = math.nan
    out["kl_exact_model"] = out["kl_exact_model_se"] = math.nan
    if model_log_density is not None:
        exact = reference.sample(n, generator)
        lp_exact = model_log_density(exact).detach().to(torch.float64).cpu()
        zero = lp_exact == -math.inf
        out["frac_exact_outside_model_support"] = float(zero.double().mean())
        if not bool(zero.any()):
            out["kl_exact_model"], out["kl_exact_model_se"] = _mean_se(reference.log_density(exact) - lp_exact)
    return out


def porous_discretisation_metrics(jko, pde) -> dict[str, float]:
    """Closed-form errors of the exact JKO iterate P_k^JKO (a Barenblatt law) against the PDE solution P_t.

    Both are dilations of one profile (radii R_jko, R_pde), so W2 = |R_jko - R_pde| sqrt(E|X|^2) / R with
    E|X|^2 / R^2 = n / (n + 2p + 2) the same for both; the relative errors of ∫P^m and of the second moment
    follow from the closed forms of each law. The time-discretisation floor of any JKO method with this step.
    """
    return {
        "w2_jko_pde": abs(jko.radius - pde.radius) * math.sqrt(pde.second_moment()) / pde.radius,
        "gen_entropy_rel_err_jko_pde": abs(jko.integral_pm() / pde.integral_pm() - 1),
        "second_moment_rel_err_jko_pde": abs(jko.second_moment() / pde.second_moment() - 1),
    }
