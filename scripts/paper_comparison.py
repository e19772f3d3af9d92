#!/usr/bin/env python
"""``results/<suite>/comparison.md`` of a reproduction suite: our runs of a paper's protocol beside the values the paper
publishes (issue 12 item 3; issues 16 and 17 for the S-JKO and CNF-JKO suites).

    ./with-env python scripts/paper_comparison.py                               # paper-budget-cpu
    ./with-env python scripts/paper_comparison.py --suite suites/s-jko-ou.yaml   # any suite of COMPARISONS

Records are read from ``results/<suite name>/runs`` and the document written to
``results/<suite name>/comparison.md`` (the folder's README.md discusses it) unless ``--records``/``--out`` say
otherwise. Per experiment of the suite, per (method, d), for each metric the paper uses and each time it reports:

* **ours**: the metric at that time (log10 where the metric's table scale is log10), mean and Student-t 95%
  interval over the seeds' runs (the cells of :func:`wgfbench.reports.tables.summary`, the one summary mechanism of
  the tables and figures);
* **published**: the paper's value on the same scale (:class:`Comparison`), or what the paper gives where it
  tabulates no number;
* **exact-JKO floor** (Gaussian problems): log10 SymKL of the exact Gaussian JKO iterate to the PDE solution at the
  same k (closed form, the time discretisation's own error at the suite's h, mean of per-seed log10), which no JKO
  scheme at this step is expected to beat by much (errors of opposite sign can cancel: a reference line, not a
  bound);
* **published reference error** (where the paper gives one): the paper's own noise floor of the metric (two exact
  sample sets), beside ours;
* **noise floor q95**: the cell's resolution threshold (mean over its runs of the 95% quantile of the metric
  between two exact samples of the evaluation's sizes): a value below it is not resolved;
* **runs**: ok runs over the runs the suite asks for, and every other status, runs not yet recorded as
  ``missing`` (listed by job id) and records of another run (a suite edit since: another run hash) as ``stale``.

A paragraph per experiment states every difference of protocol from the paper and what the comparison shows, the
latter computed from the cells (differences from the published values, position against the floors).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "paper-budget-cpu.yaml"

PublishedKey = tuple[str, str, str, float | None]  # (experiment, method, metric, flow time t; None: report_t)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What one reproduction suite is set beside: per experiment, where the paper's numbers are (``sources``), how
    our protocol differs from the paper's (``protocol``), the metrics compared with their labels (``metrics``), the
    published values on our cells' scale (``published``: log10 for log10 metrics, as the papers report SymKL; the
    metric's own units otherwise), keyed by (experiment, method, metric, t) and then d (t None: the experiment's
    report time, which is the last step where the suite sets none), and the paper's own noise
    floor of a metric where it gives one (``published_floor``, keyed by (experiment, metric) then d)."""

    title: str
    sources: dict[str, str]
    protocol: dict[str, str]
    metrics: dict[str, list[tuple[str, str]]]
    published: dict[PublishedKey, dict[int, float]]
    not_tabulated: dict[str, str] = dataclasses.field(default_factory=dict)
    published_floor: dict[tuple[str, str], dict[int, float]] = dataclasses.field(default_factory=dict)
    exact_jko_floor: bool = True  # Gaussian problems: the closed-form exact-JKO floor column
    times: tuple[float, ...] = ()  # flow times compared besides the suite's report_t


MOKROV_SOURCE = (
    "Mokrov et al. (NeurIPS 2021) Fig. 3/5 (log10 SymKL at t = 0.9 against d, 15 runs), as tabulated by Choi, Choi "
    "& Kang (ICML 2024), appendix Tables 6-7, whose JKO-ICNN and EM columns agree with Mokrov et al.'s published "
    "per-run results within 0.1-0.3"
)
FAN_SOURCE = "Fan et al. (ICML 2022) Fig. 4 (log10 SymKL at t = 0.9 against d, 15 seeds)"
MOKROV_METRICS = [
    ("symkl_mc", "SymKL by Monte Carlo from the model's density, 8192 samples each way (Mokrov et al.'s metric)"),
    ("symkl_kde", "SymKL by Monte Carlo with a KDE of the particles (Mokrov et al.'s EM metric; d <= 3 here)"),
    ("symkl_moment", "SymKL of the moment fit to P_t (every method; Fan et al.'s metric)"),
]

