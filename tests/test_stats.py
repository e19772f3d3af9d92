"""The summary mechanism: intervals and their edge cases, the resolution rule on constructed cells, paired ranking
where one method is known to be better and where none is, the evaluation-noise model, timing cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from wgfbench import metrics
from wgfbench.metrics import floors
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import make_ou
from wgfbench.reports import stats


# --- cells ------------------------------------------------------------------------------------------------------------
def test_no_interval_below_three_runs_and_the_runs_are_returned() -> None:
    empty = stats.summarise_runs([])
    assert math.isnan(empty.mean) and empty.n == 0 and not empty.has_interval
    one = stats.summarise_runs([0.5])
    assert (one.mean, one.n, one.runs, one.lo, one.hi) == (0.5, 1, (0.5,), None, None)
    two = stats.summarise_runs([1.0, 3.0])
    assert two.mean == 2.0 and two.runs == (1.0, 3.0) and two.half_width is None
    three = stats.summarise_runs([1.0, 2.0, 4.0])
    lo, hi = sps.t.interval(0.95, 2, loc=np.mean([1, 2, 4]), scale=sps.sem([1, 2, 4]))
    assert three.lo == pytest.approx(lo, rel=1e-12) and three.hi == pytest.approx(hi, rel=1e-12)


def test_nan_and_non_positive_values_are_left_out_and_counted() -> None:
    s = stats.summarise_runs([1e-3, math.nan, 1e-1, math.inf], log10=False)
    assert s.n == 2 and s.n_invalid == 2 and s.mean == pytest.approx(0.0505)
    # log10 per run: the mean of log10 values, not log10 of the mean; <= 0 is left out (never clamped)
    s = stats.summarise_runs([1e-3, 1e-1, 0.0, -2e-4, math.nan, 1e-2], log10=True)
    assert s.n == 3 and s.n_invalid == 3 and s.mean == pytest.approx(-2.0) and s.runs == (-3.0, -1.0, -2.0)
    # three NaN among five: two left, so no interval any more
    assert not stats.summarise_runs([1.0, math.nan, math.nan, 2.0, math.nan]).has_interval


def test_t_interval_covers_the_mean_at_its_level_with_three_runs() -> None:
    """Coverage ~95% for n = 3 normal runs; a normal (z) interval would cover ~80% and fail this test."""
    rng = np.random.default_rng(0)
    draws = rng.normal(1.0, 2.0, size=(4000, 3))
    covered = [s.lo <= 1.0 <= s.hi for s in map(stats.summarise_runs, draws)]
    assert 0.935 < np.mean(covered) < 0.965


def test_summarise_frame_gives_one_row_per_cell() -> None:
    df = pd.DataFrame(
        dict(method=["a"] * 3 + ["b"] * 2, dim=[2] * 5, value=[1e-2, 1e-3, 1e-4, 1e-1, 1.0], seed=[0, 1, 2, 0, 1])
    )
    out = stats.summarise_frame(df, ["method", "dim"], "value", log10=True).set_index("method")
    assert out.loc["a", "mean"] == pytest.approx(-3.0) and out.loc["a", "n"] == 3 and out.loc["a", "lo"] < -3
    assert math.isnan(out.loc["b", "lo"]) and out.loc["b", "runs"] == (-1.0, 0.0)


# --- resolution -------------------------------------------------------------------------------------------------------
def test_resolution_rule_on_constructed_cells() -> None:
    q95 = [1e-3] * 4
    above = stats.resolve_cell([1e-2, 2e-2, 5e-3, 3e-2], q95)
    assert above.resolved and above.runs_resolved == 4 and above.threshold == pytest.approx(-3.0)
    below = stats.resolve_cell([5e-4, 8e-4, 2e-4, 9e-4], q95)
    assert not below.resolved and below.runs_resolved == 0
    # mixed: one run above its floor does not resolve a cell whose mean sits below the floor
    mixed = stats.resolve_cell([2e-3, 5e-4, 4e-4, 6e-4], q95)
    assert not mixed.resolved and mixed.runs_resolved == 1
    # nor does one unlucky run veto a cell well above its floor
    veto = stats.resolve_cell([1e-1, 1e-1, 1e-1, 8e-4], q95)
    assert veto.resolved and veto.runs_resolved == 3
    # a non-positive value (an estimate at noise level) makes the cell unresolved
    assert not stats.resolve_cell([1e-1, 1e-1, -1e-5], [1e-3] * 3).resolved
    # per-run floors: the threshold is the mean log10 q95 of the cell's own runs
    own = stats.resolve_cell([2e-3, 2e-3], [1e-3, 1e-2])
    assert own.threshold == pytest.approx(-2.5) and not own.resolved
    # missing values or floors are left out; nothing left: unresolved
    assert stats.resolve_cell([math.nan, 1e-1], [1e-3, math.nan]).n == 0
    # linear scale for metrics that are not put on log10 (e.g. a signed KSD^2)
    lin = stats.resolve_cell([-1e-4, 3e-3], [1e-3, 1e-3], log10=False)
    assert lin.resolved and lin.value == pytest.approx(1.45e-3)
    with pytest.raises(ValueError):
        stats.resolve_cell([1.0], [1.0, 2.0])


@pytest.mark.parametrize("runs", [1, 3, 5])
def test_resolution_rule_rarely_resolves_a_perfect_method_and_always_a_clear_error(runs: int) -> None:
    """Cells of exact floor draws (a perfect method: moment-fit SymKL, d = 2, n = 1000) are resolved at most ~5% of
    the time (exactly 5% for one run, less for more: the rule is conservative); a cell whose error is 3x the q95 is
    resolved always."""
    d, n = 2, 1000
    floor = floors.symkl_moment_floor(d, n)
    mean, var = floors.symkl_moment_floor_moments(d, n)
    rng = np.random.default_rng(runs)
    draws = rng.gamma(mean**2 / var, var / mean, size=(20_000, runs))  # the floor's law (Gamma, tested in floors)
    rate = np.mean([stats.resolve_cell(c, [floor.q95] * runs).resolved for c in draws])
    assert rate < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20_000)
    if runs == 1:
        assert rate > 0.05 - 3 * math.sqrt(0.05 * 0.95 / 20_000)
    assert all(stats.resolve_cell(c + 3 * floor.q95, [floor.q95] * runs).resolved for c in draws[:2000])


def test_table_resolution_is_the_largest_cell_threshold_per_dimension() -> None:
    cells = pd.DataFrame(dict(dim=[2, 2, 4, 4], threshold=[-4.0, -3.5, -3.0, -3.2]))
    res = stats.table_resolution(cells)
    assert res.to_dict() == {2: -3.5, 4: -3.0}


# --- evaluation noise -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3])
def test_log10_noise_matches_the_spread_of_moment_symkl_over_evaluation_samples(shift: float) -> None:
    """A fixed law Q (P shifted and scaled) scored on 600 independent samples of n = 2000: the predicted sd of
    log10 SymKL is within 12% of the simulated one, from the floor (shift 0) to 100 times above it."""
    d, n = 4, 2000
    p_law = make_ou(d, 0).reference(0.5)
    q_law = GaussianLaw(p_law.mean + shift, p_law.cov * (1 + shift))
    floor = floors.symkl_moment_floor(d, n)
    gen = torch.Generator().manual_seed(7)
    values = np.array([metrics.symkl_moment(p_law, q_law.sample(n, gen)) for _ in range(600)])
    predicted = float(np.median([stats.log10_noise(v, floor.mean, floor.sd) for v in values]))
    assert predicted == pytest.approx(float(np.log10(values).std()), rel=0.12)


def test_log10_noise_is_nan_where_undefined() -> None:
    assert math.isnan(stats.log10_noise(-1e-3, 1e-3, 1e-3)) and math.isnan(stats.log10_noise(1e-2, math.nan, 1e-3))


# --- paired comparison ------------------------------------------------------------------------------------------------
def paired_case(rng: np.random.Generator, effect: float, seeds: int = 6) -> tuple[dict, dict]:
    """Errors of two methods on the same seeds: a large instance effect (sd 0.5 decade, shared by both methods on a
    seed) plus each run's own noise (sd 0.05 decade); the method is ``effect`` decades below the reference."""
    instance = rng.normal(-2.0, 0.5, seeds)
    ref = 10.0 ** (instance + rng.normal(0, 0.05, seeds))
    method = 10.0 ** (instance - effect + rng.normal(0, 0.05, seeds))
    return dict(enumerate(method)), dict(enumerate(ref))


