#!/usr/bin/env python
"""Seconds per JKO step of every method of ``suites/paper-budget-cpu.yaml`` at that suite's budgets (the papers'
own), on one torch thread of this CPU, beside the per-step times the papers publish (issue 12 item 4).

    OMP_NUM_THREADS=1 nice -n 15 ./with-env python scripts/paper_budget_timing.py --out results/timing/paper_budget

For each (experiment, method, d) of the suite, its seed-0 run is built exactly as the pipeline builds it
(:func:`wgfbench.loop.build` on the validated :class:`~wgfbench.suites.RunSpec`) and stepped ``1 + n`` times; the
first step is warm-up (first-call costs, and JKO-ICNN's identity pretraining, which it runs in its first step) and
the n others are measured. The compared clock is the CPU time of the process (``time.process_time``; one torch
thread, so it is the step's own work, whatever else loads the machine); wall-clock time is recorded beside it with
the load average before and after each block. Per cell: median and interquartile range over the measured steps.

Two changes to the suite's runs, both for the measurement's cost and neither changing a step's cost:
* JKO-ICNN's identity pretraining runs ``--pretrain-iters`` iterations instead of 4000 (the cost of a step does
  not depend on the weights); its CPU time per iteration is recorded and scaled to 4000 in the table.
* ``jko_icnn_exact`` is also timed with ``hessian: per_coordinate`` (the Hessian built as the published
  implementation builds it: d backward passes, then the log-det), at the dims given by ``--per-coordinate-dims``:
  on the same hardware, the ratio of the two is the implementation's part of the cost.

Only the first steps (k = 2..n+1) are measured: a step's particle regeneration pushes all its training samples
through the k maps so far, so a later step costs more by (k - 1) pushes of 512,000 samples (``regen wall s``, the
regeneration's share of a measured step, shows how much that is).

Published per-step times (:data:`PUBLISHED`) are quoted from the papers with where in them; they ran on GPUs, so
the table says, per row, which part of a difference is hardware and which implementation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "paper-budget-cpu.yaml"
MOKROV_PRETRAIN_ITERS = 4000  # Mokrov et al.'s OU identity pretraining (the suite's jko_icnn_exact default)

# Published seconds per JKO step (per-two-step figures halved), with the hardware the papers name.
PUBLISHED: list[dict[str, object]] = [
    {"source": "Fan et al., ICML 2022, Sec. 5.2 (OU, text of Fig. 4); hardware: Appendix F",
     "method": "variational JKO (Fan et al.)", "ours": "variational_jko", "d": "2 and 32",
     "s_per_step": "11 ± 2.5 (22 ± 5 per two steps), flat in d", "hardware": "NVIDIA RTX 3090 / A6000 GPU",
     "clock": "wall, one JKO-step epoch incl. particle regeneration and callbacks"},
    {"source": "Fan et al., ICML 2022, Sec. 5.2 (OU, text of Fig. 4); hardware: Appendix F",
     "method": "JKO-ICNN-d (Mokrov et al.), run by Fan et al.", "ours": "jko_icnn_exact", "d": "2 / 32",
     "s_per_step": "12.5 / 52.5 (25 / 105 per two steps)", "hardware": "NVIDIA RTX 3090 / A6000 GPU",
     "clock": "wall"},
    {"source": "Fan et al., ICML 2022, Sec. 5.2 (OU, text of Fig. 4); hardware: Appendix F",
     "method": "JKO-ICNN-a (Alvarez-Melis et al.), run by Fan et al.", "ours": "(jko_icnn_am, not in this suite)",
     "d": "2 / 32", "s_per_step": "12.5 / 47.5 (25 / 95 per two steps)", "hardware": "NVIDIA RTX 3090 / A6000 GPU",
     "clock": "wall"},
    {"source": "Mokrov et al., NeurIPS 2021: the per-run timings stored with their code's OU results "
               "(github PetrMokrov/Large-Scale-Wasserstein-Gradient-Flows, results/ou_vary_dim; Fig. 3/5 runs)",
     "method": "JKO-ICNN (Mokrov et al.)", "ours": "jko_icnn_exact", "d": "2 / 12",
     "s_per_step": "d = 2: 14.5 at t = 0.1, 35 at t = 0.9; d = 12: 32.5 and 46.5 (per two steps: 29, 70; 65, 93)",
     "hardware": "not stated with these results (their mixture runs: a GTX 1080 Ti GPU)",
     "clock": "wall, grows with k (sampling through k maps)"},
]  # fmt: skip

# Which part of the difference between a published time and ours is hardware and which implementation.
ATTRIBUTION = {
    "variational_jko": (
        "hardware: their GPU against one CPU thread; implementation: Fan et al.'s own code, run unmodified on this "
        "CPU at the same budget, takes about 1.9 times our CPU time per step at d = 2 and 12 "
        "(results/timing/peer/table.md), so the rest of the gap is hardware"
    ),
    "jko_icnn_exact": (
        "hardware: their GPU against one CPU thread; implementation: the Hessian as their code builds it "
        "(per_coordinate rows here) against ours (analytic), same hardware; Mokrov et al.'s own code on this CPU "
        "takes about 3 times our analytic step at d = 2 (results/timing/peer/mokrov_table.md)"
    ),
    "em_particles": "no published per-step time (Mokrov et al. report EM's errors only)",
    "exact_jko": "closed form (Gaussian JKO iterate): no published counterpart",
    "identity": "does nothing: the floor of the harness's own cost",
}


# The peers' own code and ours, measured side by side in one session on this CPU at the same budget, d = 2, one
# torch thread: median CPU seconds per whole JKO step, (peer, ours) (committed measurements of
# scripts/peer_comparison.py: results/timing/peer/table.md and mokrov_table.md).
PEER_CPU_S_PER_STEP = {"variational_jko": (14.13, 7.58), "jko_icnn_exact": (42.66, 13.60)}
PUBLISHED_S_PER_STEP = {"variational_jko": {2: 11.0}, "jko_icnn_exact": {2: 14.5}}  # Fan et al.; Mokrov's t = 0.1


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def time_steps(spec, n_measured: int) -> list[dict[str, float]]:
    """CPU and wall seconds of each of ``1 + n_measured`` JKO steps of ``spec``'s method (the first: warm-up)."""
    from wgfbench.loop import build

    _, method = build(spec)
    rows = []
    for k in range(1 + n_measured):
        c0, w0 = time.process_time(), time.perf_counter()
        stats = method.step()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        extra = {f"extra_{key}": v for key, v in stats.extra.items()}
        rows.append({"k": k + 1, "warm_up": k == 0, "cpu_s": cpu, "wall_s": wall, "train_wall_s": stats.train_s,
                     "regen_wall_s": stats.regen_s, **extra})  # fmt: skip
    return rows


