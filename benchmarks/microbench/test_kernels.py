"""Hot kernels: the variational JKO inner iteration (ours vs naive), the exact ICNN log-det (batched vs
per-coordinate backward passes), one JKO step per method, and the metric kernels.

Groups put the compared implementations side by side in pytest-benchmark's table; the ratios are in
``results/timing/`` (scripts/timing_table.py) for the same workloads.
"""

from __future__ import annotations

import pytest
from conftest import run

from wgfbench.bench import workloads as W


@pytest.mark.parametrize("impl", ["ours", "naive"])
@pytest.mark.parametrize("dim", [2, 32, 256])
def test_vjko_inner_iterations(benchmark, dim, impl):
    benchmark.group = f"vjko inner loop, 10 iterations, d={dim}"
    run(benchmark, W.vjko_inner_workload(dim, iters=10, naive=impl == "naive"))


@pytest.mark.parametrize("impl", W.LOGDET_IMPLS)
@pytest.mark.parametrize("dim", [8, 32])
def test_icnn_logdet_value_and_grad(benchmark, dim, impl):
    benchmark.group = f"ICNN log det Hess, value + parameter gradient, n=256, d={dim}"
    run(benchmark, W.logdet_workload(dim, 256, impl=impl, train=True), rounds=3)


@pytest.mark.parametrize("method", ["variational_jko", "jko_icnn_exact", "jko_icnn_cpflow_grad", "em_particles"])
@pytest.mark.parametrize("dim", [2, 32])
def test_jko_step(benchmark, method, dim):
    benchmark.group = f"one JKO step (timing budget), d={dim}"
    run(benchmark, W.jko_step_workload(method, dim, repeats=3))


@pytest.mark.parametrize("metric", ["symkl_moment", "bures_w2_moment"])
@pytest.mark.parametrize("dim", [2, 32, 128])
def test_gaussian_metrics(benchmark, metric, dim):
    benchmark.group = f"moment-fit metrics, n=16384, d={dim}"
    run(benchmark, W.metric_workload(metric, dim, 16_384))


@pytest.mark.parametrize("n", [250, 1000])
def test_w2_emd(benchmark, n):
    benchmark.group = "exact W2 (ot.emd2), d=10"
    run(benchmark, W.w2_emd_workload(10, n))