PAPER_BUDGET = Comparison(
    title="the papers' OU protocols at their own budgets, beside the published values",
    sources={"ou_fan": FAN_SOURCE, "ou_mokrov": MOKROV_SOURCE},
    protocol={
        "ou_fan": (
            "Fan et al.'s OU protocol (their instances' law: covariance eigenvalues in [0.5, 1], P_0 = N(0, I), "
            "h = 0.05, 20 steps, report at t = 0.9; the variational JKO at its defaults: 500 iterations of batch "
            "1024 per step, 512,000 particles, all of which enter the moment fit). Differences from the paper: 5 "
            "seeds instead of 15; d = 2, 6, 12, 16 (the paper also runs 32 and 64); our instances are drawn from "
            "their law by our generator, not their code's stream; one CPU thread instead of a GPU; the exact JKO "
            "oracle and the identity row are ours (the paper plots the variational JKO beside JKO-ICNN-d and "
            "JKO-ICNN-a, which this suite does not run here)."
        ),
        "ou_mokrov": (
            "Mokrov et al.'s OU protocol (their make_spd_matrix instances and seeding, P_0 = N(0, I), h = 0.05 to "
            "t = 1, evaluated every 0.1; JKO-ICNN with the exact Hessian log-det at their budget: DenseICNN 2 x 64 "
            "rank 5, identity pretraining lr 5e-3 x 4000, 500 iterations of batch 1024 per step, lr 5e-3; their "
            "Monte-Carlo SymKL on 8192 samples each way; Euler-Maruyama with 50,000 particles at dt = 1e-3, its KDE "
            "fitted on all of them). Differences from the paper: 3 runs instead of 15; d = 2, 4, 6, 8 (the paper: "
            "1..12); the KDE SymKL only in d <= 3 here (the paper's EM column uses it in every d, where it measures "
            "mostly the KDE's own error from d = 3 on); the JKO-ICNN's training draws from a particle set "
            "regenerated once per step instead of fresh samples per iteration; one CPU thread instead of a GPU."
        ),
    },
    metrics={
        "ou_fan": [("symkl_moment", "SymKL of the moment fit to P_t (Fan et al.'s metric)")],
        "ou_mokrov": MOKROV_METRICS,
    },
    published={
        ("ou_mokrov", "jko_icnn_exact", "symkl_mc", None): {2: -2.4, 4: -2.1, 6: -2.2},
        ("ou_mokrov", "em_particles", "symkl_kde", None): {2: -2.3, 4: -1.0, 6: -0.3},
        ("ou_fan", "variational_jko", "symkl_moment", None): {},  # Fig. 4 is plotted, not tabulated
    },
    not_tabulated={
        "ou_fan": "Fig. 4 only (plotted, not tabulated): the variational JKO below JKO-ICNN-d at every d",
        "ou_mokrov": "at d = 8, Fig. 3/5 only (plotted, not tabulated)",
    },
)

