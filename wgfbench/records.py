"""Result records: one parquet file per run, one row per evaluated JKO step, written atomically.

A row holds the run's identity (suite, experiment, problem, method, dim, seed), the step (k, t, h),
the run's ``status`` (``ok``, ``diverged``, ``timeout``, ``failed``) with ``last_good_step`` and a
``message``, every metric with its noise floor, the step's timings (training and particle
regeneration separately, evaluation apart), peak memory, the problem's and method's parameters
(JSON), and provenance (git commit, device, library versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

STATUSES = ("ok", "diverged", "timeout", "failed")
# what identifies a run, what describes it, how it ended, and where it was computed (wgfbench.timing.provenance)
ID_COLUMNS = ["suite", "experiment", "problem", "method", "dim", "seed"]
RUN_KEYS = ["experiment", "problem", "method", "dim", "seed"]  # a run within a table (suites may be merged)
SPEC_COLUMNS = [
    "h",
    "n_steps",
    "report_t",
    "problem_params",
    "method_params",
    "eval_params",
    "problem_info",
    "spec_hash",
    "run_hash",
]
STATUS_COLUMNS = ["status", "message", "last_good_step", "wall_s"]
PROVENANCE_COLUMNS = [
    "git_commit",
    "device",
    "device_name",
    "cuda_version",
    "cudnn_benchmark",
    "tf32_matmul",
    "tf32_cudnn",
    "torch_version",
    "pot_version",
    "numpy_version",
    "pandas_version",
    "python_version",
    "hostname",
    "cpu_count",
    "torch_threads",
    "run_date",
]
# per evaluated step: the step, its timings (training and particle regeneration apart, evaluation apart), the
# method's loss and peak memory; the method's other diagnostics follow as extra_<name>
STEP_COLUMNS = ["k", "t", "time_train_s", "time_regen_s", "time_step_s", "time_eval_s", "loss", "peak_mem_mb"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: records stay readable to a shared group


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part; the file's
    mode follows the umask (a temporary file's 0600 is not kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Atomic parquet write (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, text.encode())


def to_json(params: dict | None) -> str:
    """Canonical JSON of a parameter dict (sorted keys), as stored in records."""
    return json.dumps(params or {}, sort_keys=True, default=str)


def run_hash(spec) -> str:
    """The identity of a run as its suite states it: suite, experiment, problem and its parameters, method and its
    parameters as given, dim, seed, step size, steps, budget, report time and the evaluation settings that differ
    from their defaults. A suite edit changes the run hash of exactly the runs it changes; a new default added to
    the code changes none (the Snakefile re-runs a record whose run hash differs from its suite's)."""
    from wgfbench.evaluate import EvalSpec

    defaults = dataclasses.asdict(EvalSpec())
    eval_given = {k: v for k, v in dataclasses.asdict(spec.eval).items() if defaults.get(k) != v}
    identity = {
        "suite": spec.suite,
        "experiment": spec.experiment,
        "problem": spec.problem,
        "problem_params": spec.problem_params,
        "method": spec.method,
        "method_params": spec.method_params,
        "dim": spec.dim,
        "seed": spec.seed,
        "step_size": spec.step_size,
        "n_steps": spec.n_steps,
        "time_budget_s": spec.time_budget_s,
        "report_t": spec.report_t,
        "eval": eval_given,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def spec_hash(spec) -> str:
    """Stable hash of a run's whole specification (a :class:`~wgfbench.suites.RunSpec`): records and checkpoints
    of different specifications never pass for each other."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_columns(spec, problem, prov: dict[str, str]) -> dict[str, Any]:
    """The columns every row of a run's record repeats: identity, specification and provenance."""
    return {
        "suite": spec.suite,
        "experiment": spec.experiment,
        "problem": spec.problem,
        "method": spec.method,
        "dim": spec.dim,
        "seed": spec.seed,
        "h": spec.step_size,
        "n_steps": spec.n_steps,
        "report_t": spec.report_t if spec.report_t is not None else spec.step_size * spec.n_steps,
        "problem_params": to_json(spec.problem_params),
        "method_params": to_json(spec.method_params),
        "eval_params": to_json(dataclasses.asdict(spec.eval)),
        "problem_info": to_json(problem.describe()) if problem is not None else "{}",
        "spec_hash": spec_hash(spec),
        "run_hash": run_hash(spec),
        **prov,
    }


class RecordError(ValueError):
    """A file that should be a run record cannot be read as one (truncated, foreign, missing)."""


def read_record(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """One run record; :class:`RecordError` (one line naming the file) if it cannot be read as one."""
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as e:  # pyarrow raises several types for truncated or foreign files
        raise RecordError(f"{path}: not a readable run record ({type(e).__name__}: {str(e)[:120]})") from None


def read_records(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate run records (parquet files or folders of them) into one long table."""
    frames = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise RecordError(f"{p}: no such record file or folder")
        files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        frames += [read_record(f) for f in files]
    if not frames:
        raise RecordError("no records found in " + ", ".join(str(p) for p in paths))
    return pd.concat(frames, ignore_index=True)