def test_paired_ranking_finds_the_better_method_that_an_unpaired_comparison_misses() -> None:
    rng = np.random.default_rng(3)
    method, ref = paired_case(rng, effect=0.3)
    pc = stats.paired_comparison(method, ref, 1e-5, 1e-5, 0.02, 0.02)
    assert pc.significant and pc.hi < 0 and pc.mean == pytest.approx(-0.3, abs=0.1)
    assert (pc.wins, pc.ties, pc.losses) == (6, 0, 0) and pc.seeds == tuple(range(6))
    # the cells' own intervals overlap: without pairing the difference would not be significant
    a = stats.summarise_runs(list(method.values()), log10=True)
    b = stats.summarise_runs(list(ref.values()), log10=True)
    assert a.hi > b.lo


def test_paired_ranking_reports_no_difference_when_there_is_none() -> None:
    """Same law for both: the paired interval excludes 0 in ~5% of cases (the test's level), no more."""
    rng = np.random.default_rng(4)
    significant = [stats.paired_comparison(*paired_case(rng, effect=0.0)).significant for _ in range(3000)]
    assert np.mean(significant) < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 3000)
    # with the evaluation noise stated (0.05 decade each), most per-seed differences are ties
    pc = stats.paired_comparison(*paired_case(rng, effect=0.0), method_noise=0.05, reference_noise=0.05)
    assert pc.ties >= 5


