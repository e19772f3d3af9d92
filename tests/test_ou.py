"""OU closed forms against independent computations, and the exact JKO oracle."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from wgfbench.metrics import gaussian_symkl
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import OUProblem, exact_jko_step, make_ou


def covariance_by_matrix_exponential(p: OUProblem, t: float, n_quad: int = 2001) -> torch.Tensor:
    """S_t = e^{-At} S0 e^{-At} + (2/beta) ∫_0^t e^{-As} e^{-As} ds with torch.linalg.matrix_exp and Simpson."""
    s = torch.linspace(0.0, t, n_quad, dtype=torch.float64)
    e = torch.linalg.matrix_exp(-p.A[None] * s[:, None, None])
    integrand = e @ e.transpose(-1, -2)
    w = torch.ones(n_quad, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    integral = (w[:, None, None] * integrand).sum(0) * (t / (n_quad - 1)) / 3.0
    et = torch.linalg.matrix_exp(-p.A * t)
    return et @ p.S0 @ et.T + (2.0 / p.beta) * integral


@pytest.mark.parametrize("generator", ["spectrum", "legacy_make_spd"])
@pytest.mark.parametrize("dim", [1, 3, 6])
def test_marginals_match_matrix_exponential(generator: str, dim: int) -> None:
    p = make_ou(dim, seed=3, generator=generator, beta=1.7, init_scale=1.3)
    for t in (0.0, 0.1, 0.9, 2.5):
        cov = covariance_by_matrix_exponential(p, t)
        mean = p.b + torch.linalg.matrix_exp(-p.A * t) @ (p.m0 - p.b)
        torch.testing.assert_close(p.cov(t), cov, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(p.mean(t), mean, rtol=1e-10, atol=1e-12)


def test_covariance_solves_lyapunov_ode() -> None:
    """dS/dt = -A S - S A + (2/beta) I, by central differences."""
    p = make_ou(4, seed=1, beta=0.5)
    t, eps = 0.4, 1e-5
    deriv = (p.cov(t + eps) - p.cov(t - eps)) / (2 * eps)
    rhs = -p.A @ p.cov(t) - p.cov(t) @ p.A + (2 / p.beta) * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(deriv, rhs, rtol=1e-6, atol=1e-7)


def test_stationary_law_is_the_limit() -> None:
    p = make_ou(5, seed=2, beta=2.0)
    st = p.stationary()
    torch.testing.assert_close(p.cov(60.0), st.cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(st.cov, torch.linalg.inv(p.beta * p.A), rtol=1e-10, atol=1e-12)


def test_euler_maruyama_simulation_matches_marginal() -> None:
    """Many particles of the SDE with a fine step: moments within Monte-Carlo + O(dt) tolerance."""
    p = make_ou(3, seed=0)
    gen = torch.Generator().manual_seed(0)
    n, t_end, dt = 100_000, 0.5, 1e-3
    x = p.initial().sample(n, gen)
    for _ in range(round(t_end / dt)):
        x = x - dt * (x - p.b) @ p.A + math.sqrt(2 * dt / p.beta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    ref = p.reference(t_end)
    # mean: MC std ~ sqrt(var/n) ~ 3e-3; O(dt) bias ~ 1e-3
    assert torch.allclose(x.mean(0), ref.mean, atol=1.5e-2)
    assert torch.allclose(torch.cov(x.T), ref.cov, atol=2e-2)


def test_instances_are_pure_functions_of_dim_seed_generator() -> None:
    a, b = make_ou(4, 7), make_ou(4, 7)
    assert torch.equal(a.A, b.A) and torch.equal(a.b, b.b)
    c = make_ou(4, 8)
    assert not torch.equal(a.A, c.A)


def test_spectrum_generator_interval_and_legacy_conditioning() -> None:
    p = make_ou(12, seed=0, a_min=1.0, a_max=2.0)
    w = torch.linalg.eigvalsh(p.A)
    assert float(w.min()) >= 1.0 - 1e-12 and float(w.max()) <= 2.0 + 1e-12
    # make_spd's "+1 on every entry": one stationary-covariance eigenvalue near d + 0.5, so A is ill-conditioned
    legacy = make_ou(12, seed=0, generator="legacy_make_spd")
    sigma_eigs = torch.linalg.eigvalsh(torch.linalg.inv(legacy.A))
    assert 10.0 < float(sigma_eigs.max()) < 14.0
    assert legacy.describe()["condition_number"] > 20


def test_legacy_seeding_is_mokrovs() -> None:
    """crc32-seeded legacy numpy RNG, make_spd recipe first, then randn(d) for the mean."""
    import zlib

    rng = np.random.RandomState(zlib.crc32(b"abacaba@5@2numpy"))
    rng.uniform(size=(5, 5))
    rng.uniform(size=5)
    b = rng.randn(5)
    p = make_ou(5, seed=2, generator="legacy_make_spd")
    np.testing.assert_allclose(p.b.numpy(), b)


def test_free_energy_decreases_along_the_flow_and_matches_kl() -> None:
    """F(P_t) = beta^-1 KL(P_t || stationary) + const, so differences of F equal scaled KL differences."""
    from wgfbench.metrics import gaussian_kl

    p = make_ou(3, seed=4, beta=1.5)
    ts = [0.0, 0.2, 0.5, 1.0, 3.0]
    f = [p.free_energy(p.reference(t)) for t in ts]
    kl = [gaussian_kl(p.reference(t), p.stationary()) / p.beta for t in ts]
    assert all(a > b for a, b in itertools.pairwise(f))
    np.testing.assert_allclose(np.diff(f), np.diff(kl), rtol=1e-9, atol=1e-12)


def test_exact_jko_step_satisfies_optimality_condition() -> None:
    """(T - I)/h = -A T + beta^-1 T^-1 S^-1 for the linear part T of the step's Brenier map."""
    from wgfbench.problems.gaussian import inv_sqrtm_pd, sqrtm_psd

    p = make_ou(4, seed=5, beta=0.7)
    law = GaussianLaw(torch.zeros(4, dtype=torch.float64), p.cov(0.3))
    h = 0.1
    new = exact_jko_step(p, law, h)
    s_half, s_inv_half = sqrtm_psd(law.cov), inv_sqrtm_pd(law.cov)
    # the symmetric PD map with T S T = S': T = S^-1/2 (S^1/2 S' S^1/2)^1/2 S^-1/2
    t_map = s_inv_half @ sqrtm_psd(s_half @ new.cov @ s_half) @ s_inv_half
    eye = torch.eye(4, dtype=torch.float64)
    lhs = (t_map - eye) / h
    rhs = -p.A @ t_map + torch.linalg.inv(t_map) @ torch.linalg.inv(law.cov) / p.beta
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-10)
    # mean: (m' - m)/h = -A (m' - b)
    torch.testing.assert_close((new.mean - law.mean) / h, -p.A @ (new.mean - p.b), rtol=1e-10, atol=1e-12)


