#!/usr/bin/env python
r"""CI timing gate: time the current tree against a reference tree in the same run and fail on a real regression.

Usage (from the repository root, inside the project's environment)::

    python scripts/timing_gate.py                       # working tree vs HEAD~1
    python scripts/timing_gate.py --base HEAD --current HEAD          # identical code: must pass
    python scripts/timing_gate.py --base HEAD --current HEAD \
        --plant 'wgfbench.methods.variational_jko:VariationalJKO._train_step=2'   # planted 2x: must fail

How it measures
* Two trees: ``--current`` (default: the working tree) and ``--base`` (default: ``HEAD~1``). A git revision is
  exported with ``git archive`` (only ``wgfbench/`` and ``baselines/``) into a temporary directory; a directory is
  used as it is. The benchmark *harness* (``wgfbench/bench/workloads.py``: what is timed, with which budget) always
  comes from the working tree, so both trees run exactly the same workloads and only the library code differs.
* Each measurement is a child process ``python scripts/timing_gate.py --child`` with ``PYTHONPATH=<tree>`` (it
  checks that ``wgfbench`` really is imported from that tree), one torch thread, running every workload: setup
  untimed, warm-up calls excluded, then repeated calls timed with ``wgfbench.timing.measure`` (the harness's
  copy of the one timer). The child reports the median per workload.
* Rounds alternate the order of the two trees (A B, B A, A B, ...), so slow drift of the machine cancels.
* The compared clock is the child's CPU time (``time.process_time``, recorded by ``wgfbench.timing`` next to the
  wall time; ``--clock wall`` compares wall time): on a shared 2-core machine other jobs stretch wall time by
  tens of percent but hardly change the CPU time a computation needs.
* Per workload: r_med = median over rounds of the paired ratio current/base (same round), and r_min = (min over
  rounds of current) / (min over rounds of base). A workload **regresses** only if both exceed ``--factor``: the
  minimum is what the code can do when the machine leaves it alone, the paired median is what it does typically;
  a busy neighbour inflates one round or one tree, rarely both statistics. It must also be slower in every
  round (each paired ratio above 1). Short kernels are called repeatedly until about 0.3 s is measured.

Exit status: 0 no regression; 1 regression (or a workload that ran in the base tree and fails in the current
one); 2 the gate itself could not run. ``--plant MODULE:QUALNAME=FACTOR`` (repeatable) makes a temporary copy of
the current tree in which that function is wrapped so that every call takes FACTOR times its own time (the extra
time is spent busy-waiting, like real work): the demonstration that the gate catches a slowdown of that size.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wgfbench", "baselines")
DEFAULT_FACTOR = 1.5
MIN_TIME_S = 0.3  # per workload and child: short kernels are called until about this much time is measured
MAX_REPEATS = 50


class GateError(RuntimeError):
    """The gate itself cannot run (no such revision, a plant that does not apply, a crashed child): exit 2."""


# --- trees -------------------------------------------------------------------------------------------------
def export_tree(spec: str, dest: Path) -> Path:
    """A directory holding the library code of ``spec``: an existing directory, or a git revision (exported)."""
    if spec in ("", "WORKTREE"):
        return ROOT
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if rev.returncode != 0:
        raise GateError(f"{spec!r} is neither a directory nor a git revision of {ROOT} (a shallow clone?)")
    sha = rev.stdout.strip()
    present = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", sha], capture_output=True, text=True, check=True
    ).stdout.split()
    paths = [p for p in PACKAGES if p in present]
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, *paths], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    (dest / "GATE_REVISION").write_text(sha + "\n")
    return dest


def plant_code(qualname: str, factor: float) -> str:
    """Source appended to a module so that ``qualname`` (a function or Class.method) takes ``factor`` x longer."""
    owner, _, attr = qualname.rpartition(".")
    if owner:
        head, *rest = owner.split(".")
        owner_expr = f"globals()[{head!r}]" + "".join(f".{p}" for p in rest)
        get, put = f"getattr({owner_expr}, {attr!r})", f"setattr({owner_expr}, {attr!r}, slowed)"
    else:
        get, put = f"globals()[{attr!r}]", f"globals()[{attr!r}] = slowed"
    return f"""

# --- planted slowdown, added by scripts/timing_gate.py --plant (a temporary copy; never committed) ---
def _timing_gate_plant():
    import functools
    import time

    original = {get}

    @functools.wraps(original)
    def slowed(*args, **kwargs):
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        until = time.perf_counter() + ({factor!r} - 1.0) * (time.perf_counter() - t0)
        while time.perf_counter() < until:
            pass
        return out

    slowed.__timing_gate_planted__ = {factor!r}
    {put}


