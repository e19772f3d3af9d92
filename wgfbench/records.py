"""Result records: one parquet file per run, one row per evaluated JKO step, written atomically.

A row holds the run's identity (suite, experiment, problem, method, dim, seed), the step (k, t, h),
the run's ``status`` (``ok``, ``diverged``, ``timeout``, ``failed``) with ``last_good_step`` and a
``message``, every metric with its noise floor, the step's timings (training and particle
regeneration separately, evaluation apart), peak memory, the problem's and method's parameters
(JSON), and provenance (git commit, device, library versions).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

STATUSES = ("ok", "diverged", "timeout", "failed")
ID_COLUMNS = ["suite", "experiment", "problem", "method", "dim", "seed"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, text.encode())


def to_json(params: dict | None) -> str:
    """Canonical JSON of a parameter dict (sorted keys), as stored in records."""
    return json.dumps(params or {}, sort_keys=True, default=str)


def read_records(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate run records (parquet files or folders of them) into one long table."""
    frames = []
    for p in paths:
        p = Path(p)
        files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        frames += [pd.read_parquet(f) for f in files]
    if not frames:
        raise FileNotFoundError("no records found")
    return pd.concat(frames, ignore_index=True)
