"""pytest-benchmark micro-benchmarks of the hot kernels (not part of the ordinary test run).

Run, save a baseline, compare against it (see benchmarks/microbench/README.md)::

    pytest benchmarks/microbench --benchmark-enable --benchmark-only --benchmark-save=NAME
    pytest benchmarks/microbench --benchmark-enable --benchmark-only --benchmark-compare \\
        --benchmark-compare-fail=median:100%

Every benchmark runs on one CPU thread; provenance (git commit, versions, device) is added to the
saved JSON (``wgfbench_provenance``; the stable part also to ``machine_info``).
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)


STABLE_KEYS = ("device", "device_name", "torch_version", "pot_version", "numpy_version", "cpu_count", "torch_threads")


def pytest_benchmark_update_machine_info(config, machine_info):
    """What makes timings comparable (pytest-benchmark warns when it differs from the compared run)."""
    from wgfbench.timing import provenance

    prov = provenance("cpu")
    machine_info["wgfbench"] = {k: prov[k] for k in STABLE_KEYS}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The full provenance (git commit, date, host, all versions) of the saved run."""
    from wgfbench.timing import provenance

    output_json["wgfbench_provenance"] = provenance("cpu")


def run(benchmark, workload, rounds: int | None = None):
    """Time a :class:`workloads.Workload` with pytest-benchmark: setup untimed, its warm-up calls excluded."""
    call = workload.setup()
    benchmark.extra_info["workload"] = workload.name
    return benchmark.pedantic(call, rounds=rounds or workload.repeats, warmup_rounds=workload.warmup, iterations=1)
