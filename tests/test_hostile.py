"""Hostile input: nothing a user names runs as code.

* Paths under the user's control (the suite file, the output folder) reach the workflow's shell commands quoted:
  a suite file and an output folder whose names hold spaces, ``$(...)``, backticks and ``;`` run the suite and
  nothing else.
* Checkpoints are read as tensors and plain containers only: a planted pickle whose unpickling would run a
  command is refused (the run starts afresh, with a warning) and its payload never runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from wgfbench.evaluate import EvalSpec
from wgfbench.runner import run
from wgfbench.suites import RunSpec

ROOT = Path(__file__).resolve().parents[1]

ORACLE_SUITE = """
name: hostile
eval: {n_samples: 500, n_w2: 50, n_mc: 64, every: 1}
experiments:
  ou:
    problem: ou
    dims: [2]
    seeds: [0]
    step_size: 0.1
    n_steps: 2
    methods:
      exact_jko: {}
"""


def _payload(marker: Path) -> str:
    """A shell command that leaves ``marker`` (in the workflow's working folder) behind if it ever runs."""
    return f"touch {marker.name}"


def test_hostile_suite_and_output_paths_run_nothing(tmp_path: Path) -> None:
    markers = [tmp_path / f"PWNED{i}" for i in range(4)]
    folder = tmp_path / f"my suites $({_payload(markers[0])}) `{_payload(markers[1])}`"
    folder.mkdir()
    suite = folder / f"su ite;{_payload(markers[2])};.yaml"
    suite.write_text(ORACLE_SUITE)
    out = tmp_path / f"out dir $({_payload(markers[3])})"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1"]
    cmd += ["--config", f"suite={suite}", f"out={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [m for m in markers if m.exists()], "a command embedded in a path was executed"
    record = out / "runs" / "ou" / "exact_jko" / "d2_s0.parquet"
    assert pd.read_parquet(record)["status"].eq("ok").all()
    assert (out / "table.md").is_file() and (out / "figures").is_dir()
    # nothing was created outside the output folder but Snakemake's own state and what the test made
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, out.name, ".snakemake"])


class _Payload:
    """Unpickling this object runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_checkpoint_is_refused_and_never_runs(tmp_path: Path, caplog) -> None:
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "c.pt"
    torch.save({"spec_hash": "x", "method": _Payload(marker), "rows": [], "last_good": 0, "elapsed": 0.0}, ckpt)
    spec = RunSpec(
        suite="hostile",
        experiment="ou",
        problem="ou",
        problem_params={},
        method="exact_jko",
        method_params={},
        dim=2,
        seed=0,
        step_size=0.1,
        n_steps=2,
        eval=EvalSpec(n_samples=300, n_w2=50, n_mc=64),
    )
    with caplog.at_level(logging.WARNING, logger="wgfbench.runner"):
        df = run(spec, out=tmp_path / "r.parquet", checkpoint=ckpt, progress=False)
    assert not marker.exists(), "the planted checkpoint's payload ran"
    assert df["status"].eq("ok").all() and list(df["k"]) == [0, 1, 2]
    assert any("ignoring checkpoint" in r.getMessage() and "cannot be read" in r.getMessage() for r in caplog.records)
