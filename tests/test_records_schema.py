"""The record schema of wgfbench.records: a fresh record has exactly the documented columns and types, its typed
parameter columns equal its JSON, an older record (a committed one, and a schema-1 file) upgrades on read, and the
long view's resolution flag follows value > floor q95."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wgfbench import records
from wgfbench.metrics import catalogue
from wgfbench.records import SCHEMA_VERSION, RecordError, metrics_long, read_record, read_records, read_table

REPO = Path(__file__).resolve().parents[1]
OLD_RECORD = REPO / "results" / "default" / "runs" / "ou" / "exact_jko" / "d2_s0.parquet"  # committed, schema 0
PARAMETER_TYPES = {"bool", "int64", "double", "string", "null"}


def same_table(a: pa.Table, b: pa.Table) -> bool:
    """Equal names, types and values, NaN equal to NaN (Arrow's equals counts NaN != NaN)."""
    if a.column_names != b.column_names or not a.schema.equals(b.schema, check_metadata=False):
        return False
    for name in a.column_names:
        x, y = a[name].to_pylist(), b[name].to_pylist()
        same = [u == v or (isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v))
                for u, v in zip(x, y, strict=True)]  # fmt: skip
        if not all(same):
            return False
    return True


def documented_groups() -> list[tuple[list[str], str]]:
    """(column names or patterns, type) of every row of the schema table in records' module docstring."""
    lines = records.__doc__.splitlines()
    borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( =+)+", line.strip())]
    assert len(borders) >= 3, "the schema table of wgfbench.records is missing"
    widths = [len(part) for part in lines[borders[0]].split(" ")]
    groups: list[tuple[list[str], str]] = []
    for line in lines[borders[1] + 1 : borders[2]]:
        names, kind = line[: widths[0]].strip(), line[widths[0] + 1 : widths[0] + 1 + widths[1]].strip()
        if names:
            groups.append(([n.strip() for n in names.split(",")], kind))
    return groups


def documented_type(column: str, groups: list[tuple[list[str], str]]) -> str:
    """The documented type of ``column``; AssertionError if no row, or more than one, of the table covers it."""
    exact = [kind for names, kind in groups if column in names]
    if exact:
        assert len(exact) == 1, f"{column} documented twice"
        return exact[0]
    matches = []
    for names, kind in groups:
        for name in names:
            if name == "<metric column>":
                try:
                    metric, _, _ = catalogue.parse(column)
                except ValueError:
                    continue
                if metric is not None:
                    matches.append(kind)
            elif "<name>" in name and column.startswith(name.replace("<name>", "")) and len(column) > len(name) - 6:
                matches.append(kind)
    assert len(matches) == 1, f"column {column!r}: {len(matches)} rows of the schema table cover it"
    return matches[0]


def assert_documented(table: pa.Table) -> None:
    groups = documented_groups()
    for field in table.schema:
        kind = documented_type(field.name, groups)
        actual = str(field.type)
        if kind == "parameter":
            assert actual in PARAMETER_TYPES, f"{field.name}: {actual}"
        else:
            assert actual == kind, f"{field.name}: stored as {actual}, documented as {kind}"


@pytest.fixture(scope="module")
def fresh() -> pa.Table:
    from wgfbench.runner import run_record
    from wgfbench.suites import suite_from_args

    spec = suite_from_args(
        "ou",
        "exact_jko",
        2,
        n_steps=2,
        problem_params={"generator": "spectrum"},
        eval_params={"sample_metrics": ["sw2"], "floor_reps": 20, "n_w2": 200, "n_mc": 512, "n_samples": 2000},
    )
    return run_record(spec, progress=False)


def test_documented_table_parses() -> None:
    names = [n for group, _ in documented_groups() for n in group]
    for required in ("schema_version", "run_date", "run_hash", "k", "status", "p_problem_<name>", "<metric column>"):
        assert required in names


def test_fresh_record_has_exactly_the_documented_types(fresh: pa.Table) -> None:
    assert fresh["schema_version"].to_pylist() == [SCHEMA_VERSION] * len(fresh)
    assert fresh.schema.field("run_date").type == pa.timestamp("us", tz="UTC")
    assert_documented(fresh)
    # and what a reader gets from the file is the same table
    assert fresh.column_names[0] == "schema_version"


