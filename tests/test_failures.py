"""Planted faults: runs that diverge (NaN loss, overflowing samples) or run past their time budget are recorded
with their status and last good step while the pipeline goes on; tables count them per cell and never average
them in; a run killed with SIGKILL leaves no record, and a re-run executes only the missing runs, each resuming
from its last finished JKO step."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from wgfbench.evaluate import EvalSpec
from wgfbench.runner import run
from wgfbench.suites import RunSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL_EVAL = EvalSpec(n_samples=500, n_w2=100, n_mc=64, every=1)
VJKO_TINY = {"n_particles": 512, "batch_size": 64, "iters_per_step": 2}


def spec(method: str, params: dict, **kw) -> RunSpec:
    base = dict(
        suite="faults",
        experiment="ou",
        problem="ou",
        problem_params={},
        method=method,
        method_params=params,
        dim=2,
        seed=0,
        step_size=0.1,
        n_steps=3,
        eval=SMALL_EVAL,
    )
    return RunSpec(**(base | kw))


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


# --- one run at a time (in process) ----------------------------------------------------------------------------
def test_nan_loss_is_recorded_as_diverged(tmp_path: Path) -> None:
    # Adam with a learning rate of 1e10 sends the map's weights to ~1e10 in one update: the JKO loss overflows
    s = spec("variational_jko", {**VJKO_TINY, "lr_t": 1e10, "lr_dual": 1e10})
    df = run(s, out=tmp_path / "r.parquet", checkpoint=tmp_path / "c.pt", progress=False)
    assert set(df["status"]) == {"diverged"} and set(df["last_good_step"]) == {0}
    assert "loss became non-finite" in df["message"].iloc[0]
    assert list(df["k"]) == [0] and df["symkl_moment"].notna().all()  # P_0 was evaluated, nothing after it
    assert pd.read_parquet(tmp_path / "r.parquet")["status"].iloc[0] == "diverged"
    assert not (tmp_path / "c.pt").exists() and not temporaries(tmp_path)


def test_overflowing_samples_are_recorded_as_diverged_with_the_last_good_step(tmp_path: Path) -> None:
    # Euler-Maruyama on OU multiplies the particles by |1 - h a| ~ 1e50 per step when h = 1e50 (the explicit
    # scheme is stable only for h < 2 / a_max): finite up to ~1e300 after 6 steps, infinite at step 7.
    s = spec("em_particles", {"n_particles": 512}, step_size=1e50, n_steps=10, eval=EvalSpec(200, 100, 64, every=100))
    df = run(s, out=tmp_path / "r.parquet", progress=False)
    assert set(df["status"]) == {"diverged"} and set(df["last_good_step"]) == {6}
    assert list(df["k"]) == [0, 1, 2, 3, 4, 5, 6]
    assert "Euler-Maruyama particles became non-finite" in df["message"].iloc[0]


def test_a_step_past_the_time_budget_is_interrupted_and_recorded_as_timeout(tmp_path: Path) -> None:
    # one JKO step of 10^8 optimiser iterations (the most a Config allows) would take hours: the budget timer stops it
    s = spec("variational_jko", {**VJKO_TINY, "iters_per_step": 10**8}, time_budget_s=2.0)
    df = run(s, out=tmp_path / "r.parquet", checkpoint=tmp_path / "c.pt", progress=False)
    assert set(df["status"]) == {"timeout"} and set(df["last_good_step"]) == {0}
    assert "time budget 2 s exceeded" in df["message"].iloc[0]
    assert list(df["k"]) == [0]
    assert pd.read_parquet(tmp_path / "r.parquet")["status"].iloc[0] == "timeout"


def test_an_unreadable_checkpoint_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"half a checkpoint")
    (tmp_path / ".r.parquet.x1y2.tmp").write_bytes(b"left by a killed attempt")
    with caplog.at_level(logging.INFO, logger="wgfbench.runner"):
        df = run(spec("exact_jko", {}), out=tmp_path / "r.parquet", checkpoint=ckpt, progress=False)
    assert set(df["status"]) == {"ok"} and list(df["k"]) == [0, 1, 2, 3]
    assert "ignoring checkpoint" in caplog.text and "cannot be read" in caplog.text
    assert not temporaries(tmp_path) and not ckpt.exists()


# --- SIGKILL of a single run, and its resumption -----------------------------------------------------------------
def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["last_good"])
    except Exception:  # not there yet
        return -1


def test_sigkill_leaves_no_record_and_the_rerun_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    out, ckpt = tmp_path / "runs" / "r.parquet", tmp_path / "ckpt" / "r.pt"
    ckpt.parent.mkdir()
    cmd = [sys.executable, "-m", "wgfbench.cli", "run", "--problem", "ou", "--method", "exact_jko", "--dim", "2"]
    cmd += ["--n-steps", "25", "--step-size", "0.01", "--eval", "n_samples=1000", "--eval", "n_w2=100"]
    cmd += ["--out", str(out), "--checkpoint", str(ckpt), "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_step(ckpt) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")), "a killed run must leave no record"
    saved = torch.load(ckpt, weights_only=True)
    k_saved = saved["last_good"]
    assert 2 <= k_saved < 25

    again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed ou/exact_jko/d2/s0 from checkpoint at step {k_saved}" in again.stderr
    df = pd.read_parquet(out)
    assert list(df["k"]) == list(range(26)) and set(df["status"]) == {"ok"}
    # the steps before the kill come from the checkpoint, not from a second computation (timings are measured)
    before = pd.DataFrame(saved["rows"])
    pd.testing.assert_frame_equal(df.loc[df["k"] <= k_saved, before.columns].reset_index(drop=True), before)
    assert not ckpt.exists() and not temporaries(tmp_path)


# --- the pipeline: faults, SIGKILL of the whole workflow, re-run ----------------------------------------------------
FAULT_SUITE = """
name: faults
description: planted faults (tests/test_failures.py)
eval: {n_samples: 500, n_w2: 100, n_mc: 128, every: 1}
experiments:
  ou:
    problem: ou
    dims: [2]
    seeds: [0, 1]
    step_size: 0.1
    n_steps: 3
    methods:
      exact_jko: {}
      variational_jko:   # diverges at step 1 (non-finite loss): learning rates of 1e10
        params: {n_particles: 512, batch_size: 64, iters_per_step: 2, lr_t: 1.0e+10, lr_dual: 1.0e+10}
  budget:
    problem: ou
    dims: [2]
    seeds: [0]
    step_size: 0.1
    n_steps: 3
    time_budget_s: 2
    methods:
      variational_jko:   # one step would take hours: timeout during step 1
        params: {n_particles: 512, batch_size: 64, iters_per_step: 100000000}
  long:
    problem: ou
    dims: [2]
    seeds: [0]
    step_size: 0.01
    n_steps: 30
    methods:
      exact_jko: {}
