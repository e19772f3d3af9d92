"""One run: build the problem and the method, advance K JKO steps, evaluate, write the record.

The same code path serves ``wgfbench run`` and every Snakemake job; it steps the method through the one loop
(:mod:`wgfbench.loop`). A run never raises for what the method does: a non-finite loss or sample ends it with
status ``diverged``, a run past its time budget with ``timeout``, any other error with ``failed``; the record
keeps every step finished before that and ``last_good_step``.

Time budget: checked after every step, and also enforced in the middle of a step or an evaluation (the
interrupted step is not kept). The budget counts the time of earlier attempts of the same run (stored in the
checkpoint).

No lost work: the record is written atomically (temporary file, fsync, rename), so a run killed at any moment
(even SIGKILL) leaves no record, and Snakemake re-runs exactly the runs whose record is missing. With a
checkpoint path, the state after each finished step is saved atomically and a restarted run resumes from it (the
finished record deletes it). Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a planted file cannot run code. A checkpoint of another spec (its spec hash differs), or one
that cannot be read that way, is ignored with a warning; temporary files left by a killed attempt are removed.
A finished run also keeps a copy of its record beside its checkpoint (:func:`done_path`): a re-run of the same run
(its workflow killed before it registered the record, then re-run) takes it instead of computing the run again.

Faults of the machine are not properties of the method: a full disk, a read-only or unwritable output, an I/O
error (:data:`INFRASTRUCTURE_ERRNOS`) raise :class:`InfrastructureError` and nothing is recorded (the command
line exits 75 with one line, Snakemake's retry runs it again from its last checkpoint); an interruption (SIGINT,
SIGTERM, the workflow that started the run gone: :func:`watch_parent`) raises :class:`Interrupted`, again with
nothing recorded and the checkpoint kept. Numerical blow-ups that surface as exceptions (overflow, a singular
factorisation) are recorded as ``diverged``, not ``failed``.
"""

from __future__ import annotations

import errno
import io
import logging
import math
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wgfbench.evaluate import Evaluator
from wgfbench.loop import Budget, BudgetExceeded, advance, build
from wgfbench.methods.base import Diverged, StepStats
from wgfbench.progress import Progress
from wgfbench.records import (
    RecordError,
    atomic_write_bytes,
    read_table,
    record_table,
    run_columns,
    run_hash,
    spec_hash,
    to_frame,
    write_record_atomic,
)
from wgfbench.suites import RunSpec
from wgfbench.timing import provenance

if TYPE_CHECKING:  # pandas and pyarrow load when the record is made, after the run's steps, not at start-up
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger("wgfbench.runner")
# errors of the machine, not of the method: reported and retried, never recorded as a run's failure
# (ENOLCK: a lost lock on a network file system; ESTALE: a file handle the file server no longer knows)
INFRASTRUCTURE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EIO,
    errno.EPERM,
    errno.ENOLCK,
    errno.ESTALE,
}


class InfrastructureError(RuntimeError):
    """The machine failed the run (disk full, read-only or unwritable output, I/O error): nothing is recorded; the
    run resumes from its last checkpoint when it is started again."""


class Interrupted(BaseException):
    """The run was stopped from outside (SIGINT, SIGTERM, or the workflow that started it is gone): nothing is
    recorded; its last checkpoint stays for a resume."""


