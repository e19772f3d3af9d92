"""Finite-volume reference of the non-convex Fokker-Planck problem: mass, positivity, refinement orders, stationarity,
agreement with the full operator's exponential and with a particle simulation, the grid law's sampler."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse.linalg
import torch
from scipy import integrate

from wgfbench.problems.finite_volume import (
    Grid,
    GridLaw,
    SplitImplicitEuler,
    cell_averages,
    coarsen,
    face_coefficients,
    sg_matrix,
)
from wgfbench.problems.fokker_planck_grid import (
    filtering_potential,
    filtering_potential_1d,
    make_fokker_planck_nonconvex,
)
from wgfbench.registry import make_problem


def l1(a: np.ndarray, b: np.ndarray, grid: Grid) -> float:
    return float(np.abs(a - b).sum() * grid.cell_volume)


@pytest.mark.parametrize("dim", [1, 2])
def test_mass_positivity_and_registry(dim: int) -> None:
    p = make_problem("fokker_planck_nonconvex", dim, 0, {"cells": 60 if dim == 2 else 200})
    assert p.functional == "kl" and p.temperature == 0.5 and p.jko_reference(3, 0.1) is None
    for t in (0.05, 0.5, 3.0):
        values = p.grid_values(round(t / p.dt))
        assert abs(values.sum() * p.grid.cell_volume - 1.0) < 1e-11
        assert float(values.min()) > 0.0  # strictly positive, tails included


def test_spatial_refinement_is_second_order() -> None:
    """L1 error of the cell averages at t = 1 against a 4x finer grid than the finest: observed order ~2 (d = 1)."""
    fine = make_fokker_planck_nonconvex(1, cells=880, dt=1e-3)
    ref = fine.grid_values(1000)
    errs = []
    for cells in (55, 110, 220):
        p = make_fokker_planck_nonconvex(1, cells=cells, dt=1e-3)
        errs.append(l1(coarsen(ref, 880 // cells), p.grid_values(1000), p.grid))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(1.8 < o < 2.2 for o in orders), (errs, orders)


def test_split_implicit_euler_is_first_order_towards_the_exact_exponential_in_2d() -> None:
    """The axis-split implicit Euler against expm of the full 2-d operator (assembled separately, non-split)."""
    p = make_fokker_planck_nonconvex(2, cells=40, dt=0.01)
    grid, temp = p.grid, p.temperature
    u = filtering_potential_1d(grid.mesh()).sum(-1) / temp
    full = sg_matrix([face_coefficients(u, grid.spacing[j], j, temp) for j in range(2)], grid.shape)
    start = p.grid_values(0)
    exact = scipy.sparse.linalg.expm_multiply(full * 0.5, start.ravel()).reshape(grid.shape)
    assert abs(exact.sum() * grid.cell_volume - 1) < 1e-10
    g1 = Grid((-p.half_width,), (p.half_width,), (40,))
    coef = face_coefficients(filtering_potential_1d(g1.centres(0)) / temp, g1.spacing[0], 0, temp)
    errs = [l1(SplitImplicitEuler(coef, dt).evolve(start, round(0.5 / dt)), exact, grid) for dt in (0.01, 0.005)]
    assert 1.9 < errs[0] / errs[1] < 2.1, errs
    assert errs[1] < 5e-3


def test_grid_gibbs_law_is_stationary_and_the_limit() -> None:
    p = make_fokker_planck_nonconvex(2, cells=50, dt=1e-2)
    grid, temp = p.grid, p.temperature
    gibbs = p.stationary()
    u = filtering_potential_1d(grid.mesh()).sum(-1) / temp
    full = sg_matrix([face_coefficients(u, grid.spacing[j], j, temp) for j in range(2)], grid.shape)
    rate = full @ gibbs.values.ravel()
    assert float(np.abs(rate).max()) < 1e-12 * float(np.abs(full).max() * gibbs.values.max())
    coef_1d = face_coefficients(filtering_potential_1d(grid.centres(0)) / temp, grid.spacing[0], 0, temp)
    assert l1(SplitImplicitEuler(coef_1d, 0.3).evolve(gibbs.values, 5), gibbs.values, grid) < 1e-12
    assert l1(p.reference(60.0).values, gibbs.values, grid) < 1e-6
    # moment blindness: the continuous Gibbs law has (to 1e-4) the moments of N(0, 2T), by quadrature
    weight = lambda x: math.exp(-float(filtering_potential_1d(np.array(x))) / temp)  # noqa: E731
    z, mean, second = (integrate.quad(lambda x, j=j: x**j * weight(x), -12, 12, limit=400)[0] for j in range(3))
    assert abs(mean / z) < 1e-4 and abs(second / z - 2 * temp) < 1e-4


def test_grid_solution_matches_a_particle_simulation() -> None:
    """Euler-Maruyama for dX = -V'(X) dt + sqrt(2T) dB (d = 1): moments and the mass of each well at t = 1."""
    p = make_fokker_planck_nonconvex(1)
    gen = torch.Generator().manual_seed(0)
    n, dt = 100_000, 1e-3
    x = p.initial().sample(n, gen)
    for _ in range(round(1.0 / dt)):
        grad = 2 * torch.cos(2 * math.pi * x) + 0.5 * x
        x = x - dt * grad + math.sqrt(2 * dt * p.temperature) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    law = p.reference(1.0)
    assert float(x.mean()) == pytest.approx(float(law.mean()[0]), abs=0.01)
    assert float(x.var()) == pytest.approx(float(law.cov()[0, 0]), abs=0.015)
    # the wells: intervals between consecutive maxima of V (V' = 0, V'' < 0, near x = 0.25 + k)
    edges = np.arange(-2.75, 4.3, 1.0)
    cell_edges = p.grid.centres(0)
    for lo, hi in itertools.pairwise(edges):
        grid_mass = float(law.masses[(cell_edges > lo) & (cell_edges < hi)].sum())
        particle_mass = float(((x > lo) & (x < hi)).double().mean())
        se = math.sqrt(grid_mass * (1 - grid_mass) / n)
        assert abs(grid_mass - particle_mass) < 5 * se + 4e-3, (lo, grid_mass, particle_mass)


