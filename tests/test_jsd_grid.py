"""JSD gradient flow: the finite-volume reference (mass, positivity, refinement, stationarity, dissipation, product
structure, half-rate relaxation) and the sample-level checks of wgfbench.metrics.jsd in higher d."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from wgfbench.metrics.jsd import (
    decreasing,
    fitted_relaxation_rate,
    jsd_from_densities,
    jsd_knn,
    near_equilibrium_mean,
    stationarity_gap,
)
from wgfbench.problems.finite_volume import coarsen
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.gmm import GaussianMixtureLaw
from wgfbench.problems.jsd_grid import JSDGridProblem, jsd_divergence, make_jsd_grid
from wgfbench.registry import make_problem


def l1(a: np.ndarray, b: np.ndarray, cell_volume: float) -> float:
    return float(np.abs(a - b).sum() * cell_volume)


@pytest.mark.parametrize("dim", [1, 2, 4])
def test_mass_positivity_and_the_contract(dim: int) -> None:
    p = make_problem("jsd_grid", dim, 0, {"cells": 40})
    assert p.functional == "jsd" and p.jko_reference(2, 0.1) is None and p.active_dim == min(dim, 2)
    vol = p.grid.cell_volume
    start_mass = p.grid_values(0).sum() * vol
    for t in (0.1, 0.5, 2.0):
        values = p.cell_values(t)
        assert abs(values.sum() * vol - start_mass) < 1e-12 and float(values.min()) > 0
    law = p.reference(0.5)
    x = law.sample(300, torch.Generator().manual_seed(0))
    assert x.shape == (300, dim) and torch.isfinite(law.log_density(x)).all()
    # log_target is the normalised log density of the exact target
    y = p.target().sample(200, torch.Generator().manual_seed(1))
    torch.testing.assert_close(p.log_target(y), p.target().log_density(y))


def test_log_target_is_normalised_in_1d() -> None:
    p = make_jsd_grid(1)
    mass, _ = integrate.quad(lambda x: math.exp(float(p.log_target(torch.tensor([[x]], dtype=torch.float64)))), -9, 9)
    assert mass == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(("dim", "coarse", "fine", "t"), [(1, (55, 110, 220), 880, 1.0), (2, (22, 44), 176, 0.3)])
def test_refinement_is_second_order(dim: int, coarse: tuple[int, ...], fine: int, t: float) -> None:
    ref = make_jsd_grid(dim, cells=fine).cell_values(t)
    errs = []
    for cells in coarse:
        p = make_jsd_grid(dim, cells=cells)
        errs.append(l1(coarsen(ref, fine // cells), p.cell_values(t), p.grid.cell_volume))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert all(1.7 < o < 2.3 for o in orders), (errs, orders)


def test_grid_target_is_stationary_and_divergence_decreases() -> None:
    p = make_jsd_grid(2, cells=60)
    q = p._q / (p._q.sum() * p.grid.cell_volume)
    moved = q
    for _ in range(200):
        moved = p.step(moved)
    assert l1(moved, q, p.grid.cell_volume) < 1e-12
    values = [p.divergence(t) for t in np.linspace(0.0, 2.0, 21)]
    assert values[0] > 0.3 and values[-1] < 0.01 and all(a > b for a, b in itertools.pairwise(values))


def test_energy_dissipation_identity() -> None:
    """dD/dt = -∫ p |∇ log(p/(p+q))|^2: the scheme's PDE is the W2 gradient flow of D_f (1-d, fine grid)."""
    p = make_jsd_grid(1, cells=880)
    x, dx = p.grid.centres(0), p.grid.spacing[0]
    q = p._q / (p._q.sum() * dx)
    for t in (0.2, 1.0):
        eps = 0.01
        rate = (p.divergence(t + eps) - p.divergence(t - eps)) / (2 * eps)
        dens = p.cell_values(t)
        grad = np.gradient(np.log(dens / (dens + q)), x)
        dissipation = float((dens * grad**2).sum() * dx)
        assert rate == pytest.approx(-dissipation, rel=1e-2)


