"""Metrics of one JKO iterate P_k against the problem's exact references.

For a step k with flow time t = k h, every metric is computed against the exact PDE solution P_t
(column ``<metric>``: the total error) and, where the problem has one, against the exact JKO
iterate P_k^JKO of the same step size (column ``<metric>_vs_jko``: the method's optimisation
error); the exact JKO iterate's own distance to P_t, the time-discretisation error, is stored
beside them (``<metric>_jko_pde``). Every sample metric has its noise floor (``<metric>_floor``):
the same metric with an independent exact sample of the same size in place of the method's.

Metrics (see :mod:`wgfbench.metrics`):

* ``symkl_moment``, ``bures_w2_moment``: closed forms on the moment fit of ``n_samples`` samples
  (Gaussian references only);
* ``w2``: exact OT (POT ``emd2``), ``sw2``: sliced W2 (256 fixed directions), ``energy``: energy
  distance, each on the first ``n_w2`` samples;
* ``symkl_mc`` (+ ``symkl_mc_se``): Monte-Carlo SymKL on ``n_mc`` samples, for methods with a density;
* ``symkl_kde`` (+ ``_se``): the same with a Gaussian KDE of ``n_mc`` samples as the model density, for
  methods without one in d <= 3 (Mokrov et al.'s particle-method columns; KDE bias included);
* problem-specific extras from ``problem.extra_metrics(...)`` when the problem defines it;
* for sampling targets (problems with ``target_metrics``, :mod:`wgfbench.problems.hg_targets`):
  ``sliced_energy`` (+ ``_floor``), Hertrich & Gruhlke's sliced energy distance to the target on
  ``problem.sliced_energy_samples`` samples of each (:mod:`wgfbench.metrics_sliced_energy`), and for methods
  with a density ``log_z`` (+ ``_se``), the log-normaliser estimate from the ``n_mc`` model samples and their
  log-densities (truth 0; :mod:`wgfbench.metrics_log_normaliser`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from wgfbench import metrics
from wgfbench.problems.base import Law
from wgfbench.problems.gaussian import GaussianLaw


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    n_samples: int = 10_000
    n_w2: int = 1_000
    n_mc: int = 4_096
    every: int = 1
    seed: int = 2024


def law_metrics(reference: Law, x: Tensor, spec: EvalSpec, gen: torch.Generator, suffix: str = "") -> dict[str, float]:
    """All sample metrics of x against ``reference``, with noise floors; keys get ``suffix``."""
    out: dict[str, float] = {}
    small = x[: spec.n_w2]
    plan: list[tuple[str, metrics.SampleMetric, Tensor]] = []
    if reference.is_gaussian:
        plan += [("symkl_moment", metrics.symkl_moment, x), ("bures_w2_moment", metrics.bures_w2_moment, x)]
    plan += [
        ("w2", metrics.w2_exact, small),
        ("sw2", metrics.sliced_w2, small),
        ("energy", metrics.energy_distance, small),
    ]
    for name, fn, samples in plan:
        out[name + suffix] = fn(reference, samples, gen)
        out[name + suffix + "_floor"] = metrics.noise_floor(fn, reference, samples.shape[0], gen)
    return out


def density_metrics(
    reference: Law, x: Tensor, log_p: Tensor, method, gen: torch.Generator, suffix: str = ""
) -> dict[str, float]:
    """Monte-Carlo SymKL from the method's log-densities (both directions) and its standard error.

    ``x``, ``log_p``: model samples and log p_k at them (drawn once per evaluation and shared).
    """
    value, se = metrics.mc_symkl(reference, x, log_p, method.log_density, gen)
    return {"symkl_mc" + suffix: value, "symkl_mc" + suffix + "_se": se}


def sampling_target_metrics(
    problem, method, gen: torch.Generator, x_mc: Tensor | None, log_p: Tensor | None
) -> dict[str, float]:
    """Sliced energy distance to the target with its floor, and log Z from model densities (module docstring)."""
    from wgfbench.metrics_log_normaliser import log_normaliser_estimate
    from wgfbench.metrics_sliced_energy import sliced_energy_distance, sliced_energy_floor

    n, n_proj = problem.sliced_energy_samples, problem.sliced_energy_projections
    target = problem.reference(0.0)
    x = method.sample(n, gen).to(torch.float64)
    out = {
        "sliced_energy": sliced_energy_distance(x, target.sample(n, gen), n_proj, gen),
        "sliced_energy_floor": sliced_energy_floor(target, n, n_proj, gen),
    }
    if log_p is not None:
        value, se = log_normaliser_estimate(problem.log_target(x_mc.to(torch.float64)), log_p)
        out |= {"log_z": value, "log_z_se": se}
    return out


def discretisation_metrics(jko: GaussianLaw, pde: GaussianLaw) -> dict[str, float]:
    """Closed-form distance of the exact JKO iterate to the PDE solution (time-discretisation error)."""
    return {
        "symkl_moment_jko_pde": metrics.gaussian_symkl(jko, pde),
        "bures_w2_moment_jko_pde": metrics.bures_w2(jko, pde),
    }


def evaluate_step(problem, method, k: int, h: float, spec: EvalSpec, run_seed: int = 0) -> dict[str, float]:
    """Every metric of the method's current P_k (see the module docstring).

    Deterministic given (spec.seed, run_seed, k); different runs and steps draw independent samples.
    """
    gen = torch.Generator().manual_seed((spec.seed * 1_000_003 + run_seed) * 10_007 + k)
    t = problem.time_of_step(k, h)
    pde = problem.reference(t)
    jko = problem.jko_reference(k, h)
    x = method.sample(spec.n_samples, gen).to(torch.float64)
    if not bool(torch.isfinite((x**2).sum(-1)).all()):  # also catches finite samples whose squares overflow
        raise FloatingPointError("non-finite (or overflowing) samples")
    row = law_metrics(pde, x, spec, gen)
    if jko is not None:
        row |= law_metrics(jko, x, spec, gen, suffix="_vs_jko")
        if isinstance(jko, GaussianLaw) and isinstance(pde, GaussianLaw):
            row |= discretisation_metrics(jko, pde)
    if not method.has_density and problem.dim <= 3:
        value, se = metrics.kde_symkl(pde, x[: spec.n_mc], gen)
        row |= {"symkl_kde": value, "symkl_kde_se": se}
    x_mc = log_p = None
    if method.has_density:  # one draw of (samples, log-densities) serves every density metric below
        x_mc, log_p = method.sample_with_log_density(spec.n_mc, gen)
        # SymKL needs both laws to share a support; a compactly supported reference (Barenblatt) makes it
        # +inf as soon as either puts mass outside: such problems report the two directions separately
        # in their extra metrics, with the mass outside the support as its own column
        if not getattr(problem, "compact_support", False):
            row |= density_metrics(pde, x_mc, log_p, method, gen)
            if jko is not None:
                row |= density_metrics(jko, x_mc, log_p, method, gen, suffix="_vs_jko")
    if getattr(problem, "target_metrics", False):
        row |= sampling_target_metrics(problem, method, gen, x_mc, log_p)
    if hasattr(problem, "extra_metrics"):
        samples = x if x_mc is None else x_mc.to(torch.float64)
        row |= problem.extra_metrics(
            t,
            samples,
            model_log_density_at_samples=log_p,
            model_log_density=method.log_density if method.has_density else None,
            generator=gen,
        )
    return {key: (float(v) if v is not None else math.nan) for key, v in row.items()}
