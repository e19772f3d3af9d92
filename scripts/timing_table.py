#!/usr/bin/env python
r"""Seconds per JKO step vs dimension for every registered method, the centrepiece's speed ratios, and where the
time goes. Writes ``results/timing/``:

* ``table.parquet`` / ``table.md``: one row per (method, d): seconds per JKO step, training and particle
  regeneration separately (the method's own ``StepStats``, timed by :mod:`wgfbench.timing`), inner iterations
  measured, training seconds per inner iteration, peak memory, provenance columns;
* ``kernels.parquet`` (and a section of ``table.md``): the variational JKO inner loop vs its naive transcription,
  and the exact ICNN log-det (closed-form and torch.func batched Hessians) vs per-coordinate backward passes, as
  ratios measured side by side in this run;
* ``seconds_per_step.png`` / ``.pdf``: log-log, seconds per JKO step vs d, one line per method;
* ``profile_<method>_d<d>.txt``: torch.profiler operator tables of one step (where the time goes);
* ``census.parquet`` (and a section of ``table.md``): the variational JKO's inner iteration per d split into
  arithmetic (its matrix-product FLOPs at the device's measured GEMM rate, :mod:`wgfbench.bench.census`) and the
  rest (per-operator dispatch or kernel launches, elementwise work), with its operator count.

A method may be given as a variant, ``NAME:key=value,...`` (e.g. ``variational_jko:compile=default``), to time it
with config overrides; its rows carry the variant in ``variant`` and ``label``. By default the centrepiece's
compiled variant is timed beside the eager one (``compile=default`` on the CPU, ``compile=reduce-overhead``,
i.e. CUDA graphs, on a GPU) and table.md gives the eager / compiled ratio per d.

What is measured (stated in table.md): OU problems, the timing budgets of ``wgfbench/bench/workloads.py``
(``TIMING_PARAMS``: paper-sized networks and minibatches, 10 inner iterations per step, about 8-10k particles),
one CPU thread, step 1 excluded as warm-up, median of the timed steps. Where a cell would exceed ``--cell-budget``
seconds, fewer inner iterations are run and ``step_s`` is normalised to the common 10 iterations
(``step_s = train_s / iters * 10 + regen_s``, flagged in the ``normalised`` column); cells predicted to need
more than the budget even at one iteration are recorded as skipped, with the prediction.

    python scripts/timing_table.py                      # full table (CPU: about 10-15 min on 2 cores)
    python scripts/timing_table.py --dims 2 16 --methods variational_jko exact_jko --out /tmp/t   # quick look
    python scripts/timing_table.py --device cuda --out results/timing/gpu     # on a GPU (CUDA events, GPU memory)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from wgfbench.bench import workloads as W
from wgfbench.methods.base import UnsupportedProblem

ROOT = Path(__file__).resolve().parents[1]
from wgfbench.registry import methods  # noqa: E402
from wgfbench.timing import measure, provenance  # noqa: E402

DIMS = (2, 4, 8, 16, 32, 64, 128, 256)
COMMON_ITERS = 10


def iters_field(method: str) -> str | None:
    """The Config field holding the inner iterations per JKO step, if the method has one."""
    import dataclasses

    from wgfbench.registry import method_class

    fields = {f.name for f in dataclasses.fields(method_class(method).Config)}
    return "iters_per_step" if "iters_per_step" in fields else None


def parse_variant(spec: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:key=value,key=value`` -> (method name, config overrides); values read as YAML scalars."""
    from wgfbench.cli import _kv

    name, _, rest = spec.partition(":")
    return name, _kv([item for item in rest.split(",") if item], f"a method variant ({spec!r}, NAME:key=value,...)")


def default_methods(device: str) -> list[str]:
    """Every registered method, and the centrepiece compiled (CUDA graphs on a GPU)."""
    mode = "reduce-overhead" if torch.device(device).type == "cuda" else "default"
    return [*methods(), f"variational_jko:compile={mode}"]


