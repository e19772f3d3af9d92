r"""The one summary mechanism of tables and figures: cells, the resolution rule, paired ranking, timing cells.

**Cells** (:func:`summarise_runs`). A cell is the set of per-run values of one quantity for one (experiment,
method, d). Values are optionally put on log10 per run first. The cell's value is their mean; its 95% interval
is Student-t, mean ± t_{0.975, n-1} s / √n, given only for n >= 3 runs (with two runs the interval is
±12.7 s/√2, which says nothing a reader cannot see in the two runs themselves; they are returned for printing).
Values that are not finite, and non-positive values under log10, are left out of the mean and counted.

**Resolution** (:func:`resolve_cell`). A run is resolved when its value lies above its floor's 95% quantile
(:mod:`wgfbench.metrics.floors`). A cell of several runs is resolved when its value (the mean, on the cell's scale)
lies above the mean, on the same scale, of its runs' floor q95: for log10 cells, the mean of log10 values
against the mean of log10 q95 (the log of the geometric-mean floor q95). Why this rule:

* it compares the two numbers a table prints side by side (the cell value and the floor), so a reader can
  check every mark;
* each run carries its own floor (floors of metrics that are not affine-invariant depend on the instance, i.e.
  on the seed, and on the run's sample size), and the threshold averages them on the cell's scale;
* it is conservative: under the null of a perfect method the mean of R log10 floor draws has spread ~1/√R of one
  draw's, so its 95% quantile lies below the mean of the per-run log10 q95s; a cell is never called resolved
  by the averaging alone. It does not let one unlucky run veto a cell either (the count of resolved runs is
  reported beside it);
* a non-positive value under log10 (an estimate at noise level, e.g. a negative Monte-Carlo SymKL) lies below
  any positive floor: such a cell is unresolved.

The resolution of a table column (:func:`table_resolution`) is the largest cell threshold at that d: the
smallest error that every cell of the column would resolve.

**Paired ranking** (:func:`paired_comparison`). Instances are a function of (d, seed), so two methods run on the
same seeds face the same instances. Per seed both ran, the difference Δ = log10 v_method - log10 v_reference
(negative: the method has the smaller error); the mean of Δ with its Student-t interval (n >= 3) says whether the
difference is significant. Per seed, a *tie* is: both values unresolved, or |Δ| <= 2 √(s_m² + s_r²) with s the
evaluation noise of each log10 value (the spread of log10 v over evaluation samples for a fixed trained
model, :func:`log10_noise`); otherwise the lower error wins.

**Evaluation noise** (:func:`log10_noise`). For a metric quadratic in the estimation error (moment-fit SymKL,
W2^2, energy distance), n V at a law Q near P behaves like a noncentral χ² with p degrees of freedom and
noncentrality n ε, ε the true error: the floor has mean p/n and variance 2p/n^2, so
Var V = 2(p + 2 n ε)/n^2 = σ_f^2 (1 + 2 ε / μ_f), with μ_f, σ_f the floor's mean and sd, and ε ≈ (V - μ_f)_+
(the bias-corrected value). Hence s = sd(log10 V) = σ_f √(1 + 2 (V - μ_f)_+ / μ_f) / (V ln 10).

**Timing cells** (:func:`timing_summary`): median and interquartile range of the per-step times pooled over the
cell's steps and runs; per-step times are skewed (warm-up, compilation, machine noise), so no t-interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

MIN_RUNS_FOR_INTERVAL = 3
LEVEL = 0.95


# --- cells ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CellSummary:
    """Per-cell summary of per-run values (already on log10 when ``log10`` was asked).

    ``lo``/``hi``: the Student-t 95% interval, None for n < 3. ``runs``: the values that entered the mean, in the
    order given. ``n_invalid``: values left out (not finite, or <= 0 under log10).
    """

    mean: float
    lo: float | None
    hi: float | None
    n: int
    runs: tuple[float, ...]
    n_invalid: int = 0

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else 0.5 * (self.hi - self.lo)

    @property
    def has_interval(self) -> bool:
        return self.lo is not None


def to_scale(values: Iterable[float], log10: bool) -> np.ndarray:
    """Values as floats, log10 per value when asked; non-positive values under log10 become NaN (never clamped)."""
    v = np.asarray(list(values), dtype=np.float64)
    if not log10:
        return v
    out = np.full_like(v, np.nan)
    positive = np.isfinite(v) & (v > 0)
    out[positive] = np.log10(v[positive])
    return out


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval mean ± t_{(1+level)/2, n-1} s / √n of finite values (n >= 2)."""
    n = len(values)
    mean = float(values.mean())
    half = float(sps.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def summarise_runs(values: Iterable[float], log10: bool = False) -> CellSummary:
    """Mean of the finite per-run values (log10 per run first when asked); a t-interval for n >= 3 only."""
    v = to_scale(values, log10)
    ok = v[np.isfinite(v)]
    n = len(ok)
    mean = float(ok.mean()) if n else math.nan
    lo = hi = None
    if n >= MIN_RUNS_FOR_INTERVAL:
        lo, hi = t_interval(ok)
    return CellSummary(mean, lo, hi, n, tuple(float(x) for x in ok), int(len(v) - n))


def summarise_frame(df: pd.DataFrame, keys: Sequence[str], column: str, log10: bool = False) -> pd.DataFrame:
    """One row per group of ``keys``: mean, lo, hi (NaN for n < 3), n, n_invalid and the runs (a tuple)."""
    rows = []
    for group, g in df.groupby(list(keys), sort=True):
        s = summarise_runs(g[column], log10)
        group = group if isinstance(group, tuple) else (group,)
        rows.append(
            dict(
                zip(keys, group, strict=True),
                mean=s.mean,
                lo=math.nan if s.lo is None else s.lo,
                hi=math.nan if s.hi is None else s.hi,
                n=s.n,
                n_invalid=s.n_invalid,
                runs=s.runs,
            )
        )
    return pd.DataFrame(rows, columns=[*keys, "mean", "lo", "hi", "n", "n_invalid", "runs"])


# --- resolution ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Resolution:
    """A cell against its floor: resolved iff ``value > threshold`` (both on the cell's scale; module docstring)."""

    resolved: bool
    value: float
    threshold: float
    runs_resolved: int
    n: int


def resolve_cell(values: Sequence[float], floor_q95: Sequence[float], log10: bool = True) -> Resolution:
    """Apply the resolution rule to one cell: per-run values and their floors' 95% quantiles, paired by position.

    Runs whose value or floor is missing (NaN) are left out; a value <= 0 under log10 makes the cell unresolved.
    """
    if len(values) != len(floor_q95):
        raise ValueError(f"{len(values)} values but {len(floor_q95)} floors")
    raw = np.asarray(values, dtype=np.float64)
    q95 = np.asarray(floor_q95, dtype=np.float64)
    present = ~np.isnan(raw) & np.isfinite(q95)
    raw, q95 = raw[present], q95[present]
    n = len(raw)
    if n == 0:
        return Resolution(False, math.nan, math.nan, 0, 0)
    runs_resolved = int((raw > q95).sum())
    threshold = float(to_scale(q95, log10).mean())
    if log10 and bool((raw <= 0).any()):
        return Resolution(False, -math.inf, threshold, runs_resolved, n)
    value = float(to_scale(raw, log10).mean())
    return Resolution(bool(value > threshold), value, threshold, runs_resolved, n)


def table_resolution(thresholds: pd.DataFrame, dim: str = "dim", threshold: str = "threshold") -> pd.Series:
    """Per d, the largest cell threshold: the smallest error that every cell of that column resolves."""
    return thresholds.groupby(dim)[threshold].max()


# --- evaluation noise and paired ranking ----------------------------------------------------------------------------
def log10_noise(value: float, floor_mean: float, floor_sd: float) -> float:
    """sd of log10 V for one evaluation of a metric quadratic in the estimation error (module docstring).

    NaN where the value is not positive or the floor is unknown.
    """
    if not (value > 0 and floor_mean > 0 and floor_sd >= 0) or not math.isfinite(value):
        return math.nan
    excess = max(value - floor_mean, 0.0)
    return floor_sd * math.sqrt(1.0 + 2.0 * excess / floor_mean) / (value * math.log(10.0))


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A method against the reference method over the seeds both ran (module docstring).

    ``differences``: log10 v_method - log10 v_reference per seed of ``seeds`` (NaN where a value is <= 0).
    ``lo``/``hi``: Student-t 95% interval of their mean (None for fewer than 3 finite differences);
    ``significant``: the interval excludes 0. wins/ties/losses are the method's, per seed.
    """

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    lo: float | None
    hi: float | None
    n: int
    wins: int
    ties: int
    losses: int

    @property
    def significant(self) -> bool:
        return self.lo is not None and self.hi is not None and (self.hi < 0 or self.lo > 0)


def _per_seed(x: Mapping[int, float] | float | None, seeds: Sequence[int], default: float) -> np.ndarray:
    if x is None:
        return np.full(len(seeds), default)
    if isinstance(x, Mapping):
        return np.array([float(x.get(s, default)) for s in seeds])
    return np.full(len(seeds), float(x))


def paired_comparison(
    method: Mapping[int, float],
    reference: Mapping[int, float],
    method_q95: Mapping[int, float] | float | None = None,
    reference_q95: Mapping[int, float] | float | None = None,
    method_noise: Mapping[int, float] | float | None = None,
    reference_noise: Mapping[int, float] | float | None = None,
) -> PairedComparison:
    """Paired comparison by seed of two methods' errors (lower is better); see the module docstring.

    ``*_q95``: per-seed floor 95% quantiles (None: every value counts as resolved); ``*_noise``: per-seed sd of
    the log10 value (:func:`log10_noise`; None or NaN: 0, only exact equality ties then).
    """
    seeds = tuple(sorted(set(method) & set(reference)))
    vm = np.array([float(method[s]) for s in seeds])
    vr = np.array([float(reference[s]) for s in seeds])
    keep = ~np.isnan(vm) & ~np.isnan(vr)
    seeds = tuple(s for s, k in zip(seeds, keep, strict=True) if k)
    vm, vr = vm[keep], vr[keep]
    qm, qr = _per_seed(method_q95, seeds, -math.inf), _per_seed(reference_q95, seeds, -math.inf)
    sm, sr = _per_seed(method_noise, seeds, 0.0), _per_seed(reference_noise, seeds, 0.0)
    sm, sr = np.nan_to_num(sm, nan=0.0), np.nan_to_num(sr, nan=0.0)
    diff = to_scale(vm, True) - to_scale(vr, True)
    tolerance = 2.0 * np.sqrt(sm**2 + sr**2)
    wins = ties = losses = 0
    for i in range(len(seeds)):
        unresolved_m, unresolved_r = not vm[i] > qm[i], not vr[i] > qr[i]
        if unresolved_m and unresolved_r:
            ties += 1
        elif np.isfinite(diff[i]):
            if abs(diff[i]) <= tolerance[i]:
                ties += 1
            elif diff[i] < 0:
                wins += 1
            else:
                losses += 1
        elif vm[i] < vr[i]:  # a non-positive value (below any floor) against a resolved one
            wins += 1
        else:
            losses += 1
    finite = diff[np.isfinite(diff)]
    mean = float(finite.mean()) if len(finite) else math.nan
    lo = hi = None
    if len(finite) >= MIN_RUNS_FOR_INTERVAL:
        lo, hi = t_interval(finite)
    return PairedComparison(seeds, tuple(float(x) for x in diff), mean, lo, hi, len(finite), wins, ties, losses)


def ranking_table(
    runs: pd.DataFrame,
    reference_method: str,
    value: str,
    floor_q95: str | None = None,
    floor_mean: str | None = None,
    floor_sd: str | None = None,
    by: Sequence[str] = ("dim",),
) -> pd.DataFrame:
    """Paired comparison of every method against ``reference_method`` per group of ``by`` (e.g. experiment, dim).

    ``runs`` holds one row per run with columns method, seed, ``value`` and, when named, the floor's q95, mean and
    sd (the noise then comes from :func:`log10_noise`). One row per (group, method other than the reference).
    """

    def noise(frame: pd.DataFrame) -> dict[int, float] | None:
        if floor_mean is None or floor_sd is None:
            return None
        return {s: log10_noise(r[value], r[floor_mean], r[floor_sd]) for s, r in frame.iterrows()}

    out = []
    for group, g in runs.groupby(list(by), sort=True):
        group = group if isinstance(group, tuple) else (group,)
        ref = g[g["method"] == reference_method].set_index("seed")
        if ref.empty:
            continue
        for m, gm in g[g["method"] != reference_method].groupby("method", sort=False):
            gm = gm.set_index("seed")
            pc = paired_comparison(
                gm[value].to_dict(),
                ref[value].to_dict(),
                gm[floor_q95].to_dict() if floor_q95 else None,
                ref[floor_q95].to_dict() if floor_q95 else None,
                noise(gm),
                noise(ref),
            )
            out.append(
                dict(
                    zip(by, group, strict=True),
                    method=m,
                    reference=reference_method,
                    mean_diff=pc.mean,
                    lo=math.nan if pc.lo is None else pc.lo,
                    hi=math.nan if pc.hi is None else pc.hi,
                    n=pc.n,
                    significant=pc.significant,
                    wins=pc.wins,
                    ties=pc.ties,
                    losses=pc.losses,
                )
            )
    return pd.DataFrame(out)


# --- timing ----------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TimingSummary:
    """Median and interquartile range (25% and 75% quantiles) of per-step times pooled over steps and runs."""

    median: float
    q25: float
    q75: float
    n_steps: int
    n_runs: int

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25


def timing_summary(per_run_steps: Iterable[Iterable[float]]) -> TimingSummary:
    """Pool the finite per-step times of every run (one iterable per run) and take median and quartiles."""
    runs = [np.asarray(list(r), dtype=np.float64) for r in per_run_steps]
    runs = [r[np.isfinite(r)] for r in runs]
    runs = [r for r in runs if len(r)]
    if not runs:
        return TimingSummary(math.nan, math.nan, math.nan, 0, 0)
    pooled = np.concatenate(runs)
    q25, med, q75 = np.quantile(pooled, [0.25, 0.5, 0.75])
    return TimingSummary(float(med), float(q25), float(q75), len(pooled), len(runs))
