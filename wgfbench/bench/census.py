r"""Where the time goes: operator calls and floating-point work of one call, against the device's GEMM rate.

A small-network training loop spends its time in two ways: *arithmetic* (the FLOPs of the matrix
products, which grow with the dimension d through the first and last layers and any d x d reference
transform) and *per-operator cost* (Python and dispatcher overhead on the CPU, a kernel launch of
~5-10 us on a GPU, plus memory-bound elementwise kernels), which does not grow with d. This module
measures both sides for one call of a function, so that a timing table can say which one dominates:

* :func:`op_census` counts the aten operator calls (forward and backward; on a GPU each is one kernel
  launch or more) with a ``TorchDispatchMode``, and the FLOPs with ``torch.utils.flop_counter``
  (matrix products and convolutions: 2 m n k per m x k by k x n product; elementwise work is not
  counted);
* :func:`gemm_rate` measures the device's sustained matrix-product rate (FLOP/s) on a square product,
  timed by :func:`wgfbench.timing.measure`.

Then ``flops / gemm_rate`` is the time the call would take if it were pure arithmetic at the best
rate the device reaches (a lower bound), and the measured time minus it is the per-operator share
(dispatch or launches, elementwise memory traffic, and small products running below the peak rate).
Compiled code (``torch.compile``) is not visible to the census: count the eager version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from wgfbench.timing import measure


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class Census:
    """One call's aten operator calls and matrix-product FLOPs."""

    op_calls: int
    flops: float


def op_census(fn: Callable[[], Any]) -> Census:
    """Run ``fn()`` once (it does its real work) and count its operator calls and FLOPs, backward included."""
    counter = _OpCounter()
    flops = FlopCounterMode(display=False)
    with flops, counter:
        fn()
    return Census(op_calls=counter.calls, flops=float(flops.get_total_flops()))


def gemm_rate(device: torch.device | str = "cpu", n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """Sustained FLOP/s of an n x n by n x n product on ``device`` (median of 5 timed calls, 2 warm-up)."""
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    t = measure(lambda: a @ b, device=dev, warmup=2, repeats=5)
    return 2.0 * n**3 / t.median