_timing_gate_plant()
"""


def plant_tree(src: Path, dest: Path, plants: list[str]) -> Path:
    """Copy the library packages of ``src`` to ``dest`` and apply every ``MODULE:QUALNAME=FACTOR`` plant."""
    for pkg in PACKAGES:
        if (src / pkg).is_dir():
            shutil.copytree(src / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for spec in plants:
        m = re.fullmatch(r"([\w.]+):([\w.]+)=([0-9.]+)", spec)
        if not m:
            raise GateError(f"--plant wants MODULE:QUALNAME=FACTOR, got {spec!r}")
        module, qualname, factor = m.group(1), m.group(2), float(m.group(3))
        path = dest / Path(*module.split(".")).with_suffix(".py")
        if not path.is_file():
            raise GateError(f"--plant: no module file {path}")
        with path.open("a") as f:
            f.write(plant_code(qualname, factor))
    return dest


# --- the child: time every workload in one tree ----------------------------------------------------------
def load_harness():
    """The working tree's workloads and timer, loaded by path (the tree under test supplies ``wgfbench``)."""
    mods = {}
    for name, path in (
        ("gate_timing", ROOT / "wgfbench" / "timing.py"),
        ("gate_workloads", ROOT / "wgfbench" / "bench" / "workloads.py"),
    ):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["gate_timing"], mods["gate_workloads"]


def child(tree: Path, only: str | None) -> dict:
    import torch

    torch.set_num_threads(1)
    baselines = tree / "baselines"
    if baselines.is_dir():  # installed under the import name wgfbench_baselines: take the tree's, not the installed
        spec = importlib.util.spec_from_file_location(
            "wgfbench_baselines", baselines / "__init__.py", submodule_search_locations=[str(baselines)]
        )
        sys.modules["wgfbench_baselines"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["wgfbench_baselines"])
    import wgfbench

    where = Path(wgfbench.__file__).resolve()
    if tree.resolve() not in where.parents:
        raise SystemExit(f"timing gate child: wgfbench imported from {where}, not from the tree {tree}")
    timing, workloads = load_harness()
    results: dict[str, dict] = {}
    for wl in workloads.gate_workloads():
        if only and not re.search(only, wl.name):
            continue
        try:
            call = wl.setup()
            # the probe call is one more warm-up call; short kernels get more calls, up to about MIN_TIME_S
            probe = timing.measure(call, warmup=wl.warmup, repeats=1).min
            repeats = max(wl.repeats, min(MAX_REPEATS, math.ceil(MIN_TIME_S / max(probe, 1e-6))))
            t = timing.measure(call, warmup=0, repeats=repeats)
            results[wl.name] = {
                "wall": {"median": statistics.median(t.seconds), "min": min(t.seconds)},
                "cpu": {"median": statistics.median(t.cpu_seconds), "min": min(t.cpu_seconds)},
                "seconds": t.seconds,
                "cpu_seconds": t.cpu_seconds,
            }
        except Exception as err:  # a workload the tree cannot run (absent module, unknown parameter, crash)
            results[wl.name] = {"error": f"{type(err).__name__}: {err}"[:300]}
    return {"tree": str(tree), "wgfbench": str(where), "results": results}


