"""Metrics of one JKO iterate P_k against the problem's exact references.

For a step k with flow time t = k h, every metric is computed against the exact PDE solution P_t (the total
error) and, where the problem has one, against the exact JKO iterate P_k^JKO of the same step size (the
method's optimisation error); the exact JKO iterate's own distance to P_t, the time-discretisation error, is
stored beside them. Every sample metric has its noise floor: the same metric with an independent exact sample of
the same size in place of the method's. Column names follow :mod:`wgfbench.metrics.catalogue`, and only
catalogued columns are emitted.

What is computed (:mod:`wgfbench.metrics`):

* ``symkl_moment``, ``bures_w2_moment``: closed forms on the moment fit of ``n_samples`` samples (Gaussian
  references only);
* ``w2``: exact OT (POT ``emd2``), ``sw2``: sliced W2 (256 fixed directions), ``energy``: energy distance, each
  on the first ``n_w2`` samples;
* ``symkl_mc`` (+ ``_se``): Monte-Carlo SymKL on ``n_mc`` samples, for methods with a density (not for
  compactly supported references, where it is undefined: see the porous metrics);
* ``symkl_kde`` (+ ``_se``): the same with a Gaussian KDE of ``n_mc`` samples as the model density, for methods
  without one in d <= 3 (Mokrov et al.'s particle-method columns; KDE bias included);
* stationary targets (:class:`~wgfbench.problems.base.StationaryProblem`): ``ksd`` (kernel Stein discrepancy
  with the target's score) and ``symkl_moment_target`` (moment fits against the target's exact moments);
  and, for methods with densities, ``log_z`` (+ ``_se``): the log-normaliser estimate -E[U + log p] from the
  ``n_mc`` model samples (truth 0: the target's density is normalised; :mod:`wgfbench.metrics.log_normaliser`);
  where the suite asks (``eval.sliced_energy_samples``), ``sliced_energy`` (+ ``_floor``), Hertrich & Gruhlke's
  sliced energy distance (:mod:`wgfbench.metrics.sliced_energy`);
* generalised-entropy problems: the porous-medium metrics of :mod:`wgfbench.metrics.porous`.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Annotated

import torch
from torch import Tensor

from wgfbench import metrics
from wgfbench.metrics import catalogue
from wgfbench.metrics.log_normaliser import log_normaliser_estimate
from wgfbench.metrics.porous import porous_discretisation_metrics, porous_metrics
from wgfbench.metrics.sliced_energy import sliced_energy_distance, sliced_energy_floor
from wgfbench.params import Count, NonNegCount, Range, SampleSize
from wgfbench.problems.base import EntropyProblem, Law, StationaryProblem
from wgfbench.problems.gaussian import GaussianLaw, moment_fit

KSD_BETA_SAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """How a run is evaluated: sample sizes per metric family, every how many steps, and the evaluation seed."""

    n_samples: SampleSize = 10_000
    n_w2: SampleSize = 1_000
    n_mc: SampleSize = 4_096
    every: Count = 1
    seed: Annotated[int, Range(0, 2**31 - 1)] = 2024
    ksd_batch_size: SampleSize = 1000  # the KSD is averaged over disjoint batches of this size (Fan et al.: 1000)
    ksd_batches: Count = 10  # ... at most this many (Fan et al.: 10)
    # Hertrich & Gruhlke's sliced energy distance to a stationary target: model and exact samples each (0: off;
    # their protocol: 50,000) and projections (theirs: 1000)
    sliced_energy_samples: NonNegCount = 0
    sliced_energy_projections: Count = 1000


def _col(name: str, against: str = "pde", part: str | None = None) -> str:
    return catalogue.column(name, against, part)  # a KeyError or ValueError here is an uncatalogued column


def law_metrics(reference: Law, x: Tensor, spec: EvalSpec, gen: torch.Generator, against: str = "pde") -> dict:
    """All sample metrics of x against ``reference``, with noise floors."""
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
        out[_col(name, against)] = fn(reference, samples, gen)
        out[_col(name, against, "floor")] = metrics.noise_floor(fn, reference, samples.shape[0], gen)
    return out


def density_metrics(reference: Law, x: Tensor, log_p: Tensor, method, gen: torch.Generator, against: str = "pde"):
    """Monte-Carlo SymKL from the method's log-densities (both directions) and its standard error.

    ``x``, ``log_p``: model samples and log p_k at them (drawn once per evaluation and shared).
    """
    value, se = metrics.mc_symkl(reference, x, log_p, method.log_density, gen)
    return {_col("symkl_mc", against): value, _col("symkl_mc", against, "se"): se}


def discretisation_metrics(jko: GaussianLaw, pde: GaussianLaw) -> dict[str, float]:
    """Closed-form distance of the exact JKO iterate to the PDE solution (time-discretisation error)."""
    return {
        _col("symkl_moment", part="jko_pde"): metrics.gaussian_symkl(jko, pde),
        _col("bures_w2_moment", part="jko_pde"): metrics.bures_w2(jko, pde),
    }


class Evaluator:
    """Evaluates one run's iterates (module docstring); holds what is computed once per run (the KSD bandwidth).

    Deterministic given (spec.seed, run_seed, k); different runs and steps draw independent samples.
    """

    def __init__(self, problem, spec: EvalSpec, run_seed: int = 0):
        self.problem, self.spec, self.run_seed = problem, spec, int(run_seed)
        self._ksd_beta: float | None = None

    def ksd_beta(self) -> float:
        """RBF inverse bandwidth of the KSD: Fan et al.'s median heuristic on 10,000 exact target samples, drawn
        from a generator seeded by the instance (the same for every run and step of the instance)."""
        if self._ksd_beta is None:
            p = self.problem
            key = f"wgfbench-gmm-ksd-beta-{p.describe().get('generator', p.name)}@{p.dim}@{p.seed}"
            gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            self._ksd_beta = metrics.median_heuristic_beta(p.target().sample(KSD_BETA_SAMPLES, gen))
        return self._ksd_beta

    def ksd(self, x: Tensor) -> float:
        """Squared KSD (U-statistic, averaged over disjoint batches) of samples x against the stationary target."""
        spec = self.spec
        x = x.detach().to(torch.float64).cpu()
        return metrics.kernel_stein_discrepancy(
            x, self.problem.score(x), self.ksd_beta(), batch_size=spec.ksd_batch_size, max_batches=spec.ksd_batches
        )

    def target_metrics(self, x: Tensor, gen: torch.Generator) -> dict[str, float]:
        """KSD and moment-fit SymKL to the stationary target, with their floors (an exact sample of x's size)."""
        p = self.problem
        x = x.detach().to(torch.float64).cpu()
        exact = p.target().sample(x.shape[0], gen)
        out = {_col("ksd"): self.ksd(x), _col("ksd", part="floor"): self.ksd(exact)}
        moments = p.target_moments()
        if moments is not None:
            out[_col("symkl_moment_target")] = metrics.gaussian_symkl(moment_fit(x), moments)
            out[_col("symkl_moment_target", part="floor")] = metrics.gaussian_symkl(moment_fit(exact), moments)
        return out

    def sliced_energy(self, method, gen: torch.Generator) -> dict[str, float]:
        """Hertrich & Gruhlke's sliced energy distance of fresh model samples to the target, with its floor."""
        n, n_proj = self.spec.sliced_energy_samples, self.spec.sliced_energy_projections
        target = self.problem.target()
        x = method.sample(n, gen).to(torch.float64)
        return {
            _col("sliced_energy"): sliced_energy_distance(x, target.sample(n, gen), n_proj, gen),
            _col("sliced_energy", part="floor"): sliced_energy_floor(target, n, n_proj, gen),
        }

    def __call__(self, method, k: int, h: float) -> dict[str, float]:
        """Every metric of the method's current P_k."""
        problem, spec = self.problem, self.spec
        gen = torch.Generator().manual_seed((spec.seed * 1_000_003 + self.run_seed) * 10_007 + k)
        t = problem.time_of_step(k, h)
        pde = problem.reference(t)
        jko = problem.jko_reference(k, h)
        x = method.sample(spec.n_samples, gen).to(torch.float64)
        if not bool(torch.isfinite((x**2).sum(-1)).all()):  # also catches finite samples whose squares overflow
            raise FloatingPointError("non-finite (or overflowing) samples")
        row = law_metrics(pde, x, spec, gen)
        if jko is not None:
            row |= law_metrics(jko, x, spec, gen, against="jko")
            if isinstance(jko, GaussianLaw) and isinstance(pde, GaussianLaw):
                row |= discretisation_metrics(jko, pde)
        if not method.has_density and problem.dim <= 3:
            value, se = metrics.kde_symkl(pde, x[: spec.n_mc], gen)
            row |= {_col("symkl_kde"): value, _col("symkl_kde", part="se"): se}
        x_mc = log_p = None
        if method.has_density:  # one draw of (samples, log-densities) serves every density metric below
            x_mc, log_p = method.sample_with_log_density(spec.n_mc, gen)
            # SymKL needs both laws to share a support; a compactly supported reference (Barenblatt) makes it
            # +inf as soon as either puts mass outside: such problems report the two directions separately
            # in the porous metrics, with the mass outside the support as its own column
            if not problem.compact_support:
                row |= density_metrics(pde, x_mc, log_p, method, gen)
                if jko is not None:
                    row |= density_metrics(jko, x_mc, log_p, method, gen, against="jko")
        samples = x if x_mc is None else x_mc.to(torch.float64)
        if not problem.transient and isinstance(problem, StationaryProblem):
            row |= self.target_metrics(samples, gen)
            if log_p is not None:  # the target's density is normalised: log Z = 0 is the truth
                value, se = log_normaliser_estimate(problem.target().log_density(x_mc), log_p)
                row |= {_col("log_z"): value, _col("log_z", part="se"): se}
            if spec.sliced_energy_samples:
                row |= self.sliced_energy(method, gen)
        if isinstance(problem, EntropyProblem):
            if jko is not None:
                row |= porous_discretisation_metrics(jko, pde)
            row |= porous_metrics(
                pde,
                samples,
                model_log_density_at_samples=log_p,
                model_log_density=method.log_density if method.has_density else None,
                generator=gen,
            )
        for col in row:
            catalogue.parse(col)
        return {key: (float(v) if v is not None else math.nan) for key, v in row.items()}


def evaluate_step(problem, method, k: int, h: float, spec: EvalSpec, run_seed: int = 0) -> dict[str, float]:
    """Every metric of the method's current P_k: one call of a fresh :class:`Evaluator`."""
    return Evaluator(problem, spec, run_seed)(method, k, h)
