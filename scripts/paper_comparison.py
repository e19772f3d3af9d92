#!/usr/bin/env python
"""``results/paper-budget-cpu/README.md``: our runs of the papers' OU protocols at their budgets beside the values
the papers publish (issue 12 item 3).

    ./with-env python scripts/paper_comparison.py            # reads results/paper-budget-cpu/runs, writes README.md

Per experiment of ``suites/paper-budget-cpu.yaml`` and per (method, d), for each metric the paper uses:

* **ours**: log10 of the metric at the report time (t = 0.9), mean and Student-t 95% interval over the seeds'
  runs (the cells of :func:`wgfbench.reports.tables.summary`, the one summary mechanism of the tables and figures);
* **published**: the paper's value, with where in the paper it is (:data:`PUBLISHED`), or what the paper gives
  where it tabulates no number;
* **exact-JKO floor**: log10 SymKL of the exact Gaussian JKO iterate to the PDE solution at the same k (closed
  form, the time discretisation's own error at h = 0.05, mean of per-seed log10), which no JKO scheme at this step
  is expected to beat by much (errors of opposite sign can cancel, so it is a reference line, not a bound);
* **noise floor q95**: the cell's resolution threshold (mean over its runs of the 95% quantile of the metric
  between two exact samples of the evaluation's sizes, log10): a value below it is not resolved;
* **runs**: ok runs over the runs the suite asks for, and every other status, runs not yet recorded as
  ``missing`` (listed by job id) and records of another run (a suite edit since: another run hash) as ``stale``.

A paragraph per experiment states every difference of protocol from the paper and what the comparison shows, the
latter computed from the cells (differences from the published values, position against the floors).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "paper-budget-cpu.yaml"
RECORDS = ROOT / "results" / "paper-budget-cpu" / "runs"
OUT = ROOT / "results" / "paper-budget-cpu" / "README.md"

MOKROV_SOURCE = (
    "Mokrov et al. (NeurIPS 2021) Fig. 3/5 (log10 SymKL at t = 0.9 against d, 15 runs), as tabulated by Choi, Choi "
    "& Kang (ICML 2024), appendix Tables 6-7, whose JKO-ICNN and EM columns agree with Mokrov et al.'s published "
    "per-run results within 0.1-0.3"
)
FAN_SOURCE = "Fan et al. (ICML 2022) Fig. 4 (log10 SymKL at t = 0.9 against d, 15 seeds)"
# (experiment, method, metric column) -> {d: published log10 value}; a dim absent: the paper tabulates no number
PUBLISHED: dict[tuple[str, str, str], dict[int, float]] = {
    ("ou_mokrov", "jko_icnn_exact", "symkl_mc"): {2: -2.4, 4: -2.1, 6: -2.2},
    ("ou_mokrov", "em_particles", "symkl_kde"): {2: -2.3, 4: -1.0, 6: -0.3},
    ("ou_fan", "variational_jko", "symkl_moment"): {},  # Fig. 4 is plotted, not tabulated
}
# where a cell has no published number, what the paper gives instead
NOT_TABULATED = {
    "ou_fan": "Fig. 4 only (plotted, not tabulated): the variational JKO below JKO-ICNN-d at every d",
    "ou_mokrov": "at d = 8, Fig. 3/5 only (plotted, not tabulated)",
}
SOURCES = {"ou_fan": FAN_SOURCE, "ou_mokrov": MOKROV_SOURCE}
# per experiment, the metrics compared, each with its label and the methods it is reported for (None: every one)
METRICS: dict[str, list[tuple[str, str]]] = {
    "ou_fan": [("symkl_moment", "SymKL of the moment fit to P_t (Fan et al.'s metric)")],
    "ou_mokrov": [
        ("symkl_mc", "SymKL by Monte Carlo from the model's density, 8192 samples each way (Mokrov et al.'s metric)"),
        ("symkl_kde", "SymKL by Monte Carlo with a KDE of the particles (Mokrov et al.'s EM metric; d <= 3 here)"),
        ("symkl_moment", "SymKL of the moment fit to P_t (every method; Fan et al.'s metric)"),
    ],
}
PROTOCOL: dict[str, str] = {
    "ou_fan": (
        "Fan et al.'s OU protocol (their instances' law: covariance eigenvalues in [0.5, 1], P_0 = N(0, I), h = 0.05, "
        "20 steps, report at t = 0.9; the variational JKO at its defaults: 500 iterations of batch 1024 per step, "
        "512,000 particles, all of which enter the moment fit). Differences from the paper: 5 seeds instead of 15; "
        "d = 2, 6, 12, 16 (the paper also runs 32 and 64); our instances are drawn from their law by our generator, "
        "not their code's stream; one CPU thread instead of a GPU; the exact JKO oracle and the identity row are "
        "ours (the paper plots the variational JKO beside JKO-ICNN-d and JKO-ICNN-a, which this suite does not run "
        "here)."
    ),
    "ou_mokrov": (
        "Mokrov et al.'s OU protocol (their make_spd_matrix instances and seeding, P_0 = N(0, I), h = 0.05 to t = 1, "
        "evaluated every 0.1; JKO-ICNN with the exact Hessian log-det at their budget: DenseICNN 2 x 64 rank 5, "
        "identity pretraining lr 5e-3 x 4000, 500 iterations of batch 1024 per step, lr 5e-3; their Monte-Carlo "
        "SymKL on 8192 samples each way; Euler-Maruyama with 50,000 particles at dt = 1e-3, its KDE fitted on all "
        "of them). Differences from the paper: 3 runs instead of 15; d = 2, 4, 6, 8 (the paper: 1..12); the KDE "
        "SymKL only in d <= 3 here (the paper's EM column uses it in every d, where it measures mostly the KDE's "
        "own error from d = 3 on); the JKO-ICNN's training draws from a particle set regenerated once per step "
        "instead of fresh samples per iteration; one CPU thread instead of a GPU."
    ),
}


# --- the cells ----------------------------------------------------------------------------------------------------
def expected_runs(suite) -> pd.DataFrame:
    from wgfbench.records import run_hash

    rows = [
        dict(experiment=r.experiment, method=r.method, dim=r.dim, seed=r.seed, job=r.job_id, expected_hash=run_hash(r))
        for r in suite.runs
    ]
    return pd.DataFrame(rows)


def read_current(records: Path, expected: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of the records that belong to the suite's runs as it stands, one row per expected run with its status:
    the record's, ``missing`` or ``stale``). A record is stale when its run hash differs from its run's in the suite
    (:func:`wgfbench.records.run_hash`, the rule of :func:`wgfbench.workflow.prepare_records`: a record written
    before run hashes were recorded counts as current, as the pipeline keeps it)."""
    from wgfbench.records import read_records

    files = sorted(records.rglob("*.parquet")) if records.is_dir() else []
    df = read_records(files) if files else pd.DataFrame(columns=["experiment", "method", "dim", "seed"])
    keys = ["experiment", "method", "dim", "seed"]
    if len(df):
        if "run_hash" not in df:
            df = df.assign(run_hash=None)
        per_run = df.groupby(keys, as_index=False, dropna=False).agg(
            status=("status", "first"), run_hash=("run_hash", "first")
        )
    else:
        per_run = pd.DataFrame(columns=[*keys, "status", "run_hash"])
    runs = expected.merge(per_run, on=keys, how="left")
    differs = runs["run_hash"].notna() & (runs["run_hash"] != runs["expected_hash"])
    stale = np.where(differs, "stale", runs["status"])
    runs["status"] = np.where(runs["status"].isna(), "missing", stale)
    current = runs[~runs["status"].isin(["missing", "stale"])][keys]
    rows = df.merge(current, on=keys) if len(df) else df
    return rows, runs