def measure_cell(spec: str, dim: int, iters: int | None, repeats: int, device: str) -> dict:
    """One (method, d) cell in a fresh process (so that its peak memory is its own): see :func:`_measure_cell`."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        return pool.submit(_measure_cell, spec, dim, iters, repeats, device).result()


def _measure_cell(spec: str, dim: int, iters: int | None, repeats: int, device: str) -> dict:
    torch.set_num_threads(1)
    method, overrides = parse_variant(spec)
    params = overrides | {"device": device} | ({} if iters is None else {"iters_per_step": iters})
    m = W.build_jko(method, dim, params=params)
    t = measure(m.step, device=m.device, warmup=1, repeats=repeats, keep_results=True)
    train = sorted(s.train_s for s in t.results)[len(t.results) // 2]
    regen = sorted(s.regen_s for s in t.results)[len(t.results) // 2]
    row = {
        "step_s_measured": t.median,
        "train_s": train,
        "regen_s": regen,
        "iters": iters if iters is not None else math.nan,
        "train_s_per_iter": train / iters if iters else math.nan,
        "peak_mem_mb": t.peak_mem_mb,
        "repeats": repeats,
    }
    row["step_s"] = row["train_s_per_iter"] * COMMON_ITERS + regen if iters else t.median
    row["normalised"] = bool(iters and iters != COMMON_ITERS)
    return row


def method_rows(spec: str, dims: list[int], cell_budget: float, log, device: str = "cpu") -> list[dict]:
    """Cells of one method (or variant) in increasing d; each cell's cost is predicted from the previous ones
    (growth in d between linear and cubic) to choose the inner iterations and repeats that fit ``cell_budget``."""
    method, overrides = parse_variant(spec)
    variant = spec.partition(":")[2]
    field = iters_field(method)
    base_iters = W.timing_params(method, overrides).get(field, COMMON_ITERS) if field else None  # variant's wins
    rows = []
    prev: tuple[int, float, float] | None = None  # (dim, seconds per iteration (or per step), growth exponent)
    for dim in dims:
        row = {"method": method, "variant": variant, "label": spec, "dim": dim, "status": "ok", "note": ""}
        iters, repeats = base_iters, 3
        if prev is not None:
            unit = prev[1] * (dim / prev[0]) ** min(3.0, max(1.0, prev[2]))
            if 2 * unit > cell_budget:
                row.update(status="skipped", note=f"predicted {unit:.0f} s per {'iteration' if iters else 'step'}")
            else:
                if unit * (iters or 1) * 4 > cell_budget:
                    repeats = 1
                if iters:
                    iters = min(base_iters, max(1, int(cell_budget / ((1 + repeats) * unit))))
        if row["status"] == "ok":
            t0 = time.perf_counter()
            try:
                row.update(measure_cell(spec, dim, iters, repeats, device))
            except UnsupportedProblem as err:
                row.update(status="unsupported", note=str(err))
            row["wall_s"] = time.perf_counter() - t0
            if row["status"] == "ok":
                unit = row["train_s_per_iter"] if iters else row["step_s"]
                growth = (
                    math.log(unit / prev[1]) / math.log(dim / prev[0]) if prev and unit > 0 and prev[1] > 0 else 2.0
                )
                prev = (dim, max(unit, 1e-6), growth)
        log(
            f"{spec:22s} d={dim:4d} {row['status']:9s} step {row.get('step_s', math.nan):9.4f} s "
            f"(iters {row.get('iters', math.nan)}, repeats {repeats}) {row['note']}"
        )
        rows.append(row)
    return rows


def kernel_rows(dims: list[int], log) -> list[dict]:
    """Ours vs naive inner loop, and batched vs per-coordinate ICNN log-det, interleaved per dimension."""
    rows = []
    for dim in dims:
        t = {}
        for rnd in range(2):  # A B, B A: cancels drift between the two measurements
            for impl in ("ours", "naive") if rnd == 0 else ("naive", "ours"):
                wl = W.vjko_inner_workload(dim, iters=COMMON_ITERS, naive=impl == "naive", repeats=3)
                t.setdefault(impl, []).append(measure(wl.setup(), warmup=1, repeats=3).median)
        ours, naive = min(t["ours"]), min(t["naive"])
        rows.append(
            {
                "kernel": "variational JKO inner loop (10 iterations, batch 1024, J2=3, J3=1)",
                "dim": dim,
                "reference": "naive transcription",
                "reference_s": naive,
                "impl": "ours (_train_step)",
                "impl_s": ours,
                "speedup": naive / ours,
            }
        )
        log(f"vjko inner d={dim:4d}: ours {ours:.4f} s, naive {naive:.4f} s, speed-up {naive / ours:.2f}x")
    for dim in [d for d in dims if d <= 64]:
        for train in (False, True):
            t = {}
            for impl in W.LOGDET_IMPLS:
                repeats = 3 if not (impl != "analytic" and dim >= 32 and train) else 1
                wl = W.logdet_workload(dim, 256, impl=impl, train=train, repeats=repeats)
                t[impl] = measure(wl.setup(), warmup=1, repeats=repeats).median
            for impl in ("analytic", "torch_func"):
                rows.append(
                    {
                        "kernel": f"ICNN log det Hess, n=256, {'value + parameter gradient' if train else 'value'}",
                        "dim": dim,
                        "reference": "per-coordinate backward passes",
                        "reference_s": t["per_coordinate"],
                        "impl": f"batched ({impl})",
                        "impl_s": t[impl],
                        "speedup": t["per_coordinate"] / t[impl],
                    }
                )
            log(
                f"logdet d={dim:3d} {'grad ' if train else 'value'}: "
                + ", ".join(f"{k} {v:.4f} s" for k, v in t.items())
            )
    return rows


def census_rows(dims: list[int], device: str, log) -> list[dict]:
    """Per d, one inner iteration of the variational JKO: measured seconds, operator calls, FLOPs, and the split
    into arithmetic (FLOPs at the measured GEMM rate) and the rest. Eager code (the census cannot see inside
    compiled graphs)."""
    from wgfbench.bench.census import gemm_rate, op_census

    rate = gemm_rate(device)
    log(f"GEMM rate on {device}: {rate / 1e9:.1f} GFLOP/s")
    rows = []
    for dim in dims:
        m = W.vjko_inner(dim, iters=COMMON_ITERS, params={"device": device})
        census = op_census(m._train_step)
        t = measure(m._train_step, device=m.device, warmup=1, repeats=7)  # one cell per d: more repeats
        per_iter, ops, flops = (v / COMMON_ITERS for v in (t.median, census.op_calls, census.flops))
        arithmetic = flops / rate
        rows.append(
            {
                "dim": dim,
                "s_per_iter": per_iter,
                "op_calls_per_iter": ops,
                "gflop_per_iter": flops / 1e9,
                "gemm_gflops": rate / 1e9,
                "arithmetic_s": arithmetic,
                "rest_s": per_iter - arithmetic,
                "rest_us_per_op": 1e6 * (per_iter - arithmetic) / ops,
            }
        )
        log(
            f"census d={dim:4d}: {per_iter * 1e3:.2f} ms/iter, {ops:.0f} ops, "
            f"{flops / 1e9:.3f} GFLOP -> arithmetic {arithmetic * 1e3:.2f} ms"
        )
    return rows


REGEN_KS = (1, 2, 5, 10, 20)


def regen_rows(dims: list[int], log, device: str = "cpu", n_particles: int = 512_000) -> list[dict]:
    """Seconds to produce the particles of P_{k+1} after k maps: regeneration (fresh P_0 draws through all k maps,
    Fan's code) vs carry-forward (the current set through the newest map only), at Fan's 512,000 particles.

    The chain holds k copies of one trained map (a push costs the same whatever the weights), so no training is
    needed; the two modes are timed alternately per k (A B, B A), CPU seconds beside wall seconds."""
    import copy

    rows = []
    for dim in dims:
        m = W.build_jko("variational_jko", dim, params={"device": device, "n_particles": n_particles,
                                                         "regen_chunk": 65_536})  # fmt: skip
        m.step()  # one trained map, and particles of P_1
        base = m.chain.maps[0]
        for k in REGEN_KS:
            while len(m.chain.maps) < k:
                m.chain.maps.append(copy.deepcopy(base))
            t = {}
            for rnd in range(2):
                for mode in ("regenerate", "carry") if rnd == 0 else ("carry", "regenerate"):
                    m.config = dataclasses.replace(m.config, particles=mode)
                    res = measure(m._next_particles, device=m.device, warmup=0, repeats=1)
                    t.setdefault(mode, []).append((res.seconds[0], res.cpu_seconds[0]))
            for mode, vals in t.items():
                rows.append({"dim": dim, "k": k, "particles": mode, "n_particles": n_particles,
                             "wall_s": min(v[0] for v in vals), "cpu_s": min(v[1] for v in vals)})  # fmt: skip
            log(
                f"regen d={dim:3d} k={k:3d}: regenerate {min(v[0] for v in t['regenerate']):.3f} s, "
                f"carry {min(v[0] for v in t['carry']):.3f} s"
            )
    return rows


def regen_markdown(regen: pd.DataFrame) -> list[str]:
    lines = [
        "## Particle regeneration vs k: regenerate (Fan's code) vs carry forward (`particles=carry`)",
        "",
        f"Seconds to produce the {int(regen.n_particles.iloc[0]):,} particles of P_(k+1) once the chain holds k maps "
        "(min of 2 alternated runs; wall and CPU). Regeneration pushes fresh P_0 draws through all k maps (O(k) per "
        "step, O(K^2) per run); carrying pushes the current set through the newest map only (O(1) per step).",
        "",
        "| d | k | regenerate s (CPU s) | carry s (CPU s) | regenerate / carry |",
        "|---:|---:|---:|---:|---:|",
    ]
    for (dim, k), g in regen.groupby(["dim", "k"]):
        r = g[g.particles == "regenerate"].iloc[0]
        c = g[g.particles == "carry"].iloc[0]
        lines.append(
            f"| {dim} | {k} | {r.wall_s:.3f} ({r.cpu_s:.3f}) | {c.wall_s:.3f} ({c.cpu_s:.3f}) | "
            f"{r.wall_s / c.wall_s:.1f}x |"
        )
    return [*lines, ""]


def profile_step(method: str, dim: int, out: Path, device: str = "cpu") -> list[tuple[str, float]]:
    """torch.profiler table of one JKO step (after a warm-up step); returns the top operators by self CPU %."""
    from torch.profiler import ProfilerActivity, profile

    m = W.build_jko(method, dim, params={"device": device})
    m.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if m.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        m.step()
    avgs = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in avgs) or 1.0
    text = avgs.table(sort_by="self_cpu_time_total", row_limit=25)
    (out / f"profile_{method}_d{dim}.txt").write_text(text + "\n")
    top = sorted(avgs, key=lambda e: -e.self_cpu_time_total)[:6]
    return [(e.key, 100.0 * e.self_cpu_time_total / total) for e in top]


def figure(df: pd.DataFrame, prov: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from wgfbench.reports.figures import method_colors

    ok = df[df.status == "ok"].copy()
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(7.6, 4.4), layout="constrained")
    # one colour per method, as in every figure of the package (variants of a method differ by marker)
    colors = method_colors(sorted(ok.method.unique()))
    palette = {label: colors[m] for label, m in ok[["label", "method"]].drop_duplicates().itertuples(index=False)}
    sns.lineplot(
        data=ok, x="dim", y="step_s", hue="label", style="label", palette=palette, markers=True, dashes=False, ax=ax
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("seconds per JKO step")
    ax.set_title(
        f"OU, timing budget ({COMMON_ITERS} inner iterations per step), "
        f"{'GPU' if prov['device'] == 'cuda' else '1 CPU thread'}\n"
        f"{prov['device_name']} | torch {prov['torch_version']} | {prov['git_commit'][:12]}",
        fontsize=8,
    )
    handles, labels = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    fig.legend(handles, labels, fontsize=7, loc="outside right upper", frameon=False)
    fig.savefig(out / "seconds_per_step.png", dpi=150)
    fig.savefig(out / "seconds_per_step.pdf")
    plt.close(fig)


def markdown(
    df: pd.DataFrame, kernels: pd.DataFrame, census: pd.DataFrame, profiles: dict, prov: dict, wall: float
) -> str:
    def fmt(x, spec=".4g"):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    on_gpu = prov["device"] == "cuda"
    lines = [
        f"# Seconds per JKO step vs dimension ({'GPU: ' + prov['device_name'] if on_gpu else 'CPU'})",
        "",
        "Measured by `scripts/timing_table.py` in one run; re-run with `python scripts/timing_table.py`.",
        "",
        "**Provenance:** " + ", ".join(f"{k}={v}" for k, v in prov.items()),
        "",
        *(
            []
            if on_gpu
            else [
                "**GPU: not measured** (no GPU was lent to this task). The CPU numbers below are one thread on a",
                "shared 2-core machine; other jobs ran at the same time, so single cells carry noise of tens of",
                "percent.",
                "",
            ]
        ),
        "**What was measured.** OU problem (spectrum generator, seed 0), step size 0.05. Each cell builds a fresh",
        "method with the timing budget of `wgfbench/bench/workloads.py` (`TIMING_PARAMS`: the papers' networks and",
        f"minibatch, {COMMON_ITERS} inner iterations per step instead of 500, 8192-10240 particles), runs step 1 as",
        "warm-up (excluded; it includes JKO-ICNN's identity pretraining, 20 iterations here), then times steps 2..",
        "(median). `train_s` and `regen_s` are the method's own training and particle-regeneration times",
        "(`StepStats`, timed by `wgfbench.timing`). `step_s` = seconds per JKO step at the common budget: where",
        f"a cell ran fewer than {COMMON_ITERS} iterations to fit the time budget, `step_s = train_s / iters * "
        f"{COMMON_ITERS} + regen_s` (column `normalised`). Each cell runs in a fresh process; peak memory is that",
        "process's peak RSS on the CPU (it includes the ~250 MB of an imported torch), torch.cuda.max_memory_allocated",
        "on the GPU. The speed-ratio kernels run on the CPU. At the papers' budget (500 iterations, 512k",
        "particles) training takes ~50x longer and regeneration ~60x (times the number of maps for the pushforward",
        "methods).",
        "",
        "| method | d | status | step s | train s | regen s | iters | train s / iter | normalised | peak mem MB |"
        " note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.label} | {r.dim} | {r.status} | {fmt(r.step_s)} | {fmt(r.train_s)} | {fmt(r.regen_s)} | "
            f"{fmt(r.iters, '.0f')} | {fmt(r.train_s_per_iter)} | {'yes' if r.normalised is True else ''} | "
            f"{fmt(r.peak_mem_mb, '.0f')} | {r.note} |"
        )
    vj = df[(df.label == "variational_jko") & (df.status == "ok")].set_index("dim")
    if len(vj) > 1:
        lo, hi = vj.index.min(), vj.index.max()
        lines += [
            "",
            f"Variational JKO, seconds per step d={hi} / d={lo}: **{vj.step_s[hi] / vj.step_s[lo]:.2f}x** "
            f"(training per iteration: {vj.train_s_per_iter[hi] / vj.train_s_per_iter[lo]:.2f}x).",
        ]
    for variant in sorted(set(df[(df.method == "variational_jko") & (df.variant != "")].variant)):
        other = df[(df.method == "variational_jko") & (df.variant == variant) & (df.status == "ok")].set_index("dim")
        common = sorted(set(vj.index) & set(other.index))
        if common:
            lines += [
                "",
                f"Variational JKO eager / `{variant}`, seconds per step (training only in brackets; separate cells,"
                " so tens of percent of noise): "
                + ", ".join(
                    f"d={d}: **{vj.step_s[d] / other.step_s[d]:.2f}x** ({vj.train_s[d] / other.train_s[d]:.2f}x)"
                    for d in common
                )
                + ".",
            ]
    lines += [
        "",
        "## Speed ratios measured side by side (same run, interleaved)",
        "",
        "| kernel | d | reference | reference s | implementation | implementation s | speed-up |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for r in kernels.itertuples():
        lines.append(
            f"| {r.kernel} | {r.dim} | {r.reference} | {r.reference_s:.4f} | {r.impl} | {r.impl_s:.4f} | "
            f"**{r.speedup:.2f}x** |"
        )
    lines += [
        "",
        "The naive inner loop (`wgfbench/bench/workloads.py::naive_train_step`) is the same algorithm (same networks,",
        "optimisers, minibatch, J1/J2/J3) as a direct transcription would write it: Gamma as a",
        "`torch.distributions.MultivariateNormal` rebuilt every iteration, T(y) recomputed for every h-step,",
        "`zero_grad(set_to_none=False)`, no `requires_grad` toggling, `.item()` on both losses every iteration.",
        "",
    ]
    if len(census):
        rate = census.gemm_gflops.iloc[0]
        lines += [
            "## Where the time goes: arithmetic vs per-operator cost (variational JKO, one inner iteration)",
            "",
            "Census of one eager inner iteration (`wgfbench.bench.census`: aten operator calls, forward and backward,",
            f"and matrix-product FLOPs), against the device's measured GEMM rate ({rate:.1f} GFLOP/s, 1024^3 fp32",
            "product). *Arithmetic* = FLOPs / GEMM rate, the time at the best rate the device reaches (a lower",
            "bound); *rest* = measured - arithmetic: per-operator dispatch (CPU) or kernel launches (GPU),",
            "elementwise memory traffic, small products below peak rate.",
            "",
            "| d | s / iteration | operator calls | GFLOP | arithmetic s | rest s | rest per operator (us) |"
            " arithmetic share |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in census.itertuples():
            lines.append(
                f"| {r.dim} | {r.s_per_iter:.4g} | {r.op_calls_per_iter:.0f} | {r.gflop_per_iter:.3g} | "
                f"{r.arithmetic_s:.3g} | {r.rest_s:.3g} | {r.rest_us_per_op:.1f} | "
                f"{100 * r.arithmetic_s / r.s_per_iter:.0f}% |"
            )
        lines.append("")
    lines += [
        "## Where the time goes (torch.profiler, one step, self CPU time)",
        "",
    ]
    for (method, dim), top in profiles.items():
        cell = df[(df.method == method) & (df.dim == dim)].iloc[0]
        total = cell.train_s + cell.regen_s
        phases = (
            f"training {100 * cell.train_s / total:.0f}%, particle regeneration {100 * cell.regen_s / total:.0f}%"
            if total > 0
            else "no work"
        )
        ops = "; ".join(f"{name} {pct:.0f}%" for name, pct in top) or "no operators (the step does nothing)"
        lines.append(f"- **{method}, d={dim}**: {phases}. Operators (`profile_{method}_d{dim}.txt`): {ops}")
    lines += ["", f"Total wall time of this run: {wall:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    ap.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="registered names or variants NAME:key=value,... (default: every method and the compiled centrepiece)",
    )
    ap.add_argument("--cell-budget", type=float, default=90.0, help="seconds one (method, d) cell may take")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timing")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (GPU path: CUDA-event timing, GPU peak memory)")
    ap.add_argument("--no-kernels", action="store_true")
    ap.add_argument("--no-profiles", action="store_true")
    ap.add_argument("--no-census", action="store_true")
    ap.add_argument("--regen-dims", type=int, nargs="+", default=[2, 64])
    ap.add_argument(
        "--only-regen",
        action="store_true",
        help="only the regeneration-vs-k section: writes regen_vs_k.parquet and regen_vs_k.md, leaves table.md",
    )
    ap.add_argument(
        "--replot",
        action="store_true",
        help="only redraw seconds_per_step.png/.pdf from OUT/table.parquet (no measurement)",
    )
    args = ap.parse_args(argv)
    if args.replot:
        df = pd.read_parquet(args.out / "table.parquet")
        figure(df, df.iloc[0].to_dict(), args.out)  # the provenance columns are the same on every row
        print(f"redrew {args.out / 'seconds_per_step.png'} (and .pdf) from {args.out / 'table.parquet'}")
        return 0
    args.methods = args.methods or default_methods(args.device)

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    prov = provenance(args.device)
    regen = pd.DataFrame(regen_rows(args.regen_dims, log, args.device))
    for key, value in prov.items():
        regen[key] = value
    regen.to_parquet(args.out / "regen_vs_k.parquet", index=False)
    header = ["# Particle regeneration vs k", "", "**Provenance:** " + ", ".join(f"{k}={v}" for k, v in prov.items())]
    (args.out / "regen_vs_k.md").write_text("\n".join([*header, "", *regen_markdown(regen)]))
    if args.only_regen:
        log(f"wrote {args.out}/regen_vs_k.md, regen_vs_k.parquet")
        return 0
    rows = []
    for method in args.methods:
        rows += method_rows(method, sorted(args.dims), args.cell_budget, log, args.device)
    df = pd.DataFrame(rows)
    kernels = pd.DataFrame(kernel_rows(sorted(args.dims), log)) if not args.no_kernels else pd.DataFrame()
    census = pd.DataFrame(census_rows(sorted(args.dims), args.device, log)) if not args.no_census else pd.DataFrame()
    profiles = {}
    if not args.no_profiles:
        for method in [m for m in args.methods if ":" not in m]:
            ok = df[(df.label == method) & (df.status == "ok")]
            for dim in sorted(
                {min(64, int(ok.dim.max()))} | ({max(args.dims)} if method == "variational_jko" else set())
            ):
                if dim in set(ok.dim) and float(ok[ok.dim == dim].step_s.iloc[0]) < 20:
                    profiles[method, dim] = profile_step(method, dim, args.out, args.device)
    for key, value in prov.items():
        df[key] = value
        for extra in (kernels, census):
            if len(extra):
                extra[key] = value
    df.to_parquet(args.out / "table.parquet", index=False)
    if len(kernels):
        kernels.to_parquet(args.out / "kernels.parquet", index=False)
    if len(census):
        census.to_parquet(args.out / "census.parquet", index=False)
    figure(df, prov, args.out)
    text = markdown(df, kernels, census, profiles, prov, time.perf_counter() - t0)
    (args.out / "table.md").write_text(text + "\n" + "\n".join(regen_markdown(regen)))
    log(f"wrote {args.out}/table.md, table.parquet, kernels.parquet, seconds_per_step.png/.pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
