r"""Porous-medium report: radial-profile figure and final-time summary table of a suite's records.

**Figure.** Histogram of |x| of the model's samples vs the exact curve.

For the Barenblatt law P_R in R^n the radius |X| has the density

    f(r) = |S^{n-1}| r^{n-1} P_R(r) = |S^{n-1}| r^{n-1} (1 - r^2/R^2)_+^p / (R^n B_n(p)),

so that one panel per dimension shows, at several flow times, how the model's radial law follows the
exact one (the PME spreads the support, R(t) ∝ (t0 + t)^β). Records do not keep samples, so the figure
re-runs the suite job(s) it is given (same spec, same seed: the same computation as the record) and
snapshots samples at the requested steps::

    python -m wgfbench.plots_porous --suite suites/porous-cpu.yaml \
        --job porous/variational_jko/d3/s0 --job porous_hi/variational_jko/d6/s0 \
        --steps 0 10 25 50 --out results/porous/radial_profile

**Summary** (:func:`summary_markdown`): per experiment, method and dimension, at the final step, the mean
± 95% CI half-width (Student t) over seeds of the porous metrics with their noise floors, the exact JKO
iterate's own errors (the time-discretisation error, from closed forms), and seconds per JKO step::

    python -m wgfbench.plots_porous --summary results/porous-cpu/table.parquet
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from wgfbench import registry
from wgfbench.problems.barenblatt import BarenblattLaw, log_ball_integral


def radial_density(law: BarenblattLaw, r: np.ndarray) -> np.ndarray:
    """Density of |X| for X ~ P_R (module docstring)."""
    n = law.dim
    log_sphere = math.log(2) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n)
    s = np.clip(1 - (r / law.radius) ** 2, 0.0, None)
    log_norm = n * math.log(law.radius) + log_ball_integral(n, law.p)
    with np.errstate(divide="ignore"):
        return np.exp(log_sphere - log_norm) * r ** (n - 1) * s**law.p


def snapshot_job(spec, steps: list[int], n_samples: int = 20_000) -> tuple[object, dict[int, np.ndarray], list[float]]:
    """Run a suite job's problem and method up to max(steps).

    Returns the problem, |x| of n_samples at each requested step, and the CPU seconds of each JKO step
    (``time.process_time`` around ``method.step()``: the process's own compute, unlike wall time not
    inflated when other jobs share the cores).
    """
    problem = registry.make_problem(spec.problem, spec.dim, spec.seed, spec.problem_params)
    method = registry.make_method(spec.method, problem, spec.step_size, spec.method_params, spec.seed)
    gen = torch.Generator().manual_seed(12345 + spec.seed)
    radii: dict[int, np.ndarray] = {}
    cpu_s: list[float] = []
    for k in range(max(steps) + 1):
        if k > 0:
            start = time.process_time()
            method.step()
            cpu_s.append(time.process_time() - start)
        if k in steps:
            radii[k] = method.sample(n_samples, gen).double().norm(dim=1).numpy()
    return problem, radii, cpu_s


def radial_profile_figure(
    panels: list[tuple[object, dict[int, np.ndarray], float, str]], out: str | Path
) -> list[Path]:
    """One panel per (problem, {k: radii}, h, title): model histograms (steps) and exact curves (lines)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (problem, radii, h, title) in zip(axes[0], panels, strict=True):
        colors = sns.color_palette("viridis", len(radii))
        r_max = 1.05 * max(problem.radius(k * h) for k in radii)
        grid = np.linspace(0.0, r_max, 400)
        bins = np.linspace(0.0, r_max, 60)
        for color, (k, r) in zip(colors, sorted(radii.items()), strict=True):
            t = problem.time_of_step(k, h)
            ax.hist(r, bins=bins, density=True, histtype="step", color=color, linewidth=1.2)
            ax.plot(grid, radial_density(problem.reference(t), grid), color=color, linestyle="--", linewidth=1.0)
            ax.plot([], [], color=color, label=f"k = {k}, t = {t:.4g}")
        ax.set_title(title)
        ax.set_xlabel("|x|")
        ax.set_ylabel("density of |x|")
        ax.set_xlim(0, r_max)
        ax.legend(fontsize=7, title="model (steps) vs exact (dashed)", title_fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        path = out.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150)
        written.append(path)
    plt.close(fig)
    return written


SUMMARY_COLUMNS = [
    ("W2", "w2", "w2_floor"),
    ("W2 to JKO iterate", "w2_vs_jko", "w2_vs_jko_floor"),
    ("sliced W2", "sw2", "sw2_floor"),
    ("G rel. err. (densities)", "gen_entropy_rel_err", None),
    ("G rel. err. (kNN)", "gen_entropy_rel_err_knn", "gen_entropy_rel_err_knn_floor"),
    ("E‖x‖² rel. err.", "second_moment_rel_err", "second_moment_rel_err_floor"),
    ("mass outside exact support", "frac_outside_support", None),
    ("KL(model ‖ exact)", "kl_model_exact", None),
    ("exact mass outside model support", "frac_exact_outside_model_support", None),
    ("KL(exact ‖ model)", "kl_exact_model", None),
]


