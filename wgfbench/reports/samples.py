"""Sample figures: the final P_K of each method against exact samples of the reference, for one suite job.

Records hold metrics, not samples, and a finished run leaves no checkpoint (the runner deletes it once the
record is written). So this module **re-runs** the job's training: problem and method are built from the
suite's :class:`~wgfbench.suites.RunSpec` through the registry and advanced ``n_steps`` JKO steps with the
same seeds, exactly as :func:`wgfbench.runner.run` does, but without the evaluations in between (which draw
from their own generator and do not touch the training's randomness). On the CPU with the same thread count
the training is then the recorded one; :func:`rerun` compares the last step's loss with the record's and
reports the agreement (``loss_matches_record``), so a figure never silently shows a different run. The
suite's time budget applies as in the runner: past it, the re-run stops and the figure says at which step.

For d = 2 the figure scatters the samples over contours of the exact reference log-density; for d > 2 it
projects everything on the two principal axes of an exact reference sample (as Fan et al.'s PCA-2D plots)
and draws the reference projection as KDE contours. Meant for small jobs (the mixture in d = 2 costs seconds
to a few minutes per method on a CPU); a GPU job re-runs at GPU cost.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import Tensor

from wgfbench import registry
from wgfbench.loop import Budget, BudgetExceeded, advance, build
from wgfbench.methods.base import Diverged
from wgfbench.reports.figures import _style, method_colors, save, wrapped
from wgfbench.reports.tables import ordered_methods
from wgfbench.suites import RunSpec


@dataclasses.dataclass
class Rerun:
    """Final samples of one re-run job and how it ended."""

    spec: RunSpec
    samples: Tensor | None
    steps_done: int
    status: str  # ok / timeout / diverged / failed, as the runner's
    seconds: float
    last_loss: float = math.nan
    loss_matches_record: bool | None = None  # None: no record to compare with


def rerun(spec: RunSpec, n: int, sample_seed: int = 0, record: pd.DataFrame | None = None) -> Rerun:
    """Re-run ``spec``'s training through the one loop (module docstring) and draw ``n`` samples of its last P_k."""
    t0 = time.perf_counter()
    status, loss, method = "ok", math.nan, None
    try:
        _, method = build(spec)

        def keep_loss(k: int, stats) -> None:
            nonlocal loss
            loss = math.nan if stats.loss is None else stats.loss

        try:
            advance(method, spec.n_steps, Budget(spec.time_budget_s), keep_loss)
        except BudgetExceeded:
            status = "timeout"
        samples = method.sample(n, torch.Generator().manual_seed(sample_seed)).to(torch.float64)
    except Diverged:
        return Rerun(spec, None, method.k if method is not None else 0, "diverged", time.perf_counter() - t0)
    except Exception:  # a broken method must not stop the figure of the others
        return Rerun(spec, None, method.k if method is not None else 0, "failed", time.perf_counter() - t0)
    out = Rerun(spec, samples, method.k, status, time.perf_counter() - t0, float(loss))
    if record is not None and "loss" in record and len(record):
        last = record.sort_values("k").iloc[-1]
        if int(last["k"]) == method.k and math.isfinite(float(last["loss"])):
            out.loss_matches_record = bool(math.isclose(float(last["loss"]), out.last_loss, rel_tol=1e-5, abs_tol=1e-8))
    return out


def _projection(reference_sample: Tensor) -> tuple[Tensor, Tensor, str]:
    """(centre, 2 axes) of the PCA of the reference sample; identity axes in d = 2."""
    d = reference_sample.shape[1]
    centre = reference_sample.mean(0)
    if d <= 2:
        return torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)[:, :2], "x"
    _, _, vh = torch.linalg.svd(reference_sample - centre, full_matrices=False)
    return centre, vh[:2].T, "PC"


def samples_figure(
    reference,
    samples: dict[str, Tensor],
    path: str | Path,
    title: str = "",
    notes: dict[str, str] | None = None,
    n_reference: int = 5000,
) -> list[Path]:
    """:func:`samples_panels`, saved as PNG and PDF."""
    return save(samples_panels(reference, samples, title, notes, n_reference), path)


