"""Metrics against hand-computed cases, POT, and each other; noise floors shrink with n."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from wgfbench import metrics
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import make_ou


def g(mean, cov) -> GaussianLaw:
    return GaussianLaw(torch.tensor(mean, dtype=torch.float64), torch.tensor(cov, dtype=torch.float64))


def test_symkl_one_dimensional_by_hand() -> None:
    # KL(N(0,1)||N(1,2)) = ½[1/2 + 1/2 - 1 + ln 2];  KL(N(1,2)||N(0,1)) = ½[2 + 1 - 1 - ln 2]
    p, q = g([0.0], [[1.0]]), g([1.0], [[2.0]])
    kl_pq = 0.5 * (0.5 + 0.5 - 1 + math.log(2))
    kl_qp = 0.5 * (2 + 1 - 1 - math.log(2))
    assert metrics.gaussian_kl(p, q) == pytest.approx(kl_pq, rel=1e-12)
    assert metrics.gaussian_kl(q, p) == pytest.approx(kl_qp, rel=1e-12)
    assert metrics.gaussian_symkl(p, q) == pytest.approx(kl_pq + kl_qp, rel=1e-12)


def test_symkl_is_symmetric_sum_of_kls_in_d5() -> None:
    p, q = make_ou(5, 0).reference(0.2), make_ou(5, 1).reference(0.7)
    assert metrics.gaussian_symkl(p, q) == pytest.approx(
        metrics.gaussian_kl(p, q) + metrics.gaussian_kl(q, p), rel=1e-10
    )
    assert metrics.gaussian_symkl(p, p) == pytest.approx(0.0, abs=1e-12)


def test_bures_commuting_case_by_hand() -> None:
    # diagonal covariances: W2^2 = |dm|^2 + sum (sqrt(a) - sqrt(b))^2
    p, q = g([0.0, 1.0], [[4.0, 0], [0, 1.0]]), g([1.0, 1.0], [[1.0, 0], [0, 9.0]])
    expected = math.sqrt(1.0 + (2 - 1) ** 2 + (1 - 3) ** 2)
    assert metrics.bures_w2(p, q) == pytest.approx(expected, rel=1e-12)


def test_bures_matches_pot() -> None:
    p, q = make_ou(6, 0).reference(0.3), make_ou(6, 3).reference(1.1)
    pot = ot.gaussian.bures_wasserstein_distance(p.mean.numpy(), q.mean.numpy(), p.cov.numpy(), q.cov.numpy())
    assert metrics.bures_w2(p, q) == pytest.approx(float(pot), rel=1e-8)


def test_w2_emd_equals_sorted_matching_in_one_dimension() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(300, 1, generator=gen, dtype=torch.float64),
        2 + torch.rand(300, 1, generator=gen, dtype=torch.float64),
    )
    exact = float(((torch.sort(x[:, 0]).values - torch.sort(y[:, 0]).values) ** 2).mean().sqrt())
    assert metrics.w2_emd(x, y) == pytest.approx(exact, rel=1e-9)
    # sliced W2 in 1-d is the same number (every direction is ±e_1)
    assert metrics.sliced_w2_between(x, y) == pytest.approx(exact, rel=1e-9)


def test_w2_emd_raises_when_solver_stops_early() -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 3, generator=gen), torch.randn(200, 3, generator=gen)
    with pytest.raises(metrics.MetricError, match="optimum"):
        metrics.w2_emd(x, y, num_iter_max=5)


def test_moment_fit_metrics_vanish_on_the_reference_moments() -> None:
    ref = make_ou(3, 0).reference(0.5)
    gen = torch.Generator().manual_seed(0)
    x = ref.sample(200_000, gen)
    assert metrics.symkl_moment(ref, x) < 1e-3
    assert metrics.bures_w2_moment(ref, x) < 1e-2


@pytest.mark.parametrize(
    "metric",
    [metrics.symkl_moment, metrics.bures_w2_moment, metrics.w2_exact, metrics.sliced_w2, metrics.energy_distance],
)
def test_noise_floor_shrinks_with_n(metric) -> None:
    ref = make_ou(4, 0).reference(0.3)
    gen = torch.Generator().manual_seed(0)

    def floor(n: int) -> float:
        return float(np.mean([abs(metrics.noise_floor(metric, ref, n, gen)) for _ in range(4)]))

    small, large = floor(100), floor(1600)
    assert large < 0.6 * small, (small, large)


def test_metrics_detect_a_wrong_law() -> None:
    """A shifted law scores far above the noise floor for every metric (they can fail)."""
    ref = make_ou(2, 0).reference(0.3)
    wrong = GaussianLaw(ref.mean + 0.5, ref.cov)
    gen = torch.Generator().manual_seed(2)
    x = wrong.sample(1000, gen)
    for metric in (metrics.symkl_moment, metrics.w2_exact, metrics.sliced_w2, metrics.energy_distance):
        assert metric(ref, x, gen) > 3 * abs(metrics.noise_floor(metric, ref, 1000, gen)), metric.__name__


def test_mc_symkl_matches_closed_form() -> None:
    p, q = make_ou(3, 0).reference(0.1), make_ou(3, 0).reference(0.6)
    gen = torch.Generator().manual_seed(0)
    x = p.sample(50_000, gen)
    value, se = metrics.mc_symkl(q, x, p.log_density(x), p.log_density, gen)
    exact = metrics.gaussian_symkl(p, q)
    assert abs(value - exact) < 4 * se + 1e-6
    assert se < 0.1 * exact


def test_gaussian_log_density_matches_torch_distributions() -> None:
    law = make_ou(4, 2).reference(0.4)
    x = law.sample(10, torch.Generator().manual_seed(0))
    ref = torch.distributions.MultivariateNormal(law.mean, law.cov).log_prob(x)
    torch.testing.assert_close(law.log_density(x), ref, rtol=1e-10, atol=1e-10)


def test_kde_symkl_small_for_exact_samples_large_for_wrong_law_refused_above_d3() -> None:
    ref = make_ou(2, 0).reference(0.3)
    gen = torch.Generator().manual_seed(0)
    exact, _ = metrics.kde_symkl(ref, ref.sample(2000, gen), gen)
    wrong, _ = metrics.kde_symkl(ref, GaussianLaw(ref.mean + 1.0, ref.cov).sample(2000, gen), gen)
    assert exact < 0.05 and wrong > 1.0, (exact, wrong)
    with pytest.raises(ValueError, match="d <= 3"):
        metrics.kde_symkl(make_ou(4, 0).reference(0.3), torch.zeros(10, 4), gen)
