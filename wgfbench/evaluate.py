"""Metrics of one JKO iterate P_k against the problem's exact references, each with its noise floor.

For a step k with flow time t = k h, every metric is computed against the exact PDE solution P_t (the total
error) and, where the problem has one, against the exact JKO iterate P_k^JKO of the same step size (the
method's optimisation error); the exact JKO iterate's own distance to P_t, the time-discretisation error, is
stored beside them. Column names follow :mod:`wgfbench.metrics.catalogue`, and only catalogued columns are emitted.

**Resolution.** A method that holds a particle set (:meth:`~wgfbench.methods.base.JKOMethod.evaluation_particles`)
is evaluated on all of it for the moment-fit metrics (accumulated in float64; ``eval.max_particles`` caps it where
a suite asks), so a table resolves what the method affords; a method without one is sampled ``n_samples`` times.
The sample sizes are recorded (``n_moment``, ``n_sample``, ``n_density``). Metrics whose cost grows fast use a
subsample: exact OT, sliced W2 and energy distance ``n_w2`` points; KDE and Monte-Carlo SymKL ``n_mc`` points.

**Floors as distributions** (:mod:`wgfbench.metrics.floors`): a metric's floor is its law for a perfect method
with the same sample sizes, stored as ``<col>_floor`` (its mean), ``<col>_floor_sd`` and ``<col>_floor_q95``; a
value is resolved when it lies above the q95 (:mod:`wgfbench.reports.stats`). The moment-fit SymKL floor is in
closed form and its exactly unbiased estimate is stored as ``symkl_moment_corrected``; the Bures floor is a
leading-order expansion; the Monte-Carlo SymKL floor follows from its own standard error; every other floor is
simulated (``eval.floor_reps`` >= 20 repetitions between exact samples, cached per law and sample size in memory and
in the run's floor cache folder) at the steps the tables and figures report (``eval.floor_steps``: the step nearest
``report_t`` and the final step; ``all``: every evaluated step).

What is computed (:mod:`wgfbench.metrics`):

* ``symkl_moment``, ``bures_w2_moment``: closed forms on the moment fit (Gaussian references only);
* ``w2``: exact OT (POT ``emd2``), ``sw2``: sliced W2 (256 fixed directions), ``energy``: energy distance;
* ``symkl_mc`` (+ ``_se``): Monte-Carlo SymKL on ``n_mc`` samples, for methods with a density (not for compactly
  supported references, where it is undefined: see the porous metrics);
* ``symkl_kde`` (+ ``_se``): the same with a Gaussian KDE of all the particles (or ``n_samples`` samples) as the
  model density, evaluated at ``n_mc`` points, for methods without a density in d <= 3 (Mokrov et al.'s
  particle-method columns: their KDE is fitted on all the particles; KDE bias included, and in the floor);
* stationary targets (:class:`~wgfbench.problems.base.StationaryProblem`): ``ksd`` (kernel Stein discrepancy with
  the target's score) and ``symkl_moment_target`` (moment fits against the target's exact moments), and, for
  methods with densities, ``log_z`` (+ ``_se``): the log-normaliser estimate -E[U + log p] (truth 0: the target's
  density is normalised; :mod:`wgfbench.metrics.log_normaliser`); where the suite asks
  (``eval.sliced_energy_samples``), ``sliced_energy``, Hertrich & Gruhlke's sliced energy distance;
* generalised-entropy problems: the porous-medium metrics of :mod:`wgfbench.metrics.porous`;
* Jensen-Shannon problems (``functional == "jsd"``): ``jsd_knn`` (+ ``_se``), the divergence D_f(P_k || Q) of the
  method's samples by the kNN estimator of :func:`wgfbench.metrics.jsd.jsd_knn` (at most ``n_samples`` of them,
  against as many exact samples of Q), whose floor is the same estimate on exact samples of P_t (so the
  estimator's downward bias is in the floor: a value above its q95 lags the flow), and ``jsd_exact``, the exact
  flow's D_f(P_t || Q) by quadrature on the reference grid. Along a run ``jsd_knn`` must decrease (it is the
  gradient flow of D_f).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch import Tensor

from wgfbench import metrics
from wgfbench.metrics import catalogue, floors
from wgfbench.metrics.log_normaliser import log_normaliser_estimate
from wgfbench.metrics.porous import gen_entropy_rel_err_knn as knn_rel_err
from wgfbench.metrics.porous import (
    porous_discretisation_metrics,
    porous_metrics,
    second_moment_rel_err,
)
from wgfbench.metrics.sliced_energy import sliced_energy_distance, sliced_energy_floor
from wgfbench.params import Count, NonNegCount, Range, SampleSize
from wgfbench.problems.base import EntropyProblem, Law, StationaryProblem
from wgfbench.problems.gaussian import GaussianLaw, moment_fit

KSD_BETA_SAMPLES = 10_000


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """How a run is evaluated: sample sizes per metric family, every how many steps, the evaluation seed, and how
    the noise floors are computed (module docstring)."""

    n_samples: SampleSize = 10_000  # moment fits of a method that holds no particle set
    n_w2: SampleSize = 1_000
    n_mc: SampleSize = 4_096
    every: Count = 1
    seed: Annotated[int, Range(0, 2**31 - 1)] = 2024
    max_particles: NonNegCount = 0  # moment fits on at most this many of a method's particles (0: all)
    floor_reps: Annotated[int, Range(20, 100_000)] = 20  # repetitions of a simulated floor
    floor_steps: Literal["report", "all"] = "report"  # where simulated floors are computed
    ksd_batch_size: SampleSize = 1000  # the KSD is averaged over disjoint batches of this size (Fan et al.: 1000)
    ksd_batches: Count = 10  # ... at most this many (Fan et al.: 10)
    # Hertrich & Gruhlke's sliced energy distance to a stationary target: model and exact samples each (0: off;
    # their protocol: 50,000) and projections (theirs: 1000)
    sliced_energy_samples: NonNegCount = 0
    sliced_energy_projections: Count = 1000
    # the sample metrics: exact OT, sliced W2, energy distance on n_w2 points, and the KDE SymKL of a method without a
    # density (d <= 3); exact OT imports POT, which takes seconds, and the KDE's floor costs a KDE per repetition:
    # a suite may leave either out
    sample_metrics: tuple[Literal["w2", "sw2", "energy", "kde"], ...] = ("w2", "sw2", "energy", "kde")


def _col(name: str, against: str = "pde", part: str | None = None) -> str:
    return catalogue.column(name, against, part)  # a KeyError or ValueError here is an uncatalogued column


def _floor_columns(col: str, floor: floors.FloorDistribution) -> dict[str, float]:
    return {f"{col}_floor": floor.mean, f"{col}_floor_sd": floor.sd, f"{col}_floor_q95": floor.q95}


SAMPLE_METRICS: tuple[tuple[str, metrics.SampleMetric], ...] = (
    ("w2", metrics.w2_exact),
    ("sw2", metrics.sliced_w2),
    ("energy", metrics.energy_distance),
)


def discretisation_metrics(jko: GaussianLaw, pde: GaussianLaw) -> dict[str, float]:
    """Closed-form distance of the exact JKO iterate to the PDE solution (time-discretisation error)."""
    return {
        _col("symkl_moment", part="jko_pde"): metrics.gaussian_symkl(jko, pde),
        _col("bures_w2_moment", part="jko_pde"): metrics.bures_w2(jko, pde),
    }


class Evaluator:
    """Evaluates one run's iterates (module docstring).

    Holds what is computed once per run (the KSD bandwidth) and the floor cache (``floor_cache``: a folder shared by
    the runs of a suite, so runs of the same instance, time and sample size share their simulated floors).
    ``report_steps``: the steps whose simulated floors are computed when ``floor_steps`` is "report".
    Deterministic given (spec.seed, run_seed, k); different runs and steps draw independent samples.
    """

    def __init__(
        self,
        problem,
        spec: EvalSpec,
        run_seed: int = 0,
        floor_cache: str | Path | None = None,
        report_steps: frozenset[int] | None = None,
    ):
        self.problem, self.spec, self.run_seed = problem, spec, int(run_seed)
        self.spec = dataclasses.replace(spec, sample_metrics=tuple(spec.sample_metrics))  # a YAML list, hashable
        self.cache = floors.FloorCache(floor_cache)
        self.report_steps = report_steps
        self._ksd_beta: float | None = None

    # --- settings of the floors ------------------------------------------------------------------------------
    def _simulate_floors(self, k: int) -> bool:
        return self.spec.floor_steps == "all" or self.report_steps is None or k in self.report_steps

    def _sim(self) -> dict:
        return {"n_reps": self.spec.floor_reps, "seed": self.spec.seed, "cache": self.cache}

    # --- stationary targets ------------------------------------------------------------------------------------
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

    def target_metrics(self, x: Tensor, gen: torch.Generator, simulate: bool = True) -> dict[str, float]:
        """KSD and moment-fit SymKL to the stationary target, with their floors (exact samples of x's size)."""
        p, spec = self.problem, self.spec
        n_ksd = min(x.shape[0], spec.ksd_batch_size * spec.ksd_batches)
        out = {_col("ksd"): self.ksd(x[:n_ksd])}
        if simulate:
            params = {"beta": self.ksd_beta(), "batch": spec.ksd_batch_size, "batches": spec.ksd_batches}
            floor = floors.statistic_floor("ksd", self.ksd, p.target(), n_ksd, params=params, **self._sim())
            out |= _floor_columns(_col("ksd"), floor)
        moments = p.target_moments()
        if moments is not None:
            col = _col("symkl_moment_target")
            out[col] = metrics.gaussian_symkl(moment_fit(x), moments)
            if simulate:

                def fit_symkl(y: Tensor) -> float:
                    return metrics.gaussian_symkl(moment_fit(y), moments)

                floor = floors.statistic_floor(col, fit_symkl, p.target(), x.shape[0], **self._sim())
                out |= _floor_columns(col, floor)
        return out

    def sliced_energy(self, method, gen: torch.Generator, simulate: bool) -> dict[str, float]:
        """Hertrich & Gruhlke's sliced energy distance of fresh model samples to the target, with its floor."""
        n, n_proj = self.spec.sliced_energy_samples, self.spec.sliced_energy_projections
        target = self.problem.target()
        x = method.sample(n, gen).to(torch.float64)
        col = _col("sliced_energy")
        out = {col: sliced_energy_distance(x, target.sample(n, gen), n_proj, gen)}
        if simulate:
            floor = floors.simulated_floor(
                col, target, n, lambda g: sliced_energy_floor(target, n, n_proj, g), params={"proj": n_proj},
                **self._sim(),
            )  # fmt: skip
            out |= _floor_columns(col, floor)
        return out

    # --- the metrics of one reference ---------------------------------------------------------------------------
    def law_metrics(
        self, reference: Law, fit: GaussianLaw | None, n_fit: int, x: Tensor, gen, against: str, simulate: bool
    ) -> dict[str, float]:
        """Moment-fit metrics (from the fit of the n_fit evaluation particles) and sample metrics (x) against
        ``reference``, with their floors."""
        out: dict[str, float] = {}
        if reference.is_gaussian and fit is not None:
            col = _col("symkl_moment", against)
            out[col] = metrics.gaussian_symkl(fit, reference)
            out[_col("symkl_moment", against, "corrected")] = floors.symkl_unbiased_from_fit(fit, n_fit, reference)
            out |= _floor_columns(col, floors.symkl_moment_floor(reference.dim, n_fit))
            col = _col("bures_w2_moment", against)
            out[col] = metrics.bures_w2(fit, reference)
            out |= _floor_columns(col, floors.bures_w2_moment_floor(reference.cov, n_fit))
        for name, fn in SAMPLE_METRICS:
            if name not in self.spec.sample_metrics:
                continue
            col = _col(name, against)
            out[col] = fn(reference, x, gen)
            if simulate:
                out |= _floor_columns(col, floors.sample_metric_floor(col, fn, reference, x.shape[0], **self._sim()))
        return out

    def density_metrics(self, reference: Law, x: Tensor, log_p: Tensor, method, gen, against: str) -> dict:
        """Monte-Carlo SymKL from the method's log-densities (both directions), its standard error and floor."""
        value, se = metrics.mc_symkl(reference, x, log_p, method.log_density, gen)
        col = _col("symkl_mc", against)
        return {col: value, _col("symkl_mc", against, "se"): se} | _floor_columns(col, floors.standard_error_floor(se))

    # --- one step ---------------------------------------------------------------------------------------------------
    def __call__(self, method, k: int, h: float) -> dict[str, float]:
        """Every metric of the method's current P_k."""
        problem, spec = self.problem, self.spec
        gen = torch.Generator().manual_seed((spec.seed * 1_000_003 + self.run_seed) * 10_007 + k)
        simulate = self._simulate_floors(k)
        t = problem.time_of_step(k, h)
        pde = problem.reference(t)
        jko = problem.jko_reference(k, h)
        held = method.evaluation_particles()
        if held is not None and spec.max_particles and held.shape[0] > spec.max_particles:
            held = held[: spec.max_particles]
        x_all = held if held is not None else method.sample(spec.n_samples, gen)
        n_all = x_all.shape[0]
        if not bool(torch.isfinite((x_all.to(torch.float64) ** 2).sum(-1)).all()):  # also overflowing squares
            raise FloatingPointError("non-finite (or overflowing) samples")
        # the sample metrics' subsample: a random subset of the particles, or the first fresh samples
        pick = torch.randperm(n_all, generator=gen)[: spec.n_w2] if held is not None else slice(0, spec.n_w2)
        x = x_all[pick].to(torch.float64).cpu()
        fit = moment_fit(x_all) if pde.is_gaussian or (jko is not None and jko.is_gaussian) else None
        row = {"n_moment": float(n_all), "n_sample": float(x.shape[0])}
        row |= self.law_metrics(pde, fit, n_all, x, gen, "pde", simulate)
        if jko is not None:
            row |= self.law_metrics(jko, fit, n_all, x, gen, "jko", simulate)
            if isinstance(jko, GaussianLaw) and isinstance(pde, GaussianLaw):
                row |= discretisation_metrics(jko, pde)
        if not method.has_density and problem.dim <= 3 and "kde" in spec.sample_metrics:
            value, se = metrics.kde_symkl(pde, x_all, gen, n_eval=spec.n_mc)
            col = _col("symkl_kde")
            row |= {col: value, _col("symkl_kde", part="se"): se}
            if simulate:
                floor = floors.kde_symkl_floor(pde, n_all, n_eval=spec.n_mc, **self._sim())
                row |= _floor_columns(col, floor)
        x_mc = log_p = None
        if method.has_density:  # one draw of (samples, log-densities) serves every density metric below
            x_mc, log_p = method.sample_with_log_density(spec.n_mc, gen)
            row["n_density"] = float(spec.n_mc)
            # SymKL needs both laws to share a support; a compactly supported reference (Barenblatt) makes it
            # +inf as soon as either puts mass outside: such problems report the two directions separately
            # in the porous metrics, with the mass outside the support as its own column
            if not problem.compact_support:
                row |= self.density_metrics(pde, x_mc, log_p, method, gen, "pde")
                if jko is not None:
                    row |= self.density_metrics(jko, x_mc, log_p, method, gen, "jko")
        if not problem.transient and isinstance(problem, StationaryProblem):
            row |= self.target_metrics(x_all.to(torch.float64).cpu(), gen, simulate)
            if log_p is not None:  # the target's density is normalised: log Z = 0 is the truth
                value, se = log_normaliser_estimate(problem.target().log_density(x_mc), log_p)
                row |= {_col("log_z"): value, _col("log_z", part="se"): se}
            if spec.sliced_energy_samples:
                row |= self.sliced_energy(method, gen, simulate)
        if isinstance(problem, EntropyProblem):
            if jko is not None:
                row |= porous_discretisation_metrics(jko, pde)
            samples = x_all if x_mc is None else x_mc
            row |= porous_metrics(
                pde,
                samples.to(torch.float64).cpu(),
                model_log_density_at_samples=log_p,
                model_log_density=method.log_density if method.has_density else None,
                generator=gen,
            )
            # the second moment is a moment statistic: like the moment fits it uses every particle the method
            # holds (issue 11 item 1), with its floor at that sample size; the kNN and density-based metrics keep
            # the density sample (their cost grows with n)
            row["second_moment_rel_err"] = second_moment_rel_err(pde, x_all)
            if simulate:
                row |= self.porous_floors(pde, n_moment=n_all, n_knn=samples.shape[0])
        if getattr(problem, "functional", None) == "jsd":
            row |= self.jsd_metrics(pde, t, x_all, gen, simulate)
        for col in row:
            catalogue.parse(col)
        return {key: (float(v) if v is not None else math.nan) for key, v in row.items()}

    def jsd_metrics(self, pde: Law, t: float, x_all: Tensor, gen: torch.Generator, simulate: bool) -> dict:
        """D_f(P_k || Q) by the kNN estimator on at most ``n_samples`` of the method's samples (against as many
        exact samples of Q), its floor (the same estimate with exact samples of P_t, fresh samples of Q each
        repetition: a function of the law and n alone, so cached floors do not depend on which run came first) and
        the exact flow's value."""
        from wgfbench.metrics.jsd import KNN_K, jsd_knn

        q = self.problem.target()
        n = min(x_all.shape[0], self.spec.n_samples)

        def estimate(samples: Tensor, g: torch.Generator) -> tuple[float, float]:
            samples = samples.to(torch.float64).cpu()
            y = q.sample(n, g).to(torch.float64).cpu()
            return jsd_knn(samples, y, q.log_density(samples), q.log_density(y))

        pick = torch.randperm(x_all.shape[0], generator=gen)[:n]
        value, se = estimate(x_all[pick], gen)
        row = {"jsd_knn": value, "jsd_knn_se": se}
        if hasattr(self.problem, "divergence"):
            row["jsd_exact"] = float(self.problem.divergence(t))
        if simulate:
            floor = floors.simulated_floor(
                "jsd_knn", pde, n, lambda g: estimate(pde.sample(n, g), g)[0], params={"k": KNN_K}, **self._sim()
            )
            row |= _floor_columns("jsd_knn", floor)
        return row

    def porous_floors(self, pde, n_moment: int, n_knn: int) -> dict[str, float]:
        """Simulated floors of the porous sample metrics: the second moment's at the ``n_moment`` particles it is
        computed from, the kNN generalised entropy's at its ``n_knn`` samples."""
        out = {}
        for name, stat, n in (
            ("second_moment_rel_err", second_moment_rel_err, n_moment),
            ("gen_entropy_rel_err_knn", knn_rel_err, n_knn),
        ):
            floor = floors.statistic_floor(name, lambda y, stat=stat: stat(pde, y), pde, n, **self._sim())
            out |= _floor_columns(name, floor)
        return out


def evaluate_step(
    problem, method, k: int, h: float, spec: EvalSpec, run_seed: int = 0, floor_cache: str | Path | None = None
) -> dict[str, float]:
    """Every metric of the method's current P_k: one call of a fresh :class:`Evaluator`."""
    return Evaluator(problem, spec, run_seed, floor_cache)(method, k, h)
