r"""Result records: one parquet file per run, one row per evaluated JKO step, written atomically; and the long view.

This docstring is the one description of the record schema (the README links here; ``tests/test_records_schema.py``
checks every column of a fresh record against the table below). A record is tidy and dense: one row per
(run, step), one column per quantity, parameters as typed columns beside their JSON, numbers as numbers, dates
as timestamps.

Schema (version 2, :data:`SCHEMA_VERSION`). Types are Arrow's, as stored in the parquet file; pandas reads
``double`` as float64, ``int64`` as int64, ``string`` as str (object before pandas 3), ``bool`` as bool,
``timestamp[us, tz=UTC]`` as datetime64[us, UTC]. A null is a value that does not exist for that row (pandas: NaN,
None or NaT), e.g. the evaluation time of a step that was not evaluated; a NaN is stored as null too (as pandas
stored records of schemas 0 and 1), while infinities stay (a metric that blew up).

================================================== ===================== ===============================================
columns                                            type                  meaning
================================================== ===================== ===============================================
schema_version                                     int64                 the schema the record follows (this table)
suite, experiment, problem, method                 string                identity: suite and experiment names, the
                                                                         registered problem and method
dim, seed                                          int64                 identity: dimension; seed of the instance and
                                                                         of the method
h, report_t                                        double                JKO step size; the flow time the tables report
n_steps                                            int64                 the number of JKO steps K asked for
problem_params, method_params                      string                JSON (sorted keys) of the parameters the suite
                                                                         gives (a parameter not given had the code's
                                                                         default at git_commit); with run_hash, the
                                                                         run's identity
eval_params                                        string                JSON of every evaluation setting
                                                                         (wgfbench.evaluate.EvalSpec)
problem_info                                       string                JSON of the problem's describe()
spec_hash                                          string                hash of the whole run specification (spec_hash:
                                                                         checkpoints)
run_hash                                           string                the run's identity as its suite states it
                                                                         (run_hash); null in records of schema 0
p_problem_<name>, p_method_<name>, p_eval_<name>   parameter             one column per entry of problem_params,
                                                                         method_params, eval_params (benchopt's
                                                                         p_solver_*): bool, int64, double or string as
                                                                         the value is; lists and mappings as JSON text
                                                                         (string); type null for a null value
status                                             string                ok, diverged, timeout or failed (STATUSES)
message                                            string                why the run did not end ok (empty for ok)
last_good_step                                     int64                 the last finished JKO step
wall_s                                             double                seconds the run took, earlier attempts of a
                                                                         resumed run included
git_commit, device, device_name, cuda_version      string                provenance (wgfbench.timing.provenance): where
                                                                         and with what the run was computed
torch_version, pot_version, numpy_version          string                provenance: library versions ("absent" where
                                                                         not installed)
pandas_version, python_version, hostname           string                provenance: library versions, the host
cudnn_benchmark, tf32_matmul, tf32_cudnn           bool                  provenance: torch settings that change speed
                                                                         and numerics
cpu_count, torch_threads                           int64                 provenance: CPUs of the machine; torch's CPU
                                                                         threads in the run
run_date                                           timestamp[us, tz=UTC] when the run started (provenance)
k                                                  int64                 the JKO step of the row (0: the initial law
                                                                         P_0)
t                                                  double                flow time of step k (problem.time_of_step)
time_train_s, time_regen_s, time_step_s            double                seconds of the step: training, particle
                                                                         regeneration, their sum (null at k = 0)
time_eval_s                                        double                seconds of the step's evaluation (null at k = 0
                                                                         and where not evaluated)
loss, peak_mem_mb                                  double                the method's loss at the step (null where
                                                                         it optimises nothing); peak memory in MB
extra_<name>                                       double                every other diagnostic the method reports for
                                                                         the step
n_moment, n_sample, n_density                      double                sample sizes of the moment fits, the sample
                                                                         metrics, the density metrics
<metric column>                                    double                every metric column of
                                                                         wgfbench.metrics.catalogue: the value and its
                                                                         _vs_jko, _floor, _floor_sd, _floor_q95, _se,
                                                                         _corrected and _jko_pde columns (null where not
                                                                         evaluated)
================================================== ===================== ===============================================

Schema versions (:func:`upgrade` turns a record of any of them into the current one on read, so a reader never
sees an older schema; the file is not rewritten):

* 0: records written before run hashes (e.g. the committed ``results/default`` records): no ``run_hash``, no
  ``schema_version``; parameters as JSON only; every provenance value as text, ``run_date`` ISO 8601 text.
  Upgraded: ``run_hash`` null, the rest as for 1.
* 1: ``run_hash`` added (issue 14). Upgraded: ``p_*`` columns from the JSON columns, provenance booleans and counts
  typed, ``run_date`` parsed (a date without a zone is taken as UTC), ``large_string`` columns as ``string``.
* 2 (current): ``schema_version``; the typed ``p_*`` columns; typed provenance; ``run_date`` a timestamp; records
  written from Arrow tables with explicit types (:func:`record_table`).

**Long view** (:func:`metrics_long`, written as ``metrics.parquet`` beside ``table.parquet`` by
:func:`wgfbench.reports.tables.write_tables`): one row per (run, step, metric) with the run's identity, ``metric``
(the catalogue name), ``against`` (``pde``: the PDE solution or stationary target; ``jko``: the exact JKO iterate;
``jko_pde``: the exact JKO iterate's own distance to the PDE solution, the time-discretisation error), ``column``
(the record column), ``value``, ``floor``, ``floor_sd``, ``floor_q95`` (the metric's noise floor: mean, standard
deviation, 95% quantile; null where the metric has none), ``se`` and ``corrected`` where the catalogue has them,
and ``resolved``: value > floor_q95 (null where there is no floor or no finite value), the per-run resolution rule
of :mod:`wgfbench.reports.stats`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and pyarrow are imported where used, not when a job starts
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 2
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
# the JSON parameter columns and the prefix of their typed columns (benchopt's p_solver_* convention)
PARAM_PREFIXES = {"problem_params": "p_problem_", "method_params": "p_method_", "eval_params": "p_eval_"}
BOOL_PROVENANCE = ("cudnn_benchmark", "tf32_matmul", "tf32_cudnn")
INT_PROVENANCE = ("cpu_count", "torch_threads")
DATE_COLUMNS = ("run_date",)
# the long view (metrics_long): identity of a row, and the parts of a metric that sit beside its value
LONG_ID_COLUMNS = [*ID_COLUMNS, "spec_hash", "run_hash", "status", "k", "t"]
LONG_PARTS = ("floor", "floor_sd", "floor_q95", "se", "corrected")


class RecordError(ValueError):
    """A file that should be a run record cannot be read as one (truncated, foreign, missing, too new)."""


# --- atomic writes ------------------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file: records stay readable to a shared group


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` next to ``path``, fsync, give it the umask's mode, rename it onto ``path``:
    readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # (a temporary file's 0600 is not kept)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`_atomic`)."""
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_parquet_atomic(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Atomic parquet write of a DataFrame (tables, summaries)."""
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_record_atomic(table: pa.Table, path: str | os.PathLike) -> None:
    """Atomic parquet write of a record (an Arrow table, its types as :func:`record_table` gives them)."""
    import pyarrow.parquet as pq

    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    atomic_write_bytes(path, text.encode())


# --- a run's identity ---------------------------------------------------------------------------------------------
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
    """The columns every row of a run's record repeats: identity, specification and provenance (as schema 1 has
    them: :func:`record_table` types them)."""
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


def record_name(spec) -> str:
    """The record of run ``spec`` relative to a suite's output folder: ``runs/<experiment>/<method>/d<dim>_s<seed>``
    (the one layout: the Snakefile's targets, ``run-suite`` and the Python API all name records through it)."""
    return f"runs/{spec.experiment}/{spec.method}/d{spec.dim}_s{spec.seed}.parquet"


def record_path(out: str | os.PathLike, spec) -> Path:
    """Where a suite's outputs keep the record of run ``spec``: ``<out>/`` + :func:`record_name`."""
    return Path(out) / record_name(spec)


# --- the current schema -------------------------------------------------------------------------------------------
def record_table(base: dict[str, Any], steps: list[dict[str, Any]], end: dict[str, Any]) -> pa.Table:
    """A run's record in the current schema: ``base`` (:func:`run_columns`) and ``end`` (the status columns) repeated
    on every row, one row per entry of ``steps`` (a key a step lacks is null there). The rows are laid out as
    schema 1 and go through :func:`upgrade`, the function that upgrades an older record on read, so a fresh record
    and an upgraded one agree."""
    import pyarrow as pa

    names = list(dict.fromkeys([*base, *(key for row in steps for key in row if key not in end), *end]))
    rows = [{**base, **row, **end} for row in steps]
    per_step = {key for row in steps for key in row} - set(base) - set(end)
    columns = {}
    for name in names:
        # from_pandas: NaN as null, as the pandas-written records of schemas 0 and 1 hold it
        values = pa.array([row.get(name) for row in rows], from_pandas=True)
        if name in per_step:  # a step's quantities are numbers: k an integer, the rest double, even where all null
            values = values.cast(pa.int64() if name == "k" else pa.float64())
        columns[name] = values
    return upgrade(pa.table(columns), version=1)


def record_version(names: Iterable[str], schema_version: int | None = None) -> int:
    """The schema of a record with columns ``names`` (and the value of its ``schema_version`` column, if any)."""
    if schema_version is not None:
        return int(schema_version)
    return 1 if "run_hash" in set(names) else 0


def upgrade(table: pa.Table, version: int | None = None) -> pa.Table:
    """Any record (schema 0, 1 or 2: module docstring) in the current schema; ``version``: the record's schema where
    ``table`` holds only some of its columns (read with ``columns=``). A record of a newer schema than this code
    knows is a :class:`RecordError`."""
    import pyarrow as pa

    if version is None:
        stored = table["schema_version"][0].as_py() if "schema_version" in table.column_names and len(table) else None
        version = record_version(table.column_names, stored)
    if version > SCHEMA_VERSION:
        raise RecordError(f"record of schema {version}: this wgfbench reads schemas up to {SCHEMA_VERSION}; update it")
    if version >= SCHEMA_VERSION:
        return table
    n = len(table)
    table = table.replace_schema_metadata(None)  # pandas' metadata of the old file no longer describes the columns
    for i, field in enumerate(table.schema):
        if pa.types.is_large_string(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    if version < 1 and "run_hash" not in table.column_names:
        at = table.column_names.index("spec_hash") + 1 if "spec_hash" in table.column_names else table.num_columns
        table = table.add_column(at, "run_hash", pa.nulls(n, pa.string()))
    for name, convert, kind in (
        *((c, _to_bool, pa.bool_()) for c in BOOL_PROVENANCE),
        *((c, _to_int, pa.int64()) for c in INT_PROVENANCE),
        *((c, _to_timestamp, pa.timestamp("us", tz="UTC")) for c in DATE_COLUMNS),
    ):
        if name in table.column_names and pa.types.is_string(table.schema.field(name).type):
            values = [convert(v) for v in table[name].to_pylist()]
            table = table.set_column(table.column_names.index(name), name, pa.array(values, kind))
    for source, prefix in PARAM_PREFIXES.items():
        if source not in table.column_names:
            continue
        parsed = _parse_json_column(table[source].to_pylist())
        at = table.column_names.index(source) + 1
        for key in dict.fromkeys(key for params in parsed for key in params):
            if prefix + key not in table.column_names:
                table = table.add_column(at, prefix + key, parameter_array([p.get(key) for p in parsed]))
                at += 1
    return table.add_column(0, "schema_version", pa.array([SCHEMA_VERSION] * n, pa.int64()))


def parameter_array(values: list[Any]) -> pa.Array:
    """The typed column of one parameter's values (module docstring): bool, int64, double or string where every
    value is of that kind (ints among floats: double), None as null; anything else (lists, mappings, a mixture)
    as JSON text."""
    import pyarrow as pa

    kinds = {_kind(v) for v in values} - {"null"}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {"bool"}:
        return pa.array(values, pa.bool_())
    if kinds == {"int"}:
        return pa.array(values, pa.int64())
    if kinds <= {"int", "float"}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds == {"str"}:
        return pa.array(values, pa.string())
    return pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values], pa.string())


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -(2**63) <= value < 2**63 else "other"
    if isinstance(value, float):
        return "float"
    return "str" if isinstance(value, str) else "other"