def measure(args: argparse.Namespace) -> pd.DataFrame:
    from wgfbench.suites import load_suite

    all_runs = load_suite(SUITE).runs
    runs = [r for r in all_runs if r.seed == min(s.seed for s in all_runs)]
    blocks = []
    for spec in runs:
        variants: list[tuple[str, dict]] = [("", {})]
        if spec.method == "jko_icnn_exact":
            variants = [("analytic", {"pretrain_iters": args.pretrain_iters})]
            if spec.dim in args.per_coordinate_dims:
                variants.append(("per_coordinate", {"pretrain_iters": 20, "hessian": "per_coordinate"}))
        for label, override in variants:
            run = dataclasses.replace(spec, method_params={**spec.method_params, **override})
            n = args.steps_neural if spec.method in ("variational_jko", "jko_icnn_exact") else args.steps_cheap
            if label == "per_coordinate":
                n = args.steps_per_coordinate
            before = load_average()
            rows = time_steps(run, n)
            after = load_average()
            for row in rows:
                row.update(experiment=spec.experiment, method=spec.method, variant=label, d=spec.dim,
                           load_before=before, load_after=after)  # fmt: skip
            blocks.extend(rows)
            done = [r for r in rows if not r["warm_up"]]
            print(f"{spec.experiment} {spec.method} {label} d={spec.dim}: CPU s/step "
                  f"{np.median([r['cpu_s'] for r in done]):.3f} [load {before} -> {after}]", flush=True)  # fmt: skip
    return pd.DataFrame(blocks)