def test_ties_when_both_are_unresolved_and_only_common_seeds_count() -> None:
    method = {0: 1e-5, 1: 2e-5, 2: 1e-2, 5: 1e-3}
    ref = {0: 5e-5, 1: 1e-6, 2: 1e-1, 3: 1e-1}
    pc = stats.paired_comparison(method, ref, method_q95=1e-4, reference_q95=1e-4)
    assert pc.seeds == (0, 1, 2)  # seeds 3 and 5 ran for one method only
    assert (pc.wins, pc.ties, pc.losses) == (1, 2, 0)  # seeds 0, 1 both at the floor: ties; seed 2: a win
    assert pc.n == 3 and pc.differences[2] == pytest.approx(-1.0)
    # a non-positive value has no log10 difference but is below any floor: it wins against a resolved value
    pc = stats.paired_comparison({0: -1e-4, 1: 1e-2}, {0: 1e-2, 1: 1e-2}, 1e-3, 1e-3)
    assert math.isnan(pc.differences[0]) and (pc.wins, pc.ties, pc.losses) == (1, 1, 0) and pc.n == 1
    assert pc.lo is None and not pc.significant  # fewer than 3 differences: no interval


def test_ranking_table_per_dimension() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for dim, effect in ((2, 0.5), (4, 0.0)):
        method, ref = paired_case(rng, effect=effect)
        for name, values in (("variational_jko", method), ("exact_jko", ref), ("identity", ref)):
            for seed, v in values.items():
                v = v * 30 if name == "identity" else v
                rows.append(dict(method=name, dim=dim, seed=seed, value=v, q95=1e-5, fmean=5e-6, fsd=3e-6))
    table = stats.ranking_table(pd.DataFrame(rows), "variational_jko", "value", "q95", "fmean", "fsd")
    t = table.set_index(["dim", "method"])
    assert set(t.index) == {(2, "exact_jko"), (2, "identity"), (4, "exact_jko"), (4, "identity")}
    assert t.loc[(2, "exact_jko"), "mean_diff"] > 0.3 and t.loc[(2, "exact_jko"), "significant"]
    assert t.loc[(2, "exact_jko"), "losses"] == 6  # the exact JKO loses to the centrepiece on every seed
    assert t.loc[(4, "identity"), "mean_diff"] == pytest.approx(math.log10(30), abs=0.1)


# --- timing -----------------------------------------------------------------------------------------------------------
def test_timing_cells_are_median_and_iqr_over_steps_and_runs() -> None:
    s = stats.timing_summary([[1.0, 2.0, 3.0, 100.0], [2.0, 2.5, math.nan]])
    pooled = [1.0, 2.0, 3.0, 100.0, 2.0, 2.5]
    assert s.median == pytest.approx(np.median(pooled)) and (s.n_steps, s.n_runs) == (6, 2)
    assert (s.q25, s.q75) == pytest.approx(tuple(np.quantile(pooled, [0.25, 0.75])))
    assert s.iqr < 5  # the 100 s outlier (a compilation step) moves neither
    assert math.isnan(stats.timing_summary([[], [math.nan]]).median)
