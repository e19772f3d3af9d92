"""Sliced energy distance (Hertrich & Gruhlke's convention) and its floor, the log-normaliser estimate, their wiring."""

from __future__ import annotations

import math

import pytest
import torch

from wgfbench.evaluate import EvalSpec, evaluate_step
from wgfbench.metrics.log_normaliser import log_normaliser_estimate
from wgfbench.metrics.sliced_energy import (
    cramer_distance_1d,
    sliced_energy_distance,
    sliced_energy_floor,
    sphere_slicing_factor,
)
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)
F64 = torch.float64


def _v_statistic(x: torch.Tensor, y: torch.Tensor) -> float:
    """E|X - Y| - ½ E|X - X'| - ½ E|Y - Y'| over all pairs (diagonals included), by pairwise distances."""
    return float(torch.cdist(x, y).mean() - 0.5 * torch.cdist(x, x).mean() - 0.5 * torch.cdist(y, y).mean())


def _folded_normal_mean(m: float, s: float) -> float:
    """E|Z| for Z ~ N(m, s^2)."""
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * math.erf(m / (s * math.sqrt(2)))


def test_cramer_distance_is_the_energy_v_statistic_in_one_dimension():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 1, generator=gen, dtype=F64), 1.5 * torch.randn(70, 1, generator=gen, dtype=F64) + 0.4
    assert float(cramer_distance_1d(x, y)[0]) == pytest.approx(_v_statistic(x, y), rel=1e-12)


def test_slicing_factor():
    assert [sphere_slicing_factor(d) for d in (1, 2, 3)] == pytest.approx([1.0, math.pi / 2, 2.0])
    theta = torch.randn(400_000, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    mean_abs = float((theta[:, 0] / theta.norm(dim=1)).abs().mean())
    assert 1 / sphere_slicing_factor(5) == pytest.approx(mean_abs, rel=5e-3)


def test_rescaled_sliced_value_is_the_full_dimensional_energy_distance():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(300, 3, generator=gen, dtype=F64)
    y = torch.randn(300, 3, generator=gen, dtype=F64) * torch.tensor([1.0, 2.0, 0.5], dtype=F64) + 0.5
    sliced = sliced_energy_distance(x, y, n_projections=20_000, generator=gen)
    assert sliced == pytest.approx(_v_statistic(x, y), rel=0.02)
    plain = sliced_energy_distance(x, y, n_projections=20_000, generator=gen, rescale=False)
    assert plain == pytest.approx(sliced / 2.0, rel=0.02)


def test_two_gaussians_in_one_dimension_against_the_closed_form():
    """X ~ N(0, 1), Y ~ N(1, 2^2): D = E|X - Y| - 1/sqrt(pi) (1 + 2), X - Y ~ N(-1, 5). The V-statistic on n and m
    samples has expectation D + (sigma_x / n + sigma_y / m) / sqrt(pi) (from ∫F(1 - F) = E|X - X'| / 2)."""
    exact = _folded_normal_mean(-1.0, math.sqrt(5.0)) - 3.0 / math.sqrt(math.pi)
    n = 20_000
    gen = torch.Generator().manual_seed(2)
    values = [
        sliced_energy_distance(torch.randn(n, 1, generator=gen), 1 + 2 * torch.randn(n, 1, generator=gen), 1, gen)
        for _ in range(5)
    ]
    bias = 3.0 / (n * math.sqrt(math.pi))
    assert sum(values) / 5 - bias == pytest.approx(exact, abs=2e-3), (values, exact)


def test_floor_is_the_v_statistics_bias_between_exact_samples():
    """E[floor] = E|X - X'| / n: what two exact samples of size n score (their 'reference error')."""
    target = make_problem("hg_8modes", 2, 0).target()
    gen = torch.Generator().manual_seed(3)
    n = 4000
    floors = [sliced_energy_floor(target, n, 200, gen) for _ in range(6)]
    xs = target.sample(4000, gen)
    mean_dist = float(torch.cdist(xs[:2000], xs[2000:]).mean())
    assert sum(floors) / len(floors) == pytest.approx(mean_dist / n, rel=0.25), floors
    shifted = sliced_energy_distance(target.sample(n, gen) + 0.1, target.sample(n, gen), 200, gen)
    assert shifted > 10 * max(floors)


def test_log_normaliser_estimate_is_minus_the_kl_for_a_normalised_target():
    model = GaussianLaw(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))
    target = GaussianLaw(torch.ones(1, dtype=F64), torch.eye(1, dtype=F64))
    x = model.sample(50_000, torch.Generator().manual_seed(4))
    value, se = log_normaliser_estimate(target.log_density(x), model.log_density(x))
    assert abs(value - (-0.5)) < 4 * se and se < 0.01
    value, se = log_normaliser_estimate(model.log_density(x), model.log_density(x))
    assert value == 0.0 and se == 0.0


def test_evaluation_adds_the_sampling_target_metrics():
    problem = make_problem("hg_8modes", 2, 0)
    spec = EvalSpec(n_samples=1000, n_w2=200, n_mc=500, sliced_energy_samples=2000, sliced_energy_projections=50)
    method = make_method("neural_jko", problem, 0.05, {"n_particles": 256, "batch_size": 64, "iters_per_step": 2}, 0)
    row = evaluate_step(problem, method, 0, 0.05, spec)
    assert row["sliced_energy"] > 5 * row["sliced_energy_floor"] > 0  # P_0 = N(0, I) is far from the target
    assert row["log_z"] < 0 and row["log_z_se"] > 0
    identity = make_method("identity", problem, 0.05, {}, 0)
    row_id = evaluate_step(problem, identity, 0, 0.05, spec)
    # the identity row is P_0 too, with P_0's exact density: the same log Z and distance within their noise
    assert abs(row_id["log_z"] - row["log_z"]) < 4 * math.hypot(row["log_z_se"], row_id["log_z_se"])
    assert row_id["sliced_energy"] == pytest.approx(row["sliced_energy"], rel=0.3)
    ou_row = evaluate_step(make_problem("ou", 2, 0), identity, 0, 0.05, spec)
    assert "sliced_energy" not in ou_row  # a transient problem has no stationary target
    off = evaluate_step(problem, identity, 0, 0.05, EvalSpec(n_samples=1000, n_w2=200, n_mc=500))
    assert "sliced_energy" not in off and "log_z" in off  # the suite did not ask for it
