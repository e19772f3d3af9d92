"""Comparison tables from run records: per method and dimension, every metric with what it can resolve.

Every number comes from the one summary mechanism of :mod:`wgfbench.reports.stats`, which the figures use too:

* **Cells.** Errors are reported at one flow time per experiment (``report_t``: the evaluated step nearest it; a
  cell from another step says so). log10 is taken per run; the cell is the mean with a Student-t 95% interval for
  n >= 3 runs, and the runs themselves for n < 3. Only runs with status ``ok`` enter a cell; runs that diverged,
  timed out or failed, and ``ok`` runs whose value at the report step is not finite (status ``non-finite``), are
  counted per cell and never averaged in.
* **Resolution.** A cell is resolved when its mean lies above the mean (same scale) of its runs' floor 95%
  quantiles (:func:`wgfbench.reports.stats.resolve_cell`); an unresolved cell prints ``≤ floor``. Each cell shows
  its floor q95 in brackets, and each experiment states its resolution per d: the largest threshold of the
  headline metric's cells, the smallest error every cell of that column resolves.
* **Ranking.** Instances are a function of (d, seed), so methods are compared paired by seed with the
  centrepiece: the mean paired difference of log10 errors, its interval (n >= 3) and wins/ties/losses
  (:func:`wgfbench.reports.stats.ranking_table`).
* **Timing.** Seconds per JKO step: median and interquartile range over the steps of every run of the cell.
* **Distinct runs are never merged.** A cell is (experiment, method, configuration, d): runs of one method under
  different parameters (method, problem, step, steps, evaluation) get separate rows, labelled by a short hash of
  their configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from wgfbench.metrics import catalogue
from wgfbench.records import RUN_KEYS, metrics_long, write_parquet_atomic, write_text_atomic
from wgfbench.reports import stats

CONFIG_COLUMNS = ("problem", "problem_params", "method_params", "h", "n_steps", "eval_params")
CELL_KEYS = ["experiment", "method", "dim"]  # plus the configuration label, "row"
NON_FINITE = "non-finite"


def headline_rows() -> list[tuple[str, str, str | None, str | None]]:
    """(column, label, transform, floor column) of every table row, in catalogue order."""
    rows = []
    for metric in catalogue.METRICS:
        for against in metric.table:
            col = catalogue.column(metric.name, against)
            floor = catalogue.column(metric.name, against, "floor") if metric.floor else None
            rows.append((col, metric.title(against), metric.transform, floor))
    return rows


def ordered_methods(methods) -> list[str]:
    """``methods`` in the registry's order (centrepiece, baselines, references; by name within a role), any
    method the registry does not know (records of a method from elsewhere) after them alphabetically."""
    from wgfbench.registry import methods as registered

    given = set(methods)
    known = [m for m in registered() if m in given]
    return known + sorted(given - set(known))


def centrepiece() -> str:
    from wgfbench.registry import methods as registered

    return next(name for name, cls in registered().items() if cls.role == "centrepiece")


# --- runs and cells --------------------------------------------------------------------------------------------
def with_rows(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a column ``row``: the method name, suffixed by a short configuration hash where one
    (experiment, method) holds runs of several configurations (so that distinct runs never share a cell)."""
    cols = [c for c in CONFIG_COLUMNS if c in df]

    def config(r) -> str:
        return hashlib.sha256(json.dumps([str(r[c]) for c in cols]).encode()).hexdigest()[:6]

    out = df.copy()
    out["config"] = out[cols].apply(config, axis=1) if cols else "-"
    n_configs = out.groupby(["experiment", "method"])["config"].transform("nunique")
    out["row"] = np.where(n_configs > 1, out["method"] + " [" + out["config"] + "]", out["method"])
    return out


def _run_keys(df: pd.DataFrame) -> list[str]:
    return [*RUN_KEYS, "config"] if "config" in df else RUN_KEYS