CHOI_SOURCE = (
    "Choi, Choi & Kang (ICML 2024), appendix Tables 6-7 (log10 SymKL to the exact OU marginal at t = 0.5 and 0.9, "
    "d = 2, 4, 6, 10, on Mokrov et al.'s instances; S-JKO and EM 50k rows)"
)
S_JKO_DIFFERENCES = (
    "S-JKO (ours: `s_jko`, the semi-dual JKO through unbalanced OT, KL's Psi*(s) = e^s - 1, a stochastic generator "
    "G(x0, z) warm-started each phase against its frozen copy) at its CPU configuration: width 64 with one residual "
    "block, identity start, Adam 1e-3 with betas (0.5, 0.9), batch 400, 600 iterations for the first step and 300 "
    "per later step. Their repository has no OU script; the protocol they ran for their appendix (iterations per "
    "step, networks, how the SymKL of a density-free generator was computed) is not in it. Their toy protocol is "
    "5000 iterations per phase with width 128 and three blocks, lr_G 1e-4, lr_D 2e-5 (`suites/s-jko-ou-paper.yaml` "
    "runs it). We chose: h = 0.05 in the W2^2/(2h) convention (their code's c is the mean over coordinates, so "
    "their h' = h/d), 18 steps to t = 0.9, and the Gaussian moment fit of 10,000 generator samples against the "
    "exact marginal (`symkl_moment`) as the metric set beside theirs. EM 50k: Euler-Maruyama with 50,000 particles "
    "at dt = 1e-3 (50 EM substeps of each JKO step, Mokrov et al.'s EM protocol, which their table's EM column "
    "reproduces), compared on the KDE SymKL where we evaluate it (d <= 3) and on the moment fit. 5 seeds (theirs: "
    "not stated)."
)
S_JKO_OU = Comparison(
    title="S-JKO on OU beside its published numbers (issue 17 item 1)",
    sources={
        "ou_mokrov": CHOI_SOURCE,
        "ou_fan": "none: Choi, Choi & Kang run Mokrov et al.'s instances only; Fan et al.'s law is ours to compare",
    },
    protocol={
        "ou_mokrov": "Mokrov et al.'s instances (make_spd_matrix stationary covariance, b ~ N(0, I), P_0 = N(0, I), "
        "beta = 1). " + S_JKO_DIFFERENCES,
        "ou_fan": "Fan et al.'s instance law (eigenvalues of A in [1, 2], b ~ N(0, I), P_0 = N(0, I)), the same "
        "methods and budgets. " + S_JKO_DIFFERENCES,
    },
    metrics={
        exp: [
            ("symkl_moment", "SymKL of the moment fit to P_t (the metric set beside their S-JKO numbers)"),
            ("symkl_kde", "SymKL by Monte Carlo with a KDE of the particles (their EM 50k column's metric; d <= 3)"),
        ]
        for exp in ("ou_mokrov", "ou_fan")
    },
    published={
        ("ou_mokrov", "s_jko", "symkl_moment", None): {2: -2.4, 4: -1.2, 6: -0.8, 10: -0.1},
        ("ou_mokrov", "s_jko", "symkl_moment", 0.5): {2: -2.3, 4: -0.9, 6: -1.8, 10: -0.1},
        ("ou_mokrov", "em_particles", "symkl_kde", None): {2: -2.3, 4: -1.0, 6: -0.3, 10: 0.4},
        ("ou_mokrov", "em_particles", "symkl_kde", 0.5): {2: -2.1, 4: -1.0, 6: -0.4, 10: 0.4},
    },
    not_tabulated={"ou_fan": "no published number on this instance law"},
    times=(0.5,),
)

