"""Aggregate run records into comparison tables: mean and 95% CI over seeds, per method and dimension.

Errors are reported at one flow time per experiment (``report_t``; the evaluated step closest to
it). Only runs with status ``ok`` enter a mean; runs that diverged, timed out or failed are counted
per cell and shown, never averaged in. Confidence intervals are Student-t intervals over seeds
(mean ± t_{0.975, n-1} sd / sqrt(n)); log10 is taken per run before averaging.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

RUN_KEYS = ["experiment", "problem", "method", "dim", "seed"]

# (column, label, transform, floor column) in the order tables show them; missing columns are skipped.
HEADLINE_METRICS: list[tuple[str, str, str | None, str | None]] = [
    ("symkl_moment", "log10 SymKL (moment fit) to the PDE solution", "log10", "symkl_moment_floor"),
    ("symkl_moment_vs_jko", "log10 SymKL (moment fit) to the exact JKO iterate", "log10", "symkl_moment_vs_jko_floor"),
    ("symkl_mc", "log10 SymKL (Monte Carlo, model density) to the PDE solution", "log10", None),
    ("symkl_kde", "log10 SymKL (Monte Carlo, KDE of the samples; d <= 3) to the PDE solution", "log10", None),
    # Gaussian-mixture sampling (stationary target; wgfbench.problems.gmm)
    (
        "symkl_moment_target",
        "log10 SymKL (moment fits) to the target mixture",
        "log10",
        "symkl_moment_target_floor",
    ),
    ("ksd", "KSD² (RBF, U-statistic) to the target mixture", None, "ksd_floor"),
    ("w2", "W2 (exact OT on samples) to the PDE solution", None, "w2_floor"),
    ("sw2", "sliced W2 to the PDE solution", None, "sw2_floor"),
    ("energy", "energy distance to the PDE solution", None, "energy_floor"),
    ("gen_entropy_rel_err", "relative error of the generalised entropy (model densities)", None, None),
    (
        "gen_entropy_rel_err_knn",
        "relative error of the generalised entropy (kNN, samples only)",
        None,
        "gen_entropy_rel_err_knn_floor",
    ),
    ("second_moment_rel_err", "relative error of the second moment", None, "second_moment_rel_err_floor"),
    ("frac_outside_support", "fraction of model mass outside the exact support", None, None),
]


# The order of methods in every table and figure: the centrepiece, the neural baselines, the references.
METHOD_ORDER = [
    "variational_jko",
    "jko_icnn_exact",
    "jko_icnn_cpflow_grad",
    "jko_icnn_am",
    "em_particles",
    "exact_jko",
    "identity",
]


def ordered_methods(methods) -> list[str]:
    """``methods`` in :data:`METHOD_ORDER`, any others after them alphabetically."""
    given = set(methods)
    known = [m for m in METHOD_ORDER if m in given]
    return known + sorted(given - set(known))


def _log10(x: pd.Series) -> pd.Series:
    return np.log10(x.where(x > 0))


TRANSFORMS: dict[str | None, Callable[[pd.Series], pd.Series]] = {None: lambda x: x, "log10": _log10}


def mean_ci(values: pd.Series) -> tuple[float, float, int]:
    """(mean, half-width of the 95% Student-t CI, n) of the finite values."""
    v = values[np.isfinite(values)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v.iloc[0]), math.nan, 1
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return float(v.mean()), half, n


def run_status(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its status."""
    return df.groupby(RUN_KEYS, as_index=False).agg(status=("status", "first"))


PROVENANCE_KEYS = ("git_commit", "device_name", "torch_version", "pot_version")


def provenance_markdown(df: pd.DataFrame) -> str:
    """Where the records were computed: one row per (commit, device, library versions), with its number of runs
    and the first and last run dates (a suite's runs usually share one row)."""
    keys = [c for c in PROVENANCE_KEYS if c in df]
    lines = ["## Provenance", ""]
    if not keys:
        return "\n".join([*lines, "(the records carry no provenance)", ""])
    runs = df.drop_duplicates([c for c in RUN_KEYS if c in df] + keys)
    groups = runs.groupby(keys, dropna=False, sort=True)
    dated = "run_date" in df
    lines += ["| " + " | ".join([*keys, "runs", *(["first run", "last run"] if dated else [])]) + " |"]
    lines += ["|" + "---|" * len(keys) + "---:|" + ("---|---|" if dated else "")]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        dates = [str(group.run_date.min()), str(group.run_date.max())] if dated else []
        lines.append("| " + " | ".join([*(str(v) for v in values), str(len(group)), *dates]) + " |")
    return "\n".join(lines) + "\n"


