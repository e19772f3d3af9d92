"""The GPU check's CPU path (``--small``), as CI runs it: every section writes its cells, the table names the device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def _gpu_check():
    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_cpu_path_writes_every_section(tmp_path: Path) -> None:
    assert _gpu_check().main(["--small", "--device", "cpu", "--out", str(tmp_path)]) == 0
    df = pd.read_parquet(tmp_path / "table.parquet")
    assert set(df.section) == {"fan_protocol", "compile", "methods"}
    ok = df[df.status == "ok"]
    fan = ok[ok.section == "fan_protocol"].iloc[0]
    assert fan.variant == "eager" and fan.step_s > 0 and 0 < fan.symkl_jko < 10
    assert set(ok[ok.section == "compile"].dim) == {2, 4}  # eager cells; compiled ones are skipped on the CPU path
    assert set(df[(df.section == "compile") & (df.variant != "eager")].status) == {"skipped"}
    methods = ok[ok.section == "methods"]
    assert set(methods.method) == {"exact_jko", "variational_jko"} and (methods.step_s > 0).all()
    text = (tmp_path / "table.md").read_text()
    assert "# GPU check: seconds per JKO step on" in text and "device_name=" in text
