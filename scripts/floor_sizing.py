"""Size a suite so that the moment-fit SymKL floor sits a given number of decades below the exact JKO iterate's
time-discretisation error (issue 11): per d, the discretisation error log10 SymKL(P^JKO_k, P_t) over seeds, the
floor's 95% quantile for several n, and the smallest n that puts the q95 ``--decades`` below it.

    ./with-env python scripts/floor_sizing.py --dims 2 4 8 --h 0.05 --t 0.5 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import math

from wgfbench import metrics
from wgfbench.metrics import floors
from wgfbench.problems.ou import make_ou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--h", type=float, default=0.05)
    parser.add_argument("--t", type=float, default=0.5)
    parser.add_argument("--decades", type=float, default=1.0)
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 20_000, 50_000, 100_000, 200_000, 500_000])
    args = parser.parse_args()
    k = round(args.t / args.h)
    print(f"OU (spectrum generator), h = {args.h}, t = {args.t} (k = {k}), seeds {args.seeds}")
    print("log10 q95 of the moment-fit SymKL floor: " + ", ".join(f"n={n}" for n in args.n))
    for d in args.dims:
        disc = []
        for seed in args.seeds:
            problem = make_ou(d, seed)
            disc.append(metrics.gaussian_symkl(problem.jko_reference(k, args.h), problem.reference(args.t)))
        logs = [math.log10(v) for v in disc]
        mean_log = sum(logs) / len(logs)
        q95 = [math.log10(floors.symkl_moment_floor(d, n).q95) for n in args.n]
        n_mean = floors.smallest_resolving_n(d, 10.0**mean_log, args.decades)
        n_every = floors.smallest_resolving_n(d, min(disc), args.decades)
        print(
            f"d={d}: discretisation error log10 per seed {', '.join(f'{v:.2f}' for v in logs)}; mean {mean_log:.2f}"
            f" | floor q95 {', '.join(f'{v:.2f}' for v in q95)}"
            f" | n for q95 <= mean - {args.decades:g}: {n_mean}; for every seed: {n_every}"
        )


if __name__ == "__main__":
    main()
