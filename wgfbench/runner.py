"""One run: build the problem and the method, advance K JKO steps, evaluate, write the record.

The same code path serves ``wgfbench run`` and every Snakemake job. A run never raises for what
the method does: a non-finite loss or sample ends it with status ``diverged``, a run past its time
budget with ``timeout``, any other error with ``failed``; the record keeps every step finished
before that and ``last_good_step``.

Time budget: checked after every step, and also enforced in the middle of a step or an evaluation
(a SIGALRM timer in the main thread interrupts it once the budget is spent; the interrupted step is
not kept). The budget counts the time of earlier attempts of the same run (stored in the checkpoint).

No lost work: the record is written atomically (temporary file, fsync, rename), so a run killed at
any moment (even SIGKILL) leaves no record, and Snakemake re-runs exactly the runs whose record is
missing. With a checkpoint path, the state after each finished step is saved atomically and a
restarted run resumes from it (the finished record deletes it). Checkpoints are read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a planted file cannot run code. A
checkpoint of another spec (its spec hash differs), or one that cannot be read that way, is ignored with a
warning; temporary files left by a killed attempt are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import math
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from wgfbench import registry
from wgfbench.evaluate import evaluate_step
from wgfbench.methods.base import Diverged
from wgfbench.records import atomic_write_bytes, to_json, write_parquet_atomic
from wgfbench.suites import RunSpec
from wgfbench.timing import provenance

log = logging.getLogger("wgfbench.runner")


def spec_hash(spec: RunSpec) -> str:
    """Stable hash of a run's specification (a checkpoint is resumed only by the same spec)."""
    return hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _base_row(spec: RunSpec, problem, prov: dict[str, str]) -> dict[str, Any]:
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
        "problem_info": to_json(problem.describe()) if problem is not None else "{}",
        **prov,
    }


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


class BudgetExceeded(BaseException):
    """The run's time budget ran out in the middle of a step (raised by the SIGALRM timer).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in a method swallows it.
    """


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the block once ``seconds`` have passed.

    Uses SIGALRM, so it is active only in the main thread of a POSIX process; elsewhere (or without a
    budget) the budget is still checked after every step by the caller.
    """
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise BudgetExceeded

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(
    spec: RunSpec,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Execute ``spec``; return the record (and write it atomically to ``out`` when given)."""
    t_start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    status, message, last_good, elapsed_before = "ok", "", 0, 0.0
    problem = method = None
    prov = provenance("cpu")
    budget = spec.time_budget_s
    ckpt = Path(checkpoint) if checkpoint else None
    _remove_stale_temporaries(Path(out) if out is not None else None, ckpt)

    def remaining() -> float | None:
        """Seconds left in the budget (None: no budget)."""
        return None if budget is None else budget - (elapsed_before + time.perf_counter() - t_start)

    try:
        # set-up (a method may pre-train in its constructor) and the evaluation of P_0 count too
        with _deadline(remaining()):
            problem = registry.make_problem(spec.problem, spec.dim, spec.seed, spec.problem_params)
            method = registry.make_method(spec.method, problem, spec.step_size, spec.method_params, spec.seed)
            prov = provenance(method.device)
            state = _load_checkpoint(ckpt, spec) if ckpt is not None and ckpt.exists() else None
            if state is not None:
                method.load_state_dict(state["method"])
                rows, last_good, elapsed_before = state["rows"], state["last_good"], state["elapsed"]
                log.info("resumed %s from checkpoint at step %d", spec.job_id, method.k)
            if not rows:
                p0 = evaluate_step(problem, method, 0, spec.step_size, spec.eval, spec.seed)
                rows.append({"k": 0, "t": 0.0, **p0})
        bar = tqdm(
            range(method.k + 1, spec.n_steps + 1),
            desc=spec.job_id,
            unit="step",
            disable=not progress,
            initial=method.k,
            total=spec.n_steps,
        )
        for k in bar:
            left = remaining()
            if left is not None and left <= 0:  # a resumed run whose earlier attempts spent the budget
                raise BudgetExceeded
            with _deadline(left):
                stats = method.step()
                row: dict[str, Any] = {
                    "k": k,
                    "t": problem.time_of_step(k, spec.step_size),
                    "time_train_s": stats.train_s,
                    "time_regen_s": stats.regen_s,
                    "time_step_s": stats.train_s + stats.regen_s,
                    "loss": stats.loss,
                    "peak_mem_mb": stats.extra.get("peak_mem_mb", math.nan),
                    # every other diagnostic the method reports (pretraining time, CG iterations, ...)
                    **{f"extra_{key}": float(v) for key, v in stats.extra.items() if key != "peak_mem_mb"},
                }
                if k % spec.eval.every == 0 or k == spec.n_steps:
                    t0 = time.perf_counter()
                    try:
                        row |= evaluate_step(problem, method, k, spec.step_size, spec.eval, spec.seed)
                    except FloatingPointError as e:
                        raise Diverged(f"step {k}: {e}") from e
                    row["time_eval_s"] = time.perf_counter() - t0
            rows.append(row)
            last_good = k
            bar.set_postfix(loss=f"{stats.loss:.3g}")
            elapsed = elapsed_before + time.perf_counter() - t_start
            if ckpt is not None and k < spec.n_steps:
                _save_checkpoint(
                    ckpt,
                    {
                        "spec_hash": spec_hash(spec),
                        "method": method.state_dict(),
                        "rows": rows,
                        "last_good": last_good,
                        "elapsed": elapsed,
                    },
                )
            if budget is not None and elapsed > budget and k < spec.n_steps:
                status, message = "timeout", f"time budget {budget:g} s exceeded after step {k}"
                break
        bar.close()
    except BudgetExceeded:
        where = f"during step {last_good + 1}" if rows else "before step 0 was evaluated"
        status, message = "timeout", f"time budget {budget:g} s exceeded {where}"
    except Diverged as e:
        status, message = "diverged", str(e)
    except Exception as e:  # recorded, never raised: one bad run must not stop a suite
        status, message = "failed", f"{type(e).__name__}: {e}"
        log.error("run %s failed:\n%s", spec.job_id, traceback.format_exc())
    if status != "ok":
        log.warning("run %s ended with status %s: %s", spec.job_id, status, message)
    base = _base_row(spec, problem, prov)
    if not rows:
        rows = [{"k": 0, "t": 0.0}]
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["status"] = status
    df["message"] = message
    df["last_good_step"] = last_good
    df["wall_s"] = elapsed_before + time.perf_counter() - t_start
    if out is not None:
        write_parquet_atomic(df, out)
        if checkpoint is not None:
            Path(checkpoint).unlink(missing_ok=True)
    return df
