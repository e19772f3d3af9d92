#!/usr/bin/env python
r"""Time to accuracy: the error against the exact JKO iterate as a function of inner iterations and of CPU seconds,
per step and over a run, for fixed budgets (a ladder) and the adaptive budget side by side. Writes
``results/timing/accuracy/``:

* ``runs.parquet``: one row per (method, mode, d, seed, JKO step k): inner iterations of the step, training and
  regeneration seconds (the method's ``StepStats``), the step's CPU seconds (``time.process_time``, as the CI
  timing gate compares) and wall seconds, their running totals over the run, and the error of P_k against the
  exact JKO iterate: moment-fit SymKL of ``--n-eval`` fresh samples (streamed), with its noise floor
  (:func:`wgfbench.metrics.floors.symkl_moment_floor`: mean and 95% quantile; ``resolved`` when the error lies
  above the quantile), the time-discretisation error SymKL(exact JKO iterate, P_{t_k}) and the error to P_{t_k};
* ``table.md``: per d, the target error (``--target-fraction`` x the time-discretisation error at the last step,
  i.e. optimisation error one tenth of the discretisation error by default), the CPU seconds each budget needed
  to reach it over the run (interpolated along the fixed ladder, :func:`wgfbench.bench.accuracy.seconds_to_reach`),
  the adaptive run's seconds and error beside the fixed protocol's, and the speed-up at equal error;
* ``error_vs_seconds.png`` / ``.pdf``: error at the last step vs CPU seconds of the run, per d, and the error
  per step k.

Problem: OU (spectrum generator, seed = run seed), step size 0.05, ``--steps`` JKO steps. Method budgets: the
method's paper protocol (its Config defaults: for the variational JKO Fan et al.'s 512,000 particles, batch 1024,
500 iterations per step) with the mode's overrides. Modes (``--modes``), each ``[METHOD@]BUDGET:ITERS[:carry]``:
``fixed:N`` (N inner iterations per step), ``plateau:N`` (the adaptive budget, cap N), ``:carry`` (particle
carry-forward instead of regeneration). Runs of one (d, seed) alternate their order between seeds. One torch
thread; the load average is recorded beside every run.

    python scripts/time_to_accuracy.py                                   # d = 2, 8, 32 (about 40 min on 1 core)
    python scripts/time_to_accuracy.py --dims 2 --steps 2 --modes fixed:50 plateau:50 --n-eval 100000 --out /tmp/a
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from wgfbench.bench import workloads as W
from wgfbench.bench.accuracy import seconds_to_reach, streamed_moment_fit
from wgfbench.loop import advance
from wgfbench.metrics import gaussian_symkl
from wgfbench.metrics.floors import smallest_resolving_n, symkl_moment_floor
from wgfbench.timing import provenance

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODES = (
    "fixed:50",
    "fixed:100",
    "fixed:200",
    "fixed:500",
    "plateau:500",
    "fixed:500:carry",
    "plateau:500:carry",
)


def parse_mode(spec: str) -> tuple[str, dict]:
    """``[METHOD@]BUDGET:ITERS[:carry]`` -> (method, config overrides)."""
    method, _, rest = spec.rpartition("@")
    parts = rest.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("fixed", "plateau") or (len(parts) == 3 and parts[2] != "carry"):
        raise ValueError(f"a mode is [METHOD@](fixed|plateau):ITERS[:carry], got {spec!r}")
    params: dict = {"budget": parts[0], "iters_per_step": int(parts[1])}
    if len(parts) == 3:
        params["particles"] = "carry"
    return method or "variational_jko", params


def paper_params(method: str) -> dict:
    """The method's paper protocol (Config defaults) on the CPU: the timing budget's overrides undone."""
    from wgfbench.registry import method_class

    cls = method_class(method)
    defaults = cls.Config()
    return {key: getattr(defaults, key) for key in cls.timing_params} | {"device": "cpu"}


def load() -> float:
    return os.getloadavg()[0]


def symkl_to(method, reference, n: int, seed: int) -> float:
    """Moment-fit SymKL of n fresh samples of the method's P_k to ``reference`` (streamed in chunks)."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    return gaussian_symkl(streamed_moment_fit(lambda m: method.sample(m, gen), n), reference)


