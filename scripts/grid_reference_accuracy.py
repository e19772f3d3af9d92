"""Cost and accuracy of the finite-volume references (fokker_planck_nonconvex, jsd_grid) at their default grids.

For each problem and d = 1, 2: the wall time to build the problem and solve it to t = 0.05, 0.10, ..., 2.0 (the
evaluation times of a 40-step run with h = 0.05), the change of mass and the smallest cell value at t = 2, and the
L1 error of the cell averages at t = 1, estimated by Richardson extrapolation against the grid refined by a factor 2
along every axis (error ~ (4/3) |p_n - coarsen(p_2n)|_1 for a second-order scheme).

    OMP_NUM_THREADS=1 ./with-env python scripts/grid_reference_accuracy.py
"""

from __future__ import annotations

import time

import numpy as np

from wgfbench.problems.finite_volume import coarsen
from wgfbench.problems.fokker_planck_grid import make_fokker_planck_nonconvex
from wgfbench.problems.jsd_grid import make_jsd_grid


def report(name: str, make, dim: int) -> None:
    start = time.perf_counter()
    problem = make(dim)
    for k in range(1, 41):
        problem.reference(0.05 * k)
    cost = time.perf_counter() - start
    values = problem.cell_values(2.0)
    vol = problem.grid.cell_volume
    at_one = problem.cell_values(1.0)
    fine = make(dim, cells=2 * problem.cells).cell_values(1.0)
    err = 4.0 / 3.0 * float(np.abs(at_one - coarsen(fine, 2)).sum() * vol)
    print(
        f"{name:24s} d={dim} cells/axis={problem.cells:5d} build+40 refs={cost:6.2f}s "
        f"mass(t=2)-mass(0)={values.sum() * vol - problem.cell_values(0.0).sum() * vol:+.1e} "
        f"min(t=2)={values.min():.1e} L1 error(t=1)~{err:.1e}"
    )


def main() -> None:
    for dim in (1, 2):
        report("fokker_planck_nonconvex", lambda d, **kw: make_fokker_planck_nonconvex(d, **kw), dim)
        report("jsd_grid", lambda d, **kw: make_jsd_grid(d, **kw), dim)


if __name__ == "__main__":
    main()
