"""Confined porous medium: PDE residual by finite differences, stationary law, exact JKO radius recursion."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from wgfbench.problems.barenblatt import make_barenblatt
from wgfbench.problems.porous_confined import (
    confined_jko_radius_step,
    make_porous_confined,
    stationary_radius,
)
from wgfbench.registry import make_problem


def pde_residual(
    problem, x: torch.Tensor, t: float, lam: float, eps_x: float = 1e-4, eps_t: float = 1e-7
) -> torch.Tensor:
    """dP/dt - Δ(P^m) - lam (n P + x·∇P) at points x (N, n) for the problem's density, by central differences."""
    m = problem.m
    dens = problem.density
    p_t = (dens(x, t + eps_t) - dens(x, t - eps_t)) / (2 * eps_t)
    lap = torch.zeros(x.shape[0], dtype=torch.float64)
    grad_dot_x = torch.zeros(x.shape[0], dtype=torch.float64)
    centre = dens(x, t)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = eps_x
        up, down = dens(x + e, t), dens(x - e, t)
        lap += (up**m - 2 * centre**m + down**m) / eps_x**2
        grad_dot_x += x[:, i] * (up - down) / (2 * eps_x)
    return p_t - lap - lam * (x.shape[1] * centre + grad_dot_x)


@pytest.mark.parametrize(("dim", "m"), [(1, 2.0), (2, 2.0), (3, 3.0)])
def test_dilated_barenblatt_solves_the_confined_pme(dim: int, m: float) -> None:
    problem = make_porous_confined(dim, m=m, confinement=7.0)
    gen = torch.Generator().manual_seed(dim)
    for t in (0.002, 0.02):
        radius = problem.radius(t)
        u = torch.randn(64, dim, generator=gen, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True)
        x = radius * (0.1 + 0.7 * torch.rand(64, 1, generator=gen, dtype=torch.float64)) * u  # inside the support
        scale = float(problem.density(x, t).max()) / t  # the size of each term of the equation
        res = pde_residual(problem, x, t, lam=7.0)
        assert float(res.abs().max()) < 1e-6 * scale, float(res.abs().max()) / scale
        # the residual sees the confinement: against the free PME (or lambda = 6) the same density fails
        for lam in (0.0, 6.0):
            assert float(pde_residual(problem, x, t, lam=lam).abs().max()) > 1e-4 * scale


@pytest.mark.parametrize("dim", [1, 3])
def test_reference_is_the_unit_mass_density(dim: int) -> None:
    problem = make_porous_confined(dim)
    sphere = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)
    for t in (0.0, 0.01, 0.05):
        law = problem.reference(t)

        def radial(r: float, t: float = t) -> float:
            x = torch.zeros(1, dim, dtype=torch.float64)
            x[0, 0] = r
            return float(problem.density(x, t)) * r ** (dim - 1)

        mass, _ = integrate.quad(radial, 0.0, law.radius, epsabs=1e-13, epsrel=1e-11)
        assert sphere * mass == pytest.approx(1.0, abs=1e-8)
        x = law.sample(500, torch.Generator().manual_seed(0))
        torch.testing.assert_close(problem.density(x, t), law.density(x), rtol=1e-10, atol=1e-12)


def test_zero_confinement_is_the_free_barenblatt_flow() -> None:
    free, confined = make_barenblatt(3, 0), make_porous_confined(3, confinement=0.0)
    for t in (0.0, 0.01, 0.3):
        assert confined.radius(t) == pytest.approx(free.radius(t), rel=1e-12)
    assert confined.jko_reference(5, 0.01).radius == pytest.approx(free.jko_reference(5, 0.01).radius, rel=1e-12)


@pytest.mark.parametrize(("dim", "m", "lam"), [(1, 2.0, 10.0), (3, 2.0, 1.0), (6, 3.0, 4.0)])
def test_stationary_radius_from_pressure_balance_is_the_limit(dim: int, m: float, lam: float) -> None:
    problem = make_porous_confined(dim, m=m, confinement=lam)
    r_inf = stationary_radius(dim, m, lam)
    assert problem.radius(50.0 / lam) == pytest.approx(r_inf, rel=1e-10)
    # R_inf = sqrt(C/k) (e lambda)^{-1/e} from the closed form's limit
    from wgfbench.problems.barenblatt import exponents

    _, beta, k = exponents(dim, m)
    assert r_inf == pytest.approx(math.sqrt(problem.C / k) * (lam / beta) ** (-beta), rel=1e-12)
    # the stationary law is a fixed point of the exact JKO step
    assert confined_jko_radius_step(r_inf, 0.3, dim, m, lam) == pytest.approx(r_inf, rel=1e-12)


def test_jko_radius_step_minimises_over_dilations() -> None:
    """J(R') = W2^2(P_R, P_R')/(2h) + G(P_R') + lambda/2 E|X|^2, minimised by a scalar search, vs the recursion."""
    for dim, m, lam, r0, h in ((2, 2.0, 10.0, 0.3, 0.01), (3, 3.0, 5.0, 1.5, 0.05), (1, 2.0, 10.0, 0.9, 0.002)):
        problem = make_porous_confined(dim, m=m, confinement=lam)
        law0 = problem.reference(0.0).__class__(dim, m, r0)
        kappa = law0.second_moment() / r0**2  # E|X|^2 = kappa R^2 for P_R

        def objective(r: float, law0=law0, kappa=kappa, h=h, problem=problem) -> float:
            law = law0.__class__(law0.dim, law0.m, r)
            return kappa * (r - law0.radius) ** 2 / (2 * h) + problem.free_energy(law)

        res = optimize.minimize_scalar(objective, bounds=(0.2 * r0, 5 * r0), method="bounded", options={"xatol": 1e-12})
        assert confined_jko_radius_step(r0, h, dim, m, lam) == pytest.approx(res.x, rel=1e-7)


def test_jko_iterates_converge_at_first_order_and_radius_solves_its_ode() -> None:
    problem = make_porous_confined(2, confinement=10.0)
    t = 0.04
    errs = [abs(problem.jko_reference(round(t / h), h).radius - problem.radius(t)) for h in (4e-3, 4e-4, 4e-5)]
    rates = [math.log10(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(0.9 < r < 1.1 for r in rates), (errs, rates)
    # the h -> 0 limit of the recursion, dR/dt = c R^{1-e} - lambda R, holds for the closed form
    from wgfbench.problems.porous_confined import pressure_coefficient

    c, e, eps = pressure_coefficient(2, 2.0), problem.rate_exponent, 1e-6
    for s in (0.0 + eps, 0.01, 0.1):
        r = problem.radius(s)
        deriv = (problem.radius(s + eps) - problem.radius(s - eps)) / (2 * eps)
        assert deriv == pytest.approx(c * r ** (1 - e) - 10.0 * r, rel=1e-6)


def test_free_energy_decreases_and_registry() -> None:
    problem = make_problem("porous_confined", 3, 0, {"confinement": 5.0})
    assert problem.functional == "generalised_entropy" and problem.confinement == 5.0 and problem.compact_support
    ts = np.linspace(0.0, 0.5, 11)
    f = [problem.free_energy(problem.reference(float(t))) for t in ts]
    assert all(a > b for a, b in itertools.pairwise(f))
    assert f[-1] >= problem.free_energy(problem.stationary()) - 1e-12
