"""McKean-Vlasov OU: moments against ODE integration and an interacting particle system, exact JKO iterates."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from gaussian_jko_numerics import gaussian_entropy_term, minimise_jko_over_gaussians
from scipy.integrate import solve_ivp

from wgfbench.metrics import bures_w2
from wgfbench.problems.gaussian import GaussianLaw, inv_sqrtm_pd, sqrtm_psd
from wgfbench.problems.mckean_vlasov import make_mckean_vlasov
from wgfbench.problems.ou import make_ou
from wgfbench.registry import make_problem


@pytest.mark.parametrize("kappa", [0.0, 0.7, 4.0])
def test_moments_match_ode_integration(kappa: float) -> None:
    p = make_mckean_vlasov(3, seed=2, kappa=kappa, beta=1.4, init_scale=1.2)
    d, a = 3, p.A.numpy()
    k = a + kappa * np.eye(d)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        m, s = y[:d], y[d:].reshape(d, d)
        return np.concatenate([-a @ (m - p.b.numpy()), (-k @ s - s @ k + 2.0 / p.beta * np.eye(d)).ravel()])

    sol = solve_ivp(rhs, (0.0, 2.0), np.concatenate([p.m0.numpy(), p.S0.numpy().ravel()]), method="DOP853",
                    rtol=1e-12, atol=1e-13, dense_output=True)  # fmt: skip
    for t in (0.3, 2.0):
        y = sol.sol(t)
        np.testing.assert_allclose(p.mean(t).numpy(), y[:d], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(p.cov(t).numpy(), y[d:].reshape(d, d), rtol=1e-9, atol=1e-10)


def test_moments_match_an_interacting_particle_simulation() -> None:
    """N particles with the empirical mean-field drift -A(x - b) - kappa (x - mean): the law of the PDE as N grows."""
    p = make_mckean_vlasov(2, seed=0, kappa=3.0, beta=2.0)
    gen = torch.Generator().manual_seed(0)
    n, t_end, dt = 40_000, 1.0, 1e-3
    x = p.initial().sample(n, gen)
    for _ in range(round(t_end / dt)):
        drift = -(x - p.b) @ p.A - p.kappa * (x - x.mean(0))
        x = x + dt * drift + math.sqrt(2 * dt / p.beta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    ref = p.reference(t_end)
    torch.testing.assert_close(x.mean(0), ref.mean, atol=1e-2, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), ref.cov, atol=4e-3, rtol=0)
    # the interaction is visible: without it the covariance would be that of the plain OU flow
    plain = make_ou(2, seed=0, beta=2.0).reference(t_end)
    assert float((plain.cov - ref.cov).abs().max()) > 10 * 4e-3


def test_exact_jko_step_minimises_over_gaussians() -> None:
    p = make_mckean_vlasov(2, seed=3, kappa=1.5, beta=0.8)
    a, b, kappa = p.A.numpy(), p.b.numpy(), p.kappa

    def energy(m: np.ndarray, s: np.ndarray) -> float:
        confinement = 0.5 * np.trace(a @ s) + 0.5 * (m - b) @ a @ (m - b)
        interaction = 0.5 * (kappa / 2) * np.trace(2 * s)  # ½ E W(X - Y), X - Y ~ N(0, 2S)
        return confinement + interaction + gaussian_entropy_term(s, p.beta)

    law = p.reference(0.25)
    h = 0.15
    mean, cov = minimise_jko_over_gaussians(energy, law.mean.numpy(), law.cov.numpy(), h)
    exact = p.jko_step(law, h)
    np.testing.assert_allclose(mean, exact.mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(cov, exact.cov.numpy(), atol=1e-6)


def test_exact_jko_step_satisfies_the_mean_field_optimality_condition() -> None:
    p = make_mckean_vlasov(4, seed=1, kappa=2.0, beta=0.6)
    law, h = GaussianLaw(p.m0 + 0.3, p.cov(0.2)), 0.1
    new = p.jko_step(law, h)
    s_half, s_inv_half = sqrtm_psd(law.cov), inv_sqrtm_pd(law.cov)
    t_map = s_inv_half @ sqrtm_psd(s_half @ new.cov @ s_half) @ s_inv_half
    eye = torch.eye(4, dtype=torch.float64)
    lhs = (t_map - eye) / h
    rhs = -(p.A + p.kappa * eye) @ t_map + torch.linalg.inv(t_map) @ torch.linalg.inv(law.cov) / p.beta
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close((new.mean - law.mean) / h, -p.A @ (new.mean - p.b), rtol=1e-10, atol=1e-12)


def test_jko_converges_at_first_order_and_stationary_law_is_fixed() -> None:
    p = make_problem("mckean_vlasov", 3, 0, {"kappa": 2.0})
    assert p.functional == "kl_interaction" and p.interaction_kappa == 2.0
    t = 0.6
    errs = [bures_w2(p.jko_reference(round(t / h), h), p.reference(t)) for h in (0.06, 0.006, 0.0006)]
    rates = [math.log10(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(0.9 < r < 1.1 for r in rates), (errs, rates)
    st = p.stationary()
    torch.testing.assert_close(st.cov, torch.linalg.inv(p.beta * (p.A + 2.0 * torch.eye(3, dtype=torch.float64))))
    nxt = p.jko_step(st, 0.4)
    torch.testing.assert_close(nxt.cov, st.cov, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nxt.mean, st.mean, rtol=1e-10, atol=1e-12)


def test_free_energy_is_the_functional_and_decreases() -> None:
    """F on Gaussians against a Monte-Carlo evaluation of ∫V + ½∫∫W (pairs) + entropy, and its decrease in t."""
    p = make_mckean_vlasov(2, seed=4, kappa=1.2)
    law = p.reference(0.3)
    gen = torch.Generator().manual_seed(0)
    x, y = law.sample(200_000, gen), law.sample(200_000, gen)
    mc = p.potential(x).mean() + 0.5 * p.interaction(x - y).mean() + p.temperature * law.log_density(x).mean()
    assert float(mc) == pytest.approx(p.free_energy(law), abs=2e-2)
    f = [p.free_energy(p.reference(t)) for t in (0.0, 0.2, 0.5, 1.0, 3.0)]
    assert all(u > v for u, v in itertools.pairwise(f))
    with pytest.raises(ValueError, match="attractive"):
        make_mckean_vlasov(2, 0, kappa=-0.5)
