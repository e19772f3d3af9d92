"""scripts/paper_comparison.py on a small synthetic records folder: cells from the one summary mechanism, published
values beside them, the exact-JKO floor in closed form, and runs not (or no longer) recorded listed, not dropped."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from wgfbench import metrics
from wgfbench.records import read_records
from wgfbench.registry import make_problem
from wgfbench.reports import tables
from wgfbench.runner import run
from wgfbench.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("paper_comparison", ROOT / "scripts" / "paper_comparison.py")
paper_comparison = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = paper_comparison  # its dataclasses resolve their module
SPEC.loader.exec_module(paper_comparison)

H, K = 0.05, 2
TINY = {
    "name": "tiny-paper",
    "eval": {"n_samples": 2000, "n_w2": 100, "n_mc": 256, "every": 1, "sample_metrics": ["kde"], "floor_reps": 20},
    "experiments": {
        "ou_fan": {"problem": "ou", "problem_params": {"generator": "spectrum"}, "dims": [2], "seeds": 2,
                   "step_size": H, "n_steps": K, "report_t": H * K, "methods": {"exact_jko": {}}},
        "ou_mokrov": {"problem": "ou", "problem_params": {"generator": "legacy_make_spd"}, "dims": [2], "seeds": 3,
                      "step_size": H, "n_steps": K, "report_t": H * K,
                      "methods": {"em_particles": {"params": {"n_particles": 1000, "substeps": 2}}}},
    },
}  # fmt: skip
MISSING = "ou_mokrov/em_particles/d2/s2"  # never run
STALE = "ou_fan/exact_jko/d2/s1"  # recorded under another specification (one step fewer)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("paper_comparison")
    suite_path = tmp / "tiny.yaml"
    suite_path.write_text(yaml.safe_dump(TINY))
    records = tmp / "runs"
    for spec in load_suite(suite_path).runs:
        if spec.job_id == MISSING:
            continue
        if spec.job_id == STALE:
            spec = dataclasses.replace(spec, n_steps=K - 1)
        out = records / spec.experiment / spec.method / f"d{spec.dim}_s{spec.seed}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        run(spec, out, progress=False, floor_cache=tmp / "floors")
    return suite_path, records


def row_of(readme: str, section: str, method: str, d: int) -> list[str]:
    """The cells of ``method``'s d row in the table under the heading that contains ``section``."""
    block = readme.split(section, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    line = next(li for li in block.splitlines() if li.startswith(f"| {method} | {d} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_cells_published_values_floors_and_missing_runs(folder: tuple[Path, Path]) -> None:
    suite_path, records = folder
    readme = paper_comparison.build_readme(suite_path, records, "cmd", paper_comparison.PAPER_BUDGET)

    # ours: the cell of tables.summary over the current ok records (the stale one left out), formatted as shown
    current = read_records([records])
    current = current[~((current["experiment"] == "ou_fan") & (current["seed"] == 1))]
    summary = tables.summary(current)
    cell = summary[(summary["method"] == "em_particles") & (summary["quantity"] == "symkl_kde")].iloc[0]
    assert cell["n"] == 2 and math.isnan(cell["lo"])  # two runs: the runs themselves, no interval
    em = row_of(readme, "KDE of the particles", "em_particles", 2)
    assert em[2] == f"{cell['mean']:.2f} (runs: {', '.join(f'{v:.2f}' for v in cell['runs'])})"
    assert em[3] == "-2.30"  # Mokrov et al.'s EM 50k at d = 2, t = 0.9
    assert em[5] == f"{cell['threshold']:.2f}" and em[6] == "2/3 ok (1 missing)"

    # the exact-JKO floor: log10 SymKL(exact JKO iterate k, P_{kh}) in closed form, mean over the recorded seeds
    logs = []
    for seed in (0, 1):
        problem = make_problem("ou", 2, seed, {"generator": "legacy_make_spd"})
        logs.append(math.log10(metrics.gaussian_symkl(problem.jko_reference(K, H), problem.reference(K * H))))
    assert em[4] == f"{np.mean(logs):.2f}"

    # a run not recorded, and one recorded under another specification, are listed with their status
    assert f"`{MISSING}` (missing)" in readme and f"`{STALE}` (stale)" in readme
    fan = row_of(readme, "moment fit to P_t (Fan", "exact_jko", 2)
    assert fan[6] == "1/2 ok (1 stale)" and "(runs: " in fan[2]
    assert row_of(readme, "moment fit to P_t (Fan", "exact_jko", 2)[3] == "-"  # no published exact-JKO row
    # the findings compare with the published value
    assert "em_particles, d = 2, symkl_kde" in readme and "published -2.3, ours" in readme


def test_an_empty_records_folder_lists_every_run_as_missing(folder: tuple[Path, Path], tmp_path: Path) -> None:
    suite_path, _ = folder
    readme = paper_comparison.build_readme(suite_path, tmp_path / "none", "cmd", paper_comparison.PAPER_BUDGET)
    assert "5 runs asked for, 0 ok, 5 not yet recorded" in readme
    for job in ("ou_fan/exact_jko/d2/s0", "ou_mokrov/em_particles/d2/s1", MISSING):
        assert f"`{job}` (missing)" in readme
    assert row_of(readme, "KDE of the particles", "em_particles", 2)[3] == "-2.30"


def test_the_overview_sets_every_published_number_beside_its_cell(folder: tuple[Path, Path]) -> None:
    suite_path, records = folder
    readme = paper_comparison.build_readme(suite_path, records, "cmd", paper_comparison.PAPER_BUDGET)
    block = readme.split("## Every published number beside ours", 1)[1].split("\n## ", 1)[0]
    em = row_of(readme, "KDE of the particles", "em_particles", 2)
    line = next(li for li in block.splitlines() if li.startswith("| ou_mokrov | em_particles | 2 | log10 symkl_kde"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[5] == em[2] and cells[6] == "-2.30"
    assert cells[7] == f"{float(em[2].split()[0]) + 2.3:+.2f} in log10"
    # the published numbers of dims the suite does not run are listed, not dropped
    assert (
        "| ou_mokrov | em_particles | 4 | log10 symkl_kde | t = 0.1 | - | -1.00 | - | - | not in the suite |" in block
    )


def test_a_metric_in_its_own_units_is_compared_as_a_ratio() -> None:
    cell = pd.Series(dict(mean=2.4e-4, lo=1.0e-4, hi=3.8e-4, n=3, runs=[1e-4, 2.4e-4, 3.8e-4], log10=False))
    text = paper_comparison.finding("neural_jko_ic", 2, "sliced_energy", "the last step", cell, 1.2e-5, None, 3e-5,
                                    2.6e-5)  # fmt: skip
    assert "published 1.2e-05, ours 20 times the published value" in text
    assert "9.23 times the paper's reference error" in text and "resolved (above the noise floor q95)" in text
    assert paper_comparison.fmt_cell(cell) == "0.00024 [0.0001, 0.00038]"


def test_figures_set_the_published_values_beside_ours(folder: tuple[Path, Path], tmp_path: Path) -> None:
    suite_path, records = folder
    suite = load_suite(suite_path)
    rows, _ = paper_comparison.read_current(records, paper_comparison.expected_runs(suite))
    one_dim = dataclasses.replace(
        paper_comparison.PAPER_BUDGET, published={("ou_mokrov", "em_particles", "symkl_kde", None): {2: -2.3}}
    )
    outs = paper_comparison.comparison_figures(one_dim, suite, rows, tmp_path)
    assert sorted(p.name for p in outs) == ["published_symkl_kde.pdf", "published_symkl_kde.png"]
    assert all(p.stat().st_size > 1000 for p in outs)
    fig = paper_comparison.per_experiment_figure(one_dim, rows, "symkl_kde", [("ou_mokrov", "em_particles", -2.3)])
    diamonds = [li for li in fig.axes[0].get_lines() if li.get_marker() == "D"]
    assert len(diamonds) == 1 and math.isclose(float(diamonds[0].get_ydata()[0]), 10**-2.3)
    dots = [li for li in fig.axes[0].get_lines() if li.get_marker() == "."]
    em = rows[(rows["method"] == "em_particles") & (rows["k"] == K)]["symkl_kde"]
    assert sorted(dots[0].get_ydata()) == pytest.approx(sorted(em))  # every run at the report time
