"""Structure of the one timer (no timed assertions: CI machines are noisy)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from wgfbench.timing import Measurement, Timing, git_commit, measure, provenance, timed

ROOT = Path(__file__).resolve().parents[1]


def test_timed_cpu_fills_positive_seconds_and_memory():
    with timed("cpu") as m:
        assert isinstance(m, Measurement)
        torch.randn(64, 64) @ torch.randn(64, 64)
    assert m.seconds > 0
    assert m.cpu_seconds >= 0
    assert m.peak_mem_mb > 0


def test_measure_excludes_warmup_calls_and_keeps_results():
    calls: list[int] = []

    def fn() -> int:
        calls.append(len(calls))
        return len(calls)

    t = measure(fn, warmup=2, repeats=3, keep_results=True)
    assert isinstance(t, Timing)
    assert len(calls) == 5  # 2 warm-up + 3 timed
    assert len(t.seconds) == 3 and all(s > 0 for s in t.seconds)
    assert len(t.cpu_seconds) == 3 and all(c >= 0 for c in t.cpu_seconds)
    assert t.warmup == 2
    assert t.results == [3, 4, 5]  # the warm-up calls' results are not among the timed ones
    assert t.min <= t.median
    assert t.iqr >= 0
    assert set(t.summary()) == {"median_s", "min_s", "iqr_s", "repeats", "warmup", "peak_mem_mb"}
    assert t.device == "cpu"


def test_measure_drops_results_unless_asked():
    assert measure(lambda: 1, warmup=0, repeats=2).results == []


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 3), (0, 0)])
def test_measure_rejects_bad_counts(warmup, repeats):
    with pytest.raises(ValueError, match="repeats"):
        measure(lambda: None, warmup=warmup, repeats=repeats)


def test_provenance_keys_are_strings():
    p = provenance("cpu")
    want = {
        "git_commit",
        "device",
        "device_name",
        "cuda_version",
        "cudnn_benchmark",
        "tf32_matmul",
        "tf32_cudnn",
        "torch_version",
        "pot_version",
        "numpy_version",
        "pandas_version",
        "python_version",
        "hostname",
        "cpu_count",
        "torch_threads",
        "run_date",
    }
    assert want <= set(p)
    assert all(isinstance(v, str) and v for v in p.values())
    assert p["device"] == "cpu"
    assert p["torch_version"] == torch.__version__
    assert p["pot_version"] != "absent" and p["pandas_version"] != "absent"


def test_git_commit_matches_checkout(tmp_path):
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert git_commit(ROOT).removesuffix("-dirty") == head.stdout.strip()
    assert git_commit(tmp_path) == "unknown"  # outside any checkout
