"""The README's quick start in a fresh clone (issue 15 item 1): it runs the default suite, leaves the checkout clean
(``git status`` empty: the committed results/default/ is not touched) and writes its outputs under output/default/,
and its OU cells agree with the committed ones within the reproducibility tolerance the committed tables state.

The clone is of this repository's HEAD (what is committed, not the working tree). ``./with-env`` would build a
virtual environment in the clone (minutes, and the package index): the test sets WGFBENCH_USE_VENV to the venv
running the tests, which with-env uses as it is with the clone first on PYTHONPATH, so the clone's code runs. The
command itself is the README's, exactly as written. It runs the whole default suite: marked slow (minutes).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_command(readme: str) -> str:
    """The suite command of the README's "Quick start": the line of its first bash block that runs snakemake,
    without its comment."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quick start has no bash block"
    lines = [line.split(" #", 1)[0].strip() for line in block.group(1).splitlines()]
    commands = [line for line in lines if "snakemake" in line]
    assert commands, "the Quick start runs no suite"
    return commands[0]


def test_the_quick_start_command_is_found_in_the_readme() -> None:
    readme = "## Quick start\n\n```bash\n./with-env snakemake      # the suite\n./with-env pytest\n```\n\n## Next\n"
    assert quick_start_command(readme) == "./with-env snakemake"
    assert shlex.split(quick_start_command((ROOT / "README.md").read_text()))[0] == "./with-env"


def ou_cells(summary: pd.DataFrame, spread: dict) -> pd.DataFrame:
    """The log10 cells of the tolerance's experiment: its metric for every method; the other log10 metrics for the
    methods that are not the one the tolerance was measured on (the exact oracle's and the identity's cells, which
    floating-point order does not move)."""
    cells = summary[(summary["experiment"] == spread["experiment"]) & summary["log10"].astype(bool)]
    keep = (cells["quantity"] == spread["metric"]) | (cells["method"] != spread["method"])
    return cells[keep & cells["mean"].notna()].set_index(["method", "dim", "quantity"])["mean"]


@pytest.mark.slow
def test_the_quick_start_in_a_fresh_clone_leaves_it_clean_and_agrees_with_the_committed_results(
    tmp_path: Path,
) -> None:
    clone = tmp_path / "wgfbench"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
    command = quick_start_command((clone / "README.md").read_text())
    env = dict(os.environ, WGFBENCH_USE_VENV=sys.prefix, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        ["./with-env", "python", "-c", "import wgfbench; print(wgfbench.__file__)"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert Path(where.stdout.strip()).resolve().is_relative_to(clone.resolve()), "the clone's package must run"
    proc = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-4000:]

    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == "", f"the quick start changed the checkout:\n{status.stdout}"
    out = clone / "output" / "default"
    assert (out / "table.md").is_file() and (out / "runs").is_dir()
    assert list((out / "figures").glob("*.png")), "no figure"
    committed = clone / "results" / "default"
    n_committed = len(list((committed / "runs").rglob("*.parquet")))
    assert len(list((out / "runs").rglob("*.parquet"))) == n_committed > 0

    spread = json.loads((committed / "fp_spread.json").read_text())
    tolerance = spread["summary"]["all"]["cell_max"]
    fresh = ou_cells(pd.read_parquet(out / "summary.parquet"), spread)
    reference = ou_cells(pd.read_parquet(committed / "summary.parquet"), spread)
    assert len(reference) >= 9 and set(fresh.index) == set(reference.index)
    gap = (fresh - reference.reindex(fresh.index)).abs()
    assert (gap <= tolerance).all(), f"cells apart by more than {tolerance:.2f} decades:\n{gap[gap > tolerance]}"