def test_fresh_record_round_trips_through_its_file(fresh: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    records.write_record_atomic(fresh, path)
    back = read_table(path)
    assert back.schema.equals(fresh.schema, check_metadata=False)
    assert same_table(back, fresh)
    df = read_record(path)
    assert str(df["run_date"].dtype) in ("datetime64[us, UTC]", "datetime64[ns, UTC]")
    assert df["k"].dtype == np.int64 and df["dim"].dtype == np.int64 and df["t"].dtype == np.float64


def test_parameter_columns_equal_the_json(fresh: pa.Table) -> None:
    df = records.to_frame(fresh)
    seen = 0
    for source, prefix in records.PARAM_PREFIXES.items():
        for _, row in df.iterrows():
            params = json.loads(row[source])
            for key, value in params.items():
                typed = row[prefix + key]
                expected = value if not isinstance(value, (list, dict)) else json.dumps(value, sort_keys=True)
                assert typed == expected, (prefix + key, typed, value)
                seen += 1
            assert {c[len(prefix) :] for c in df if c.startswith(prefix)} == set(params)
    assert seen > 10
    assert df["p_problem_generator"].iloc[0] == "spectrum"
    assert df["p_eval_floor_reps"].dtype == np.int64  # a number, not text
    assert json.loads(df["p_eval_sample_metrics"].iloc[0]) == ["sw2"]  # a list stays JSON


def test_parameter_array_types() -> None:
    assert records.parameter_array([1, 2]).type == pa.int64()
    assert records.parameter_array([1, 2.5]).type == pa.float64()
    assert records.parameter_array([True, None]).type == pa.bool_()
    assert records.parameter_array(["a", None]).to_pylist() == ["a", None]
    assert records.parameter_array([None, None]).type == pa.null()
    assert records.parameter_array([1, "a"]).to_pylist() == ["1", '"a"']  # a mixture: JSON text
    assert records.parameter_array([True, 1]).type == pa.string()  # a bool is not an integer here


def test_committed_old_record_upgrades_on_read() -> None:
    raw = pq.read_table(OLD_RECORD)
    assert "run_hash" not in raw.column_names and "schema_version" not in raw.column_names  # truly schema 0
    table = read_table(OLD_RECORD)
    assert table["schema_version"].to_pylist() == [SCHEMA_VERSION] * len(raw)
    assert table["run_hash"].null_count == len(raw)
    assert_documented(table)
    stored = raw["run_date"][0].as_py()
    when = table["run_date"][0].as_py()
    assert when.tzinfo is not None
    expected = datetime.fromisoformat(stored)
    assert when == (expected if expected.tzinfo else expected.replace(tzinfo=UTC))
    df = read_record(OLD_RECORD)
    problem = json.loads(df["problem_params"].iloc[0])
    assert problem and all(df[f"p_problem_{k}"].iloc[0] == v for k, v in problem.items())
    # the measured values are untouched
    for name in ("k", "t", "symkl_moment"):
        if name in raw.column_names:
            assert table[name].to_pylist() == raw[name].to_pylist()


def test_schema_1_record_upgrades_to_a_fresh_record(fresh: pa.Table, tmp_path: Path) -> None:
    """A record as the runner wrote it before schema 2 (pandas, provenance as text) reads as a fresh one."""
    old = records.to_frame(fresh).drop(columns=["schema_version", *(c for c in fresh.column_names if c[:2] == "p_")])
    for c in (*records.BOOL_PROVENANCE, *records.INT_PROVENANCE):
        old[c] = old[c].astype(str)
    old["run_date"] = old["run_date"].map(lambda d: d.isoformat(timespec="seconds"))
    path = tmp_path / "schema1.parquet"
    old.to_parquet(path, index=False)
    back = read_table(path)
    assert back.column_names == fresh.column_names
    assert back.schema.equals(fresh.schema, check_metadata=False)
    assert same_table(back.drop_columns(["run_date"]), fresh.drop_columns(["run_date"]))
    seconds = [d.replace(microsecond=0) for d in fresh["run_date"].to_pylist()]
    assert back["run_date"].to_pylist() == seconds
    # and reading only some columns upgrades by the file's schema
    assert read_record(path, columns=["run_hash", "cpu_count"])["cpu_count"].dtype == np.int64


def test_newer_schema_is_refused(fresh: pa.Table, tmp_path: Path) -> None:
    newer = fresh.set_column(0, "schema_version", pa.array([SCHEMA_VERSION + 1] * len(fresh), pa.int64()))
    path = tmp_path / "newer.parquet"
    pq.write_table(newer, path)
    with pytest.raises(RecordError, match="schema"):
        read_table(path)


def test_records_of_different_schemas_concatenate(fresh: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "fresh.parquet"
    records.write_record_atomic(fresh, path)
    df = read_records([path, OLD_RECORD])
    assert len(df) == len(fresh) + pq.read_metadata(OLD_RECORD).num_rows
    assert set(df["schema_version"]) == {SCHEMA_VERSION}
    assert df["run_hash"].isna().sum() == pq.read_metadata(OLD_RECORD).num_rows
    assert str(df["run_date"].dtype).startswith("datetime64")


def test_parameter_type_clash_becomes_json_text() -> None:
    a = pa.table({"p_method_x": pa.array([1], pa.int64())})
    b = pa.table({"p_method_x": pa.array(["wide"], pa.string())})
    c = pa.table({"p_method_x": pa.array([0.5], pa.float64())})
    assert records.concat_records([a, b])["p_method_x"].to_pylist() == ["1", '"wide"']
    assert records.concat_records([a, c])["p_method_x"].to_pylist() == [1.0, 0.5]  # numbers stay numbers


def test_long_view_resolution_against_a_hand_made_frame() -> None:
    base = {"suite": "s", "experiment": "e", "problem": "ou", "method": "m", "dim": 2, "seed": 0, "k": 1, "t": 0.1}
    df = pd.DataFrame(
        [
            {**base, "w2": 0.5, "w2_floor": 0.1, "w2_floor_sd": 0.02, "w2_floor_q95": 0.2, "sw2": 0.3},
            {**base, "k": 2, "w2": 0.15, "w2_floor": 0.1, "w2_floor_sd": 0.02, "w2_floor_q95": 0.2, "sw2": math.nan},
            {**base, "k": 3, "w2": math.inf, "w2_floor": 0.1, "w2_floor_sd": 0.02, "w2_floor_q95": 0.2, "sw2": 0.1},
        ]
    )
    long = metrics_long(df)
    w2 = long[long["column"] == "w2"].set_index("k")
    assert w2.loc[1, "resolved"] == True  # noqa: E712 (pandas' nullable boolean)
    assert w2.loc[2, "resolved"] == False  # noqa: E712
    assert pd.isna(w2.loc[3, "resolved"])  # no finite value: unknown, not unresolved
    assert w2.loc[1, "floor_q95"] == 0.2 and w2.loc[1, "floor"] == 0.1 and w2.loc[1, "floor_sd"] == 0.02
    sw2 = long[long["column"] == "sw2"]
    assert sw2["k"].tolist() == [1, 3]  # the NaN value has no row
    assert sw2["resolved"].isna().all()  # sw2 without floor columns: no resolution
    assert set(long["metric"]) == {"w2", "sw2"} and set(long["against"]) == {"pde"}
    assert list(long.columns[-1:]) == ["resolved"]


def test_long_view_of_a_real_record(fresh: pa.Table) -> None:
    df = records.to_frame(fresh)
    long = metrics_long(df)
    metric_columns = [c for c in df if c in set(long["column"])]
    assert len(long) == sum(int(df[c].notna().sum()) for c in metric_columns)
    row = long[(long["column"] == "symkl_moment") & (long["k"] == 2)].iloc[0]
    source = df[df["k"] == 2].iloc[0]
    assert row["value"] == source["symkl_moment"] and row["floor_q95"] == source["symkl_moment_floor_q95"]
    assert row["resolved"] == (source["symkl_moment"] > source["symkl_moment_floor_q95"])
    assert set(long["against"]) <= {"pde", "jko", "jko_pde"}


def test_every_committed_record_reads_in_the_current_schema() -> None:
    """The README's Records example: every committed record, whatever its schema, reads as one documented table."""
    folders = sorted(p for p in (REPO / "results").glob("*/runs") if any(p.rglob("*.parquet")))
    assert folders
    tables = [read_table(f) for folder in folders for f in sorted(folder.rglob("*.parquet"))]
    for table in tables:
        assert_documented(table)
    df = read_records(folders)
    assert len(df) == sum(len(t) for t in tables) and set(df["schema_version"]) == {SCHEMA_VERSION}
    assert str(df["run_date"].dtype).startswith("datetime64") and df["run_date"].notna().all()
    long = metrics_long(df)
    assert len(long) > len(df) and long["resolved"].notna().any()


def test_write_tables_writes_the_long_view_beside_the_table(tmp_path: Path) -> None:
    from wgfbench.reports.tables import write_tables

    df = read_records([OLD_RECORD.parent.parent])  # the committed OU records of the default suite
    paths = write_tables(df, tmp_path, title="t")
    assert [p.name for p in paths] == ["table.md", "table.parquet", "summary.parquet", "metrics.parquet"]
    long = pd.read_parquet(tmp_path / "metrics.parquet")
    assert len(long) == len(metrics_long(df)) and str(long["resolved"].dtype) == "boolean"
    assert len(pd.read_parquet(tmp_path / "table.parquet")) == len(df)
    # the provenance table prints the run dates as ISO 8601 text, as before they were timestamps
    first = df["run_date"].min().isoformat(timespec="seconds")
    assert f"| {first} |" in (tmp_path / "table.md").read_text()
