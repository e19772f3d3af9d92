r"""Monte-Carlo SymKL from log-densities: the model's own (change of variables) or a KDE of its samples."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from wgfbench.problems.base import Law


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


def kde_symkl(
    reference: Law,
    samples: Tensor,
    generator: torch.Generator | None = None,
    max_dim: int = 3,
    n_eval: int | None = None,
) -> tuple[float, float]:
    """Monte-Carlo SymKL with the model density replaced by a Gaussian KDE of its samples (Scott's rule).

    Mokrov et al.'s way of scoring particle methods (their EM columns, with scipy's gaussian_kde): the KDE is
    fitted on all the ``samples`` (their 1k / 10k / 50k particles) and the SymKL is estimated at ``n_eval`` of them
    and ``n_eval`` exact samples (default: all of them; theirs: 10,000). The KDE's own bias dominates beyond a few
    dimensions, so it is refused for d > ``max_dim``. Returns (value, standard error) like :func:`mc_symkl`.
    """
    from scipy.stats import gaussian_kde

    x = samples.detach().to(torch.float64).cpu()
    if x.shape[1] > max_dim:
        raise ValueError(f"KDE SymKL is only meaningful for d <= {max_dim}, got d = {x.shape[1]}")
    kde = gaussian_kde(x.numpy().T)

    def log_kde(y: Tensor) -> Tensor:
        return torch.from_numpy(kde.logpdf(y.detach().to(torch.float64).cpu().numpy().T))

    at = x if n_eval is None or n_eval >= x.shape[0] else x[:n_eval]
    return mc_symkl(reference, at, log_kde(at), log_kde, generator)