def _parse_json_column(values: list[str | None]) -> list[dict[str, Any]]:
    cache: dict[str | None, dict[str, Any]] = {None: {}}
    out = []
    for v in values:
        if v not in cache:
            parsed = json.loads(v)
            cache[v] = parsed if isinstance(parsed, dict) else {}
        out.append(cache[v])
    return out


def _to_bool(text: str | None) -> bool | None:
    return {"True": True, "False": False, "true": True, "false": False}.get(text) if text is not None else None


def _to_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:  # e.g. "None": os.cpu_count() could not tell
        return None


def _to_timestamp(text: str | None) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- reading --------------------------------------------------------------------------------------------------------
def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """One run record as an Arrow table in the current schema (:func:`upgrade`); :class:`RecordError` (one line
    naming the file) if it cannot be read as one. ``columns``: only these (the file's schema decides the upgrade)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        stored = None
        if "schema_version" in names:
            versions = pf.read(columns=["schema_version"])["schema_version"]
            stored = versions[0].as_py() if len(versions) else None
        version = record_version(names, stored)
        subset = columns is not None and set(columns) <= set(names)
        table = pf.read(columns=list(columns) if subset else None)
    except Exception as e:  # pyarrow raises several types for truncated or foreign files
        raise RecordError(f"{path}: not a readable run record ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        table = upgrade(table, version)
    except RecordError as e:
        raise RecordError(f"{path}: {e}") from None
    if columns is not None:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise RecordError(f"{path}: the record has no column {missing[0]!r}")
        table = table.select(list(columns))
    return table


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A record (or records) as a DataFrame: Arrow's types as the module docstring says; a ``p_*`` column of
    integers or booleans with nulls (a parameter some runs do not give) as pandas' nullable Int64 / boolean."""
    import pandas as pd
    import pyarrow as pa

    df = table.to_pandas()
    for name in table.column_names:
        kind = table.schema.field(name).type
        if name.startswith("p_") and table[name].null_count and (pa.types.is_int64(kind) or pa.types.is_boolean(kind)):
            df[name] = pd.array(table[name].to_pylist(), dtype="Int64" if pa.types.is_int64(kind) else "boolean")
    return df


