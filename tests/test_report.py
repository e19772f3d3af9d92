"""What a user touches around a suite (issue 15 items 3 and 5): the HTML report of ``snakemake --report``, run
selection with ``wgfbench run-suite --only``, ``wgfbench --version``, and a comparison of two sets of records of the
same runs that keeps them apart.

One tiny suite (exact_jko and identity on OU d = 2, one seed: 2 runs of a few seconds) is run once through
``wgfbench run-suite`` (which drives the repository's Snakefile) and shared by the tests.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import wgfbench

ROOT = Path(__file__).resolve().parents[1]

TINY_SUITE = """
name: tiny
description: report test
eval: {n_samples: 1000, n_w2: 100, n_mc: 128, every: 1}
experiments:
  ou:
    problem: ou
    dims: [2]
    seeds: [0]
    step_size: 0.1
    n_steps: 3
    methods:
      exact_jko: {}
      identity: {}
"""


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")


def wgfbench_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "wgfbench.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env(), timeout=600)


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "1", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env(), timeout=600)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory) -> Path:
    """A folder in which the tiny suite was run whole by ``wgfbench run-suite`` (outputs under output/tiny/)."""
    work = tmp_path_factory.mktemp("report")
    (work / "tiny.yaml").write_text(TINY_SUITE)
    proc = wgfbench_cli(work, "run-suite", "tiny.yaml", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def embedded(html: str) -> list[tuple[str, bytes]]:
    """(media type, bytes) of every base64 data URI of a page (how Snakemake's report embeds its files)."""
    return [
        (kind, base64.b64decode(data))
        for kind, data in re.findall(r"data:([\w/+.-]+)(?:;[\w-]+=[^;,\"']*)*;base64,([A-Za-z0-9+/=]+)", html)
    ]


def test_the_html_report_holds_the_table_and_a_figure(suite_run: Path) -> None:
    out = suite_run / "output" / "tiny"
    assert (out / "table.html").is_file() and list((out / "figures").glob("*.png"))
    proc = snakemake(suite_run, "--config", "suite=tiny.yaml", "--report", "output/tiny/report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (out / "report.html").read_text(encoding="utf-8")
    files = embedded(page)
    # self-contained: the figures and the table are inside the page, not links to the output folder
    assert not re.search(r"(src|href)=[\"'](?!data:|#)[^\"']*\.(png|pdf|html)[\"']", page)
    pngs = [data for kind, data in files if kind == "image/png" and data.startswith(b"\x89PNG")]
    assert pngs, "no figure embedded"
    tables = [data.decode("utf-8", "replace") for kind, data in files if kind == "text/html"]
    table = next((t for t in tables if "<table>" in t and "exact_jko" in t and "identity" in t), None)
    assert table is not None, "the suite's table is not embedded"
    assert "log10 SymKL" in table and "floor" in table
    # the captions: how to read floors and that unbiased estimates can be negative
    assert "floor" in page and "unbiased" in page


def test_run_suite_runs_only_the_selected_runs_through_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_SUITE)
    proc = wgfbench_cli(tmp_path, "run-suite", "tiny.yaml", "--only", "method=identity,dim=2", "--out", "mine")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 of 2 runs" in proc.stderr and "mine/runs/ou/identity/d2_s0.parquet" in proc.stderr
    records = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "mine" / "runs").rglob("*.parquet"))
    assert records == ["mine/runs/ou/identity/d2_s0.parquet"]
    assert not (tmp_path / "mine" / "table.md").exists(), "a selection does not build the whole suite's tables"
    selection = pd.read_parquet(tmp_path / "mine" / "selection" / "table.parquet")
    assert set(selection["method"]) == {"identity"} and (selection["status"] == "ok").all()
    # the same selection again: the workflow finds the record and runs nothing (resume behaves as under snakemake)
    again = wgfbench_cli(tmp_path, "run-suite", "tiny.yaml", "--only", "method=identity", "--out", "mine", "-n")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        (["methd=identity"], "unknown key 'methd' (keys: experiment, problem, method, dim, seed)"),
        (["method=variational_jko"], "no run of the suite has method=variational_jko (it has: identity, exact_jko)"),
        (["dim=4"], "no run of the suite has dim=4 (it has: 2)"),
        (["method"], "'method' is not KEY=VALUE"),
        (["method=identity", "seed=3"], "no run of the suite has seed=3"),
    ],
)
def test_run_suite_refuses_unknown_keys_and_values_in_one_line(tmp_path: Path, only, expected: str) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_SUITE)
    args = [a for o in only for a in ("--only", o)]
    proc = wgfbench_cli(tmp_path, "run-suite", "tiny.yaml", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "output").exists()


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "wgfbench.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"wgfbench {wgfbench.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", wgfbench.__version__)


def test_a_comparison_of_two_sets_of_the_same_runs_keeps_them_apart(suite_run: Path, tmp_path: Path) -> None:
    """A user's re-run beside the committed records: same specifications, different runs; never one cell."""
    runs = suite_run / "output" / "tiny" / "runs"
    mine = tmp_path / "mine"
    shutil.copytree(runs, mine)
    proc = wgfbench_cli(tmp_path, "table", str(runs), "mine", "--out", "compare")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "compare" / "table.parquet")
    single = pd.read_parquet(suite_run / "output" / "tiny" / "table.parquet")
    assert len(table) == 2 * len(single)
    assert set(table["method"]) == {"exact_jko", "identity", "exact_jko @ mine", "identity @ mine"}
    assert set(table["origin"]) == {str(runs), "mine"}
    text = (tmp_path / "compare" / "table.md").read_text()
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert {"exact_jko", "exact_jko @ mine", "identity", "identity @ mine"} <= set(rows)
    # a cell holds one source's runs only: the same values, side by side, each from one run
    summary = pd.read_parquet(tmp_path / "compare" / "summary.parquet")
    assert summary["n"].notna().any() and (summary["n"].dropna() <= 1).all()
    # one set of records named twice is read once (not a comparison of a run with itself)
    once = wgfbench_cli(tmp_path, "table", "mine", "mine", "--out", "once")
    assert once.returncode == 0, once.stderr[-3000:]
    assert len(pd.read_parquet(tmp_path / "once" / "table.parquet")) == len(single)
