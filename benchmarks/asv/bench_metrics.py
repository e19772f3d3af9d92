"""Time of the metric kernels at fixed sample size (CPU, float64, as wgfbench.metrics computes them).

These kernels run on the CPU by construction, so asv's default wall-clock timer (time.perf_counter) is the
CPU path of wgfbench.timing.
"""

import torch

from wgfbench import metrics
from wgfbench.bench import workloads as W

from . import SMALL


class GaussianMetrics:
    """Moment-fit SymKL and Bures W2 (closed forms after a moment fit) and sliced W2, n = 8192."""

    params = (32,) if SMALL else (2, 32, 128)
    param_names = ("dim",)

    def setup(self, dim):
        self.ref, self.x = W.metric_inputs(dim, 8192)
        self.gen = torch.Generator().manual_seed(1)

    def time_symkl_moment(self, dim):
        metrics.symkl_moment(self.ref, self.x, self.gen)

    def time_bures_w2_moment(self, dim):
        metrics.bures_w2_moment(self.ref, self.x, self.gen)

    def time_sliced_w2(self, dim):
        metrics.sliced_w2(self.ref, self.x, self.gen)


class ExactW2:
    """Exact W2 by POT's network simplex (ot.emd2) between two n-samples (design-anchors.md §6.2)."""

    params = ((10,), (250,)) if SMALL else ((2, 10), (250, 1000))
    param_names = ("dim", "n")
    timeout = 300

    def setup(self, dim, n):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        self.y = torch.randn(n, dim, generator=gen, dtype=torch.float64) + 0.5

    def time_emd2(self, dim, n):
        metrics.w2_emd(self.x, self.y)
