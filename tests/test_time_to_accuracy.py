"""Time-to-accuracy helpers: the streamed moment fit equals the one-shot fit, the seconds-to-target interpolation
is exact on a power law, and the script's mode grammar."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from wgfbench.bench.accuracy import seconds_to_reach, streamed_moment_fit
from wgfbench.problems.gaussian import moment_fit


def test_streamed_moment_fit_equals_the_one_shot_fit() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    x = 3.0 + torch.randn(10_001, 4, generator=gen, dtype=torch.float64) @ mix
    pos = [0]

    def draw(m: int) -> torch.Tensor:
        out = x[pos[0] : pos[0] + m].to(torch.float32 if pos[0] else torch.float64)  # any dtype per chunk
        pos[0] += m
        return out

    streamed = streamed_moment_fit(draw, x.shape[0], chunk=3000)
    assert pos[0] == x.shape[0]
    x32 = torch.cat([x[:3000], x[3000:].to(torch.float32).to(torch.float64)])
    exact = moment_fit(x32)
    torch.testing.assert_close(streamed.mean, exact.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(streamed.cov, exact.cov, rtol=1e-10, atol=1e-10)


def test_seconds_to_reach_interpolates_a_power_law_exactly() -> None:
    seconds = [1.0, 2.0, 4.0, 8.0]
    errors = [s**-1.5 for s in seconds]  # error = s^-1.5: log-log linear
    assert seconds_to_reach(seconds, errors, 3.0**-1.5) == pytest.approx(3.0, rel=1e-12)
    assert seconds_to_reach(seconds[::-1], errors[::-1], 5.0**-1.5) == pytest.approx(5.0, rel=1e-12)  # any order
    assert seconds_to_reach(seconds, errors, 2.0) == 1.0  # the first point already reaches it: its seconds
    assert seconds_to_reach(seconds, errors, 1e-3) is None  # never reached


def test_mode_grammar() -> None:
    path = Path(__file__).resolve().parents[1] / "scripts" / "time_to_accuracy.py"
    spec = importlib.util.spec_from_file_location("time_to_accuracy", path)
    tta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tta)
    assert tta.parse_mode("fixed:500") == ("variational_jko", {"budget": "fixed", "iters_per_step": 500})
    assert tta.parse_mode("jko_icnn_exact@plateau:300:carry") == (
        "jko_icnn_exact",
        {"budget": "plateau", "iters_per_step": 300, "particles": "carry"},
    )
    for bad in ("fast:10", "fixed", "fixed:10:keep"):
        with pytest.raises(ValueError):
            tta.parse_mode(bad)
    assert math.isfinite(tta.paper_params("variational_jko")["n_particles"])
    assert tta.paper_params("variational_jko")["iters_per_step"] == 500  # the timing budget's override undone