def run_status(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run with its status."""
    df = df if "row" in df else with_rows(df)
    return df.groupby([*_run_keys(df), "row"], as_index=False).agg(status=("status", "first"))


def at_report_time(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per ok run that evaluates ``metric``, the row at the evaluated step nearest the run's report_t.

    The step is chosen among the run's evaluated steps (P_0, and every step with an evaluation time), never by
    whether the value there is finite: a NaN or infinite value at the report step stays (the tables count it as
    ``non-finite``) instead of being swapped for another step's value. A run whose ``metric`` exists at P_0 only
    (e.g. a moment fit against a Gaussian P_0 when P_t is not Gaussian) does not report it.
    """
    if metric not in df:
        return df.iloc[0:0]
    df = df if "row" in df else with_rows(df)
    keys = _run_keys(df)
    ok = df[df["status"] == "ok"]
    timed = ok["time_eval_s"].notna() if "time_eval_s" in ok else ok[metric].notna()
    evaluated = ok[(ok["k"] == 0) | timed | ok[metric].notna()]
    has_metric = evaluated.groupby(keys)[metric].transform(lambda s: s.notna().any())
    beyond_p0 = (
        evaluated.assign(_v=evaluated[metric].where(evaluated["k"] > 0))
        .groupby(keys)["_v"]
        .transform(lambda s: s.notna().any())
    )
    at_zero = evaluated["report_t"] <= 0
    rows = evaluated[has_metric & (beyond_p0 | at_zero)]
    if rows.empty:
        return rows
    rows = rows.assign(_dist=(rows["t"] - rows["report_t"]).abs())
    idx = rows.groupby(keys)["_dist"].idxmin()
    return rows.loc[idx].drop(columns="_dist")


def seconds_per_step(df: pd.DataFrame) -> pd.DataFrame:
    """Per ok run: median training+regeneration seconds per JKO step, and peak memory."""
    df = df if "row" in df else with_rows(df)
    steps = df[(df["status"] == "ok") & (df["k"] > 0)]
    aggs = {c: (c, f) for c, f in (("time_step_s", "median"), ("peak_mem_mb", "max")) if c in df}
    return steps.groupby([*_run_keys(df), "row"], as_index=False).agg(**aggs)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (experiment, row, dim, quantity): the cell of the one summary mechanism.

    Columns: mean, lo, hi (NaN for n < 3), n, runs (per-run values on the cell's scale), n_nonfinite (ok runs
    whose value at the report step is not finite), t (the flow time reported; differs from report_t where the
    report step was not evaluated), floor (mean of the runs' floor means, cell scale), threshold (mean of the runs'
    floor q95, cell scale), resolved, runs_resolved; for timing quantities: median, q25, q75.
    """
    df = with_rows(df)
    out = []
    for col, label, transform, floor in headline_rows():
        if col not in df or df[col].notna().sum() == 0:
            continue
        log10 = transform == "log10"
        at_t = at_report_time(df, col)
        for (exp, row, dim), g in at_t.groupby(["experiment", "row", "dim"], sort=False):
            finite = np.isfinite(g[col].to_numpy(dtype=np.float64))
            cell = stats.summarise_runs(g.loc[finite, col], log10)
            entry = dict(
                experiment=exp, row=row, method=g["method"].iloc[0], dim=dim, quantity=col, label=label,
                mean=cell.mean, lo=cell.lo if cell.lo is not None else math.nan,
                hi=cell.hi if cell.hi is not None else math.nan, n=cell.n, runs=cell.runs,
                n_nonfinite=int((~finite).sum()), t=float(g["t"].mean()), report_t=float(g["report_t"].iloc[0]),
                log10=log10,
            )  # fmt: skip
            floor_values = stats.to_scale(g.loc[finite, floor], log10) if floor and floor in g else np.array([])
            if np.isfinite(floor_values).any():
                entry["floor"] = float(np.nanmean(floor_values))
            q95 = f"{col}_floor_q95"
            if q95 in g and g[q95].notna().any():
                res = stats.resolve_cell(list(g.loc[finite, col]), list(g.loc[finite, q95]), log10)
                entry |= dict(threshold=res.threshold, resolved=res.resolved, runs_resolved=res.runs_resolved)
            out.append(entry)
    timed = df[(df["status"] == "ok") & (df["k"] > 0)] if "time_step_s" in df else df.iloc[0:0]
    for (exp, row, dim), g in timed.groupby(["experiment", "row", "dim"]):  # (no finished step: no timing rows)
        keys = _run_keys(g)
        per_run = [r["time_step_s"].to_numpy() for _, r in g.groupby(keys)]
        timing = stats.timing_summary(per_run)
        out.append(
            dict(
                experiment=exp, row=row, method=g["method"].iloc[0], dim=dim, quantity="time_step_s",
                label="seconds per JKO step", mean=timing.median, median=timing.median, q25=timing.q25,
                q75=timing.q75, n=timing.n_runs, log10=False,
            )
        )  # fmt: skip
        if "peak_mem_mb" not in g:
            continue
        mem = g.groupby(keys)["peak_mem_mb"].max()
        cell = stats.summarise_runs(mem)
        out.append(
            dict(
                experiment=exp, row=row, method=g["method"].iloc[0], dim=dim, quantity="peak_mem_mb",
                label="peak memory (MB)", mean=cell.mean, lo=cell.lo if cell.lo is not None else math.nan,
                hi=cell.hi if cell.hi is not None else math.nan, n=cell.n, runs=cell.runs, log10=False,
            )
        )  # fmt: skip
    return pd.DataFrame(out)


def ranking(df: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Paired comparison by seed of every row with the centrepiece, per (experiment, dim), on ``quantity``."""
    df = with_rows(df)
    at_t = at_report_time(df, quantity)
    if at_t.empty:
        return pd.DataFrame()
    runs = at_t.assign(method=at_t["row"])
    reference = centrepiece()
    if reference not in set(runs["method"]):
        return pd.DataFrame()
    q95 = f"{quantity}_floor_q95"
    mean, sd = f"{quantity}_floor", f"{quantity}_floor_sd"
    return stats.ranking_table(
        runs,
        reference,
        quantity,
        q95 if q95 in runs else None,
        mean if mean in runs and sd in runs else None,
        sd if mean in runs and sd in runs else None,
        by=("experiment", "dim"),
    )


# --- markdown ---------------------------------------------------------------------------------------------------
def _num(value: float, log10: bool) -> str:
    if not math.isfinite(value):
        return "—"
    if log10:
        return f"{value:.2f}"
    a = abs(value)
    return f"{value:.2g}" if a < 1e-2 or a >= 1e4 else f"{value:.3g}"


def _get(c: pd.Series, key: str, default=math.nan):
    """c[key], or ``default`` where the cell has no such entry (a NaN of a column other quantities fill)."""
    value = c.get(key, default)
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _cell(c: pd.Series) -> str:
    """The text of one cell (module docstring)."""
    log10 = bool(_get(c, "log10", False))
    if c["quantity"] == "time_step_s":
        return f"{_num(c['median'], False)} [{_num(c['q25'], False)}, {_num(c['q75'], False)}]"
    n = int(_get(c, "n", 0))
    lo, hi = _get(c, "lo"), _get(c, "hi")
    if n == 0:
        text = "—"
    elif n >= stats.MIN_RUNS_FOR_INTERVAL and math.isfinite(lo):
        text = f"{_num(c['mean'], log10)} ± {_num(0.5 * (hi - lo), log10)}"
    else:
        text = "runs " + ", ".join(_num(v, log10) for v in c["runs"])
    threshold = _get(c, "threshold")
    if math.isfinite(threshold):
        if n and not bool(_get(c, "resolved", True)):
            text = f"≤ floor ({text})"
        text += f" [floor q95 {_num(threshold, log10)}]"
    elif math.isfinite(_get(c, "floor")):
        text += f" (floor {_num(c['floor'], log10)})"
    if abs(_get(c, "t", 0.0) - _get(c, "report_t", 0.0)) > 1e-9:
        text += f" (t = {c['t']:.3g})"
    if int(_get(c, "n_nonfinite", 0)):
        text += f" ({int(c['n_nonfinite'])} non-finite)"
    return text


def _grid(qs: pd.DataFrame, rows: list[str], dims: list) -> list[str]:
    lines = ["| method | " + " | ".join(f"d={d}" for d in dims) + " |", "|---|" + "---|" * len(dims)]
    for r in rows:
        cells = []
        for d in dims:
            c = qs[(qs["row"] == r) & (qs["dim"] == d)]
            cells.append(_cell(c.iloc[0]) if len(c) else "—")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _ordered_rows(edf: pd.DataFrame) -> list[str]:
    order = {m: i for i, m in enumerate(ordered_methods(edf["method"].unique()))}
    rows = edf.drop_duplicates("row")[["row", "method"]]
    return [r for r, _ in sorted(zip(rows["row"], rows["method"], strict=True), key=lambda x: (order[x[1]], x[0]))]


NO_SPREAD_LINE = (
    "Reproducibility: the spread of these cells under another floating-point order (another CPU, thread count or "
    "kernel set, same seeds) was not measured for this suite (`scripts/fp_spread.py` measures it; for the default "
    "suite it is stated in `results/default/table.md`). Differences between trained methods smaller than that "
    "spread are not reproducible across machines; the exact oracle's cells do not move."
)


def spread_line(spread: dict) -> str:
    """The reproducibility tolerance measured by scripts/fp_spread.py, in one sentence."""
    s = spread["summary"]["all"]
    perts = ", ".join(
        f"{k} ({'; '.join(f'{e}={v}' for e, v in p['env'].items()) or str(p['threads']) + ' threads'})"
        for k, p in spread["perturbations"].items()
    )
    return (
        f"Reproducibility: re-running the {spread['method']} runs of experiment `{spread['experiment']}` "
        f"({s['runs']} re-runs) with only the floating-point order changed ({perts}) moved a run's log10 "
        f"{spread['metric']} by {s['run_median']:.2f} decades (median), {s['run_max']:.2f} at most, and a cell mean "
        f"by {s['cell_max']:.2f} at most: differences of a trained method's cells below that are not reproducible "
        "across machines (the exact oracle's cells do not move)."
    )


def markdown(df: pd.DataFrame, title: str | None = None, spread: dict | None = None) -> str:
    """Markdown tables for every experiment in the records (module docstring); ``spread``: the reproducibility
    tolerance of scripts/fp_spread.py, stated under the reading guide."""
    df = with_rows(df)
    summ = summary(df)
    statuses = run_status(df)
    lines = [f"# {title}", ""] if title else []
    lines += [
        "How to read these tables: each cell is the mean of per-run values at the experiment's report time (log10 "
        "per run where the label says log10) with a 95% Student-t interval for n >= 3 runs, or the runs themselves "
        "for fewer. `[floor q95 …]` is the 95% quantile of the metric for a perfect method with the same sample "
        "sizes (its noise floor); a cell at or below it cannot be told from zero error and is marked `≤ floor`. "
        "Only runs with status `ok` enter a cell. Rankings are paired by seed (the same instances) against the "
        f"centrepiece, `{centrepiece()}`: Δ = mean log10(method) - log10(centrepiece), negative = smaller error.",
        "",
    ]
    if spread is not None:
        lines += [spread_line(spread), ""]
    else:  # say so: a reader must not take a difference between trained methods for one that survives a new machine
        lines += [NO_SPREAD_LINE, ""]
    for exp in dict.fromkeys(df["experiment"]):
        es = summ[summ["experiment"] == exp] if "experiment" in summ else summ
        edf = df[df["experiment"] == exp]
        dims = sorted(edf["dim"].unique())
        rows = _ordered_rows(edf)
        problem = edf["problem"].iloc[0]
        t_rep = float(edf["report_t"].iloc[0])
        n_seeds = edf.groupby("row")["seed"].nunique().max()
        lines += [f"## {exp} ({problem}; t = {t_rep:g}; up to {n_seeds} seeds per cell)", ""]
        if es.empty:
            lines += ["No run of this experiment finished with status `ok`: nothing to report.", ""]
        headline = None
        for quantity, qs in es.groupby("quantity", sort=False) if not es.empty else ():
            if headline is None and "threshold" in qs and qs["threshold"].notna().any():
                headline = quantity
            lines += [f"**{qs['label'].iloc[0]}**", "", *_grid(qs, rows, dims)]
        if headline is not None:
            hs = es[es["quantity"] == headline]
            res = stats.table_resolution(hs.dropna(subset=["threshold"]))
            log10 = bool(hs["log10"].iloc[0])
            lines += [
                f"Resolution ({hs['label'].iloc[0]}): the smallest value every cell of a column resolves is "
                + ", ".join(f"d={d}: {_num(v, log10)}" for d, v in res.items())
                + f"; {int(hs['resolved'].fillna(False).sum())} of {int(hs['resolved'].notna().sum())} cells resolved.",
                "",
            ]
            lines += _ranking_lines(df[df["experiment"] == exp], headline, hs["label"].iloc[0], dims)
            vs_jko = headline + "_vs_jko"  # the optimisation error too, where the problem has exact JKO iterates
            if vs_jko in set(es["quantity"]):
                label = es.loc[es["quantity"] == vs_jko, "label"].iloc[0]
                lines += _ranking_lines(df[df["experiment"] == exp], vs_jko, label, dims)
        lines += _discretisation_lines(edf, es)
        lines += _status_lines(df, statuses, exp)
    return "\n".join(lines)


def _ranking_lines(edf: pd.DataFrame, quantity: str, label: str, dims: list) -> list[str]:
    rank = ranking(edf, quantity)
    if rank.empty:
        return []
    lines = [f"**Paired ranking against {centrepiece()} ({label})**", ""]
    lines += ["| method | " + " | ".join(f"d={d}" for d in dims) + " |", "|---|" + "---|" * len(dims)]
    for m in _ordered_rows(edf.assign(row=edf["row"]).query("method != @centrepiece()")):
        cells = []
        for d in dims:
            r = rank[(rank["method"] == m) & (rank["dim"] == d)]
            if r.empty or not math.isfinite(r["mean_diff"].iloc[0]):
                cells.append("—")
                continue
            r = r.iloc[0]
            ci = f" [{r['lo']:.2f}, {r['hi']:.2f}]" if math.isfinite(r["lo"]) else ""
            star = "*" if r["significant"] else ""
            cells.append(f"Δ {r['mean_diff']:+.2f}{ci}{star}, W/T/L {r['wins']}/{r['ties']}/{r['losses']}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, "", "`*`: the 95% interval of the paired mean difference excludes 0 (n >= 3 seeds).", ""]


def _discretisation_lines(edf: pd.DataFrame, es: pd.DataFrame) -> list[str]:
    lines = []
    for metric in catalogue.METRICS if not es.empty else ():
        col = catalogue.column(metric.name, part="jko_pde") if metric.discretisation and metric.table else None
        if col is None or col not in edf or not edf[col].notna().any():
            continue
        disc = at_report_time(edf, col).groupby("dim")[col]
        log = metric.transform == "log10"
        vals = disc.apply(lambda s, log=log: stats.summarise_runs(s, log).mean)
        fmt = "{:.2f}" if log else "{:.3g}"
        lines += [
            f"Time-discretisation error of the exact JKO iterate ({'log10 ' if log else ''}{metric.exact_label}, "
            "closed form): " + ", ".join(f"d={d}: {fmt.format(v)}" for d, v in vals.items()),
            "",
        ]
    return lines


def _status_lines(df: pd.DataFrame, statuses: pd.DataFrame, exp: str) -> list[str]:
    st = statuses[statuses["experiment"] == exp].copy()
    # an ok run whose headline value at the report step is not finite gets its own status
    for col, _, _, _ in headline_rows():
        at_t = at_report_time(df[df["experiment"] == exp], col)
        if at_t.empty:
            continue
        bad = at_t[~np.isfinite(at_t[col].to_numpy(dtype=np.float64))]
        keys = _run_keys(st)
        flagged = set(map(tuple, bad[keys].to_numpy().tolist()))
        st.loc[[tuple(r) in flagged for r in st[keys].to_numpy().tolist()], "status"] = NON_FINITE
        break
    bad = st[st["status"] != "ok"]
    if not len(bad):
        return [f"All {len(st)} runs finished with status `ok`.", ""]
    counts = st.groupby(["row", "dim", "status"]).size().unstack(fill_value=0)
    order = _ordered_rows(df[df["experiment"] == exp])
    counts = counts.loc[[r for r in order if r in counts.index.get_level_values("row")]]
    lines = ["**Runs per status (only `ok` runs enter a cell)**", ""]
    lines += ["| method | dim | " + " | ".join(counts.columns) + " |", "|---|---|" + "---|" * len(counts.columns)]
    lines += [f"| {m} | {d} | " + " | ".join(str(v) for v in row) + " |" for (m, d), row in counts.iterrows()]
    return [*lines, ""]


PROVENANCE_KEYS = ("git_commit", "device_name", "torch_version", "pot_version")


def _date(when) -> str:
    """A run date as ISO 8601 text to the second (records of schema 2 hold timestamps; NaT: empty)."""
    if pd.isna(when):
        return ""
    return pd.Timestamp(when).isoformat(timespec="seconds") if not isinstance(when, str) else when


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
        dates = [_date(group.run_date.min()), _date(group.run_date.max())] if dated else []
        lines.append("| " + " | ".join([*(str(v) for v in values), str(len(group)), *dates]) + " |")
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, out: str | Path, title: str | None = None, spread: dict | None = None) -> list[Path]:
    """Write a suite's tables into folder ``out``: ``table.md`` (:func:`markdown` and :func:`provenance_markdown`),
    ``table.parquet`` (the records ``df``, one row per run and step), ``summary.parquet`` (:func:`summary`) and
    ``metrics.parquet`` (the long view, one row per run, step and metric: :func:`wgfbench.records.metrics_long`),
    each atomically. Returns the paths written."""
    out = Path(out)
    paths = [out / name for name in ("table.md", "table.parquet", "summary.parquet", "metrics.parquet")]
    write_parquet_atomic(df, paths[1])
    write_parquet_atomic(summary(df), paths[2])
    write_parquet_atomic(metrics_long(df), paths[3])
    write_text_atomic(markdown(df, title=title, spread=spread) + "\n" + provenance_markdown(df), paths[0])
    return paths
