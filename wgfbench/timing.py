"""The one timer of the suite: wall time of a block of work on CPU or GPU, and peak memory.

On CUDA, a pair of CUDA events brackets the block and the elapsed time is read after the end
event has completed (``Event.elapsed_time``): the asynchronous kernel queue is drained, so the time
is that of the GPU work, not of the Python launch loop. On the CPU, ``time.perf_counter``.

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA (reset per measured block); on the CPU the
process's peak resident set size (``ru_maxrss``), which is monotone over the process's life.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class Measurement:
    """Filled in when the ``timed`` block exits."""

    seconds: float = float("nan")
    peak_mem_mb: float = float("nan")


def _rss_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@contextmanager
def timed(device: torch.device | str = "cpu") -> Iterator[Measurement]:
    """Time the enclosed block on ``device``: ``with timed(dev) as m: ...; m.seconds``."""
    dev = torch.device(device)
    out = Measurement()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield out
        end.record()
        end.synchronize()
        out.seconds = start.elapsed_time(end) / 1e3
        out.peak_mem_mb = torch.cuda.max_memory_allocated(dev) / 2**20
    else:
        t0 = time.perf_counter()
        yield out
        out.seconds = time.perf_counter() - t0
        out.peak_mem_mb = _rss_peak_mb()


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


def provenance(device: torch.device | str = "cpu") -> dict[str, str]:
    """Where and with what a number was computed: git commit, device, library versions, host."""
    import platform
    import subprocess
    from datetime import UTC, datetime
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    root = __file__.rsplit("/wgfbench/", 1)[0]
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
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    dev = torch.device(device)
    return {
        "git_commit": commit,
        "device": dev.type,
        "device_name": device_name(dev),
        "torch_version": torch.__version__,
        "pot_version": pkg("pot"),
        "numpy_version": pkg("numpy"),
        "python_version": platform.python_version(),
        "hostname": platform.node(),
        "cpu_count": str(torch.get_num_threads()),
        "run_date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