"""


def snakemake(work: Path, *args: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "2"]
    cmd += ["--config", f"suite={work / 'faults.yaml'}", *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc), so that the test kills only processes it started."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def killed_and_rerun(tmp_path_factory) -> dict:
    """Run the fault suite; once the long run has checkpointed step 2, SIGKILL its process (as a node failure or
    the out-of-memory killer would); let Snakemake finish the rest; run the workflow again. Return what each
    stage left behind."""
    work = tmp_path_factory.mktemp("faults")
    (work / "faults.yaml").write_text(FAULT_SUITE)
    out = work / "output" / "faults"
    long_ckpt = out / "checkpoints" / "long" / "exact_jko" / "d2_s0.pt"
    first = snakemake(work)
    victims: list[int] = []
    deadline = time.monotonic() + 300
    while _checkpoint_step(long_ckpt) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in descendants(first.pid):
        if "wgfbench" in cmdline(pid) and "--job long/exact_jko/d2/s0" in cmdline(pid) and "mkdir" not in cmdline(pid):
            victims.append(pid)
            os.kill(pid, signal.SIGKILL)
    k_killed = _checkpoint_step(long_ckpt)
    log1, _ = first.communicate(timeout=600)
    records = {p.relative_to(out / "runs").as_posix(): p.stat().st_mtime_ns for p in (out / "runs").rglob("*.parquet")}
    leftovers = [p.name for p in (out / "runs").rglob(".*.tmp")]

    second = snakemake(work)
    log2, _ = second.communicate(timeout=600)
    return dict(
        out=out,
        victims=victims,
        k_killed=k_killed,
        first_returncode=first.returncode,
        first_log=log1,
        records_after_kill=records,
        record_temporaries_after_kill=leftovers,
        returncode=second.returncode,
        log=log2,
    )


ALL_RUNS = {
    "ou/exact_jko/d2_s0.parquet",
    "ou/exact_jko/d2_s1.parquet",
    "ou/variational_jko/d2_s0.parquet",
    "ou/variational_jko/d2_s1.parquet",
    "budget/variational_jko/d2_s0.parquet",
    "long/exact_jko/d2_s0.parquet",
}


@pytest.mark.slow
def test_a_killed_run_leaves_no_record_and_the_others_go_on(killed_and_rerun: dict) -> None:
    r = killed_and_rerun
    assert r["victims"] and r["k_killed"] >= 2, r["first_log"][-3000:]
    # Snakemake reports the killed job, finishes every other run, and stops before the tables
    assert r["first_returncode"] != 0 and "Error in rule run" in r["first_log"], r["first_log"][-3000:]
    assert set(r["records_after_kill"]) == ALL_RUNS - {"long/exact_jko/d2_s0.parquet"}
    assert not r["record_temporaries_after_kill"]
    for rel in r["records_after_kill"]:  # every record there is whole
        assert not pd.read_parquet(r["out"] / "runs" / rel).empty


@pytest.mark.slow
def test_rerun_executes_only_the_missing_runs_and_resumes(killed_and_rerun: dict) -> None:
    r = killed_and_rerun
    assert r["returncode"] == 0, r["log"][-4000:]
    out = r["out"]
    missing = ALL_RUNS - set(r["records_after_kill"])
    jobs = re.findall(r"^Job \d+: run (\w+)/(\w+)/d(\d+)/s(\d+)$", r["log"], re.M)
    executed = {f"{e}/{m}/d{d}_s{s}.parquet" for e, m, d, s in jobs}
    assert executed == missing, r["log"][-4000:]
    for rel, mtime in r["records_after_kill"].items():  # finished records were not redone
        assert (out / "runs" / rel).stat().st_mtime_ns == mtime
    job_log = (out / "logs" / "long" / "exact_jko" / "d2_s0.log").read_text()
    assert f"resumed long/exact_jko/d2/s0 from checkpoint at step {r['k_killed']}" in job_log
    long = pd.read_parquet(out / "runs" / "long" / "exact_jko" / "d2_s0.parquet")
    assert list(long["k"]) == list(range(31)) and set(long["status"]) == {"ok"}
    assert not list(out.rglob("*.tmp")) and not list((out / "checkpoints").rglob("*.pt"))


@pytest.mark.slow
def test_faulty_runs_are_recorded_and_counted_per_cell_never_averaged(killed_and_rerun: dict) -> None:
    out = killed_and_rerun["out"]
    table = pd.read_parquet(out / "table.parquet")
    status = table.groupby(["experiment", "method", "seed"])["status"].first().to_dict()
    assert status == {
        ("ou", "exact_jko", 0): "ok",
        ("ou", "exact_jko", 1): "ok",
        ("ou", "variational_jko", 0): "diverged",
        ("ou", "variational_jko", 1): "diverged",
        ("budget", "variational_jko", 0): "timeout",
        ("long", "exact_jko", 0): "ok",
    }
    last_good = table.groupby(["experiment", "method", "seed"])["last_good_step"].first()
    assert last_good[("ou", "variational_jko", 0)] == 0 and last_good[("budget", "variational_jko", 0)] == 0
    # means and CIs: from ok runs only
    summary = pd.read_parquet(out / "summary.parquet")
    assert not ((summary["experiment"] == "ou") & (summary["method"] == "variational_jko")).any()
    assert summary[(summary["experiment"] == "ou") & (summary["method"] == "exact_jko")]["n"].max() == 2
    assert not (summary["experiment"] == "budget").any()
    # counts per cell, shown explicitly, for every experiment (also one where no run finished ok)
    sections = {s.split(" ", 1)[0]: s for s in (out / "table.md").read_text().split("\n## ")[1:]}
    assert "| method | dim | diverged | ok |" in sections["ou"]
    assert "| variational_jko | 2 | 2 | 0 |" in sections["ou"] and "| exact_jko | 2 | 0 | 2 |" in sections["ou"]
    assert "| variational_jko | — |" in sections["ou"]  # a metric cell of the diverged method: nothing averaged
    assert "| method | dim | timeout |" in sections["budget"] and "| variational_jko | 2 | 1 |" in sections["budget"]
    assert "No run of this experiment finished with status `ok`" in sections["budget"]
    assert "All 1 runs finished with status `ok`." in sections["long"]


def test_forget_deletes_only_records_with_the_given_status(tmp_path) -> None:
    import pandas as pd

    from wgfbench.cli import main

    runs = tmp_path / "runs" / "ou" / "m"
    runs.mkdir(parents=True)
    for name, status in (("d2_s0", "ok"), ("d2_s1", "failed"), ("d2_s2", "timeout")):
        pd.DataFrame({"k": [0], "status": [status]}).to_parquet(runs / f"{name}.parquet")
    assert main(["forget", str(tmp_path), "--status", "failed"]) == 0
    assert sorted(p.stem for p in runs.glob("*.parquet")) == ["d2_s0", "d2_s2"]


def test_figures_skip_experiments_without_ok_runs(tmp_path) -> None:
    """Every run of an experiment diverged: the figures step draws nothing for it instead of crashing."""
    import pandas as pd

    from wgfbench.reports.figures import suite_figures

    df = pd.DataFrame(
        {
            "experiment": ["ou"] * 2,
            "problem": "ou",
            "method": "m",
            "dim": 2,
            "seed": [0, 1],
            "k": 0,
            "t": 0.0,
            "report_t": 0.5,
            "status": "diverged",
            "symkl_moment": [0.1, 0.2],
            "time_step_s": float("nan"),
            "peak_mem_mb": float("nan"),
        }
    )
    assert suite_figures(df, tmp_path) == []