HG_SOURCE = (
    "Hertrich & Gruhlke (ICML 2025), Table 1 (sliced energy distance to the target, 50k vs 50k samples, 1000 "
    "projections, mean of 5 runs; their reference error: two exact sample sets) and Table 2 (log Z estimate, the "
    "ELBO, truth 0)"
)
HG_DIFFERENCES = (
    "Their schedule (first step h_0 = tau_0 / 2 in our W2^2/(2h) convention, h_k = h_0 growth^k, n_flow_steps CNF "
    "steps, then blocks of [1 CNF + 3 rejection steps], or the same CNF steps without rejection), at a CPU budget: "
    "per CNF step 100 Adam iterations of batch 512 over 8192 particles, 4 RK4 steps (theirs: 5000 iterations of "
    "batch 5000 over 50k particles, 200k for the funnel, lr 5e-3 decayed x0.95 every 100, dopri5 with the adjoint), "
    "i.e. 0.2% of their samples per step; exact divergences in d = 2, in d = 10 one Hutchinson probe in training "
    "and 5 for the densities; width 2d + 50 (theirs; 256 for the funnel); 3 seeds in d = 2, 2 in d = 10 (theirs: 5 "
    "runs). The metric is theirs: the sliced energy distance on 50,000 samples each side and 1000 directions."
)
HG_TARGETS = {
    "modes8": ("shifted 8 Modes", 2, (1.3e-1, 1.2e-5, 2.6e-5)),
    "peaky8": ("shifted 8 Peaky", 2, (1.3e-1, 3.4e-5, 2.4e-5)),
    "gmm10": ("GMM-10", 10, (1.1e-2, 5.3e-5, 4.6e-5)),
    "mustache": ("Mustache", 2, (1.8e-2, 2.9e-3, 8.6e-5)),
    "funnel": ("Funnel", 10, (4.6e-2, 1.4e-2, 3.4e-4)),
}  # target -> (their name, d, Table 1: (neural JKO, neural JKO IC, reference error))
HG_LOG_Z = {"gmm10_plain": -0.43, "gmm10_ic": 3.5e-3}  # Table 2 (only GMM-10 among these targets)
HG_METRICS = [
    ("sliced_energy", "sliced energy distance to the target (their Table 1)"),
    ("log_z", "log Z estimate, truth 0 (their Table 2)"),
]
CNF_TARGETS = Comparison(
    title="the CNF-based neural JKO with and without importance correction on Hertrich & Gruhlke's targets",
    sources={f"{t}_{v}": HG_SOURCE for t in HG_TARGETS for v in ("ic", "plain")},
    protocol={
        f"{t}_{v}": f"{name} (d = {d}), "
        + ("neural_jko_ic: the importance-corrected sampler. " if v == "ic" else "neural_jko: no rejection steps. ")
        + HG_DIFFERENCES
        for t, (name, d, _) in HG_TARGETS.items()
        for v in ("ic", "plain")
    },
    metrics={f"{t}_{v}": HG_METRICS for t in HG_TARGETS for v in ("ic", "plain")},
    published={
        **{(f"{t}_plain", "neural_jko", "sliced_energy", None): {d: e[0]} for t, (_, d, e) in HG_TARGETS.items()},
        **{(f"{t}_ic", "neural_jko_ic", "sliced_energy", None): {d: e[1]} for t, (_, d, e) in HG_TARGETS.items()},
        ("gmm10_plain", "neural_jko", "log_z", None): {10: HG_LOG_Z["gmm10_plain"]},
        ("gmm10_ic", "neural_jko_ic", "log_z", None): {10: HG_LOG_Z["gmm10_ic"]},
    },
    not_tabulated={
        f"{t}_{v}": "log Z: Table 2 gives GMM-d and LGCP only"
        for t in HG_TARGETS
        for v in ("ic", "plain")
        if t != "gmm10"
    },
    published_floor={
        (f"{t}_{v}", "sliced_energy"): {d: e[2]} for t, (_, d, e) in HG_TARGETS.items() for v in ("ic", "plain")
    },
    exact_jko_floor=False,
)

COMPARISONS: dict[str, Comparison] = {
    "paper-budget-cpu": PAPER_BUDGET,
    "s-jko-ou": S_JKO_OU,
    "cnf-targets": CNF_TARGETS,
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
    from wgfbench.records import read_records, record_files

    files = record_files(records) if records.is_dir() else []
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
    v = _fmt_on(bool(c["log10"]))
    if math.isfinite(c["lo"]):
        return f"{v(c['mean'])} [{v(c['lo'])}, {v(c['hi'])}]"
    return f"{v(c['mean'])} (runs: {', '.join(v(r) for r in c['runs'])})"


def _fmt_on(log10: bool):
    """Values on a log10 scale with two decimals; values in the metric's own units with three significant digits."""
    return (lambda v: f"{v:.2f}") if log10 else (lambda v: f"{v:.3g}")


def fmt(v: float | None, log10: bool = True) -> str:
    return "-" if v is None or not math.isfinite(v) else _fmt_on(log10)(v)


def status_text(runs: pd.DataFrame) -> str:
    counts = runs["status"].value_counts()
    ok = int(counts.get("ok", 0))
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "ok")
    return f"{ok}/{len(runs)} ok" + (f" ({others})" if others else "")


def is_log10(col: str) -> bool:
    from wgfbench.metrics.catalogue import METRICS

    return any(m.name == col and m.transform == "log10" for m in METRICS)