def test_exact_jko_fixed_point_is_stationary_law() -> None:
    p = make_ou(3, seed=6, beta=2.0)
    st = p.stationary()
    nxt = exact_jko_step(p, st, 0.3)
    torch.testing.assert_close(nxt.cov, st.cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nxt.mean, st.mean, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("generator", ["spectrum", "legacy_make_spd"])
def test_exact_jko_converges_at_first_order(generator: str) -> None:
    """W2-distance of the JKO iterate to P_t at t = 0.6 shrinks like h: error ratio ~ 10 for h / 10."""
    from wgfbench.metrics import bures_w2

    p = make_ou(4, seed=0, generator=generator)
    t = 0.6
    errs = []
    for h in (0.06, 0.006, 0.0006):
        errs.append(bures_w2(p.jko_reference(round(t / h), h), p.reference(t)))
    rates = [math.log10(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(0.9 < r < 1.1 for r in rates), (errs, rates)
    assert gaussian_symkl(p.jko_reference(100, 0.006), p.reference(t)) < 1e-4


def test_every_law_samples_in_the_dtype_asked_with_the_same_moments() -> None:
    """Law.sample(dtype=float32) (what the methods draw P_0 in) has the float64 draws' law."""
    from wgfbench.registry import make_problem

    problems = [make_problem(name, dim, 0) for name, dim in (("ou", 3), ("barenblatt", 3), ("gmm", 2))]
    laws = [p.initial() for p in problems] + [problems[2].reference(1.0)]  # Gaussian, Barenblatt, mixture
    assert {type(law).__name__ for law in laws} == {"GaussianLaw", "BarenblattLaw", "GaussianMixtureLaw"}
    for law in laws:
        x64 = law.sample(40_000, torch.Generator().manual_seed(0))
        x32 = law.sample(40_000, torch.Generator().manual_seed(1), dtype=torch.float32)
        assert x64.dtype == torch.float64 and x32.dtype == torch.float32 and x32.shape == x64.shape
        scale = float(x64.std(0).max())
        torch.testing.assert_close(x32.double().mean(0), x64.mean(0), atol=0.03 * scale, rtol=0)
        torch.testing.assert_close(torch.cov(x32.double().T), torch.cov(x64.T), atol=0.05 * scale**2, rtol=0)
