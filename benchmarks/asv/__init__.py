"""asv benchmarks of wgfbench (configuration: asv.conf.json at the repository root).

The workloads are those of ``wgfbench/bench/workloads.py`` (shared with pytest-benchmark, the CI timing gate and
``scripts/timing_table.py``); every benchmark runs on one CPU thread unless WGFBENCH_BENCH_THREADS says
otherwise, on the device named by WGFBENCH_BENCH_DEVICE (default "cpu"; "cuda" on a GPU machine, where
asv must use ``--launch-method spawn``, the configured default). WGFBENCH_ASV_SMALL=1 shrinks the parameter
grids to what a CI run can afford (asv starts one process per benchmark and parameter combination).
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("WGFBENCH_BENCH_THREADS", "1")))
DEVICE = os.environ.get("WGFBENCH_BENCH_DEVICE", "cpu")
SMALL = os.environ.get("WGFBENCH_ASV_SMALL", "0") == "1"
