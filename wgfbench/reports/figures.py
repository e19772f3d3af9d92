"""Comparison figures (seaborn), one consistent style and one colour per method across all figures.

* :func:`error_vs_time`: log10 error against flow time, one panel per dimension, per method the mean over seeds
  with the tables' 95% interval as a band (n >= 3; the runs as points for fewer); the exact JKO iterate's
  discretisation error as a dashed black line and the metric's noise floor as a grey band (its mean to its 95%
  quantile).
* :func:`error_vs_dim`: the same at the report time against dimension (log2 axis).
* :func:`seconds_vs_dim`: seconds per JKO step against dimension, log-log: the median over steps and runs, the band
  its interquartile range.

Every number drawn comes from :mod:`wgfbench.reports.stats`, the mechanism the tables use (no plotting library
computes a statistic), so a figure's band is the table's interval for the same cell. A figure with one method only
is not drawn (nothing is compared). Every figure is written as PNG and PDF. Only runs with status ``ok`` are drawn.

Layout: every figure uses matplotlib's constrained layout with its legend outside the axes (right), long axis labels
wrapped to the axes' height, so no label runs into a title, a tick label or the legend (a test checks
the rendered text boxes). Colours: :func:`method_colors` is the one source, for these figures, the sample figures
(:mod:`wgfbench.reports.samples`) and the timing table's figure (scripts/timing_table.py). Values a log axis cannot
show are never dropped silently: unbiased estimates (energy distance, KSD² as a U-statistic) can be negative near 0,
a method can take 0 seconds per step: a footnote under the figure says how many values were left out and why.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from wgfbench.metrics import catalogue
from wgfbench.reports import stats
from wgfbench.reports.tables import at_report_time, ordered_methods

_PALETTE = sns.color_palette("colorblind", 10)
FLOOR_COLOR = _PALETTE[8]  # the noise floor's band: the palette's yellow, which no method has
# colours for methods that declare none (a method's own colour is its class attribute ``color``); the palette's
# colours that no built-in method has first, those nearest a method's colour (vermillion ~ orange) last
_SPARE = [_PALETTE[i] for i in (5, 9, 6, 3)] + sns.color_palette("dark", 10)


def method_colors(methods) -> dict[str, tuple]:
    """One fixed colour per method: its class's ``color``; methods without one (or unknown to the registry, e.g.
    records of a method from elsewhere) get the spare palette colours in order."""
    from matplotlib.colors import to_rgb

    from wgfbench.registry import methods as registered

    known = registered()
    colors = {name: to_rgb(cls.color) for name, cls in known.items() if cls.color}
    spare = iter(c for c in _SPARE if c not in colors.values())
    for m in [*known, *methods]:
        if m not in colors:
            colors[m] = next(spare)
    return colors


def save(fig: plt.Figure, path: str | Path) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix is appended, not substituted: an experiment named "ou.a" must not become "ou.png"
    outs = [path.with_name(path.name + ".png"), path.with_name(path.name + ".pdf")]
    for p in outs:
        fig.savefig(p, dpi=160, bbox_inches="tight")
    plt.close(fig)
    return outs


def metric_label(metric: str) -> str:
    """Axis label of log10 of a record column (names from the tables' headline metrics)."""
    from wgfbench.reports.tables import headline_rows

    labels = {m: label for m, label, _, _ in headline_rows()}
    label = labels.get(metric, metric.replace("_", " "))
    return label if label.startswith("log10") else f"log10 {label}"


def _cells(data: pd.DataFrame, by: str, col: str, log10: bool = True) -> pd.DataFrame:
    """Per method and ``by`` value: the one summary mechanism's cell (mean, lo, hi for n >= 3, runs) of ``col``."""
    return stats.summarise_frame(data[data[col].notna()], ["method", by], col, log10)


def _draw_cells(ax: plt.Axes, cells: pd.DataFrame, by: str, methods: list[str], colors: dict) -> None:
    """Mean lines with the tables' 95% intervals as bands (n >= 3), or the runs as points (n < 3)."""
    for m in methods:
        c = cells[cells["method"] == m].sort_values(by)
        if c.empty:
            continue
        color = colors[m]
        ax.plot(c[by], c["mean"], marker="o", ms=3, lw=1.3, color=color, label=m)
        band = c[c["lo"].notna()]
        if len(band):
            ax.fill_between(band[by], band["lo"], band["hi"], color=color, alpha=0.18, lw=0)
        few = c[c["lo"].isna()]
        for _, r in few.iterrows():
            ax.plot([r[by]] * len(r["runs"]), r["runs"], ls="", marker=".", ms=4, color=color, alpha=0.6)


def _mean_on_scale(values: pd.Series, log10: bool) -> float:
    """Mean of the values on the cell's scale (log10 per run or linear), NaN ignored; NaN when none is left."""
    x = np.asarray(stats.to_scale(values, log10), dtype=float)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _floor_band(ax: plt.Axes, data: pd.DataFrame, by: str, col: str, log10: bool = True) -> bool:
    """The metric's noise floor as a band, from the floor's mean to its 95% quantile (mean over runs, cell scale)."""
    q95 = f"{col}_floor_q95"
    if q95 not in data or not data[q95].notna().any():
        return False
    rows = data[data[q95].notna()]
    hi = rows.groupby(by)[q95].apply(lambda v: _mean_on_scale(v, log10))
    mean_col = f"{col}_floor"
    lo = rows.groupby(by)[mean_col].apply(lambda v: _mean_on_scale(v, log10)) if mean_col in rows else hi
    lo = lo.reindex(hi.index).fillna(hi - 0.3 if log10 else 0.0)
    label = "noise floor (mean to q95)"
    if len(hi) == 1:  # one reported step: a bar rather than a band
        x = float(hi.index[0])
        ax.vlines(x, lo.iloc[0], hi.iloc[0], color=FLOOR_COLOR, lw=6, alpha=0.6, label=label)
    else:
        ax.fill_between(hi.index, lo.values, hi.values, color=FLOOR_COLOR, alpha=0.45, lw=0, label=label)
    return True


def _reference_lines(ax: plt.Axes, data: pd.DataFrame, by: str, disc: str | None, floor: str) -> None:
    """The exact JKO iterate's discretisation error (dashed black) and the noise floor (a yellow band) per ``by``."""
    if disc and disc in data and data[disc].notna().any():
        rows = data[data[disc] > 1e-15]
        line = rows.groupby(by)[disc].apply(lambda v: float(np.mean(np.log10(v))))
        ax.plot(line.index, line.values, ls="--", color="k", lw=1, label="exact JKO (discretisation)")
    metric = floor.removesuffix("_floor")
    if not _floor_band(ax, data, by, metric) and floor in data and data[floor].notna().any():
        rows = data[data[floor] > 1e-15]  # records without floor distributions: the one-draw floor, dotted
        line = rows.groupby(by)[floor].apply(lambda v: float(np.mean(np.log10(v))))
        ax.plot(line.index, line.values, ls=":", color="grey", lw=1.2, label="noise floor (one draw)")


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def _figure(n_panels: int = 1, width: float = 3.2, height: float = 3.3, **kwargs) -> tuple[plt.Figure, np.ndarray]:
    """A row of ``n_panels`` axes under constrained layout (titles, labels and the outside legend get room)."""
    return plt.subplots(
        1, n_panels, figsize=(width * n_panels + 2.2, height), squeeze=False, layout="constrained", **kwargs
    )


def wrapped(label: str, width: int = 30) -> str:
    """An axis label broken into lines of at most ``width`` characters (a y label no taller than its axes)."""
    return "\n".join(textwrap.fill(part, width) for part in label.split("\n"))


def _footnote(fig: plt.Figure, notes: list[str]) -> None:
    """Notes under the figure (left-aligned, below the axes; saved with bbox_inches="tight")."""
    if notes:
        fig.text(0.0, 0.0, wrapped("\n".join(notes), 110), ha="left", va="top", fontsize=7, color="0.3")


def _dropped_note(values: pd.Series, what: str) -> list[str]:
    """The footnote for values a log axis cannot show (module docstring); [] when there are none."""
    values = pd.to_numeric(values, errors="coerce")
    bad = int((values[values.notna()] <= 0).sum())
    if not bad:
        return []
    return [
        f"{bad} of {int(values.notna().sum())} {what} are ≤ 0 and not drawn (log axis): an unbiased estimate (a "
        "Monte Carlo SymKL, a U-statistic such as KSD² or the energy distance) is negative when the method cannot be "
        "told from the reference at this sample size; read it as 0, within the noise floor."
    ]


def _compared(data: pd.DataFrame) -> bool:
    """A figure is a comparison: at least two methods (a one-method figure is not drawn)."""
    return data["method"].nunique() >= 2


def error_vs_time_figure(df: pd.DataFrame, metric: str, title: str = "") -> plt.Figure | None:
    """log10 ``metric`` vs t, a panel per dim (see module docstring); None when there is nothing to compare."""
    _style()
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    notes = _dropped_note(ok[metric], "values (runs x evaluated steps)")
    ok = ok[ok[metric] > 0]
    if ok.empty or not _compared(ok):  # nothing to draw, or nothing to compare
        return None
    dims = sorted(ok["dim"].unique())
    methods = ordered_methods(ok["method"].unique())
    colors = method_colors(methods)
    fig, axes = _figure(len(dims), sharey=True)
    for ax, d in zip(axes[0], dims, strict=True):
        sub = ok[ok["dim"] == d]
        _draw_cells(ax, _cells(sub, "t", metric), "t", methods, colors)
        disc = None if metric.endswith("_vs_jko") else f"{metric}_jko_pde"
        _reference_lines(ax, df[(df["dim"] == d) & (df["status"] == "ok")], "t", disc, f"{metric}_floor")
        ax.set_title(f"d = {d}")
        ax.set_xlabel("t")
        ax.set_ylabel(wrapped(metric_label(metric)) if ax is axes[0][0] else "", fontsize=9)
    _legend_outside(fig, axes[0])
    if title:
        fig.suptitle(title)
    _footnote(fig, notes)
    return fig


def error_vs_time(df: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """:func:`error_vs_time_figure`, saved as PNG and PDF; [] when it is not drawn."""
    fig = error_vs_time_figure(df, metric, title)
    return [] if fig is None else save(fig, path)


def _legend_outside(fig: plt.Figure, axes) -> None:
    """One legend for all panels, right of the figure (labels never run into a title)."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[lab] for lab in labels], labels, loc="outside right center", frameon=False)


def _against_dim(data: pd.DataFrame, cells: pd.DataFrame) -> tuple[plt.Figure, plt.Axes]:
    """Shared body of the against-dimension figures: cells per method against d."""
    _style()
    methods = ordered_methods(data["method"].unique())
    fig, axes = _figure(1, width=3.4, height=3.4)
    _draw_cells(axes[0][0], cells, "dim", methods, method_colors(methods))
    return fig, axes[0][0]


def _finish_dim(fig, ax, data: pd.DataFrame, title: str, ylabel: str, notes: list[str]) -> plt.Figure:
    """log2 axis with one tick per dimension, labels, legend outside, footnotes."""
    dims = sorted(data["dim"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, labels=[str(d) for d in dims])
    ax.minorticks_off()
    ax.set_xlabel("dimension d")
    ax.set_ylabel(wrapped(ylabel), fontsize=9)
    _legend_outside(fig, [ax])
    if title:
        fig.suptitle(title)
    _footnote(fig, notes)
    return fig


def error_vs_dim_figure(
    df: pd.DataFrame, metric: str, title: str = "", published: dict[str, dict[int, float]] | None = None,
    source: str = "",
) -> plt.Figure | None:  # fmt: skip
    """log10 ``metric`` at the report time vs dim (see module docstring); None when there is nothing to compare.

    ``published``: per method, a paper's log10 values per d, drawn as hollow markers on a dashed line of the
    method's colour ("<method>, published"), ``source`` named in a footnote (the reproduction suites)."""
    at_t = at_report_time(df, metric)
    notes = _dropped_note(at_t[metric], "runs' values at the report time") if metric in at_t else []
    at_t = at_t[at_t[metric] > 0]
    if at_t.empty or not _compared(at_t) or at_t["dim"].nunique() < 2:
        return None
    fig, ax = _against_dim(at_t, _cells(at_t, "dim", metric))
    _reference_lines(ax, at_t, "dim", f"{metric}_jko_pde", f"{metric}_floor")
    if published:
        colors = method_colors([*at_t["method"].unique(), *published])
        for m, by_dim in published.items():
            dims = sorted(by_dim)
            ax.plot(dims, [by_dim[d] for d in dims], ls="--", lw=1, marker="D", ms=5, mfc="white",
                    color=colors[m], label=f"{m}, published")  # fmt: skip
        if source:
            notes = [*notes, f"Published: {source}."]
    t = float(at_t["t"].mean())
    return _finish_dim(fig, ax, at_t, title, f"{metric_label(metric)}\nat t = {t:.3g}", notes)


def error_vs_dim(df: pd.DataFrame, metric: str, path: str | Path, title: str = "") -> list[Path]:
    """:func:`error_vs_dim_figure`, saved as PNG and PDF; [] when it is not drawn."""
    fig = error_vs_dim_figure(df, metric, title)
    return [] if fig is None else save(fig, path)


def seconds_vs_dim_figure(df: pd.DataFrame, title: str = "") -> plt.Figure | None:
    """Seconds per JKO step vs dim, log-log: the median over every step of every run, the band its IQR. A method
    whose median is 0 (it does no work per step, e.g. ``identity``) cannot be drawn on the log axis and is named in
    a footnote instead; None when fewer than two methods can be drawn."""
    ok = df[(df["status"] == "ok") & (df["k"] > 0)]
    if ok.empty or ok["dim"].nunique() < 2:
        return None
    rows = []
    for (m, d), g in ok.groupby(["method", "dim"]):
        timing = stats.timing_summary(r["time_step_s"].to_numpy() for _, r in g.groupby("seed"))
        rows.append(dict(method=m, dim=d, median=timing.median, q25=timing.q25, q75=timing.q75, runs=()))
    cells = pd.DataFrame(rows)
    zero = sorted(set(cells.loc[~(cells["median"] > 0), "method"]))
    cells = cells[cells["median"] > 0]
    drawn = ok[ok["method"].isin(set(cells["method"]))]
    if cells.empty or not _compared(drawn):
        return None
    with np.errstate(divide="ignore"):
        cells = cells.assign(mean=np.log10(cells["median"]), lo=np.log10(cells["q25"]), hi=np.log10(cells["q75"]))
    fig, ax = _against_dim(drawn, cells)
    notes = [f"not drawn (0 seconds per step: no work per step): {', '.join(ordered_methods(zero))}"] if zero else []
    return _finish_dim(fig, ax, drawn, title, "log10 seconds per JKO step (median, IQR band)", notes)


def seconds_vs_dim(df: pd.DataFrame, path: str | Path, title: str = "") -> list[Path]:
    """:func:`seconds_vs_dim_figure`, saved as PNG and PDF; [] when it is not drawn."""
    fig = seconds_vs_dim_figure(df, title)
    return [] if fig is None else save(fig, path)


# The headline metric of an experiment's standard figures: the first of these its records have (catalogue order
# of preference), and those drawn as well where present (Mokrov et al.'s density SymKL, Fan et al.'s mixture KSD).
PRIMARY_METRICS = tuple(
    m.name for m in sorted(catalogue.METRICS, key=lambda m: m.primary or 0) if m.primary is not None
)
SECONDARY_METRICS = tuple(m.name for m in catalogue.METRICS if m.secondary)


def divergence_vs_time_figure(df: pd.DataFrame, title: str = "") -> plt.Figure | None:
    """A Jensen-Shannon flow's divergence D_f(P_k || Q) against t, a panel per dim, on a linear axis (the kNN
    estimate is biased downwards and can be negative near equilibrium): each method's kNN estimate (mean and 95%
    interval over seeds, or the runs), the exact flow's D_f(P_t || Q) by quadrature (dashed black), and the floor,
    the same estimate on exact samples of P_t (mean to q95, where simulated). A method that follows the flow lies on
    the floor, below the exact curve by the estimator's bias; one that lags lies above it."""
    _style()
    ok = df[(df["status"] == "ok") & df["jsd_knn"].notna()] if "jsd_knn" in df else df.iloc[0:0]
    if ok.empty or not _compared(ok):
        return None
    dims = sorted(ok["dim"].unique())
    methods = ordered_methods(ok["method"].unique())
    colors = method_colors(methods)
    fig, axes = _figure(len(dims), sharey=False)
    for ax, d in zip(axes[0], dims, strict=True):
        sub = ok[ok["dim"] == d]
        _draw_cells(ax, _cells(sub, "t", "jsd_knn", log10=False), "t", methods, colors)
        if "jsd_exact" in sub and sub["jsd_exact"].notna().any():
            exact = sub.groupby("t")["jsd_exact"].mean()
            ax.plot(exact.index, exact.values, ls="--", color="k", lw=1, label="exact flow (grid quadrature)")
        _floor_band(ax, sub, "t", "jsd_knn", log10=False)
        ax.set_title(f"d = {d}")
        ax.set_xlabel("t")
        ax.set_ylabel(wrapped("D_f(P || Q), kNN estimate") if ax is axes[0][0] else "", fontsize=9)
    _legend_outside(fig, axes[0])
    if title:
        fig.suptitle(title)
    return fig


def _comparable(edf: pd.DataFrame, metric: str) -> bool:
    """A metric worth a figure of an experiment: positive values after P_0 for at least two methods (a metric
    defined at P_0 only, such as a Gaussian moment fit of a Gaussian start towards a non-Gaussian flow, or one that
    a single method reports, compares nothing)."""
    if metric not in edf:
        return False
    later = edf[(edf["status"] == "ok") & (edf["k"] > 0) & (edf[metric] > 0)]
    return later["method"].nunique() >= 2


def suite_figures(df: pd.DataFrame, outdir: str | Path) -> list[Path]:
    """The standard figures for every experiment in the records; returns the files written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)  # the pipeline's output, also when nothing is drawn
    written: list[Path] = []
    for exp, edf in df.groupby("experiment", sort=False):
        metric = next((m for m in PRIMARY_METRICS if _comparable(edf, m)), None)
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
        fig = divergence_vs_time_figure(edf, title=f"{exp}: Jensen-Shannon divergence along the flow")
        if fig is not None:
            written += save(fig, outdir / f"{exp}_divergence_vs_time")
        for extra in SECONDARY_METRICS:
            if extra == metric or not _comparable(edf, extra):
                continue
            written += error_vs_time(
                edf, extra, outdir / f"{exp}_{extra}_vs_time", title=f"{exp}: {metric_label(extra)}"
            )
            if edf["dim"].nunique() > 1:
                written += error_vs_dim(edf, extra, outdir / f"{exp}_{extra}_vs_dim", title=exp)
    return written
