"""The CI timing gate's logic: verdicts from per-round numbers, planted slowdowns, tree export (nothing timed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("timing_gate", ROOT / "scripts" / "timing_gate.py")
gate = importlib.util.module_from_spec(spec)
sys.modules["timing_gate"] = gate
spec.loader.exec_module(gate)


def rounds(values: list[float], name: str = "w") -> list[dict]:
    return [{name: {"cpu": {"median": v, "min": 0.95 * v}, "wall": {"median": 2 * v, "min": v}}} for v in values]


def one(v: float) -> dict:
    return {"cpu": {"median": v, "min": v}, "wall": {"median": v, "min": v}}


def verdict(base: list[float], cur: list[float], factor: float = 1.6, **kw) -> dict:
    (row,) = gate.compare(rounds(base), rounds(cur), factor, **kw)
    return row


def test_twice_as_slow_everywhere_is_a_regression():
    row = verdict([1.0] * 5, [2.0] * 5)
    assert row["verdict"] == "REGRESSION"
    assert row["ratio_median"] == pytest.approx(2.0)
    assert row["ratio_min"] == pytest.approx(2.0)


def test_clock_choice():
    base = rounds([1.0] * 3)
    cur = [{"w": {"cpu": {"median": 1.0, "min": 1.0}, "wall": {"median": 4.0, "min": 4.0}}} for _ in range(3)]
    (cpu_row,) = gate.compare(base, cur, 1.6, clock="cpu")
    (wall_row,) = gate.compare(base, cur, 1.6, clock="wall")
    assert cpu_row["verdict"] == "ok" and cpu_row["other_ratio"] == pytest.approx(2.0)
    assert wall_row["verdict"] == "REGRESSION" and wall_row["ratio_median"] == pytest.approx(2.0)


def test_small_slowdown_and_speedup():
    assert verdict([1.0] * 5, [1.3] * 5)["verdict"] == "ok"
    assert verdict([1.0] * 5, [0.5] * 5)["verdict"] == "faster"


def test_one_disturbed_round_does_not_fail():
    # a neighbour slows the current tree 3x in two rounds out of five: median and minimum are untouched
    row = verdict([1.0] * 5, [1.0, 3.0, 1.0, 3.0, 1.0])
    assert row["verdict"] == "ok"
    assert row["ratio_hi"] == pytest.approx(3.0)


def test_both_statistics_must_exceed_the_factor():
    # typical time doubled, but the best round is as fast as the base: not flagged
    row = verdict([1.0] * 5, [2.0, 2.0, 2.0, 1.0, 2.0])
    assert row["ratio_median"] == pytest.approx(2.0)
    assert row["ratio_min"] == pytest.approx(1.0)
    assert row["verdict"] == "ok"


def test_not_slower_in_every_round_is_not_a_regression():
    # two rounds where the current tree was faster: no systematic slowdown, whatever the medians say
    row = verdict([1.0, 1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0])
    assert row["ratio_lo"] < 1.0
    assert row["verdict"] == "ok"


def test_allowed_regression_is_reported_not_failed():
    row = verdict([1.0] * 3, [2.0] * 3, allow="^w$")
    assert row["verdict"] == "allowed"
    assert not gate.failed([row])


def test_new_broken_and_failed_workloads():
    base = [{"a": one(1.0), "b": one(1.0), "c": {"error": "X"}}]
    cur = [{"a": one(1.0), "b": {"error": "KeyError: boom"}, "c": one(1.0)}]
    rows = {r["workload"]: r for r in gate.compare(base, cur, 1.6)}
    assert rows["a"]["verdict"] == "ok"
    assert rows["b"]["verdict"] == "BROKEN" and "boom" in rows["b"]["note"]
    assert rows["c"]["verdict"] == "new"
    assert gate.failed(list(rows.values()))
    table = gate.render(list(rows.values()), 1.6, "## header")
    assert "| b |" in table and "BROKEN" in table and "1.6" in table


def test_plant_wraps_methods_and_functions_without_changing_results(tmp_path):
    src = tmp_path / "src"
    (src / "wgfbench").mkdir(parents=True)
    (src / "wgfbench" / "__init__.py").write_text("")
    code = [
        "class A:",
        "    def f(self, x):",
        "        return x + 1",
        "",
        "def g(x):",
        "    return 2 * x",
        "",
        "def h(x):",
        "    return g(x)",
    ]
    (src / "wgfbench" / "mod.py").write_text("\n".join(code) + "\n")
    out = gate.plant_tree(src, tmp_path / "planted", ["wgfbench.mod:A.f=2", "wgfbench.mod:g=3"])
    assert (src / "wgfbench" / "mod.py").read_text().count("planted") == 0  # the source tree is untouched
    spec = importlib.util.spec_from_file_location("planted_mod", out / "wgfbench" / "mod.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.A().f(1) == 2 and mod.g(2) == 4 and mod.h(3) == 6
    assert mod.A.f.__timing_gate_planted__ == 2.0
    assert mod.g.__timing_gate_planted__ == 3.0
    assert not hasattr(mod.h, "__timing_gate_planted__")


def test_plant_rejects_bad_specs(tmp_path):
    (tmp_path / "src" / "wgfbench").mkdir(parents=True)
    with pytest.raises(gate.GateError, match="MODULE:QUALNAME=FACTOR"):
        gate.plant_tree(tmp_path / "src", tmp_path / "p1", ["wgfbench.mod.f=2"])
    with pytest.raises(gate.GateError, match="no module file"):
        gate.plant_tree(tmp_path / "src", tmp_path / "p2", ["wgfbench.nope:f=2"])


def test_export_tree_from_git_revision(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    out = gate.export_tree("HEAD", tmp_path / "t")
    assert (out / "wgfbench" / "timing.py").is_file()
    assert (out / "GATE_REVISION").read_text().strip() == head.stdout.strip()
    assert gate.export_tree("WORKTREE", tmp_path / "w") == ROOT
    with pytest.raises(gate.GateError, match="neither a directory nor a git revision"):
        gate.export_tree("no-such-revision-xyz", tmp_path / "x")
    assert gate.main(["--base", "no-such-revision-xyz", "--rounds", "1"]) == 2


def test_gate_end_to_end_structure(tmp_path):
    """Two trees of the same commit, one cheap workload, one round: the child processes import wgfbench from the
    exported trees and the report has numbers (the verdict is not asserted: that would be a timed assertion)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "gate.json"
    args = ["--base", "HEAD", "--current", "HEAD", "--rounds", "1", "--only", r"^exact_jko\.step", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "timing_gate.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["workload"].startswith("exact_jko.step")
    assert row["base_s"] > 0 and row["current_s"] > 0 and row["ratio_median"] > 0
    (cur,) = data["current"]
    assert len(cur[row["workload"]]["seconds"]) >= 10
    assert "| exact_jko.step" in proc.stdout