def exact_jko_floor(rows: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Per (experiment, d): mean over the seeds of log10 SymKL(exact JKO iterate, P_t) at the report step."""
    from wgfbench.reports import stats, tables

    col = "symkl_moment_jko_pde"
    if col not in rows or not rows[col].notna().any():
        return {}
    at_t = tables.at_report_time(rows, col).drop_duplicates(["experiment", "dim", "seed"])
    return {(e, d): stats.summarise_runs(g[col], log10=True).mean for (e, d), g in at_t.groupby(["experiment", "dim"])}


def fmt_cell(c: pd.Series | None) -> str:
    if c is None or not c["n"]:
        return "-"
    if math.isfinite(c["lo"]):
        return f"{c['mean']:.2f} [{c['lo']:.2f}, {c['hi']:.2f}]"
    return f"{c['mean']:.2f} (runs: {', '.join(f'{v:.2f}' for v in c['runs'])})"


def fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"


def status_text(runs: pd.DataFrame) -> str:
    counts = runs["status"].value_counts()
    ok = int(counts.get("ok", 0))
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "ok")
    return f"{ok}/{len(runs)} ok" + (f" ({others})" if others else "")


# --- the document -------------------------------------------------------------------------------------------------
def experiment_section(exp: str, summary: pd.DataFrame, runs: pd.DataFrame, floors: dict) -> list[str]:
    from wgfbench.reports.tables import ordered_methods

    er = runs[runs["experiment"] == exp]
    dims = sorted(er["dim"].unique())
    methods = ordered_methods(er["method"].unique())
    lines = [f"## {exp}", "", f"**Protocol.** {PROTOCOL.get(exp, '(no protocol text)')}", ""]
    lines += [f"**Published values**: {SOURCES.get(exp, '-')}.", ""]
    findings: list[str] = []
    for col, label in METRICS.get(exp, []):
        cells = summary[(summary["experiment"] == exp) & (summary["quantity"] == col)] if len(summary) else summary
        shown = [m for m in methods if (len(cells) and (cells["method"] == m).any()) or (exp, m, col) in PUBLISHED]
        if not shown:
            continue
        lines += [f"### log10 {label}", ""]
        lines += ["| method | d | ours: mean [95% CI] | published | exact-JKO floor | noise floor q95 | runs |",
                  "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for m in shown:
            for d in dims:
                rr = er[(er["method"] == m) & (er["dim"] == d)]
                if rr.empty:
                    continue
                sel = cells[(cells["method"] == m) & (cells["dim"] == d)] if len(cells) else cells
                c = sel.iloc[0] if len(sel) else None
                pub = PUBLISHED.get((exp, m, col), {}).get(d)
                pub_text = fmt(pub) if pub is not None else ("-" if (exp, m, col) not in PUBLISHED else "not tabulated")
                q95 = c.get("threshold") if c is not None and "threshold" in c else None
                lines.append(f"| {m} | {d} | {fmt_cell(c)} | {pub_text} | {fmt(floors.get((exp, d)))} | "
                             f"{fmt(q95 if q95 is None or pd.notna(q95) else None)} | {status_text(rr)} |")  # fmt: skip
                if c is not None and c["n"]:
                    findings.append(finding(m, d, col, c, pub, floors.get((exp, d)), q95))
        lines.append("")
    missing = er[er["status"].isin(["missing", "stale"])]
    where_none = f"; where the paper tabulates nothing: {NOT_TABULATED[exp]}" if exp in NOT_TABULATED else ""
    lines += [f"**What the comparison shows** (computed from the cells above{where_none}):", ""]
    lines += [f"* {f}" for f in findings] or ["* no finished run yet."]
    if len(missing):
        listed = ", ".join(f"`{j}` ({s})" for j, s in zip(missing["job"], missing["status"], strict=True))
        lines += ["", f"**Not yet in the table** ({len(missing)} of {len(er)} runs): {listed}."]
    return [*lines, ""]


def finding(method: str, d: int, col: str, c: pd.Series, published: float | None, jko: float | None, q95) -> str:
    parts = [f"{method}, d = {d}, {col}: {c['mean']:.2f} over {c['n']} run{'s' if c['n'] != 1 else ''}"]
    if published is not None:
        diff = c["mean"] - published
        inside = math.isfinite(c["lo"]) and c["lo"] <= published <= c["hi"]
        parts.append(f"published {published:.1f}, ours {'higher' if diff > 0 else 'lower'} by {abs(diff):.2f}"
                     + (" (inside our 95% interval)" if inside else ""))  # fmt: skip
    if jko is not None and math.isfinite(jko):
        parts.append(f"{c['mean'] - jko:+.2f} in log10 against the exact-JKO floor")
    if q95 is not None and pd.notna(q95):
        parts.append("resolved (above the noise floor q95)" if c["mean"] > q95 else "NOT resolved (at or below the "
                     "noise floor q95: the evaluation cannot tell it from an exact sample)")  # fmt: skip
    return "; ".join(parts)


def build_readme(suite_path: Path, records: Path, command: str) -> str:
    from wgfbench.reports import tables
    from wgfbench.suites import load_suite

    suite = load_suite(suite_path)
    rows, runs = read_current(records, expected_runs(suite))
    summary = tables.summary(rows) if len(rows) else pd.DataFrame(columns=["experiment", "quantity", "method"])
    floors = exact_jko_floor(rows) if len(rows) else {}
    n_ok = int((runs["status"] == "ok").sum())
    lines = [
        f"# {suite.name}: the papers' OU protocols at their own budgets, beside the published values",
        "",
        f"Built by `{command}` from the records in `{_rel(records)}` and `{_rel(suite_path)}`: "
        f"{len(runs)} runs asked for, {n_ok} ok, {int(runs['status'].isin(['missing', 'stale']).sum())} not yet "
        "recorded (listed per experiment). Cells: log10 per run at the report time, mean with a Student-t 95% "
        "interval for n >= 3 runs (the runs themselves for fewer); only `ok` runs enter a cell.",
        "",
    ]
    for exp in dict.fromkeys(runs["experiment"]):
        lines += experiment_section(exp, summary, runs, floors)
    if len(rows):
        lines += ["## Provenance", "", tables.provenance_markdown(rows), ""]
    return "\n".join(lines)


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=SUITE)
    ap.add_argument("--records", type=Path, default=RECORDS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    command = "./with-env python scripts/paper_comparison.py"
    if (args.suite, args.records, args.out) != (SUITE, RECORDS, OUT):
        command += f" --suite {_rel(args.suite)} --records {_rel(args.records)} --out {_rel(args.out)}"
    args.out.write_text(build_readme(args.suite, args.records, command))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
