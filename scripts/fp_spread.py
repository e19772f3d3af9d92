#!/usr/bin/env python
"""How far a cell moves when only the floating-point order changes: the reproducibility tolerance of a table.

A trained method's error depends on every rounding of its training: another CPU (other vector kernels), another
thread count (other reduction orders) or another library build changes the low bits, and the difference compounds
through training. This script re-runs the jobs of a suite's experiment for one method under perturbed floating-point
order and compares each run's headline value with the reference record's:

* ``threads2``: two torch threads instead of one (other reduction orders in matrix products);
* ``scalar``: ``ATEN_CPU_CAPABILITY=default``, torch's non-vectorised CPU kernels (what another CPU's kernels do to
  the arithmetic, on this machine).

Same commit, same seeds, same suite: nothing changes but the rounding. It writes ``<out>/fp_spread.json`` (per run
and perturbation the log10 difference, and the summary the tables print: the largest and the median |difference|
of a run and of a cell mean) and prints a line per job::

    ./with-env python scripts/fp_spread.py --suite suites/default.yaml --records results/default \\
        --experiment ou --method variational_jko --out results/default

The tables (``wgfbench table --spread results/default/fp_spread.json``) state the tolerance;
``tests/test_quickstart.py`` checks that a fresh re-run of the default suite falls within it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PERTURBATIONS = {"threads2": ({}, 2), "scalar": ({"ATEN_CPU_CAPABILITY": "default"}, 1)}


def rerun(suite: str, job: str, out: Path, env_extra: dict[str, str], threads: int) -> pd.DataFrame:
    env = dict(os.environ, **env_extra, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "wgfbench.cli", "run", "--suite", suite, "--job", job, "--out", str(out)]
    cmd += ["--threads", str(threads), "--no-progress"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=ROOT)
    return pd.read_parquet(out)


def value_at_report(df: pd.DataFrame, metric: str) -> float:
    from wgfbench.reports.tables import at_report_time

    row = at_report_time(df, metric)
    return float(row[metric].iloc[0]) if len(row) else math.nan


def summarise(diffs: pd.DataFrame) -> dict:
    """Largest and median |log10 difference| of a run, and of a cell mean (per perturbation, cell = (dim))."""
    out = {}
    for pert, g in diffs.groupby("perturbation"):
        run = g["diff"].abs()
        cell = g.groupby("dim")["diff"].mean().abs()
        out[pert] = {
            "runs": len(g),
            "run_max": float(run.max()),
            "run_median": float(run.median()),
            "cell_max": float(cell.max()),
        }
    all_runs = diffs["diff"].abs()
    cells = diffs.groupby(["perturbation", "dim"])["diff"].mean().abs()
    out["all"] = {
        "runs": len(diffs),
        "run_max": float(all_runs.max()),
        "run_median": float(all_runs.median()),
        "cell_max": float(cells.max()),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--records", required=True, help="the suite's results folder (its runs/ are the reference)")
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--metric", default="symkl_moment")
    ap.add_argument("--out", required=True, help="folder for fp_spread.json")
    args = ap.parse_args(argv)
    from wgfbench.suites import load_suite

    suite = load_suite(args.suite)
    jobs = [r for r in suite.runs if r.experiment == args.experiment and r.method == args.method]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in jobs:
            ref_path = Path(args.records) / "runs" / spec.experiment / spec.method / f"d{spec.dim}_s{spec.seed}.parquet"
            ref = value_at_report(pd.read_parquet(ref_path), args.metric)
            for pert, (env_extra, threads) in PERTURBATIONS.items():
                got = value_at_report(rerun(args.suite, spec.job_id, Path(tmp) / "r.parquet", env_extra, threads),
                                      args.metric)  # fmt: skip
                diff = float(np.log10(got) - np.log10(ref)) if got > 0 and ref > 0 else math.nan
                rows.append(dict(job=spec.job_id, dim=spec.dim, seed=spec.seed, perturbation=pert, diff=diff))
                print(f"{spec.job_id} {pert}: log10 {args.metric} {np.log10(ref):.3f} -> {np.log10(got):.3f}")
    diffs = pd.DataFrame(rows)
    result = {
        "suite": suite.name,
        "experiment": args.experiment,
        "method": args.method,
        "metric": args.metric,
        "perturbations": {k: {"env": e, "threads": t} for k, (e, t) in PERTURBATIONS.items()},
        "summary": summarise(diffs),
        "runs": rows,
    }
    out = Path(args.out) / "fp_spread.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    s = result["summary"]["all"]
    print(f"wrote {out}: |log10 difference| per run max {s['run_max']:.3f}, median {s['run_median']:.3f}; "
          f"per cell mean max {s['cell_max']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