def run_child(tree: Path, only: str | None, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    env.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
    env.setdefault("POT_BACKEND_DISABLE_JAX", "1")
    env.setdefault("POT_BACKEND_DISABLE_CUPY", "1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree)]
    if only:
        cmd += ["--only", only]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child for {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- verdicts -------------------------------------------------------------------------------------------------
def compare(
    base_rounds: list[dict], cur_rounds: list[dict], factor: float, allow: str | None = None, clock: str = "cpu"
) -> list[dict]:
    """One row per workload: medians, the two ratios (module docstring) and a verdict, on ``clock``
    ("cpu": process CPU seconds, "wall": wall seconds); the other clock's median ratio is reported too."""
    other = "wall" if clock == "cpu" else "cpu"
    names = list(dict.fromkeys([n for r in cur_rounds + base_rounds for n in r]))
    rows = []
    for name in names:
        b = [r.get(name, {"error": "absent"}) for r in base_rounds]
        c = [r.get(name, {"error": "absent"}) for r in cur_rounds]
        b_ok = all("error" not in x for x in b)
        c_ok = all("error" not in x for x in c)
        row = {"workload": name, "base_s": math.nan, "current_s": math.nan, "ratio_median": math.nan}
        row.update(ratio_min=math.nan, ratio_lo=math.nan, ratio_hi=math.nan, other_ratio=math.nan, note="")
        if not c_ok:
            err = next(x["error"] for x in c if "error" in x)
            row["verdict"] = "BROKEN" if b_ok else "n/a"
            row["note"] = err if b_ok else f"fails in both trees: {err}"
        elif not b_ok:
            row["verdict"] = "new"
            row["note"] = "not runnable in the base tree: " + next(x["error"] for x in b if "error" in x)
            row["current_s"] = statistics.median(x[clock]["median"] for x in c)
        else:
            paired = [ci[clock]["median"] / bi[clock]["median"] for bi, ci in zip(b, c, strict=True)]
            other_paired = [ci[other]["median"] / bi[other]["median"] for bi, ci in zip(b, c, strict=True)]
            row.update(
                base_s=statistics.median(x[clock]["median"] for x in b),
                current_s=statistics.median(x[clock]["median"] for x in c),
                ratio_median=statistics.median(paired),
                ratio_min=min(x[clock]["min"] for x in c) / min(x[clock]["min"] for x in b),
                ratio_lo=min(paired),
                ratio_hi=max(paired),
                other_ratio=statistics.median(other_paired),
            )
            worse = min(row["ratio_median"], row["ratio_min"])
            better = max(row["ratio_median"], row["ratio_min"])
            if worse > factor and row["ratio_lo"] > 1.0:
                allowed = allow is not None and re.search(allow, name)
                row["verdict"] = "allowed" if allowed else "REGRESSION"
            elif better < 1.0 / factor:
                row["verdict"] = "faster"
            else:
                row["verdict"] = "ok"
        rows.append(row)
    return rows


def failed(rows: list[dict]) -> bool:
    return any(r["verdict"] in ("REGRESSION", "BROKEN") for r in rows)


def render(rows: list[dict], factor: float, header: str, clock: str = "cpu") -> str:
    def f(x: float, fmt: str) -> str:
        return "-" if x != x else format(x, fmt)

    lines = [
        header,
        "",
        f"A workload regresses when both ratio_median and ratio_min exceed {factor:g} and the current tree was "
        "slower in every round (paired range above 1).",
        "",
        f"Times are {'CPU' if clock == 'cpu' else 'wall'} seconds per call (median over rounds of the per-round "
        f"median); the last ratio column is the paired median ratio on the {'wall' if clock == 'cpu' else 'CPU'} "
        "clock, for information.",
        "",
        "| workload | base s | current s | ratio_median | ratio_min | paired range | verdict | "
        f"{'wall' if clock == 'cpu' else 'cpu'} ratio | note |",
        "|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        rng = "-" if r["ratio_lo"] != r["ratio_lo"] else f"{r['ratio_lo']:.2f}-{r['ratio_hi']:.2f}"
        lines.append(
            f"| {r['workload']} | {f(r['base_s'], '.4f')} | {f(r['current_s'], '.4f')} | "
            f"{f(r['ratio_median'], '.2f')} | {f(r['ratio_min'], '.2f')} | {rng} | {r['verdict']} | "
            f"{f(r['other_ratio'], '.2f')} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", default="HEAD~1", help="git revision or directory of the reference (default HEAD~1)")
    ap.add_argument("--current", default="WORKTREE", help="git revision or directory (default: the working tree)")
    ap.add_argument("--rounds", type=int, default=5, help="ABBA rounds (default 5)")
    ap.add_argument("--factor", type=float, default=DEFAULT_FACTOR, help=f"failure factor (default {DEFAULT_FACTOR})")
    ap.add_argument("--plant", action="append", default=[], help="MODULE:QUALNAME=FACTOR slowdown in the current tree")
    ap.add_argument("--only", help="regular expression: run only the matching workloads")
    ap.add_argument("--allow", help="regular expression: workloads allowed to regress (reported, not failed)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="compare CPU (default) or wall seconds")
    ap.add_argument("--json", type=Path, help="write the rows and the raw per-round numbers here")
    ap.add_argument("--report", type=Path, help="write the markdown table here")
    ap.add_argument("--child-timeout", type=float, default=600.0)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        print(json.dumps(child(args.child, args.only)))
        return 0

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wgfbench-gate-") as tmp:
        tmp = Path(tmp)
        try:
            base = export_tree(args.base, tmp / "base")
            current = export_tree(args.current, tmp / "current")
            if args.plant:
                current = plant_tree(current, tmp / "planted", args.plant)
        except (GateError, subprocess.CalledProcessError) as err:
            print(f"timing gate: could not prepare the trees: {err}", file=sys.stderr)
            return 2
        print(f"timing gate: base {args.base} ({base}), current {args.current} ({current})", flush=True)
        if args.plant:
            print(f"timing gate: planted in current: {args.plant}", flush=True)
        base_rounds, cur_rounds = [], []
        try:
            for r in range(args.rounds):
                order = [("base", base), ("current", current)]
                if r % 2:
                    order.reverse()
                for label, tree in order:
                    res = run_child(tree, args.only, args.child_timeout)["results"]
                    (base_rounds if label == "base" else cur_rounds).append(res)
                print(f"timing gate: round {r + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as err:
            print(f"timing gate: could not run: {err}", file=sys.stderr)
            return 2
    rows = compare(base_rounds, cur_rounds, args.factor, args.allow, args.clock)
    status = "FAIL" if failed(rows) else "PASS"
    header = (
        f"## Timing gate: {status} (current {args.current} vs base {args.base}, {args.rounds} ABBA rounds, "
        f"factor {args.factor:g}, {args.clock} clock, {time.perf_counter() - t0:.0f} s)"
    )
    if args.plant:
        header += f"\n\nPlanted slowdown in the current tree: {', '.join(args.plant)}"
    table = render(rows, args.factor, header, args.clock)
    print(table)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(table + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "status": status,
            "factor": args.factor,
            "clock": args.clock,
            "rows": rows,
            "base": base_rounds,
            "current": cur_rounds,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=float))
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
