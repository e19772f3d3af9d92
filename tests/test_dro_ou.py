"""DRO-tilted OU (Zhu & Xie's modified JKO as an OU instance): tilt, threshold, marginals, exact JKO iterates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gaussian_jko_numerics import gaussian_entropy_term, minimise_jko_over_gaussians

from wgfbench.problems.dro_ou import (
    DROIngredients,
    make_dro_ou,
    robustness_threshold,
    tilted_ou_parameters,
    whitened_drift_spectrum,
)
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import OUProblem, exact_jko_step
from wgfbench.registry import make_problem


def test_tilted_law_density_ratio_is_the_loss_tilt() -> None:
    """log P*(x) - log N(x; m, S) - l(x)/lambda is one constant over x (P* = the OU stationary law)."""
    p = make_dro_ou(3, seed=1, temperature=1.7, margin=1.5)  # lambda > 2 threshold: e^{l/lambda} has a variance
    ing = p.ingredients
    x = 3.0 * torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gap = p.stationary().log_density(x) - ing.nominal().log_density(x) - ing.loss(x) / ing.lam
    assert float(gap.std()) < 1e-10 * float(gap.abs().mean() + 1)
    # and the constant is -log Z with Z = E_nominal[e^{l/lambda}], by Monte Carlo
    z = torch.exp(ing.loss(ing.nominal().sample(400_000, torch.Generator().manual_seed(1))) / ing.lam)
    log_z_se = float(z.std()) / math.sqrt(z.shape[0]) / float(z.mean())
    assert float(-gap.mean()) == pytest.approx(math.log(float(z.mean())), abs=5 * log_z_se)


def test_threshold_is_where_the_tilt_stops_being_a_law() -> None:
    p = make_dro_ou(4, seed=2, temperature=0.8, margin=0.1)
    ing = p.ingredients
    threshold = robustness_threshold(ing.nominal_cov, ing.loss_curvature)
    assert ing.lam == pytest.approx(1.1 * threshold, rel=1e-12)
    # the direct definition: S^-1 - B/lambda has a zero eigenvalue exactly at lambda = threshold
    s_inv = torch.linalg.inv(ing.nominal_cov)
    assert float(torch.linalg.eigvalsh(s_inv - ing.loss_curvature / threshold).min()) == pytest.approx(0.0, abs=1e-10)
    for lam, ok in ((threshold * (1 - 1e-6), False), (threshold, False), (threshold * (1 + 1e-6), True)):
        trial = DROIngredients(ing.nominal_mean, ing.nominal_cov, ing.loss_curvature, ing.loss_centre, lam)
        if ok:
            a, _, _ = tilted_ou_parameters(trial)
            assert float(torch.linalg.eigvalsh(a).min()) > 0
        else:
            with pytest.raises(ValueError, match="must exceed"):
                tilted_ou_parameters(trial)


@pytest.mark.parametrize("margin", [1.0, 0.1, 0.01])
def test_margin_controls_the_slowest_rate(margin: float) -> None:
    p = make_dro_ou(5, seed=0, temperature=2.0, margin=margin)
    spec = whitened_drift_spectrum(p)
    assert float(spec.min()) == pytest.approx(2.0 * margin / (1 + margin), rel=1e-9)
    assert float(spec.max()) <= 2.0 + 1e-12
    assert p.temperature == pytest.approx(2.0) and p.describe()["margin"] == margin


def test_instance_is_an_ou_problem_with_the_nominal_start() -> None:
    p = make_problem("dro_ou", 3, 4, {"temperature": 0.6})
    assert isinstance(p, OUProblem) and p.name == "dro_ou" and p.functional == "kl"
    assert p.temperature == pytest.approx(0.6)
    torch.testing.assert_close(p.initial().mean, p.ingredients.nominal_mean)
    torch.testing.assert_close(p.initial().cov, p.ingredients.nominal_cov)
    q = make_dro_ou(3, 4, temperature=0.6)
    assert torch.equal(p.A, q.A) and torch.equal(p.b, q.b)


def test_marginals_match_a_simulation_of_the_dro_langevin_dynamics() -> None:
    """The SDE written from the DRO data, dX = [lambda grad log N(m,S) + grad l] dt + sqrt(2 lambda) dW, against the
    OU closed forms of the instance (which use A and b from the reduction)."""
    p = make_dro_ou(2, seed=3, temperature=1.5, margin=0.2)
    ing = p.ingredients
    s_inv = torch.linalg.inv(ing.nominal_cov)
    gen = torch.Generator().manual_seed(0)
    n, t_end, dt = 60_000, 1.0, 2e-3
    x = p.initial().sample(n, gen)
    for _ in range(round(t_end / dt)):
        drift = -ing.lam * (x - ing.nominal_mean) @ s_inv + (x - ing.loss_centre) @ ing.loss_curvature
        x = x + dt * drift + math.sqrt(2 * dt * ing.lam) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    ref = p.reference(t_end)
    scale = float(torch.linalg.eigvalsh(ref.cov).max())
    # Monte-Carlo standard error ~ sqrt(scale/n) ~ 4e-3 sqrt(scale); the O(dt) bias is ~2e-3 of the moments
    torch.testing.assert_close(x.mean(0), ref.mean, atol=0.02 * math.sqrt(scale), rtol=0)
    torch.testing.assert_close(torch.cov(x.T), ref.cov, atol=0.02 * scale, rtol=0)


def test_exact_jko_iterate_minimises_the_modified_jko_objective() -> None:
    """Zhu & Xie's step -E_P[l] + lambda KL(P || P_hat) + W2^2/(2h), minimised numerically over Gaussians from the DRO
    data alone, equals the OU exact JKO step of the reduced instance."""
    p = make_dro_ou(2, seed=5, temperature=0.7, margin=0.3)
    ing = p.ingredients
    m_hat, s_hat = ing.nominal_mean.numpy(), ing.nominal_cov.numpy()
    s_hat_inv = np.linalg.inv(s_hat)
    bmat, c, lam = ing.loss_curvature.numpy(), ing.loss_centre.numpy(), ing.lam

    def energy(m: np.ndarray, s: np.ndarray) -> float:
        expected_loss = 0.5 * np.trace(bmat @ s) + 0.5 * (m - c) @ bmat @ (m - c)
        cross_entropy = 0.5 * (np.trace(s_hat_inv @ s) + (m - m_hat) @ s_hat_inv @ (m - m_hat))
        return -expected_loss + lam * cross_entropy + gaussian_entropy_term(s, 1.0 / lam)

    law = p.reference(0.4)  # a generic Gaussian, not the start
    h = 0.3
    mean, cov = minimise_jko_over_gaussians(energy, law.mean.numpy(), law.cov.numpy(), h)
    exact = exact_jko_step(p, GaussianLaw(law.mean, law.cov), h)
    np.testing.assert_allclose(mean, exact.mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(cov, exact.cov.numpy(), atol=1e-6)
