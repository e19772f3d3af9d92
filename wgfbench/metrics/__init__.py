"""Error metrics between a method's P_k and an exact reference law, one module per family.

* :mod:`~wgfbench.metrics.gaussian`: closed forms between Gaussians (KL, SymKL, Bures-W2) and the moment-fit
  metrics ``symkl_moment``, ``bures_w2_moment``;
* :mod:`~wgfbench.metrics.samples`: sample metrics with the fixed signature ``metric(reference, samples,
  generator) -> float`` (exact W2 by POT's network simplex, sliced W2, energy distance) and their noise floor;
* :mod:`~wgfbench.metrics.density`: Monte-Carlo SymKL from model log-densities or from a KDE of the samples;
* :mod:`~wgfbench.metrics.ksd`: the kernel Stein discrepancy against a target known through its score;
* :mod:`~wgfbench.metrics.porous`: porous-medium metrics (generalised entropy, support, the two KL directions);
* :mod:`~wgfbench.metrics.catalogue`: what each metric column of a record means (label, transform, floor), for
  evaluation, tables and figures alike.
"""

from wgfbench.metrics.density import kde_symkl, log10_or_nan, mc_symkl
from wgfbench.metrics.gaussian import bures_w2, bures_w2_moment, gaussian_kl, gaussian_symkl, symkl_moment
from wgfbench.metrics.ksd import kernel_stein_discrepancy, ksd_u_statistic, median_heuristic_beta, stein_kernel_matrix
from wgfbench.metrics.samples import (
    MetricError,
    SampleMetric,
    energy_distance,
    energy_distance_between,
    noise_floor,
    sliced_w2,
    sliced_w2_between,
    w2_emd,
    w2_exact,
)

__all__ = [
    "MetricError",
    "SampleMetric",
    "bures_w2",
    "bures_w2_moment",
    "energy_distance",
    "energy_distance_between",
    "gaussian_kl",
    "gaussian_symkl",
    "kde_symkl",
    "kernel_stein_discrepancy",
    "ksd_u_statistic",
    "log10_or_nan",
    "mc_symkl",
    "median_heuristic_beta",
    "noise_floor",
    "sliced_w2",
    "sliced_w2_between",
    "stein_kernel_matrix",
    "symkl_moment",
    "w2_emd",
    "w2_exact",
]