def read_record(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """One run record as a DataFrame in the current schema; :class:`RecordError` if it cannot be read as one."""
    return to_frame(read_table(path, columns))


def concat_records(tables: list[pa.Table]) -> pa.Table:
    """Records of several runs as one table: columns some records lack are null there; a parameter column whose
    records disagree on its type (an integer in one, a string in another) becomes JSON text in all of them."""
    import pyarrow as pa

    types: dict[str, set] = {}
    for t in tables:
        for field in t.schema:
            if not pa.types.is_null(field.type):
                types.setdefault(field.name, set()).add(field.type)
    numeric = {pa.int64(), pa.float64()}
    clash = [n for n, ts in types.items() if len(ts) > 1 and not ts <= numeric]
    if clash:
        tables = [_as_json_text(t, clash) for t in tables]
    return pa.concat_tables(tables, promote_options="permissive")


def _as_json_text(table: pa.Table, names: list[str]) -> pa.Table:
    import pyarrow as pa

    for name in names:
        if name in table.column_names:
            values = [
                None if v is None else json.dumps(v, sort_keys=True, default=str) for v in table[name].to_pylist()
            ]
            table = table.set_column(table.column_names.index(name), name, pa.array(values, pa.string()))
    return table


def record_files(path: str | os.PathLike) -> list[Path]:
    """The record files a path names: itself if it is a file, every ``*.parquet`` below it (sorted) if it is a
    folder, none if it does not exist."""
    p = Path(path)
    if p.is_dir():
        return sorted(p.rglob("*.parquet"))
    return [p] if p.exists() else []


def read_records(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate run records (parquet files or folders of them) into one table in the current schema."""
    tables = []
    paths = list(paths)
    for p in paths:
        if not Path(p).exists():
            raise RecordError(f"{p}: no such record file or folder")
        tables += [read_table(f) for f in record_files(p)]
    if not tables:
        raise RecordError("no records found in " + ", ".join(str(p) for p in paths))
    return to_frame(concat_records(tables))


# --- the long view --------------------------------------------------------------------------------------------------
def metrics_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step, metric) of records ``df`` (module docstring: the long view); rows only where the
    metric has a value (a metric not evaluated at a step, or NaN there, has no row)."""
    import numpy as np
    import pandas as pd

    from wgfbench.metrics import catalogue

    ids = [c for c in LONG_ID_COLUMNS if c in df]
    frames = []
    for col in df.columns:
        try:
            metric, against, part = catalogue.parse(col)
        except ValueError:
            continue
        if metric is None or part not in (None, "jko_pde"):
            continue
        present = df[col].notna()
        if not present.any():
            continue
        rows = df.loc[present, ids].copy()
        rows["metric"] = metric.name
        rows["against"] = "jko_pde" if part == "jko_pde" else against
        rows["column"] = col
        rows["value"] = df.loc[present, col].astype(np.float64)
        for p in LONG_PARTS:
            source = catalogue.column(metric.name, against, p) if part is None else None
            has = source is not None and catalogue.column_exists(metric, against, p) and source in df
            rows[p] = df.loc[present, source].astype(np.float64) if has else np.nan
        frames.append(rows)
    columns = [*ids, "metric", "against", "column", "value", *LONG_PARTS, "resolved"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    value, q95 = out["value"].to_numpy(), out["floor_q95"].to_numpy()
    known = np.isfinite(value) & np.isfinite(q95)
    resolved = pd.array(np.where(known, value > q95, False), dtype="boolean")
    resolved[~known] = pd.NA
    out["resolved"] = resolved
    return out[columns]