# --- the document -------------------------------------------------------------------------------------------------
def overview(cmp: Comparison, cells_at: dict, runs: pd.DataFrame, report_ts: dict) -> list[str]:
    """Every published number beside our cell, one row each, in the suite's order: the summary a referee reads
    first (the sections below give the floors, the other methods and the runs)."""
    lines = [
        "## Every published number beside ours",
        "",
        "| experiment | method | d | metric | at | ours: mean [95% CI] | published | ours against published | "
        "resolved | runs |",
        "|---|---|---:|---|---|---:|---:|---:|---|---|",
    ]
    n = 0
    for (exp, method, col, t_key), by_dim in cmp.published.items():
        log10 = is_log10(col)
        summary = cells_at.get(t_key, pd.DataFrame())
        report_t = report_ts.get(exp)
        when = f"t = {t_key if t_key is not None else report_t:g}" if (t_key, report_t) != (None, None) else "end"
        for d, pub in by_dim.items():
            rr = runs[(runs["experiment"] == exp) & (runs["method"] == method) & (runs["dim"] == d)]
            sel = (
                summary[(summary["experiment"] == exp) & (summary["method"] == method) & (summary["dim"] == d)
                        & (summary["quantity"] == col)] if len(summary) else summary
            )  # fmt: skip
            c = sel.iloc[0] if len(sel) else None
            gap, resolved = "-", "-"
            if c is not None and c["n"]:
                if log10:
                    gap = f"{c['mean'] - pub:+.2f} in log10"
                elif pub > 0 and c["mean"] > 0:
                    gap = f"x {c['mean'] / pub:.3g}"
                else:
                    gap = f"{c['mean'] - pub:+.3g}"
                q95 = c.get("threshold") if "threshold" in c else None
                if q95 is not None and pd.notna(q95):
                    resolved = "yes" if c["mean"] > q95 else "**no** (at its noise floor)"
            label = ("log10 " if log10 else "") + col
            ours = fmt_cell(c) if c is not None or not (rr["status"] == "ok").any() else "not evaluated at this d"
            lines.append(f"| {exp} | {method} | {d} | {label} | {when} | {ours} | {fmt(pub, log10)} | {gap} | "
                         f"{resolved} | {status_text(rr) if len(rr) else 'not in the suite'} |")  # fmt: skip
            n += 1
    return [*lines, ""] if n else []


def experiment_section(
    exp: str, cmp: Comparison, cells_at: dict, runs: pd.DataFrame, floors_at: dict, report_t: float
) -> list[str]:
    """One experiment: a table per (metric, time), the findings computed from its cells, the runs not in it.
    ``cells_at`` and ``floors_at`` map a time key (None: the report time) to the summary and exact-JKO floors
    there."""
    from wgfbench.reports.tables import ordered_methods

    er = runs[runs["experiment"] == exp]
    dims = sorted(er["dim"].unique())
    methods = ordered_methods(er["method"].unique())
    lines = [f"## {exp}", "", f"**Protocol.** {cmp.protocol.get(exp, '(no protocol text)')}", ""]
    lines += [f"**Published values**: {cmp.sources.get(exp, '-')}.", ""]
    findings: list[str] = []
    for col, label in cmp.metrics.get(exp, []):
        log10 = is_log10(col)
        pub_floor = cmp.published_floor.get((exp, col))
        for t_key, summary in cells_at.items():
            floors = floors_at.get(t_key, {})
            cells = summary[(summary["experiment"] == exp) & (summary["quantity"] == col)] if len(summary) else summary
            key = (exp, col, t_key)
            shown = [m for m in methods if (len(cells) and (cells["method"] == m).any()) or (exp, m, *key[1:]) in
                     cmp.published]  # fmt: skip
            if not shown:
                continue
            when = (
                f"t = {t_key if t_key is not None else report_t:g}"
                if (t_key, report_t) != (None, None)
                else "the last step"
            )
            lines += [f"### {'log10 ' if log10 else ''}{label}, at {when}", ""]
            head = ["method", "d", "ours: mean [95% CI]", "published"]
            head += ["exact-JKO floor"] if cmp.exact_jko_floor else []
            head += ["published reference error"] if pub_floor is not None else []
            head += ["noise floor q95", "runs"]
            lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
            for m in shown:
                for d in dims:
                    rr = er[(er["method"] == m) & (er["dim"] == d)]
                    if rr.empty:
                        continue
                    sel = cells[(cells["method"] == m) & (cells["dim"] == d)] if len(cells) else cells
                    c = sel.iloc[0] if len(sel) else None
                    pubs = cmp.published.get((exp, m, col, t_key))
                    pub = pubs.get(d) if pubs is not None else None
                    if c is None and pub is None and (rr["status"] == "ok").all():
                        continue  # the metric is not evaluated at this d (e.g. the KDE above d = 3), nothing published
                    pub_text = fmt(pub, log10) if pub is not None else ("-" if pubs is None else "not tabulated")
                    q95 = c.get("threshold") if c is not None and "threshold" in c else None
                    q95 = q95 if q95 is not None and pd.notna(q95) else None
                    row = [m, str(d), fmt_cell(c), pub_text]
                    row += [fmt(floors.get((exp, d)))] if cmp.exact_jko_floor else []
                    row += [fmt(pub_floor.get(d), log10)] if pub_floor is not None else []
                    row += [fmt(q95, log10), status_text(rr)]
                    lines.append("| " + " | ".join(row) + " |")
                    if c is not None and c["n"]:
                        findings.append(
                            finding(m, d, col, when, c, pub, floors.get((exp, d)), q95,
                                    pub_floor.get(d) if pub_floor else None)
                        )  # fmt: skip
            lines.append("")
    missing = er[er["status"].isin(["missing", "stale"])]
    where_none = f"; where the paper tabulates nothing: {cmp.not_tabulated[exp]}" if exp in cmp.not_tabulated else ""
    lines += [f"**What the comparison shows** (computed from the cells above{where_none}):", ""]
    lines += [f"* {f}" for f in findings] or ["* no finished run yet."]
    if len(missing):
        listed = ", ".join(f"`{j}` ({s})" for j, s in zip(missing["job"], missing["status"], strict=True))
        lines += ["", f"**Not yet in the table** ({len(missing)} of {len(er)} runs): {listed}."]
    return [*lines, ""]


