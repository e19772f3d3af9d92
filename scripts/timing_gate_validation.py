#!/usr/bin/env python
"""Validate the CI timing gate: N back-to-back runs with no change must all pass, planted slowdowns must fail.

    python scripts/timing_gate_validation.py                 # 10 unchanged runs + 2 planted runs (about 1 h here)
    python scripts/timing_gate_validation.py --unchanged 2 --planted 0 --out /tmp/v   # quick look

Each run is ``scripts/timing_gate.py --base HEAD --current HEAD`` (identical library code in both trees, so any
ratio away from 1 is the machine's noise), or the same with ``--plant``. Writes ``<out>/gate_validation.md`` (the
summary: per run the verdict, the largest ratios, wall time; per workload the largest ratios over the unchanged
runs) and ``<out>/gate_validation/run_XX.{md,json}`` (every run's own report and raw numbers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANTS = [
    "wgfbench.methods.variational_jko:VariationalJKO._train_step=2",
    "wgfbench.metrics:w2_emd=2",
]


def run_gate(label: str, extra: list[str], out: Path, log) -> dict:
    report, raw = out / f"{label}.md", out / f"{label}.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "timing_gate.py"), "--base", "HEAD", "--current", "HEAD"]
    cmd += [*extra, "--report", str(report), "--json", str(raw)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode == 2 or not raw.exists():
        raise RuntimeError(f"gate could not run ({proc.returncode}):\n{proc.stderr[-2000:]}")
    data = json.loads(raw.read_text())
    rows = [r for r in data["rows"] if r["ratio_median"] == r["ratio_median"]]
    result = {
        "label": label,
        "plant": extra[1] if extra else "",
        "exit": proc.returncode,
        "status": data["status"],
        "wall_s": wall,
        "max_ratio_median": max(r["ratio_median"] for r in rows),
        "max_ratio_min": max(r["ratio_min"] for r in rows),
        "max_paired": max(r["ratio_hi"] for r in rows),
        "flagged": [r["workload"] for r in data["rows"] if r["verdict"] == "REGRESSION"],
        "rows": data["rows"],
    }
    log(
        f"{label}: {result['status']} (exit {proc.returncode}) in {wall:.0f} s, max ratio_median "
        f"{result['max_ratio_median']:.2f}, max ratio_min {result['max_ratio_min']:.2f}, flagged {result['flagged']}"
    )
    return result


def summary(unchanged: list[dict], planted: list[dict], factor: str, load: list[str]) -> str:
    lines = [
        "# Timing gate validation",
        "",
        "Produced by `python scripts/timing_gate_validation.py` (each run: `python scripts/timing_gate.py --base HEAD"
        " --current HEAD [--plant ...]`, 5 ABBA rounds, CPU clock, failure factor "
        f"{factor}). Per-run reports and raw numbers: `gate_validation/run_XX.md|json`.",
        "",
        "The machine: 2 cores shared with other engineers' jobs during the whole validation; load averages seen at "
        "the start of each run: " + ", ".join(load) + ".",
        "",
        f"## {len(unchanged)} back-to-back runs with no change: "
        f"{sum(r['status'] == 'FAIL' for r in unchanged)} failures",
        "",
        "| run | verdict | exit | wall s | max ratio_median | max ratio_min | max paired ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in unchanged:
        lines.append(
            f"| {r['label']} | {r['status']} | {r['exit']} | {r['wall_s']:.0f} | {r['max_ratio_median']:.2f} | "
            f"{r['max_ratio_min']:.2f} | {r['max_paired']:.2f} |"
        )
    if unchanged:
        lines += [
            "",
            "Largest ratios per workload over the unchanged runs (1.00 = no difference; the gate flags a workload only "
            f"when ratio_median and ratio_min both exceed {factor} and every paired ratio exceeds 1):",
            "",
            "| workload | max ratio_median | max ratio_min | max paired ratio | min paired ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        names = [r["workload"] for r in unchanged[0]["rows"]]
        for name in names:
            rs = [row for run in unchanged for row in run["rows"] if row["workload"] == name]
            lines.append(
                f"| {name} | {max(x['ratio_median'] for x in rs):.2f} | {max(x['ratio_min'] for x in rs):.2f} | "
                f"{max(x['ratio_hi'] for x in rs):.2f} | {min(x['ratio_lo'] for x in rs):.2f} |"
            )
    if planted:
        lines += ["", "## Planted slowdowns (a temporary copy of the current tree, never committed)", ""]
        lines += ["| run | plant | verdict | exit | flagged workloads (ratio_median, ratio_min) |"]
        lines += ["|---|---|---|---:|---|"]
        for r in planted:
            flagged = ", ".join(
                f"{row['workload']} ({row['ratio_median']:.2f}, {row['ratio_min']:.2f})"
                for row in r["rows"]
                if row["verdict"] == "REGRESSION"
            )
            lines.append(f"| {r['label']} | `{r['plant']}` | {r['status']} | {r['exit']} | {flagged} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--unchanged", type=int, default=10)
    ap.add_argument("--planted", type=int, default=len(PLANTS), help=f"how many of {PLANTS} to run")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timing")
    args = ap.parse_args(argv)
    runs_dir = args.out / "gate_validation"
    runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    sys.path.insert(0, str(ROOT / "scripts"))
    from timing_gate import DEFAULT_FACTOR

    unchanged, planted, load = [], [], []
    for i in range(args.unchanged):
        load.append(Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?")
        unchanged.append(run_gate(f"run_{i + 1:02d}", [], runs_dir, log))
    for j, plant in enumerate(PLANTS[: args.planted]):
        load.append(Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?")
        planted.append(run_gate(f"run_planted_{j + 1}", ["--plant", plant], runs_dir, log))
    text = summary(unchanged, planted, f"{DEFAULT_FACTOR:g}", load)
    (args.out / "gate_validation.md").write_text(text)
    print(text)
    ok = all(r["status"] == "PASS" for r in unchanged) and all(r["status"] == "FAIL" for r in planted)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