def _mean_ci(values) -> str:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    n_nan = int(np.isnan(v).sum())
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "NaN"
    text = (
        f"{v.mean():.3g}"
        if len(v) == 1
        else f"{v.mean():.3g} ± {stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)):.2g}"
    )
    return text + (f" ({n_nan} NaN)" if n_nan else "")


def discretisation_errors(problem, k: int, h: float) -> dict[str, float]:
    """Errors of the exact JKO iterate P_k^JKO against P_{kh} (closed forms): the floor of any JKO method."""
    t = problem.time_of_step(k, h)
    jko, pde = problem.jko_reference(k, h), problem.reference(t)
    return {
        "w2": abs(jko.radius - pde.radius) * math.sqrt(pde.second_moment()) / pde.radius,
        "gen_entropy_rel_err": abs(jko.integral_pm() / pde.integral_pm() - 1),
        "second_moment_rel_err": abs(jko.second_moment() / pde.second_moment() - 1),
    }


def summary_markdown(df) -> str:
    """Final-step porous metrics per (experiment, method, dim): mean ± 95% CI over seeds (see module docstring)."""
    import json

    lines = []
    for (exp, dim), g_exp in df.groupby(["experiment", "dim"]):
        first = g_exp.iloc[0]
        k_final = int(g_exp["k"].max())
        h = float(first["h"])
        problem = registry.make_problem(first["problem"], int(dim), 0, json.loads(first["problem_params"]))
        t = problem.time_of_step(k_final, h)
        disc = discretisation_errors(problem, k_final, h)
        methods = sorted(g_exp["method"].unique())
        lines += [f"### {exp}, n = {dim}: t = {t:.4g} (k = {k_final}, h = {h:g})", ""]
        lines += ["| metric | " + " | ".join(methods) + " | noise floor | exact JKO iterate |"]
        lines += ["|---" * (len(methods) + 3) + "|"]
        finals = {m: g_exp[(g_exp["method"] == m) & (g_exp["k"] == k_final)] for m in methods}
        for label, col, floor in SUMMARY_COLUMNS:
            if not any(col in f for f in finals.values()):
                continue
            cells = [_mean_ci(finals[m][col]) if col in finals[m] else "—" for m in methods]
            floors = [finals[m][floor] for m in methods if floor and floor in finals[m]]
            floor_cell = _mean_ci(pd_concat(floors)) if floors else ""
            disc_cell = f"{disc[col]:.3g}" if col in disc else ""
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {floor_cell} | {disc_cell} |")
        per_step = []
        for m in methods:
            g = g_exp[(g_exp["method"] == m) & (g_exp["k"] > 0)]
            per_step.append(_mean_ci(g.groupby("seed")["time_step_s"].mean()) if len(g) else "—")
        lines.append("| seconds per JKO step (wall) | " + " | ".join(per_step) + " |  |  |")
        seeds = sorted(int(s) for s in g_exp["seed"].unique())
        statuses = sorted(g_exp["status"].unique())
        lines += ["", f"Seeds {seeds}; run statuses {statuses}.", ""]
    return "\n".join(lines)


def pd_concat(series):
    import pandas as pd

    return pd.concat(series) if series else pd.Series(dtype=float)


def main(argv: list[str] | None = None) -> int:
    from wgfbench.suites import load_suite

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", help="a table.parquet of records: print the final-step summary and exit")
    p.add_argument("--suite")
    p.add_argument("--job", action="append", help="EXPERIMENT/METHOD/dD/sS (repeatable)")
    p.add_argument("--steps", type=int, nargs="+", default=[0, 10, 25, 50])
    p.add_argument("--n-samples", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/porous/radial_profile", help="path without extension")
    args = p.parse_args(argv)
    if args.summary:
        import pandas as pd

        print(summary_markdown(pd.read_parquet(args.summary)))
        return 0
    if not (args.suite and args.job):
        p.error("the figure needs --suite and at least one --job")
    torch.set_num_threads(args.threads)
    suite = load_suite(args.suite)
    panels = []
    for job in args.job:
        spec = suite.job(job)
        problem, radii, cpu_s = snapshot_job(spec, args.steps, args.n_samples)
        print(
            f"{job}: CPU seconds per JKO step (torch threads {torch.get_num_threads()}): mean {np.mean(cpu_s):.3f}, "
            f"first {cpu_s[0]:.3f}, last {cpu_s[-1]:.3f}"
        )
        title = f"n = {spec.dim}, m = {problem.m:g}: {spec.method} (seed {spec.seed})"
        panels.append((problem, radii, spec.step_size, title))
    for path in radial_profile_figure(panels, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
