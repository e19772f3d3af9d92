"""What the Snakefile needs beyond the suite: its configuration, checked with one line per mistake, and the state of
the records it finds before it builds its jobs.

* :func:`config_value`: a ``--config KEY=VALUE`` item of the right type, or one line and exit status 2.
* :func:`prepare_records`: for every run of the suite whose record exists, check that it is a readable record of
  the same run (its ``run_hash``, :func:`wgfbench.records.run_hash`): a truncated or foreign file, or a record of a
  run the suite has since changed, is moved aside (``<record>.stale-<reason>``, never deleted) so that Snakemake
  re-runs exactly that run; every move is one line on stderr. Records without a run hash (written before it
  existed) are kept as they are. A record kept aside under its run hash is put back when the suite returns to
  that specification (so an edit that is undone, or a dry run of an edit, costs no re-run).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wgfbench.records import RecordError, read_record, run_hash


def config_value(config: dict, key: str, default: Any, kind: type, allowed: str) -> Any:
    """``config[key]`` as ``kind`` (default when absent); a wrong value stops the workflow with one line."""
    value = config.get(key, default)
    try:
        if kind is int and isinstance(value, str):
            value = int(value.strip())
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ValueError
    except (ValueError, TypeError):
        sys.stderr.write(f"--config {key}={value!r}: must be {allowed}\n")
        raise SystemExit(2) from None
    return value


def prepare_records(runs: Iterable, record_path: Callable[[Any], str]) -> list[str]:
    """Move aside the records that do not belong to their run (module docstring); returns the messages."""
    messages = []
    for spec in runs:
        path = Path(record_path(spec))
        if path.exists():
            try:
                stored = _stored_run_hash(path)
            except RecordError as e:
                messages.append(_move_aside(path, "unreadable", str(e)))
            else:
                if stored is not None and stored != run_hash(spec):
                    why = f"{path}: made by another specification of this run"
                    messages.append(_move_aside(path, str(stored), why))
        kept = path.with_name(f"{path.name}.stale-{run_hash(spec)}")
        if not path.exists() and kept.exists():  # the suite is back at a specification whose record was kept
            kept.rename(path)
            os.utime(path)  # newer than the tables made without it, so that they are made again
            messages.append(f"{path}: the record of this specification, kept as {kept.name}, is put back")
    for m in messages:
        sys.stderr.write(m + "\n")
    return messages


def _stored_run_hash(path: Path) -> str | None:
    """The record's run hash (None for a record written before run hashes existed); RecordError if unreadable."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:
        raise RecordError(f"{path}: not a readable run record ({type(e).__name__})") from None
    if "run_hash" not in names:
        return None
    return str(read_record(path, columns=["run_hash"])["run_hash"].iloc[0])


def _move_aside(path: Path, tag: str, why: str) -> str:
    target = path.with_name(f"{path.name}.stale-{tag}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.stale-{tag}-{n}")
        n += 1
    path.rename(target)
    return f"{why}; kept as {target.name}, the run is re-run"