def test_grid_law_sampler_and_log_density() -> None:
    grid = Grid((-2.0, -1.0), (2.0, 3.0), (30, 40))
    values = cell_averages(lambda x: np.exp(-((x[..., 0] - 0.3) ** 2) - 0.5 * (x[..., 1] - 1) ** 2), grid)
    law = GridLaw(grid, values)
    x = law.sample(200_000, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 2) and x.dtype == torch.float64
    np.testing.assert_allclose(x.mean(0).numpy(), law.mean(), atol=6e-3)
    np.testing.assert_allclose(np.cov(x.numpy().T), law.cov(), atol=1e-2)
    # the histogram of the samples on the grid's cells is the cell masses (exact sampler)
    idx = ((x - torch.tensor(grid.lower)) / torch.tensor(grid.spacing)).floor().long()
    counts = np.zeros(grid.shape)
    np.add.at(counts, (idx[:, 0].numpy(), idx[:, 1].numpy()), 1)
    assert np.abs(counts / 200_000 - law.masses).max() < 5 * math.sqrt(law.masses.max() / 200_000)
    # log_density interpolates the cell-centre values exactly at the centres, and is finite and clamped outside
    centres = torch.from_numpy(grid.mesh().reshape(-1, 2))
    np.testing.assert_allclose(np.exp(law.log_density(centres).numpy()), law.values.ravel(), rtol=1e-12)
    far = torch.tensor([[10.0, 1.0]], dtype=torch.float64)
    edge = torch.tensor([[grid.centres(0)[-1], 1.0]], dtype=torch.float64)
    assert float(law.log_density(far)) == pytest.approx(float(law.log_density(edge)))


def test_log_target_score_and_samples_in_the_dtype_asked() -> None:
    p = make_fokker_planck_nonconvex(2, cells=40)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(p.log_target(x).sum(), x)
    torch.testing.assert_close(g, -(2 * torch.cos(2 * math.pi * x) + 0.5 * x).detach() / p.temperature)
    from_numpy = torch.from_numpy(filtering_potential_1d(x.detach().numpy()).sum(-1))
    torch.testing.assert_close(filtering_potential(x.detach()), from_numpy)
    y = p.reference(0.2).sample(100, torch.Generator().manual_seed(0), dtype=torch.float32)
    assert y.dtype == torch.float32 and y.shape == (100, 2)
    torch.testing.assert_close(p.reference(0.0).cov, p.S0)
