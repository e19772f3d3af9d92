r"""Porous-medium radial profiles: histograms of |x| of a model's samples against the exact curve.

For the Barenblatt law P_R in R^n the radius |X| has the density

    f(r) = |S^{n-1}| r^{n-1} P_R(r) = |S^{n-1}| r^{n-1} (1 - r^2/R^2)_+^p / (R^n B_n(p)),

so that one panel per dimension shows, at several flow times, how the model's radial law follows the
exact one (the PME spreads the support, R(t) ∝ (t0 + t)^β). Records do not keep samples, so the figure
re-runs the suite job(s) it is given (same spec, same seed: the same computation as the record) and
snapshots samples at the requested steps::

    wgfbench plot-profiles --suite suites/porous-cpu.yaml \
        --job porous/variational_jko/d3/s0 --job porous_hi/variational_jko/d6/s0 \
        --steps 0 10 25 50 --out results/porous/radial_profile

The porous metrics themselves (with their noise floors and the exact JKO iterate's errors) are in the suite's
standard tables (:mod:`wgfbench.reports.tables`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from wgfbench.loop import Budget, advance, build
from wgfbench.problems.barenblatt import BarenblattLaw, log_ball_integral
from wgfbench.reports.figures import save


def radial_density(law: BarenblattLaw, r: np.ndarray) -> np.ndarray:
    """Density of |X| for X ~ P_R (module docstring)."""
    n = law.dim
    log_sphere = math.log(2) + 0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n)
    s = np.clip(1 - (r / law.radius) ** 2, 0.0, None)
    log_norm = n * math.log(law.radius) + log_ball_integral(n, law.p)
    with np.errstate(divide="ignore"):
        return np.exp(log_sphere - log_norm) * r ** (n - 1) * s**law.p


def snapshot_job(spec, steps: list[int], n_samples: int = 20_000) -> tuple[object, dict[int, np.ndarray], list[float]]:
    """Run a suite job's problem and method up to max(steps) through the one loop (same spec, seeds and budget as
    its record).

    Returns the problem, |x| of n_samples at each requested step, and the CPU seconds of each JKO step
    (``time.process_time`` around ``method.step()``: the process's own compute, unlike wall time not
    inflated when other jobs share the cores).
    """
    problem, method = build(spec)
    gen = torch.Generator().manual_seed(12345 + spec.seed)
    radii: dict[int, np.ndarray] = {}
    cpu_s: list[float] = []

    def snapshot(k: int) -> None:
        if k in steps:
            radii[k] = method.sample(n_samples, gen).double().norm(dim=1).numpy()

    def on_step(k: int, stats) -> None:
        cpu_s.append(time.process_time() - clock[0])
        snapshot(k)
        clock[0] = time.process_time()

    snapshot(0)
    clock = [time.process_time()]
    advance(method, max(steps), Budget(spec.time_budget_s), on_step)
    return problem, radii, cpu_s


def radial_profile_figure(
    panels: list[tuple[object, dict[int, np.ndarray], float, str]], out: str | Path
) -> list[Path]:
    """One panel per (problem, {k: radii}, h, title): model histograms (steps) and exact curves (lines)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, layout="constrained")
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
    return save(fig, out)