def finding(
    method: str, d: int, col: str, when: str, c: pd.Series, published: float | None, jko: float | None,
    q95: float | None, published_floor: float | None = None,
) -> str:  # fmt: skip
    """One line: the cell, its distance to the published value (in log10 for log10 cells, as a ratio for positive
    values in the metric's units, as a difference otherwise), to the exact-JKO floor, and whether it is resolved."""
    log10 = bool(c["log10"])
    v = _fmt_on(log10)
    parts = [f"{method}, d = {d}, {col} at {when}: {v(c['mean'])} over {c['n']} run{'s' if c['n'] != 1 else ''}"]
    if published is not None:
        inside = math.isfinite(c["lo"]) and c["lo"] <= published <= c["hi"]
        diff = c["mean"] - published
        if log10:
            gap = f"ours {'higher' if diff > 0 else 'lower'} by {abs(diff):.2f}"
        elif published > 0 and c["mean"] > 0:
            gap = f"ours {c['mean'] / published:.3g} times the published value"
        else:
            gap = f"ours {'higher' if diff > 0 else 'lower'} by {abs(diff):.3g}"
        parts.append(f"published {v(published) if not log10 else f'{published:.1f}'}, {gap}"
                     + (" (inside our 95% interval)" if inside else ""))  # fmt: skip
    if jko is not None and math.isfinite(jko):
        parts.append(f"{c['mean'] - jko:+.2f} in log10 against the exact-JKO floor")
    if published_floor is not None and not log10 and c["mean"] > 0:
        parts.append(f"{c['mean'] / published_floor:.3g} times the paper's reference error")
    if q95 is not None:
        parts.append("resolved (above the noise floor q95)" if c["mean"] > q95 else "NOT resolved (at or below the "
                     "noise floor q95: the evaluation cannot tell it from an exact sample)")  # fmt: skip
    return "; ".join(parts)


def load(suite_path: Path, records: Path):
    """(the suite, the rows of its current records, one row per expected run with its status): read once, for the
    document and the figures alike."""
    from wgfbench.suites import load_suite

    suite = load_suite(suite_path)
    return (suite, *read_current(records, expected_runs(suite)))