def _is_infrastructure(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in INFRASTRUCTURE_ERRNOS


def _diverged_kind(e: BaseException) -> bool:
    """Numerical blow-ups that surface as exceptions rather than non-finite values: recorded as ``diverged``."""
    if isinstance(e, OverflowError | FloatingPointError | ZeroDivisionError):
        return True
    return type(e).__name__ == "_LinAlgError" or "overflow" in str(e).lower()


def watch_parent(pid: int, interval: float = 2.0) -> None:
    """Interrupt this process (SIGTERM) once process ``pid`` (the workflow that started the run) is gone."""

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:  # alive, owned by someone else
                pass

    threading.Thread(target=loop, name="wgfbench-watch-parent", daemon=True).start()


def done_path(checkpoint: Path) -> Path:
    """Where a finished run keeps a copy of its record beside its checkpoint: a re-run of the same run (e.g. after
    its workflow was killed before it registered the record) takes it instead of computing the run again."""
    return checkpoint.with_name(checkpoint.name + ".done.parquet")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint_file(path: str | Path) -> Any:
    """Read a checkpoint safely: tensors and plain containers only (``torch.load(weights_only=True)``).

    A file that holds any other object (a planted pickle, a foreign file) is refused with an error before
    anything in it runs; nothing is ever unpickled with arbitrary classes.
    """
    return torch.load(path, weights_only=True, map_location="cpu")


def _load_checkpoint(path: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The checkpoint's state if it belongs to ``spec`` (same spec hash) and can be read safely; None (with a
    warning) otherwise."""
    try:
        state = load_checkpoint_file(path)
    except Exception as e:  # truncated or foreign file: start afresh rather than fail the run
        log.warning("ignoring checkpoint %s: cannot be read (%s: %s)", path, type(e).__name__, e)
        return None
    if not isinstance(state, dict) or state.get("spec_hash") != spec_hash(spec):
        log.warning("ignoring checkpoint %s: it belongs to another spec", path)
        return None
    return state


def _remove_stale_temporaries(*paths: Path | None) -> None:
    """Delete the temporary files (``.NAME.*.tmp``) an attempt killed mid-write left next to ``paths``."""
    for p in paths:
        if p is not None and p.parent.is_dir():
            for tmp in p.parent.glob(f".{p.name}.*.tmp"):
                log.info("removing %s, left by an interrupted attempt", tmp)
                tmp.unlink(missing_ok=True)


def step_row(k: int, t: float, stats: StepStats) -> dict[str, Any]:
    """The record columns of one finished step (before its evaluation)."""
    return {
        "k": k,
        "t": t,
        "time_train_s": stats.train_s,
        "time_regen_s": stats.regen_s,
        "time_step_s": stats.train_s + stats.regen_s,
        "loss": math.nan if stats.loss is None else stats.loss,
        "peak_mem_mb": stats.extra.get("peak_mem_mb", math.nan),
        # every other diagnostic the method reports (pretraining time, CG iterations, ...)
        **{f"extra_{key}": float(v) for key, v in stats.extra.items() if key != "peak_mem_mb"},
    }


def report_steps(spec: RunSpec) -> frozenset[int]:
    """The evaluated steps the tables and figures report: the one nearest ``report_t`` and the final one (where the
    evaluation computes its simulated noise floors)."""
    evaluated = [0, *(k for k in range(1, spec.n_steps + 1) if k % spec.eval.every == 0 or k == spec.n_steps)]
    report_t = spec.report_t if spec.report_t is not None else spec.step_size * spec.n_steps
    nearest = min(evaluated, key=lambda k: abs(k * spec.step_size - report_t))
    return frozenset({nearest, spec.n_steps})


def run(
    spec: RunSpec,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | str = True,
    floor_cache: str | Path | None = None,
) -> pd.DataFrame:
    """Execute ``spec``; return the record as a DataFrame (and write it atomically to ``out`` when given): see
    :func:`run_record`."""
    return to_frame(run_record(spec, out, checkpoint, progress, floor_cache))


def run_record(
    spec: RunSpec,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | str = True,
    floor_cache: str | Path | None = None,
) -> pa.Table:
    """Execute ``spec``; return the record (an Arrow table in the schema of :mod:`wgfbench.records`) and write it
    atomically to ``out`` when given. ``floor_cache``: a folder of simulated noise floors shared by the runs of a
    suite (:mod:`wgfbench.metrics.floors`). ``progress``: True for a bar on a terminal and one line per step
    elsewhere, False for nothing, "bar" or "lines" to choose (:mod:`wgfbench.progress`)."""
    rows: list[dict[str, Any]] = []
    status, message, last_good = "ok", "", 0
    problem = method = None
    prov = provenance("cpu")
    ckpt = Path(checkpoint) if checkpoint else None
    _remove_stale_temporaries(Path(out) if out is not None else None, ckpt)
    if ckpt is not None and out is not None and done_path(ckpt).exists():
        done = _finished_copy(done_path(ckpt), spec)
        if done is not None:
            log.info(
                "%s finished before: its record is taken from %s, not computed again", spec.job_id, done_path(ckpt)
            )
            write_record_atomic(done, out)
            done_path(ckpt).unlink(missing_ok=True)
            return done
    budget = Budget(spec.time_budget_s)
    report = None
    try:
        # set-up (a method may pre-train in its constructor) and the evaluation of P_0 count too
        with budget.enforced():
            problem, method = build(spec)
            evaluate = Evaluator(problem, spec.eval, spec.seed, floor_cache, report_steps(spec))
            prov = provenance(method.device)
            state = _load_checkpoint(ckpt, spec) if ckpt is not None and ckpt.exists() else None
            if state is not None:
                method.load_state_dict(state["method"])
                rows, last_good = state["rows"], state["last_good"]
                budget = Budget(spec.time_budget_s, spent_before=state["elapsed"] + budget.elapsed())
                log.info("resumed %s from checkpoint at step %d", spec.job_id, method.k)
            if not rows:
                rows.append({"k": 0, "t": 0.0, **evaluate(method, 0, spec.step_size)})
        report = Progress(spec.job_id, spec.n_steps, initial=method.k, progress=progress)

        def on_step(k: int, stats: StepStats) -> None:
            nonlocal last_good
            row = step_row(k, problem.time_of_step(k, spec.step_size), stats)
            if k % spec.eval.every == 0 or k == spec.n_steps:
                t0 = time.perf_counter()
                try:
                    row |= evaluate(method, k, spec.step_size)
                except FloatingPointError as e:
                    raise Diverged(f"step {k}: {e}") from e
                row["time_eval_s"] = time.perf_counter() - t0
            rows.append(row)
            last_good = k
            report.step(k, row["t"], stats.train_s, stats.regen_s, row.get("time_eval_s"), row["loss"])
            if ckpt is not None and k < spec.n_steps:
                state = {"spec_hash": spec_hash(spec), "method": method.state_dict(), "rows": rows}
                _save_checkpoint(ckpt, {**state, "last_good": last_good, "elapsed": budget.elapsed()})

        advance(method, spec.n_steps, budget, on_step)
    except BudgetExceeded as e:
        if not rows:
            where = "before step 0 was evaluated"
        else:
            where = f"after step {last_good}" if e.between_steps else f"during step {last_good + 1}"
        status, message = "timeout", f"time budget {spec.time_budget_s:g} s exceeded {where}"
    except Diverged as e:
        status, message = "diverged", str(e)
    except KeyboardInterrupt:
        raise Interrupted("interrupted (SIGINT)") from None
    except Exception as e:  # recorded, never raised: one bad run must not stop a suite
        if _is_infrastructure(e):
            raise InfrastructureError(f"{type(e).__name__}: {e}") from e
        if _diverged_kind(e):
            status, message = "diverged", f"{type(e).__name__}: {e}"
        else:
            status, message = "failed", f"{type(e).__name__}: {e}"
            log.error("run %s failed:\n%s", spec.job_id, traceback.format_exc())
    finally:
        if report is not None:
            report.close()  # the bar; an interruption propagates from here without a status line
    if status != "ok":
        log.warning("run %s ended with status %s: %s", spec.job_id, status, message)
    base = run_columns(spec, problem, prov)
    end = {"status": status, "message": message, "last_good_step": last_good, "wall_s": budget.elapsed()}
    if report is not None:
        report.close(status, last_good, end["wall_s"], message)
    table = record_table(base, rows or [{"k": 0, "t": 0.0}], end)
    if out is not None:
        try:
            if ckpt is not None:  # first the copy beside the checkpoint, then the record, then the checkpoint goes
                write_record_atomic(table, done_path(ckpt))
            write_record_atomic(table, out)
        except OSError as e:
            if _is_infrastructure(e):
                raise InfrastructureError(f"cannot write the record {out}: {e.strerror}") from e
            raise
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    return table


def _finished_copy(path: Path, spec: RunSpec) -> pa.Table | None:
    """The record kept beside the checkpoint, if it is a readable record of this run (same run hash)."""
    try:
        done = read_table(path)
    except RecordError as e:
        log.warning("ignoring %s: %s", path, e)
        return None
    if "run_hash" in done.column_names and len(done) and done["run_hash"][0].as_py() == run_hash(spec):
        return done
    return None
