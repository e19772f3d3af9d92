"""Tables and figures from one summary mechanism: constructed records with known answers.

* the resolution rule marks a cell below its floor's 95% quantile `≤ floor` and one above it not;
* a figure's band is the table's interval for the same cell (both from wgfbench.reports.stats);
* cells never merge runs of different configurations, and an ok run whose value at the report step is not finite
  is its own status, never replaced by another step's value;
* the paired ranking finds the method that is better on every seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from wgfbench.reports import figures, stats, tables


def records(values: dict[str, list[float]], q95: float = 1e-3, dim: int = 2, params: str = "{}") -> pd.DataFrame:
    """Records of runs with symkl_moment = value at the report step (k = 2, t = 0.2) and floor q95 ``q95``."""
    rows = []
    for method, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            for k in (0, 1, 2):
                rows.append(
                    dict(
                        suite="s", experiment="e", problem="ou", method=method, dim=dim, seed=seed, k=k, t=0.1 * k,
                        report_t=0.2, h=0.1, n_steps=2, problem_params="{}", method_params=params, eval_params="{}",
                        status="ok", symkl_moment=v if k == 2 else 10 * v, symkl_moment_floor=q95 / 3,
                        symkl_moment_floor_sd=q95 / 4, symkl_moment_floor_q95=q95,
                        time_eval_s=0.01, time_step_s=0.5 + 0.1 * k if k else np.nan,
                    )
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_resolution_rule_marks_cells_below_their_floor() -> None:
    df = records({"variational_jko": [1e-2, 2e-2, 3e-2], "exact_jko": [5e-4, 4e-4, 6e-4]}, q95=1e-3)
    s = tables.summary(df)
    cells = s[s["quantity"] == "symkl_moment"].set_index("method")
    assert bool(cells.loc["variational_jko", "resolved"]) and not bool(cells.loc["exact_jko", "resolved"])
    assert math.isclose(cells.loc["exact_jko", "threshold"], -3.0)
    text = tables.markdown(df)
    assert "| exact_jko | ≤ floor (" in text and "[floor q95 -3.00]" in text
    assert "| variational_jko | -1.74 ± " in text
    assert "Resolution (log10 SymKL (moment fit) to the PDE solution): the smallest value every cell" in text


def test_every_table_states_its_reproducibility_tolerance_or_that_it_was_not_measured() -> None:
    """A table with a measured fp spread states it; one without says it was not measured (issue 11 item 6)."""
    df = records({"variational_jko": [1e-2, 2e-2, 3e-2], "exact_jko": [5e-4, 4e-4, 6e-4]})
    assert tables.NO_SPREAD_LINE in tables.markdown(df)
    spread = {
        "method": "variational_jko", "experiment": "e", "metric": "symkl_moment",
        "perturbations": {"threads2": {"env": {}, "threads": 2}},
        "summary": {"all": {"runs": 3, "run_median": 0.1, "run_max": 0.5, "cell_max": 0.2}},
    }  # fmt: skip
    text = tables.markdown(df, spread=spread)
    assert tables.NO_SPREAD_LINE not in text and "Reproducibility: re-running the variational_jko runs" in text


def test_a_figure_band_is_the_table_interval() -> None:
    df = records({"variational_jko": [1e-2, 2e-2, 5e-2, 3e-2], "exact_jko": [1e-3, 2e-3, 4e-3, 3e-3]})
    s = tables.summary(df)
    at_t = tables.at_report_time(df, "symkl_moment")
    drawn = figures._cells(at_t, "dim", "symkl_moment")
    for method in ("variational_jko", "exact_jko"):
        cell = s[(s["quantity"] == "symkl_moment") & (s["method"] == method)].iloc[0]
        band = drawn[drawn["method"] == method].iloc[0]
        assert math.isclose(cell["mean"], band["mean"]) and math.isclose(cell["lo"], band["lo"])
        assert math.isclose(cell["hi"], band["hi"])
        expected = stats.summarise_runs(at_t.loc[at_t["method"] == method, "symkl_moment"], log10=True)
        assert math.isclose(cell["lo"], expected.lo) and math.isclose(cell["hi"], expected.hi)


def test_two_runs_print_the_runs_not_an_interval() -> None:
    df = records({"variational_jko": [1e-2, 2e-2], "exact_jko": [5e-2, 4e-2]})
    text = tables.markdown(df)
    assert "| variational_jko | runs -2.00, -1.70 [floor q95 -3.00] |" in text


def test_runs_of_different_configurations_never_share_a_cell() -> None:
    a = records({"variational_jko": [1e-2, 1e-2, 1e-2]}, params='{"iters_per_step": 10}')
    b = records({"variational_jko": [1e-1, 1e-1, 1e-1]}, params='{"iters_per_step": 500}')
    s = tables.summary(pd.concat([a, b]))
    cells = s[s["quantity"] == "symkl_moment"]
    assert len(cells) == 2 and sorted(cells["mean"].round(6)) == [-2.0, -1.0]
    assert all(r.startswith("variational_jko [") for r in cells["row"])


def test_a_non_finite_value_at_the_report_step_is_its_own_status() -> None:
    df = records({"variational_jko": [1e-2, 2e-2, 3e-2], "exact_jko": [1e-3, 1e-3, 1e-3]})
    bad = (df["method"] == "variational_jko") & (df["seed"] == 1) & (df["k"] == 2)
    df.loc[bad, "symkl_moment"] = np.inf
    s = tables.summary(df)
    cell = s[(s["quantity"] == "symkl_moment") & (s["method"] == "variational_jko")].iloc[0]
    assert cell["n"] == 2 and cell["n_nonfinite"] == 1  # not replaced by the finite value of step 1
    text = tables.markdown(df)
    assert "(1 non-finite)" in text and "| non-finite |" in text.replace("| ok |", "|")


def test_the_paired_ranking_finds_the_better_method() -> None:
    rng = np.random.default_rng(0)
    instance = 10 ** rng.normal(-2, 0.5, size=6)  # seeds differ by much more than the methods do
    df = records({"variational_jko": list(instance), "jko_icnn_exact": list(instance * 3)})
    rank = tables.ranking(df, "symkl_moment")
    row = rank[rank["method"] == "jko_icnn_exact"].iloc[0]
    assert math.isclose(row["mean_diff"], math.log10(3)) and row["significant"]
    assert (row["wins"], row["ties"], row["losses"]) == (0, 0, 6)
    assert "Δ +0.48" in tables.markdown(df)


def test_a_suite_where_every_run_failed_at_set_up_still_gets_its_tables(tmp_path) -> None:
    """Runs that failed before any evaluation leave records of one row and no metric, timing or memory column: the
    table and figure steps still succeed and say so (they once raised KeyError: ['peak_mem_mb', 'time_step_s'])."""
    rows = [
        dict(suite="s", experiment="e", problem="ou", method=m, dim=2, seed=s, k=0, t=0.0, report_t=0.5,
             status="failed", message="UnsupportedProblem: no CUDA", last_good_step=0)
        for m in ("variational_jko", "exact_jko") for s in (0, 1)
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    text = tables.markdown(df)
    assert "No run of this experiment finished with status `ok`" in text and "| failed |" in text
    assert figures.suite_figures(df, tmp_path / "figures") == [] and (tmp_path / "figures").is_dir()