def test_product_structure_keeps_equilibrated_coordinates_at_equilibrium() -> None:
    """A 2-d grid solve with a separable target q_a(x1) N(0,1)(x2) from f_0(x1) N(0,1)(x2) equals the 1-d solve times
    N(0, 1). The x2 factor is the grid's own stationary vector (nodal N(0, 1) values, normalised) so that the
    discrete product structure is exact, not only up to O(dx^2)."""
    weights, stds = torch.tensor([0.4, 0.6]), torch.ones(2)
    q1 = GaussianMixtureLaw(torch.tensor([[-2.0], [1.5]]), stds, weights)
    q2 = GaussianMixtureLaw(torch.tensor([[-2.0, 0.0], [1.5, 0.0]]), stds, weights)
    f64 = torch.float64
    start1 = GaussianLaw(torch.tensor([0.5], dtype=f64), torch.tensor([[0.3]], dtype=f64))
    start2 = GaussianLaw(torch.tensor([0.5, 0.0], dtype=f64), torch.tensor([[0.3, 0.0], [0.0, 1.0]], dtype=f64))
    one = JSDGridProblem(dim=1, active_target=q1, active_initial=start1, cells=60)
    two = JSDGridProblem(dim=2, active_target=q2, active_initial=start2, cells=60)
    centres = one.grid.centres(0)
    normal = np.exp(-0.5 * centres**2)
    normal /= normal.sum() * one.grid.spacing[0]
    two._snapshots[0] = np.outer(one.grid_values(0), normal)
    object.__setattr__(one, "dt", two.dt)  # the same time step, for a like-for-like comparison
    t = 0.5
    product = np.outer(one.cell_values(t), normal)
    # (the truncated tails of N(0, 1) outside the box, mass 4e-8, are the only mismatch left; O(dx^2) = 3e-4 before)
    assert l1(two.cell_values(t), product, two.grid.cell_volume) < 1e-7
    # and the x2 marginal has not moved
    np.testing.assert_allclose(two.cell_values(t).sum(0) * one.grid.spacing[0], normal, rtol=1e-6)


def test_near_equilibrium_relaxation_runs_at_half_the_fokker_planck_rate() -> None:
    p = make_jsd_grid(1, target="gaussian", shift=0.2)
    x, dx = p.grid.centres(0), p.grid.spacing[0]
    times = [0.5, 1.0, 2.0, 3.0]
    means = [torch.tensor([float((p.cell_values(t) * x).sum() * dx)]) for t in times]
    rate = fitted_relaxation_rate(times, means, torch.zeros(1), torch.ones(1))
    assert rate == pytest.approx(0.5, abs=0.01)  # the Fokker-Planck (KL) flow to N(0, 1) relaxes at rate 1
    for t, m in zip(times, means, strict=True):
        predicted = near_equilibrium_mean(torch.zeros(1), torch.eye(1), torch.full((1,), 0.2), t)
        assert float(m) == pytest.approx(float(predicted), abs=0.2**2 * 0.05)


def test_density_jsd_estimator_against_quadrature() -> None:
    p, q = GaussianLaw(torch.tensor([0.7]), torch.tensor([[0.5]])), GaussianLaw(torch.zeros(1), torch.eye(1))
    xs = np.linspace(-9, 9, 20001)
    lp = p.log_density(torch.from_numpy(xs)[:, None]).numpy()
    lq = q.log_density(torch.from_numpy(xs)[:, None]).numpy()
    exact = jsd_divergence(np.exp(lp), np.exp(lq), xs[1] - xs[0])
    gen = torch.Generator().manual_seed(0)
    xp, xq = p.sample(100_000, gen), q.sample(100_000, gen)
    value, se = jsd_from_densities(p.log_density(xp), q.log_density(xp), p.log_density(xq), q.log_density(xq))
    assert abs(value - exact) < 4 * se and se < 3e-3
    # the sample-only kNN estimate is close, at this n, in low d (its bias is about -0.02 here)
    knn, _ = jsd_knn(xp[:20_000], xq[:20_000], q.log_density(xp[:20_000]), q.log_density(xq[:20_000]))
    assert knn == pytest.approx(exact, abs=0.03)


def test_sample_checks_in_higher_dimension_on_the_exact_flow() -> None:
    """The checks a method's samples will go through, run on the exact reference of the d = 5 problems."""
    gen = torch.Generator().manual_seed(0)
    p = make_jsd_grid(5, cells=60)
    target = p.target()
    n = 4000
    xq = target.sample(n, gen)
    times = [0.0, 0.25, 0.6]
    estimates, ses = [], []
    for t in times:
        xp = p.reference(t).sample(n, gen)
        value, se = jsd_knn(xp, xq, p.log_target(xp), p.log_target(xq))
        estimates.append(value)
        ses.append(se)
        assert value == pytest.approx(p.divergence(t), abs=0.08)  # the kNN estimator's bias in d = 5 at n = 4000
    assert decreasing(estimates, ses) and not decreasing(estimates[::-1], ses[::-1])
    at_target = stationarity_gap(target, target.sample(1000, gen), gen)
    at_start = stationarity_gap(target, p.initial().sample(1000, gen), gen)
    assert at_target["energy"] < 3 * at_target["energy_floor"] and at_start["energy"] > 10 * at_start["energy_floor"]
    # near-equilibrium relaxation, d = 5: the first coordinate's mean against the first-order prediction
    g = make_jsd_grid(5, target="gaussian", shift=0.2, cells=110)
    times = [0.5, 1.0, 2.0]
    means = [g.reference(t).sample(200_000, gen).mean(0) for t in times]
    shift = torch.zeros(5, dtype=torch.float64)
    shift[0] = 0.2
    for t, m in zip(times, means, strict=True):
        predicted = near_equilibrium_mean(torch.zeros(5), torch.eye(5), shift, t)
        torch.testing.assert_close(m, predicted, atol=5 * 1 / math.sqrt(200_000) + 2e-3, rtol=0)
    assert fitted_relaxation_rate(times, means, torch.zeros(5), shift) == pytest.approx(0.5, abs=0.05)