def resolving_n(dim: int, steps: int, fraction: float, seed: int = 0, chunk: int = 262_144) -> int:
    """Samples whose moment-fit SymKL floor (q95) lies half a decade below the target error of the last step
    (``fraction`` x the time-discretisation error), rounded up to whole chunks."""
    from wgfbench.registry import make_problem

    problem = make_problem("ou", dim, seed)
    h = W.STEP_SIZE
    exact = problem.reference(problem.time_of_step(steps, h))
    target = fraction * gaussian_symkl(problem.jko_reference(steps, h), exact)
    return chunk * math.ceil(smallest_resolving_n(dim, target, decades=0.5) / chunk)


def run(spec: str, dim: int, seed: int, steps: int, n_eval: int, n_eval_step: int, log) -> list[dict]:
    """One run of ``steps`` JKO steps; the rows of its steps (module docstring). The last step's error is
    computed from ``n_eval`` samples, the earlier steps' from ``n_eval_step``."""
    method_name, overrides = parse_mode(spec)
    params = paper_params(method_name) | overrides
    torch.manual_seed(seed)
    method = W.build_jko(method_name, dim, seed=seed, params=params)
    problem, h = method.problem, method.step_size
    rows, cum_cpu, cum_wall, cum_iters = [], 0.0, 0.0, 0
    load_before = load()
    for k in range(1, steps + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        done: list = []
        advance(method, k, on_step=lambda _k, step_stats, done=done: done.append(step_stats))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        s = done[-1]
        iters = int(s.extra.get("inner_iters", overrides["iters_per_step"]))
        cum_cpu, cum_wall, cum_iters = cum_cpu + cpu, cum_wall + wall, cum_iters + iters
        jko, pde = problem.jko_reference(k, h), problem.reference(problem.time_of_step(k, h))
        n = n_eval if k == steps else n_eval_step
        floor = symkl_moment_floor(dim, n)
        err = symkl_to(method, jko, n, seed)
        rows.append(
            {
                "method": method_name,
                "mode": spec.rpartition("@")[2],
                "budget": overrides["budget"],
                "iters_cap": overrides["iters_per_step"],
                "particles": overrides.get("particles", "regenerate"),
                "dim": dim,
                "seed": seed,
                "k": k,
                "inner_iters": iters,
                "cum_iters": cum_iters,
                "train_s": s.train_s,
                "regen_s": s.regen_s,
                "step_cpu_s": cpu,
                "step_wall_s": wall,
                "cum_cpu_s": cum_cpu,
                "cum_wall_s": cum_wall,
                "loss": s.loss,
                "symkl_jko": err,
                "symkl_pde": symkl_to(method, pde, n, seed) if k == steps else math.nan,
                "disc_error": gaussian_symkl(jko, pde),
                "n_eval": n,
                "floor_mean": floor.mean,
                "floor_q95": floor.q95,
                "resolved": bool(err > floor.q95),
                "load_before": load_before,
                "load_after": load(),
            }
        )
        log(
            f"{spec:28s} d={dim:3d} seed={seed} k={k}: iters {iters:4d}, cpu {cpu:7.2f} s (wall {wall:7.2f}), "
            f"SymKL to JKO {err:.3e} (floor q95 {floor.q95:.1e}), load {load():.2f}"
        )
    return rows


def summary(df: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per (method, d): target error, seconds to reach it per budget, and the adaptive mode against the fixed one
    (errors at the last step, CPU seconds of the whole run, medians over seeds)."""
    last = df[df.k == df.k.max()]
    per_mode = (
        last.groupby(["method", "dim", "mode", "budget", "particles", "iters_cap"], as_index=False)
        .agg(
            cpu_s=("cum_cpu_s", "median"),
            wall_s=("cum_wall_s", "median"),
            iters=("cum_iters", "median"),
            error=("symkl_jko", "median"),
            error_max=("symkl_jko", "max"),
            disc=("disc_error", "first"),
            floor_q95=("floor_q95", "first"),
            seeds=("seed", "nunique"),
        )
        .sort_values(["method", "dim", "cpu_s"])
    )
    rows = []
    for (method, dim), g in per_mode.groupby(["method", "dim"]):
        target = fraction * float(g.disc.iloc[0])
        ladder = g[(g.budget == "fixed") & (g.particles == "regenerate")].sort_values("iters_cap")
        t_fixed = seconds_to_reach(list(ladder.cpu_s), list(ladder.error), target)
        for r in g.itertuples():
            rows.append(
                {
                    "method": method,
                    "dim": dim,
                    "mode": r.mode,
                    "target_error": target,
                    "disc_error": r.disc,
                    "floor_q95": r.floor_q95,
                    "cpu_s": r.cpu_s,
                    "wall_s": r.wall_s,
                    "iters": r.iters,
                    "error": r.error,
                    "error_max": r.error_max,
                    "reaches_target": bool(r.error <= target),
                    "fixed_ladder_s_to_target": t_fixed,
                    "fixed_ladder_s_at_this_error": seconds_to_reach(list(ladder.cpu_s), list(ladder.error), r.error),
                    "seeds": r.seeds,
                }
            )
    return pd.DataFrame(rows)


def fmt(x, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def markdown(df: pd.DataFrame, summ: pd.DataFrame, args, prov: dict, wall: float, cpu: float) -> str:
    steps = int(df.k.max())
    lines = [
        "# Time to accuracy: error against the exact JKO iterate vs inner iterations and CPU seconds",
        "",
        f"Measured by `scripts/time_to_accuracy.py` in one run (`{' '.join(sys.argv[1:]) or 'defaults'}`).",
        "",
        "**Provenance:** " + ", ".join(f"{k}={v}" for k, v in prov.items()),
        "",
        f"**Cost of this run:** {cpu:.0f} CPU seconds ({wall:.0f} s wall), one torch thread; load average "
        f"{df.load_before.min():.2f} to {df.load_after.max():.2f} (a shared 2-core machine: CPU seconds are the "
        "compared clock, wall seconds beside them).",
        "",
        f"**Protocol.** OU (spectrum generator, seed = run seed), h = 0.05, {steps} JKO steps, seeds "
        f"{sorted(df.seed.unique().tolist())}. Each method at its paper protocol (Config defaults: variational JKO "
        "= Fan et al.'s 512,000 particles, batch 1024, J2 = 3, J3 = 1, lr 5e-3) with the mode's budget: `fixed:N` "
        "N inner iterations per step, `plateau:N` the adaptive budget (probe objective's slope test, "
        "`wgfbench/methods/plateau.py`, defaults: a probe every 10 iterations, window 8, minimum 50) capped at N, "
        "`:carry` particle carry-forward. Error = moment-fit SymKL of "
        "fresh samples of P_k (per d: the fewest whose floor q95 lies half a decade below the target error, at the "
        "last step; 2^20 at earlier steps) to the exact JKO iterate (the optimisation error: the "
        "time-discretisation error is excluded by construction); its noise floor (closed form, 95% quantile) is "
        "given, and every error below is above it unless marked. Seconds = CPU seconds of the whole run "
        "(training, particle regeneration, the method's own diagnostics; evaluation excluded), median over seeds.",
        "",
        f"**Target error** per d: {args.target_fraction:g} x the time-discretisation error SymKL(exact JKO "
        f"iterate, P_t) at k = {steps}. `fixed ladder s to target`: CPU seconds the fixed budgets need to reach it, "
        "interpolated (log-log) between the two ladder budgets that bracket it; `ladder s at this error`: the same "
        "for this row's own error (the equal-error comparison).",
        "",
        "| method | d | mode | iters (run) | CPU s | wall s | error (median) | error (max) | floor q95 | target |"
        " reaches target | fixed ladder s to target | ladder s at this error | speed-up at equal error |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in summ.itertuples():
        speed = r.fixed_ladder_s_at_this_error / r.cpu_s if r.fixed_ladder_s_at_this_error and r.cpu_s > 0 else math.nan
        below = "" if r.error > r.floor_q95 else " (at floor)"
        lines.append(
            f"| {r.method} | {r.dim} | {r.mode} | {r.iters:.0f} | {r.cpu_s:.1f} | {r.wall_s:.1f} | "
            f"{r.error:.3g}{below} | {r.error_max:.3g} | {r.floor_q95:.2g} | {r.target_error:.3g} | "
            f"{'yes' if r.reaches_target else 'no'} | {fmt(r.fixed_ladder_s_to_target, '.1f')} | "
            f"{fmt(r.fixed_ladder_s_at_this_error, '.1f')} | {fmt(speed, '.2f')} |"
        )
    lines += ["", "## Adaptive budget against the fixed protocol (same run, same seeds)", ""]
    for (method, dim), g in summ.groupby(["method", "dim"]):
        fixed = g[g["mode"] == f"fixed:{args.protocol_iters}"]
        for r in g[g["mode"].str.startswith("plateau")].itertuples():
            if not len(fixed):
                continue
            f = fixed.iloc[0]
            lines.append(
                f"- **{method}, d = {dim}**: `{r.mode}` {r.cpu_s:.1f} CPU s, error {r.error:.3g} (max over seeds "
                f"{r.error_max:.3g}); `fixed:{args.protocol_iters}` {f.cpu_s:.1f} CPU s, error {f.error:.3g} (max "
                f"{f.error_max:.3g}); floor q95 {r.floor_q95:.2g}; time ratio **{f.cpu_s / r.cpu_s:.2f}x**, error "
                f"ratio adaptive / fixed {r.error / f.error:.2f}; against the fixed ladder at the adaptive run's own "
                f"error: {fmt(r.fixed_ladder_s_at_this_error, '.1f')} s, i.e. "
                f"**{fmt((r.fixed_ladder_s_at_this_error or math.nan) / r.cpu_s, '.2f')}x**."
            )
    carry = summ[summ["mode"].str.endswith(":carry")]
    if len(carry):
        lines += ["", "## Particle carry-forward against regeneration (error and seconds of the whole run)", ""]
        for r in carry.itertuples():
            base = summ[(summ.method == r.method) & (summ.dim == r.dim) & (summ["mode"] == r.mode[: -len(":carry")])]
            if len(base):
                b = base.iloc[0]
                lines.append(
                    f"- **{r.method}, d = {r.dim}**: `{r.mode}` {r.cpu_s:.1f} CPU s, error {r.error:.3g}; "
                    f"`{b['mode']}` {b.cpu_s:.1f} CPU s, error {b.error:.3g} (regeneration seconds per step vs k: "
                    "`runs.parquet`, column `regen_s`)."
                )
    lines += [
        "",
        "## Per step (median over seeds): error to the exact JKO iterate, inner iterations, CPU seconds",
        "",
        "| method | d | mode | k | iters | step CPU s | regen s | error | disc. error |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    per_step = df.groupby(["method", "dim", "mode", "k"], as_index=False).agg(
        iters=("inner_iters", "median"),
        cpu=("step_cpu_s", "median"),
        regen=("regen_s", "median"),
        err=("symkl_jko", "median"),
        disc=("disc_error", "first"),
    )
    for r in per_step.itertuples():
        lines.append(
            f"| {r.method} | {r.dim} | {r.mode} | {r.k} | {r.iters:.0f} | {r.cpu:.2f} | {r.regen:.3f} | "
            f"{r.err:.3g} | {r.disc:.3g} |"
        )
    lines.append("")
    return "\n".join(lines)


def figure(df: pd.DataFrame, summ: pd.DataFrame, out: Path, prov: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    dims = sorted(df.dim.unique())
    fig, axes = plt.subplots(2, len(dims), figsize=(4.2 * len(dims), 7.2), squeeze=False)
    last = df[df.k == df.k.max()]
    for j, dim in enumerate(dims):
        ax = axes[0, j]
        for (_, mode), g in last[last.dim == dim].groupby(["method", "mode"]):
            marker = "*" if mode.startswith("plateau") else ("s" if mode.endswith("carry") else "o")
            ax.scatter(g.cum_cpu_s, g.symkl_jko, marker=marker, s=60 if marker == "*" else 25, label=f"{mode}")
        ladder = (
            last[(last.dim == dim) & (last.budget == "fixed") & (last.particles == "regenerate")]
            .groupby(["method", "iters_cap"], as_index=False)
            .agg(cpu=("cum_cpu_s", "median"), err=("symkl_jko", "median"))
        )
        for _, g in ladder.groupby("method"):
            ax.plot(g.cpu, g.err, "-", color="0.6", lw=1, zorder=0, label="fixed ladder (median over seeds)")
        s = summ[summ.dim == dim]
        ax.axhline(float(s.target_error.iloc[0]), color="k", ls="--", lw=1, label="target (disc. / 10)")
        ax.axhline(float(s.floor_q95.iloc[0]), color="r", ls=":", lw=1, label="noise floor q95")
        ax.set_xscale("log")
        # plain-number ticks: matplotlib's default minor labels (3x10^1, 4x10^1) run into each other
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.set_yscale("log")
        ax.set_xlabel("CPU seconds of the run")
        ax.set_ylabel(f"SymKL to the exact JKO iterate at k = {int(df.k.max())}")
        ax.set_title(f"OU, d = {dim}", fontsize=9)
        if j == len(dims) - 1:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        ax2 = axes[1, j]
        per_step = (
            df[df.dim == dim]
            .groupby(["mode", "k"], as_index=False)
            .agg(err=("symkl_jko", "median"), disc=("disc_error", "first"))
        )
        for mode, g in per_step.groupby("mode"):
            ax2.plot(g.k, g.err, marker="*" if mode.startswith("plateau") else ".", label=mode)
        disc = per_step.groupby("k", as_index=False).disc.first()
        ax2.plot(disc.k, disc.disc / 10, "k--", lw=1, label="disc. error / 10")
        ax2.set_yscale("log")
        ax2.set_xlabel("JKO step k")
        ax2.set_ylabel("SymKL to the exact JKO iterate")
        if j == len(dims) - 1:
            ax2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(
        f"Time to accuracy, 1 CPU thread | {prov['device_name']} | torch {prov['torch_version']} | "
        f"{prov['git_commit'][:12]}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(out / "error_vs_seconds.png", dpi=130)
    fig.savefig(out / "error_vs_seconds.pdf")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32])
    ap.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--n-eval",
        type=int,
        default=0,
        help="fresh samples for the last step's error (0: per d, the fewest whose floor q95 is half a decade "
        "below the target error)",
    )
    ap.add_argument("--n-eval-step", type=int, default=1_048_576, help="fresh samples for the earlier steps' errors")
    ap.add_argument("--target-fraction", type=float, default=0.1)
    ap.add_argument("--protocol-iters", type=int, default=500, help="the fixed protocol the adaptive mode is held to")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timing" / "accuracy")
    ap.add_argument(
        "--replot",
        action="store_true",
        help="only redraw error_vs_seconds.png/.pdf from OUT/runs.parquet and OUT/summary.parquet (no measurement)",
    )
    args = ap.parse_args(argv)
    if args.replot:
        df = pd.read_parquet(args.out / "runs.parquet")
        figure(df, pd.read_parquet(args.out / "summary.parquet"), args.out, df.iloc[0].to_dict())
        print(f"redrew {args.out / 'error_vs_seconds.png'} (and .pdf) from {args.out}/runs.parquet, summary.parquet")
        return 0
    for spec in args.modes:
        parse_mode(spec)

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    prov = provenance("cpu")
    rows = []
    for dim in args.dims:
        n_eval = args.n_eval or resolving_n(dim, args.steps, args.target_fraction)
        log(f"d = {dim}: {n_eval:,} samples for the last step's error, {args.n_eval_step:,} for the others")
        for i, seed in enumerate(args.seeds):
            for spec in args.modes if i % 2 == 0 else reversed(args.modes):  # alternate the order between seeds
                rows += run(spec, dim, seed, args.steps, n_eval, min(n_eval, args.n_eval_step), log)
        pd.DataFrame(rows).to_parquet(args.out / "runs.parquet", index=False)  # partial results survive a stop
    df = pd.DataFrame(rows)
    for key, value in prov.items():
        df[key] = value
    df.to_parquet(args.out / "runs.parquet", index=False)
    summ = summary(df, args.target_fraction)
    summ.to_parquet(args.out / "summary.parquet", index=False)
    figure(df, summ, args.out, prov)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    (args.out / "table.md").write_text(markdown(df, summ, args, prov, wall, cpu))
    log(f"wrote {args.out}/runs.parquet, summary.parquet, table.md, error_vs_seconds.png/.pdf ({cpu:.0f} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
