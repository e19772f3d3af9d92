#!/usr/bin/env python
r"""The GPU check: one run of about ten minutes on a GPU machine that writes ``results/timing/gpu/``.

In this order (the headline first, so that a run cut short still has it), every timing by :mod:`wgfbench.timing`
(CUDA events on a GPU), within a wall-clock ``--deadline`` (later cells are recorded as skipped):

1. **Fan et al.'s OU protocol at d = 64** (512,000 particles, batch 1024, 500 iterations of 3 dual and 1 map
   steps per JKO step: the centrepiece's Config defaults), ``--fan-steps`` JKO steps eager and with
   ``compile=reduce-overhead`` (CUDA graphs): seconds per step (training and particle regeneration), and the
   moment-fit SymKL of the particles to the exact JKO iterate and to P_t. Fan et al. report about 11 s per JKO
   step on their GPU (22 s per two steps, ICML 2022, §5.2); ``table.md`` states the ratio.
2. **Eager vs compiled centrepiece** vs d (2 to 256): the timing budget with ``--compile-iters`` inner iterations
   per step, eager and ``compile=reduce-overhead`` (the first compiled step, which pays the compilation, is the
   warm-up), seconds per step and the ratio.
3. **Seconds per JKO step vs d for every registered method** (its ``timing_params`` budget, on OU or the problem
   its class names), d = 2 to 256; a method that refuses a dimension is recorded as unsupported.

Files: ``table.parquet`` (one row per cell: section, method, variant, d, status, seconds per step, training and
regeneration seconds, peak memory, errors for section 1), ``table.md`` (the same with the device name and
provenance), ``log.txt``.

On a GPU machine, from the repository root (POT is not needed; see ``results/timing/gpu/README.md``)::

    python scripts/gpu_check.py --device cuda --out results/timing/gpu

``--small`` is the CPU path CI runs (``tests/test_gpu_check.py``): d = 2 and 4, two cheap methods, the Fan
protocol shrunk to 4096 particles and 5 iterations, compiled cells skipped (compiling on a CPU takes minutes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
DIMS = (2, 4, 8, 16, 32, 64, 128, 256)
FAN_STEP_S_PAPER = 11.0  # Fan et al., ICML 2022, §5.2: about 22 s per two JKO steps on their GPU (OU, any d)


def bootstrap() -> None:
    """Import from a bare checkout (a GPU machine where the package is not installed): ``wgfbench`` from the
    repository root and the ``baselines`` folder as ``wgfbench_baselines`` (what pyproject.toml maps it to)."""
    import importlib.util

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("wgfbench_baselines") is None:
        folder = ROOT / "baselines"
        spec = importlib.util.spec_from_file_location(
            "wgfbench_baselines", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["wgfbench_baselines"] = module
        spec.loader.exec_module(module)


class Clock:
    """Wall-clock deadline of the whole run."""

    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


def fan_cells(device: str, small: bool, steps: int, clock: Clock, log) -> list[dict]:
    """Section 1: Fan's OU protocol at d = 64 (d = 4 and a shrunk budget with ``small``), eager and compiled."""
    from wgfbench.bench import workloads as W
    from wgfbench.metrics import gaussian_symkl
    from wgfbench.problems.gaussian import moment_fit
    from wgfbench.registry import method_class

    cls = method_class("variational_jko")
    defaults = cls.Config()
    params = {key: getattr(defaults, key) for key in cls.timing_params} | {"device": device}
    dim = 64
    if small:
        params |= {"n_particles": 4096, "iters_per_step": 5, "regen_chunk": 4096}
        dim = 4
    rows = []
    for variant in ("eager", "compile=reduce-overhead"):
        row = {"section": "fan_protocol", "method": "variational_jko", "variant": variant, "dim": dim}
        if variant != "eager" and small:
            rows.append(row | {"status": "skipped", "note": "--small: no compilation on the CPU path"})
            continue
        if clock.left() < 60:
            rows.append(row | {"status": "skipped", "note": "deadline"})
            continue
        try:
            extra = {} if variant == "eager" else {"compile": "reduce-overhead"}
            m = W.build_jko("variational_jko", dim, params=params | extra)
            stats = []
            for _ in range(steps):
                stats.append(m.step())
                log(f"fan {variant} d={dim} k={m.k}: train {stats[-1].train_s:.2f} s, regen {stats[-1].regen_s:.2f} s")
            timed = stats[1:] or stats  # step 1 is warm-up (and the compilation) where there are more
            fit = moment_fit(m.particles)
            problem, h = m.problem, m.step_size
            step_s = sorted(s.train_s + s.regen_s for s in timed)[len(timed) // 2]
            row |= {
                "status": "ok",
                "step_s": step_s,
                "train_s": sorted(s.train_s for s in timed)[len(timed) // 2],
                "regen_s": sorted(s.regen_s for s in timed)[len(timed) // 2],
                "first_step_s": stats[0].train_s + stats[0].regen_s,
                "steps": steps,
                "iters": params["iters_per_step"],
                "peak_mem_mb": max(s.extra.get("peak_mem_mb", math.nan) for s in stats),
                "symkl_jko": gaussian_symkl(fit, problem.jko_reference(m.k, h)),
                "symkl_pde": gaussian_symkl(fit, problem.reference(problem.time_of_step(m.k, h))),
                "paper_ratio": FAN_STEP_S_PAPER / step_s,
            }
        except Exception as err:  # a failing cell is recorded, the run goes on
            row |= {"status": "failed", "note": f"{type(err).__name__}: {err}"[:300]}
            log(traceback.format_exc())
        rows.append(row)
    return rows


def step_cell(section: str, method: str, variant: str, dim: int, params: dict, device: str, repeats: int) -> dict:
    """Seconds per JKO step of a fresh method (step 1 warm-up, then ``repeats`` timed steps, median)."""
    from wgfbench.bench import workloads as W
    from wgfbench.methods.base import UnsupportedProblem
    from wgfbench.registry import method_class
    from wgfbench.timing import measure

    row = {"section": section, "method": method, "variant": variant, "dim": dim}
    try:
        problem = method_class(method).contract_problem
        m = W.build_jko(method, dim, params=params | {"device": device}, problem=problem)
        t = measure(m.step, device=m.device, warmup=1, repeats=repeats, keep_results=True)
    except UnsupportedProblem as err:
        return row | {"status": "unsupported", "note": str(err)[:300]}
    except Exception as err:
        return row | {"status": "failed", "note": f"{type(err).__name__}: {err}"[:300]}
    mid = len(t.results) // 2
    return row | {
        "status": "ok",
        "step_s": t.median,
        "train_s": sorted(s.train_s for s in t.results)[mid],
        "regen_s": sorted(s.regen_s for s in t.results)[mid],
        "peak_mem_mb": t.peak_mem_mb,
        "iters": params.get("iters_per_step", math.nan),
        "steps": repeats,
    }


def compile_cells(device: str, dims: list[int], iters: int, small: bool, clock: Clock, log) -> list[dict]:
    """Section 2: the centrepiece eager and compiled (CUDA graphs), same budget, per d."""
    from wgfbench.bench import workloads as W

    rows = []
    for dim in dims:
        for variant in ("eager", "compile=reduce-overhead"):
            base = {"section": "compile", "method": "variational_jko", "variant": variant, "dim": dim}
            if variant != "eager" and small:
                rows.append(base | {"status": "skipped", "note": "--small: no compilation on the CPU path"})
                continue
            if clock.left() < 30:
                rows.append(base | {"status": "skipped", "note": "deadline"})
                continue
            params = W.timing_params("variational_jko", {"iters_per_step": iters})
            if small:
                params |= {"n_particles": 2048, "regen_chunk": 2048, "batch_size": 256}
            if variant != "eager":
                params["compile"] = "reduce-overhead"
            row = step_cell("compile", "variational_jko", variant, dim, params, device, repeats=1 if small else 2)
            log(f"compile {variant} d={dim}: {row['status']} {row.get('step_s', math.nan):.4f} s {row.get('note', '')}")
            rows.append(row)
    return rows


def method_cells(device: str, dims: list[int], methods: list[str], clock: Clock, log, repeats: int = 2) -> list[dict]:
    """Section 3: every method's seconds per step vs d at its timing budget; a method whose cell took more than
    a twentieth of the time left skips its larger dimensions."""
    from wgfbench.bench import workloads as W

    rows = []
    for method in methods:
        too_slow = False
        for dim in dims:
            base = {"section": "methods", "method": method, "variant": "", "dim": dim}
            if too_slow or clock.left() < 20:
                rows.append(base | {"status": "skipped", "note": "deadline" if not too_slow else "previous d slow"})
                continue
            t0 = time.perf_counter()
            row = step_cell("methods", method, "", dim, W.timing_params(method), device, repeats=repeats)
            too_slow = time.perf_counter() - t0 > clock.left() / 20
            log(f"{method} d={dim}: {row['status']} {row.get('step_s', math.nan):.4f} s {row.get('note', '')}")
            rows.append(row)
    return rows


def markdown(df: pd.DataFrame, prov: dict, args, wall: float) -> str:
    def fmt(x, spec=".4g"):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    lines = [
        f"# GPU check: seconds per JKO step on {prov['device_name']}",
        "",
        f"Measured by `scripts/gpu_check.py` (`{' '.join(sys.argv[1:]) or 'defaults'}`) in {wall:.0f} s.",
        "",
        "**Provenance:** " + ", ".join(f"{k}={v}" for k, v in prov.items()),
        "",
        "## 1. Fan et al.'s OU protocol (512,000 particles, batch 1024, 500 iterations per step)",
        "",
        "| variant | d | status | s / step (median, steps 2..) | train s | regen s | first step s |"
        " SymKL to JKO iterate | SymKL to P_t | paper's ~11 s / ours | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in df[df.section == "fan_protocol"].to_dict("records"):
        lines.append(
            f"| {r['variant']} | {r['dim']} | {r['status']} | {fmt(r.get('step_s'))} | {fmt(r.get('train_s'))} | "
            f"{fmt(r.get('regen_s'))} | {fmt(r.get('first_step_s'))} | {fmt(r.get('symkl_jko'), '.3g')} | "
            f"{fmt(r.get('symkl_pde'), '.3g')} | {fmt(r.get('paper_ratio'), '.1f')} | {r.get('note') or ''} |"
        )
    lines += [
        "",
        f"## 2. Centrepiece eager vs `compile=reduce-overhead` (timing budget, {args.compile_iters} iterations/step)",
        "",
        "| d | eager s / step | compiled s / step | eager / compiled |",
        "|---:|---:|---:|---:|",
    ]
    comp = df[(df.section == "compile") & (df.status == "ok")]
    for dim in sorted(df[df.section == "compile"].dim.unique()):
        e = comp[(comp.dim == dim) & (comp.variant == "eager")].step_s
        c = comp[(comp.dim == dim) & (comp.variant != "eager")].step_s
        ev, cv = (float(e.iloc[0]) if len(e) else math.nan), (float(c.iloc[0]) if len(c) else math.nan)
        lines.append(f"| {dim} | {fmt(ev)} | {fmt(cv)} | {fmt(ev / cv if cv == cv else math.nan, '.2f')} |")
    lines += [
        "",
        "## 3. Seconds per JKO step vs d, every method (its `timing_params` budget)",
        "",
        "| method | d | status | s / step | train s | regen s | peak mem MB | note |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in df[df.section == "methods"].to_dict("records"):
        lines.append(
            f"| {r['method']} | {r['dim']} | {r['status']} | {fmt(r.get('step_s'))} | {fmt(r.get('train_s'))} | "
            f"{fmt(r.get('regen_s'))} | {fmt(r.get('peak_mem_mb'), '.0f')} | {r.get('note') or ''} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timing" / "gpu")
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    ap.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    ap.add_argument("--fan-steps", type=int, default=3)
    ap.add_argument("--compile-iters", type=int, default=50)
    ap.add_argument("--deadline", type=float, default=570.0, help="wall seconds for the whole run")
    ap.add_argument("--small", action="store_true", help="the CPU path CI runs (module docstring)")
    args = ap.parse_args(argv)

    bootstrap()
    from wgfbench.registry import methods
    from wgfbench.timing import provenance

    if args.small:
        args.dims = [d for d in args.dims if d <= 4][:2] or [2]
        args.methods = args.methods or ["exact_jko", "variational_jko"]
        args.fan_steps, args.compile_iters = 2, 3
    args.methods = args.methods or list(methods())
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    args.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.deadline)
    log_file = (args.out / "log.txt").open("w")

    def log(msg: str) -> None:
        line = f"[{time.perf_counter() - clock.t0:6.1f} s] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")

    prov = provenance(args.device)
    log(f"device {prov['device_name']} ({args.device}), torch {prov['torch_version']}")
    rows = fan_cells(args.device, args.small, args.fan_steps, clock, log)
    rows += compile_cells(args.device, args.dims, args.compile_iters, args.small, clock, log)
    rows += method_cells(args.device, args.dims, args.methods, clock, log, repeats=1 if args.small else 2)
    df = pd.DataFrame(rows)
    for key, value in prov.items():
        df[key] = value
    df.to_parquet(args.out / "table.parquet", index=False)
    wall = time.perf_counter() - clock.t0
    (args.out / "table.md").write_text(markdown(df, prov, args, wall))
    log(f"wrote {args.out}/table.md, table.parquet ({wall:.0f} s)")
    log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
