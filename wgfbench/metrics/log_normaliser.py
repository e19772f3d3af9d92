r"""The log-normaliser estimate of a sampler with densities (Hertrich & Gruhlke, ICML 2025, §5, Table 2).

For a target q = g / Z known through log g and a model P with density p,

    log Z = E_P[log g(X) - log p(X)] + KL(P || Q) >= E_P[log g - log p]          (the ELBO),

so -E_P[U + log p] with U = -log g, averaged over model samples with the model's own log-densities, estimates
log Z from below, with bias KL(P || Q) >= 0. For a normalised target the truth is log Z = 0, and the estimate is
minus a Monte-Carlo estimate of KL(P || Q) (it can come out positive: sampling noise, or model log-densities
that are themselves estimates, e.g. Hutchinson log-determinants or a rejection step's estimated rate).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_normaliser_estimate(log_target_at_samples: Tensor, model_log_density_at_samples: Tensor) -> tuple[float, float]:
    """(mean of log g - log p over the model samples, its standard error)."""
    diff = (
        log_target_at_samples.detach().to(torch.float64).cpu()
        - model_log_density_at_samples.detach().to(torch.float64).cpu()
    )
    n = diff.shape[0]
    if n < 2:
        raise ValueError("the log-normaliser estimate needs at least 2 samples")
    return float(diff.mean()), math.sqrt(float(diff.var()) / n)
