"""Comparison figures (seaborn), one consistent style and one colour per method across all figures.

* :func:`error_vs_time`: log10 error against flow time, one panel per dimension, mean and 95% CI
  band over seeds per method; the exact JKO iterate's discretisation error as a dashed black line
  and the metric's noise floor as a dotted grey line.
* :func:`error_vs_dim`: log10 error at the report time against dimension (log2 axis), with the
  discretisation error dashed.
* :func:`seconds_vs_dim`: seconds per JKO step against dimension, log-log.

Every figure is written as PNG and PDF. Only runs with status ``ok`` are drawn.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wgfbench.tables import at_report_time, ordered_methods, seconds_per_step

_PALETTE = sns.color_palette("colorblind", 10)
# Fixed, mutually distinct colours (the colour-blind palette's orange, vermillion and brown were once given to
# three methods shown together): the neural methods get blue, orange, green and pink-purple; the two references
# near-black (the exact JKO oracle, like the dashed discretisation line) and grey (identity).
_METHOD_PALETTE_INDEX = {
    "variational_jko": 0,
    "jko_icnn_exact": 1,
    "jko_icnn_cpflow_grad": 2,
    "jko_icnn_am": 9,
    "em_particles": 4,
}
METHOD_COLORS = {m: _PALETTE[i] for m, i in _METHOD_PALETTE_INDEX.items()} | {
    "exact_jko": (0.15, 0.15, 0.15),
    "identity": _PALETTE[7],
}


def method_colors(methods) -> dict[str, tuple]:
    """Fixed colours for known methods; further methods get the unused palette colours in order."""
    colors = dict(METHOD_COLORS)
    # the palette colours no method has, those nearest a method's colour (vermillion ~ orange) last
    spare = iter([_PALETTE[i] for i in (5, 6, 8, 3)] + sns.color_palette("dark", 10))
    for m in methods:
        if m not in colors:
            colors[m] = next(spare)
    return colors


def _save(fig: plt.Figure, path: str | Path) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outs = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in outs:
        fig.savefig(p, dpi=160, bbox_inches="tight")
    plt.close(fig)
    return outs


def metric_label(metric: str) -> str:
    """Axis label of log10 of a record column (names from the tables' headline metrics)."""
    from wgfbench.tables import HEADLINE_METRICS

    labels = {m: label for m, label, _, _ in HEADLINE_METRICS}
    label = labels.get(metric, metric.replace("_", " "))
    return label if label.startswith("log10") else f"log10 {label}"


def _positive_mean(sub: pd.DataFrame, by: str, col: str) -> pd.Series:
    """Mean of ``col`` per ``by`` over rows where it is > 1e-15 (drops the exact zeros at t = 0)."""
    rows = sub[sub[col] > 1e-15]
    return rows.groupby(by)[col].mean()


def _reference_lines(ax: plt.Axes, data: pd.DataFrame, by: str, disc: str | None, floor: str) -> None:
    """The exact JKO iterate's discretisation error (dashed black) and the noise floor (dotted grey) per ``by``."""
    for col, style, label in (
        (disc, dict(ls="--", color="k", lw=1), "exact JKO (discretisation)"),
        (floor, dict(ls=":", color="grey", lw=1.2), "noise floor"),
    ):
        if col and col in data and data[col].notna().any():
            line = _positive_mean(data, by, col)
            ax.plot(line.index, np.log10(line.values), label=label, **style)


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def error_vs_time(df: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """log10 ``metric`` vs t, a panel per dim (see module docstring)."""
    _style()
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    ok = ok[ok[metric] > 0]
    if ok.empty:  # no ok run with this metric (e.g. every run diverged): nothing to draw
        return []
    ok["log10"] = np.log10(ok[metric])
    dims = sorted(ok["dim"].unique())
    methods = ordered_methods(ok["method"].unique())
    colors = method_colors(methods)
    fig, axes = plt.subplots(1, len(dims), figsize=(3.2 * len(dims) + 1.5, 3.0), sharey=True, squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        sub = ok[ok["dim"] == d]
        sns.lineplot(
            data=sub,
            x="t",
            y="log10",
            hue="method",
            hue_order=methods,
            palette=colors,
            errorbar=("ci", 95),
            marker="o",
            markersize=3,
            ax=ax,
            legend=ax is axes[0][-1],
        )
        disc = None if metric.endswith("_vs_jko") else f"{metric}_jko_pde"
        _reference_lines(ax, sub, "t", disc, f"{metric}_floor")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("t")
        ax.set_ylabel(metric_label(metric) if ax is axes[0][0] else "", fontsize=9)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    if axes[0][-1].get_legend():
        axes[0][-1].get_legend().remove()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _lineplot_vs_dim(data: pd.DataFrame, y: str) -> tuple[plt.Figure, plt.Axes]:
    """Mean and 95% CI band of ``y`` per method against the dimension (log2 axis, one tick per dim)."""
    _style()
    methods = ordered_methods(data["method"].unique())
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    sns.lineplot(
        data=data,
        x="dim",
        y=y,
        hue="method",
        hue_order=methods,
        palette=method_colors(methods),
        errorbar=("ci", 95),
        marker="o",
        ax=ax,
        err_style="band",
    )
    dims = sorted(data["dim"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, labels=[str(d) for d in dims])
    ax.set_xlabel("dimension d")
    return fig, ax


def _finish(fig: plt.Figure, ax: plt.Axes, path: str | Path, title: str) -> list[Path]:
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def error_vs_dim(df: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """log10 ``metric`` at the report time vs dim (see module docstring)."""
    at_t = at_report_time(df, metric)
    at_t = at_t[at_t[metric] > 0].assign(log10=lambda x: np.log10(x[metric]))
    if at_t.empty:
        return []
    fig, ax = _lineplot_vs_dim(at_t, "log10")
    _reference_lines(ax, at_t, "dim", f"{metric}_jko_pde", f"{metric}_floor")
    t = float(at_t["t"].mean()) if len(at_t) else float("nan")
    ax.set_ylabel(f"{metric_label(metric)}\nat t = {t:.3g}", fontsize=9)
    return _finish(fig, ax, path, title)


def seconds_vs_dim(df: pd.DataFrame, path: str | Path, title: str = "") -> list[Path]:
    """Seconds per JKO step (training + particle regeneration) vs dim, log-log."""
    per_run = seconds_per_step(df)
    if per_run.empty:
        return []
    fig, ax = _lineplot_vs_dim(per_run, "time_step_s")
    ax.set_yscale("log")
    ax.set_ylabel("seconds per JKO step")
    return _finish(fig, ax, path, title)


# The headline metric of an experiment's standard figures: the first of these its records have.
PRIMARY_METRICS = ("symkl_moment", "symkl_moment_target", "symkl_mc", "w2", "sw2")
# Drawn as well (vs time, vs dim) where present: Mokrov et al.'s density SymKL, Fan et al.'s mixture KSD.
SECONDARY_METRICS = ("symkl_mc", "ksd")


def suite_figures(df: pd.DataFrame, outdir: str | Path) -> list[Path]:
    """The standard figures for every experiment in the records; returns the files written."""
    outdir = Path(outdir)
    written: list[Path] = []
    for exp, edf in df.groupby("experiment", sort=False):
        metric = next((m for m in PRIMARY_METRICS if m in edf and edf[m].notna().any()), None)
        if metric is None:
            continue
        written += error_vs_time(edf, metric, outdir / f"{exp}_error_vs_time", title=f"{exp}: {metric_label(metric)}")
        if f"{metric}_vs_jko" in edf and edf[f"{metric}_vs_jko"].notna().any():
            written += error_vs_time(
                edf,
                f"{metric}_vs_jko",
                outdir / f"{exp}_error_vs_time_vs_jko",
                title=f"{exp}: {metric_label(metric + '_vs_jko')}",
            )
        if edf["dim"].nunique() > 1:
            written += error_vs_dim(edf, metric, outdir / f"{exp}_error_vs_dim", title=exp)
            written += seconds_vs_dim(edf, outdir / f"{exp}_seconds_per_step", title=exp)
        for extra in SECONDARY_METRICS:
            if extra == metric or extra not in edf or not (edf.loc[edf["status"] == "ok", extra] > 0).any():
                continue
            written += error_vs_time(
                edf, extra, outdir / f"{exp}_{extra}_vs_time", title=f"{exp}: {metric_label(extra)}"
            )
            if edf["dim"].nunique() > 1:
                written += error_vs_dim(edf, extra, outdir / f"{exp}_{extra}_vs_dim", title=exp)
    return written