def at_report_time(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per ok run, the row at the evaluated step closest to the run's report_t that has ``metric``."""
    ok = df[(df["status"] == "ok") & df[metric].notna()] if metric in df else df.iloc[0:0]
    if ok.empty:
        return ok
    ok = ok.assign(_dist=(ok["t"] - ok["report_t"]).abs())
    idx = ok.groupby(RUN_KEYS)["_dist"].idxmin()
    return ok.loc[idx].drop(columns="_dist")


def seconds_per_step(df: pd.DataFrame) -> pd.DataFrame:
    """Per ok run: mean training+regeneration seconds per JKO step, and peak memory."""
    steps = df[(df["status"] == "ok") & (df["k"] > 0)]
    return steps.groupby(RUN_KEYS, as_index=False).agg(
        time_step_s=("time_step_s", "mean"), peak_mem_mb=("peak_mem_mb", "max")
    )


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Long summary: one row per (experiment, method, dim, quantity) with mean, CI half-width, n."""
    out = []
    for metric, label, transform, floor in HEADLINE_METRICS:
        if metric not in df or df[metric].notna().sum() == 0:
            continue
        at_t = at_report_time(df, metric)
        for (exp, method, dim), g in at_t.groupby(["experiment", "method", "dim"]):
            mean, half, n = mean_ci(TRANSFORMS[transform](g[metric]))
            row = dict(experiment=exp, method=method, dim=dim, quantity=metric, label=label, mean=mean, ci95=half, n=n)
            row["t"] = float(g["t"].mean())
            if floor and floor in g:
                row["floor"] = float(TRANSFORMS[transform](g[floor]).mean())
            out.append(row)
    per_step = seconds_per_step(df)
    for (exp, method, dim), g in per_step.groupby(["experiment", "method", "dim"]):
        for q, label in (("time_step_s", "seconds per JKO step"), ("peak_mem_mb", "peak memory (MB)")):
            mean, half, n = mean_ci(g[q])
            out.append(dict(experiment=exp, method=method, dim=dim, quantity=q, label=label, mean=mean, ci95=half, n=n))
    return pd.DataFrame(out)


def _cell(mean: float, half: float, floor: float | None = None) -> str:
    if not math.isfinite(mean):
        return "—"
    digits = 2 if abs(mean) >= 0.1 or mean == 0 else 3
    fmt = f"{{:.{digits}g}}" if abs(mean) < 1e-2 else f"{{:.{digits + 1}f}}" if abs(mean) < 10 else "{:.1f}"
    s = fmt.format(mean)
    if math.isfinite(half):
        s += " ± " + (f"{half:.2g}")
    if floor is not None and math.isfinite(floor):
        s += f" (floor {fmt.format(floor)})"
    return s


def markdown(df: pd.DataFrame, title: str | None = None) -> str:
    """Markdown tables for every experiment in the records (method x dim cells: mean ± 95% CI)."""
    summ = summary(df)
    statuses = run_status(df)
    lines = [f"# {title}", ""] if title else []
    lines += [
        "Cells: mean ± 95% CI half-width over seeds (Student t; log10 taken per run), at the evaluated step closest to "
        "the experiment's report time; `(floor …)` is the metric's sampling noise floor (same metric between two "
        "independent exact samples of the same size). Only runs with status `ok` enter the means.",
        "",
    ]
    # every experiment of the records gets a section, also one where no run finished ok (its status counts)
    for exp in dict.fromkeys(df["experiment"]):
        es = summ[summ["experiment"] == exp] if "experiment" in summ else summ
        edf = df[df["experiment"] == exp]
        dims = sorted(edf["dim"].unique())
        methods = ordered_methods(edf["method"].unique())
        problem = edf["problem"].iloc[0]
        t_rep = float(edf["report_t"].iloc[0])
        n_seeds = edf.groupby("method")["seed"].nunique().max()
        lines += [f"## {exp} ({problem}; t = {t_rep:g}; up to {n_seeds} seeds per cell)", ""]
        if es.empty:
            lines += ["No run of this experiment finished with status `ok`: nothing to average.", ""]
        for _, qs in es.groupby("quantity", sort=False) if not es.empty else ():
            lines += [f"**{qs['label'].iloc[0]}**", ""]
            lines += ["| method | " + " | ".join(f"d={d}" for d in dims) + " |"]
            lines += ["|---|" + "---|" * len(dims)]
            for m in methods:
                cells = []
                for d in dims:
                    c = qs[(qs["method"] == m) & (qs["dim"] == d)]
                    cells.append(
                        _cell(c["mean"].iloc[0], c["ci95"].iloc[0], c.get("floor", pd.Series([None])).iloc[0])
                        if len(c)
                        else "—"
                    )
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
        if "symkl_moment_jko_pde" in edf and edf["symkl_moment_jko_pde"].notna().any() and not es.empty:
            disc = at_report_time(edf, "symkl_moment_jko_pde").groupby("dim")["symkl_moment_jko_pde"]
            vals = disc.apply(lambda s: mean_ci(_log10(s))[0])
            lines += [
                "Time-discretisation error of the exact JKO iterate (log10 SymKL to the PDE solution, closed form): "
                + ", ".join(f"d={d}: {v:.2f}" for d, v in vals.items()),
                "",
            ]
        st = statuses[statuses["experiment"] == exp]
        bad = st[st["status"] != "ok"]
        counts = st.groupby(["method", "dim", "status"]).size().unstack(fill_value=0)
        if len(bad):
            lines += ["**Runs per status (only `ok` runs are averaged)**", ""]
            lines += [
                "| method | dim | " + " | ".join(counts.columns) + " |",
                "|---|---|" + "---|" * len(counts.columns),
            ]
            counts = counts.loc[ordered_methods(counts.index.get_level_values("method"))]
            lines += [f"| {m} | {d} | " + " | ".join(str(v) for v in row) + " |" for (m, d), row in counts.iterrows()]
            lines.append("")
        else:
            lines += [f"All {len(st)} runs finished with status `ok`.", ""]
    return "\n".join(lines)
