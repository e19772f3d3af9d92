"""The one timer of the suite: wall time of a block of work on CPU or GPU, peak memory, provenance.

Every method (``StepStats.train_s`` / ``regen_s``), every benchmark (asv, pytest-benchmark, the CI
timing gate, ``scripts/timing_table.py``) times through this module.

* :func:`timed` times one block. On CUDA a pair of CUDA events brackets the block and the elapsed
  time is read after the end event has completed (``Event.elapsed_time``): the asynchronous kernel
  queue is drained, so the time is that of the GPU work, not of the Python launch loop. On the CPU,
  ``time.perf_counter``.
* :func:`measure` times repeated calls of a function with the first ``warmup`` calls excluded
  (allocator, autotuning, lazy initialisation, first-touch page faults), and the device
  synchronised after the warm-up so that queued warm-up work does not leak into the first sample.
* :func:`provenance` says where and with what a number was computed.

Besides wall time, every block records the process's CPU time (``time.process_time``, all threads of the
process): on a shared machine it is much less sensitive to other jobs than wall time, which is why the CI
timing gate compares CPU seconds (wall time stays the reported figure; on CUDA the CPU time is only the
host's share).

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA (reset per measured block); on the CPU the
process's peak resident set size (``ru_maxrss``), which is monotone over the process's life (an
upper bound on the block's own peak, not a per-block figure).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Measurement:
    """Filled in when the ``timed`` block exits."""

    seconds: float = float("nan")
    peak_mem_mb: float = float("nan")
    cpu_seconds: float = float("nan")


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def synchronize(device: torch.device | str) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextmanager
def timed(device: torch.device | str = "cpu") -> Iterator[Measurement]:
    """Time the enclosed block on ``device``: ``with timed(dev) as m: ...; m.seconds``."""
    dev = torch.device(device)
    out = Measurement()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        c0 = time.process_time()
        start.record()
        yield out
        end.record()
        end.synchronize()
        out.cpu_seconds = time.process_time() - c0
        out.seconds = start.elapsed_time(end) / 1e3
        out.peak_mem_mb = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        c0, t0 = time.process_time(), time.perf_counter()
        yield out
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = time.process_time() - c0
        out.peak_mem_mb = _rss_peak_mb()


@dataclass
class Timing:
    """Repeated timings of one call, warm-up excluded (see :func:`measure`)."""

    seconds: list[float]
    warmup: int
    peak_mem_mb: float
    device: str
    results: list[Any] = field(default_factory=list, repr=False)
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def iqr(self) -> float:
        """Inter-quartile range of the samples (0 with fewer than two samples)."""
        if len(self.seconds) < 2:
            return 0.0
        q = statistics.quantiles(self.seconds, n=4, method="inclusive")
        return q[2] - q[0]

    def summary(self) -> dict[str, float]:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "iqr_s": self.iqr,
            "repeats": float(len(self.seconds)),
            "warmup": float(self.warmup),
            "peak_mem_mb": self.peak_mem_mb,
        }


def measure(
    fn: Callable[[], Any],
    device: torch.device | str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
    keep_results: bool = False,
) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times, each call timed by :func:`timed`.

    The device is synchronised after the warm-up calls. The peak memory reported is the largest
    over the timed calls. With ``keep_results`` the timed calls' return values are kept in
    ``Timing.results`` (e.g. :class:`~wgfbench.methods.base.StepStats` of JKO steps).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    dev = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(dev)
    seconds: list[float] = []
    cpu: list[float] = []
    results: list[Any] = []
    peak = 0.0
    for _ in range(repeats):
        with timed(dev) as m:
            out = fn()
        seconds.append(m.seconds)
        cpu.append(m.cpu_seconds)
        peak = max(peak, m.peak_mem_mb)
        if keep_results:
            results.append(out)
    return Timing(seconds=seconds, warmup=warmup, peak_mem_mb=peak, device=str(dev), results=results, cpu_seconds=cpu)


def device_name(device: torch.device | str) -> str:
    """Human-readable name of the device (GPU model, or the CPU model from /proc/cpuinfo)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def git_commit(root: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``root`` (default: this package's), "-dirty" if
    tracked files differ from it, "unknown" outside a git checkout."""
    import subprocess

    root = str(root) if root is not None else __file__.rsplit("/wgfbench/", 1)[0]
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance(device: torch.device | str = "cpu") -> dict[str, str]:
    """Where and with what a number was computed: git commit, device, library versions, host.

    All values are strings. On CUDA the GPU model, the CUDA version, ``cudnn.benchmark`` and the
    TF32 flags are included, since they change both speed and numerics.
    """
    import platform
    from datetime import UTC, datetime
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    dev = torch.device(device)
    return {
        "git_commit": git_commit(),
        "device": dev.type,
        "device_name": device_name(dev),
        "cuda_version": str(torch.version.cuda) if torch.version.cuda else "none",
        "cudnn_benchmark": str(torch.backends.cudnn.benchmark),
        "tf32_matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": str(torch.backends.cudnn.allow_tf32),
        "torch_version": torch.__version__,
        "pot_version": pkg("pot"),
        "numpy_version": pkg("numpy"),
        "pandas_version": pkg("pandas"),
        "python_version": platform.python_version(),
        "hostname": platform.node(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "run_date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