def summarise(steps: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (exp, method, variant, d), g in steps.groupby(["experiment", "method", "variant", "d"], sort=False):
        m = g[~g["warm_up"]]
        q = {c: np.percentile(m[c], [25, 50, 75]) for c in ("cpu_s", "wall_s")}
        row = {"experiment": exp, "method": method, "variant": variant, "d": d, "n_steps": len(m),
               "k_measured": f"{int(m['k'].min())}-{int(m['k'].max())}",
               "cpu_s_median": q["cpu_s"][1], "cpu_s_q25": q["cpu_s"][0], "cpu_s_q75": q["cpu_s"][2],
               "wall_s_median": q["wall_s"][1], "wall_s_q25": q["wall_s"][0], "wall_s_q75": q["wall_s"][2],
               "regen_wall_s_median": float(np.median(m["regen_wall_s"])),
               "load_before": g["load_before"].iloc[0], "load_after": g["load_after"].iloc[0]}  # fmt: skip
        first = g[g["warm_up"]].iloc[0]
        if "extra_pretrain_iters" in g and not np.isnan(first.get("extra_pretrain_iters", np.nan)):
            per_iter = first["extra_pretrain_s"] / first["extra_pretrain_iters"]  # wall of the pretraining
            row["pretrain_wall_s_at_4000"] = per_iter * MOKROV_PRETRAIN_ITERS
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(summary: pd.DataFrame, prov: dict, command: str, args: argparse.Namespace) -> str:
    def iqr(r, c: str) -> str:
        return f"{r[c + '_median']:.3g} [{r[c + '_q25']:.3g}, {r[c + '_q75']:.3g}]"

    lines = [
        "# Seconds per JKO step at the papers' budgets (suites/paper-budget-cpu.yaml), this CPU, one torch thread",
        "",
        f"Command: {command}",
        "",
        f"Provenance: {', '.join(f'{k}={v}' for k, v in prov.items())}",
        "",
        "Each cell is the seed-0 run of the suite, built as the pipeline builds it, stepped once for warm-up (JKO-ICNN "
        "pretrains in that step) and then `n` measured steps (`k` their indices). **CPU s/step** (process CPU time, "
        "one thread: the step's own work) is the compared clock; the machine was loaded by the background suites "
        "(load average before -> after each cell, 2 cores), so **wall s/step** is longer and noisier. Median "
        "[interquartile range] over the measured steps. Evaluation is not part of a step.",
        "",
        f"Cuts, for the measurement's cost only: JKO-ICNN's pretraining ran {args.pretrain_iters} iterations (its "
        "wall time is scaled to Mokrov's 4000 in the last column; a step's cost does not depend on the weights); "
        f"the neural methods are measured on {args.steps_neural} steps (the per_coordinate variant on "
        f"{args.steps_per_coordinate}), the others on {args.steps_cheap}. Only early steps are measured: a step at "
        "k = 18 costs more by the regeneration through 17 more maps (`regen wall s` is the measured steps' share, "
        "which grows about linearly in k).",
        "",
        "| experiment | method | variant | d | n (k) | CPU s/step, median [IQR] | wall s/step, median [IQR] | "
        "regen wall s | load avg before -> after | pretraining wall s at 4000 its |",
        "|---|---|---|---:|---|---:|---:|---:|---|---:|",
    ]
    for _, r in summary.iterrows():
        pre = r.get("pretrain_wall_s_at_4000", float("nan"))
        lines.append(
            f"| {r['experiment']} | {r['method']} | {r['variant'] or '-'} | {r['d']} | {r['n_steps']} "
            f"({r['k_measured']}) | {iqr(r, 'cpu_s')} | {iqr(r, 'wall_s')} | {r['regen_wall_s_median']:.3g} | "
            f"{r['load_before']} -> {r['load_after']} | {'' if pd.isna(pre) else f'{pre:.0f}'} |"
        )
    lines += [
        "",
        "## Published per-step times (GPU) and what separates them from ours",
        "",
        "| source (where in the paper) | method | ours | d | s per JKO step | hardware | clock |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PUBLISHED:
        lines.append(f"| {p['source']} | {p['method']} | {p['ours']} | {p['d']} | {p['s_per_step']} | "
                     f"{p['hardware']} | {p['clock']} |")  # fmt: skip
    lines += ["", "| ours | which part is hardware, which implementation |", "|---|---|"]
    lines += [f"| {m} | {text} |" for m, text in ATTRIBUTION.items()]
    lines += ["", "## Reading", "", *reading(summary)]
    ratio = _per_coordinate_ratio(summary)
    if ratio:
        measured = ", ".join(f"{r:.2f}x at d = {d}" for d, r in ratio.items())
        lines += ["", "Implementation part measured here (same CPU, same budget): per_coordinate / analytic CPU "
                  f"s/step of jko_icnn_exact = {measured}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def reading(summary: pd.DataFrame) -> list[str]:
    """Per neural method at d = 2: the published GPU time against the peer's own code on this CPU (hardware part)
    and the peer's code against ours on this CPU, measured side by side (implementation part)."""
    out = []
    for method, (theirs, ours_then) in PEER_CPU_S_PER_STEP.items():
        at_2 = (summary["method"] == method) & (summary["d"] == 2)
        ours = summary[at_2 & summary["variant"].isin(["", "analytic"])]
        if ours.empty:
            continue
        mine, gpu = ours["cpu_s_median"].iloc[0], PUBLISHED_S_PER_STEP[method][2]
        out.append(
            f"* {method}, d = 2: published {gpu:g} s (wall) per step on their GPU; their code on one thread of this "
            f"CPU {theirs:g} CPU s (hardware part: {theirs / gpu:.1f}x); their code takes {theirs / ours_then:.1f}x "
            f"ours measured beside it ({ours_then:g} CPU s; implementation part); ours in this table {mine:.3g} CPU s."
        )
    return out or ["* (no neural method measured at d = 2)"]


def _per_coordinate_ratio(summary: pd.DataFrame) -> dict[int, float]:
    icnn = summary[summary["method"] == "jko_icnn_exact"].set_index(["variant", "d"])["cpu_s_median"]
    return {d: icnn[("per_coordinate", d)] / icnn[("analytic", d)] for v, d in icnn.index if v == "per_coordinate"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps-neural", type=int, default=3)
    ap.add_argument("--steps-per-coordinate", type=int, default=2)
    ap.add_argument("--steps-cheap", type=int, default=5)
    ap.add_argument("--pretrain-iters", type=int, default=200)
    ap.add_argument("--per-coordinate-dims", type=int, nargs="*", default=[2, 8])
    ap.add_argument("--from-steps", action="store_true", help="re-tabulate --out's steps.parquet (no measurement)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from wgfbench.timing import provenance

    args.out.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 nice -n 15 ./with-env python scripts/paper_budget_timing.py " + " ".join(sys.argv[1:])
    if args.from_steps:  # the measurement's own command and provenance stay; the table says it was re-made
        steps = pd.read_parquet(args.out / "steps.parquet")
        prov = json.loads((args.out / "provenance.json").read_text())
        command = f"`{prov.pop('command')}` (table re-made from its steps.parquet by `{command}`)"
    else:
        prov = provenance("cpu")
        (args.out / "provenance.json").write_text(json.dumps({**prov, "command": command}, indent=1) + "\n")
        command = f"`{command}`"
        steps = measure(args)
        steps.to_parquet(args.out / "steps.parquet")
    summary = summarise(steps)
    summary.to_parquet(args.out / "table.parquet")
    (args.out / "table.md").write_text(markdown(summary, prov, command, args))


if __name__ == "__main__":
    main()