def build_readme(
    suite_path: Path, records: Path, command: str, comparison: Comparison | None = None, loaded=None
) -> str:
    """The document of ``suite_path``'s records under ``records``, beside ``comparison`` (default: the entry of
    :data:`COMPARISONS` named like the suite); ``loaded``: :func:`load`'s result, if the caller has it."""
    from wgfbench.reports import tables

    suite, rows, runs = loaded if loaded is not None else load(suite_path, records)
    cmp = comparison if comparison is not None else COMPARISONS[suite.name]
    empty = pd.DataFrame(columns=["experiment", "quantity", "method"])
    cells_at: dict = {}
    floors_at: dict = {}
    for t in (None, *cmp.times):
        at = rows if t is None or not len(rows) else rows.assign(report_t=t)
        cells_at[t] = tables.summary(at) if len(at) else empty
        floors_at[t] = exact_jko_floor(at) if len(at) and cmp.exact_jko_floor else {}
    n_ok = int((runs["status"] == "ok").sum())
    report_ts = {r.experiment: r.report_t for r in suite.runs}
    lines = [
        f"# {suite.name}: {cmp.title}",
        "",
        f"Built by `{command}` from the records in `{_rel(records)}` and `{_rel(suite_path)}`: "
        f"{len(runs)} runs asked for, {n_ok} ok, {int(runs['status'].isin(['missing', 'stale']).sum())} not yet "
        "recorded (listed per experiment). Cells: per run at the time named (log10 where the metric is compared on "
        "that scale), mean with a Student-t 95% interval for n >= 3 runs (the runs themselves for fewer); only "
        "`ok` runs enter a cell.",
        "",
    ]
    lines += overview(cmp, cells_at, runs, report_ts)
    for exp in dict.fromkeys(runs["experiment"]):
        lines += experiment_section(exp, cmp, cells_at, runs, floors_at, report_ts.get(exp))
    if len(rows):
        lines += [tables.provenance_markdown(rows), ""]
    return "\n".join(lines)


# --- the figures --------------------------------------------------------------------------------------------------
def comparison_figures(cmp: Comparison, suite, rows: pd.DataFrame, outdir: Path) -> list[Path]:
    """Ours beside the published values, PNG and PDF under ``outdir``: for each (experiment, metric, time) whose
    published values span two or more dimensions, the error against d (our cells with their 95% intervals, the
    exact-JKO and noise floors, the published values as hollow diamonds:
    :func:`wgfbench.reports.figures.error_vs_dim_figure`); for metrics published at one d per experiment (the
    sampling targets), one figure per metric across the experiments (:func:`per_experiment_figure`)."""
    from wgfbench.reports import figures

    if not len(rows):
        return []
    report_ts = {r.experiment: r.report_t for r in suite.runs}
    groups: dict[tuple[str, str, float | None], dict[str, dict[int, float]]] = {}
    for (exp, method, col, t), by_dim in cmp.published.items():
        groups.setdefault((exp, col, t), {})[method] = by_dim
    outs: list[Path] = []
    single: dict[str, list[tuple[str, str, float]]] = {}
    for (exp, col, t), published in groups.items():
        er = rows[rows["experiment"] == exp]
        if t is not None:
            er = er.assign(report_t=t)
        if is_log10(col) and max(len(v) for v in published.values()) >= 2:
            when = t if t is not None else report_ts.get(exp)
            fig = figures.error_vs_dim_figure(er, col, f"{suite.name}: {exp}", published, cmp.sources.get(exp, ""))
            if fig is not None:
                tag = f"_t{when:g}" if when is not None else ""
                outs += figures.save(fig, outdir / f"published_{exp}_{col}{tag}")
        else:
            for method, by_dim in published.items():
                single[col] = single.get(col, []) + [(exp, method, v) for v in by_dim.values()]
    for col, entries in single.items():
        fig = per_experiment_figure(cmp, rows, col, entries)
        if fig is not None:
            outs += figures.save(fig, outdir / f"published_{col}")
    return outs


