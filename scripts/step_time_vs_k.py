"""Seconds per JKO step against the step index k, from a suite's records: how a method's step cost grows with k.

A pushforward method regenerates its particles through all k maps learned so far (O(k) per step, O(K^2) per run)
unless it carries them forward; a CNF step integrates every earlier velocity field to get the densities; S-JKO's
sampling is one generator pass (O(1) in k). This prints, per method and d, the median over seeds of the training
and regeneration seconds at a few steps k, and the ratio of the last step's whole time to the first's.

Usage::

    python scripts/step_time_vs_k.py results/cnf-ou/table.parquet [--ks 1 6 12 18] [--out FILE.md]

Times are wall seconds measured by the runner (``time_train_s``, ``time_regen_s``): on a shared machine compare
them within one suite, not across suites.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from wgfbench.records import read_record


def step_time_table(df: pd.DataFrame, ks: list[int]) -> str:
    """Markdown table: per (experiment, method, dim), median over seeds of train / regen seconds at each k in ks."""
    ok = df[(df["status"] == "ok") & df["k"].isin(ks) & df["time_train_s"].notna()]
    rows = []
    for (exp, method, dim), g in ok.groupby(["experiment", "method", "dim"], sort=True):
        med = g.groupby("k")[["time_train_s", "time_regen_s"]].median()
        cells = [
            f"{med.loc[k, 'time_train_s']:.3g} / {med.loc[k, 'time_regen_s']:.3g}" if k in med.index else "—"
            for k in ks
        ]
        whole = med.sum(axis=1)
        growth = f"{whole.iloc[-1] / whole.iloc[0]:.2f}" if len(whole) > 1 and whole.iloc[0] > 0 else "—"
        rows.append(f"| {exp} | {method} | {dim} | " + " | ".join(cells) + f" | {growth} |")
    head = "| experiment | method | d | " + " | ".join(f"k={k} train / regen s" for k in ks) + " | last / first |"
    sep = "|---|---|---:|" + "---:|" * (len(ks) + 1)
    return "\n".join([head, sep, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="a suite's table.parquet (or one record)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 6, 12, 18], help="steps to show (default 1 6 12 18)")
    parser.add_argument("--out", help="write the markdown table here (default: print it)")
    args = parser.parse_args(argv)
    text = step_time_table(read_record(args.table), sorted(args.ks))
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