def samples_panels(
    reference,
    samples: dict[str, Tensor],
    title: str = "",
    notes: dict[str, str] | None = None,
    n_reference: int = 5000,
) -> plt.Figure:
    """One panel for the exact reference and one per method (module docstring), each method in its colour of
    :func:`~wgfbench.reports.figures.method_colors`, under constrained layout (no title runs into another)."""
    _style()
    gen = torch.Generator().manual_seed(12345)
    ref = reference.sample(n_reference, gen).to(torch.float64)
    centre, axes, axis_name = _projection(ref)
    ref2 = ((ref - centre) @ axes).numpy()
    methods = ordered_methods(samples)
    colors = method_colors(methods)
    panels = ["exact reference", *methods]
    lim_lo = ref2.min(0) - 1.0
    lim_hi = ref2.max(0) + 1.0
    fig, axs = plt.subplots(
        1, len(panels), figsize=(3.0 * len(panels), 3.4), squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    grid = None
    if ref.shape[1] == 2:
        gx, gy = np.meshgrid(np.linspace(lim_lo[0], lim_hi[0], 200), np.linspace(lim_lo[1], lim_hi[1], 200))
        pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
        grid = (gx, gy, reference.log_density(pts).numpy().reshape(gx.shape))
    for ax, name in zip(axs[0], panels, strict=True):
        if grid is not None:
            gx, gy, lq = grid
            levels = np.linspace(max(float(lq.max()) - 12.0, float(lq.min())), float(lq.max()), 10)
            ax.contour(gx, gy, lq, levels=levels, colors="0.55", linewidths=0.6, linestyles="solid")
        else:
            kde = ref2[:2000]  # contours of the reference's projection; 2000 points are plenty for a KDE
            sns.kdeplot(x=kde[:, 0], y=kde[:, 1], levels=8, color="0.55", linewidths=0.6, ax=ax)
        pts2 = ref2 if name == "exact reference" else ((samples[name] - centre) @ axes).numpy()
        color = "0.2" if name == "exact reference" else colors[name]
        ax.scatter(pts2[:, 0], pts2[:, 1], s=2, alpha=0.35, color=color, rasterized=True)
        label = name if not notes or name not in notes else f"{name}\n{notes[name]}"
        ax.set_title(label, fontsize=9)
        ax.set_xlim(lim_lo[0], lim_hi[0])
        ax.set_ylim(lim_lo[1], lim_hi[1])
        ax.set_xlabel(f"{axis_name}1")
        ax.set_ylabel(f"{axis_name}2" if ax is axs[0][0] else "")
        ax.set_aspect("equal", adjustable="box")
    if title:
        fig.suptitle(wrapped(title, 45 * len(panels)), fontsize=10)
    return fig


def job_samples_figure(
    runs: list[RunSpec],
    out: str | Path,
    n: int = 3000,
    records: pd.DataFrame | None = None,
    log=print,
) -> list[Path]:
    """Re-run every job of ``runs`` (one experiment, dim and seed; several methods) and draw their samples."""
    if not runs:
        raise ValueError("no jobs to draw")
    keys = {(r.experiment, r.dim, r.seed) for r in runs}
    if len(keys) != 1:
        raise ValueError(f"a sample figure shows one experiment, dim and seed; got {sorted(keys)}")
    exp, dim, seed = keys.pop()
    first = runs[0]
    problem = registry.make_problem(first.problem, dim, seed, first.problem_params)
    t_final = problem.time_of_step(first.n_steps, first.step_size)
    samples, notes = {}, {}
    for spec in runs:
        rec = None
        if records is not None and len(records):
            sel = (records["experiment"] == exp) & (records["method"] == spec.method)
            sel &= (records["dim"] == dim) & (records["seed"] == seed)
            rec = records[sel]
        res = rerun(spec, n, record=rec)
        if res.loss_matches_record is None:
            match = "no record" if rec is None or rec.empty else "no loss to compare"
        else:
            match = "= record" if res.loss_matches_record else "≠ record"
        log(
            f"{spec.job_id}: re-run {res.status} after {res.steps_done} steps in {res.seconds:.1f} s; "
            f"last loss {res.last_loss:.6g} ({match})"
        )
        if res.samples is None:
            continue
        samples[spec.method] = res.samples
        t = problem.time_of_step(res.steps_done, first.step_size)
        notes[spec.method] = f"t = {t:g}" + ("" if res.status == "ok" else f" ({res.status})")
    ref_t = problem.reference(t_final)
    title = f"{exp}, d = {dim}, seed {seed}: samples of P_K (t = {t_final:g}) vs exact samples of the reference"
    path = Path(out) / f"{exp}_samples_d{dim}_s{seed}"
    return samples_figure(ref_t, samples, path, title=title, notes=notes)