def per_experiment_figure(cmp: Comparison, rows: pd.DataFrame, col: str, entries: list[tuple[str, str, float]]):
    """One metric across experiments (x: the experiment), each at its report time: our runs (dots) and
    their mean (bar), the published value (hollow diamond), the paper's reference error (grey dash) and our noise
    floor q95 (yellow dash); log axis for positive metrics, a zero line for signed ones (log Z)."""
    import matplotlib.pyplot as plt

    from wgfbench.reports import figures, tables

    at_t = tables.at_report_time(rows, col)
    if at_t.empty:
        return None
    figures._style()
    colors = figures.method_colors(sorted({m for _, m, _ in entries}))
    if is_log10(col):  # published on the log10 scale of the tables; the axis is logarithmic in the metric
        entries = [(e, m, 10.0**v) for e, m, v in entries]
    positive = bool((at_t[col].dropna() > 0).all()) and all(v > 0 for _, _, v in entries)
    fig, ax = plt.subplots(figsize=(0.8 * len(entries) + 5.0, 3.8), layout="constrained")
    labels = []
    for i, (exp, method, pub) in enumerate(entries):
        runs = at_t[(at_t["experiment"] == exp) & (at_t["method"] == method)][col].dropna().to_numpy(dtype=float)
        c = colors[method]
        if len(runs):
            ax.plot([i] * len(runs), runs, ls="", marker=".", ms=6, color=c, alpha=0.7)
            ax.hlines(runs.mean(), i - 0.3, i + 0.3, color=c, lw=2, label=f"{method}, ours (mean; dots: runs)")
        ax.plot([i], [pub], ls="", marker="D", ms=7, mfc="white", color=c, label=f"{method}, published")
        ref = cmp.published_floor.get((exp, col), {})
        if ref:
            ax.hlines(next(iter(ref.values())), i - 0.35, i + 0.35, color="0.45", lw=1, ls="--",
                      label="published reference error")  # fmt: skip
        q95 = f"{col}_floor_q95"
        e = at_t[(at_t["experiment"] == exp) & (at_t["method"] == method)]
        if q95 in e and e[q95].notna().any():
            ax.hlines(float(e[q95].mean()), i - 0.35, i + 0.35, color=figures.FLOOR_COLOR, lw=2.5,
                      label="our noise floor q95")  # fmt: skip
        labels.append(exp)
    if positive:
        ax.set_yscale("log")
    else:
        ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(labels)), labels=labels, rotation=35, ha="right")
    ax.set_ylabel(figures.wrapped(dict(cmp_metric_labels(cmp)).get(col, col)), fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    seen = dict(zip(names, handles, strict=True))
    fig.legend(seen.values(), seen.keys(), loc="outside right center", frameon=False, fontsize=8)
    sources = sorted({cmp.sources[e] for e, _, _ in entries if e in cmp.sources})
    figures._footnote(fig, [f"Published: {s}." for s in sources])
    return fig


def cmp_metric_labels(cmp: Comparison) -> list[tuple[str, str]]:
    return [pair for pairs in cmp.metrics.values() for pair in pairs]


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=SUITE, help=f"one of {sorted(COMPARISONS)} (default: %(default)s)")
    ap.add_argument("--records", type=Path, help="records folder (default: results/<suite name>/runs)")
    ap.add_argument("--out", type=Path, help="document written (default: results/<suite name>/comparison.md)")
    ap.add_argument("--figures", type=Path, help="figures folder (default: results/<suite name>/figures)")
    args = ap.parse_args()
    from wgfbench.suites import load_suite

    suite = load_suite(args.suite)
    name = suite.name
    if name not in COMPARISONS:
        raise SystemExit(f"paper_comparison: no published values for suite {name!r}; known: {sorted(COMPARISONS)}")
    records = args.records or ROOT / "results" / name / "runs"
    out = args.out or ROOT / "results" / name / "comparison.md"
    command = "./with-env python scripts/paper_comparison.py"
    if args.suite.resolve() != SUITE:
        command += f" --suite {_rel(args.suite)}"
    if args.records is not None:
        command += f" --records {_rel(args.records)}"
    if args.out is not None:
        command += f" --out {_rel(args.out)}"
    loaded = (suite, *read_current(records, expected_runs(suite)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_readme(args.suite, records, command, loaded=loaded))
    print(f"wrote {out}")
    rows = loaded[1]
    for path in comparison_figures(COMPARISONS[name], suite, rows, args.figures or out.parent / "figures"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
