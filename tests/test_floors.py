"""Floors against simulation: the closed-form SymKL and the Bures expansion on real samples and on exact
Wishart draws; the simulated floors' determinism, cache and fingerprints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wgfbench import metrics
from wgfbench.metrics import floors
from wgfbench.problems.barenblatt import BarenblattLaw
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import make_ou


def metric_on_exact_samples(metric, law: GaussianLaw, n: int, reps: int, seed: int) -> np.ndarray:
    """The suite's own metric on ``reps`` independent exact samples of size n (float64)."""
    gen = torch.Generator().manual_seed(seed)
    return np.array([metric(law, law.sample(n, gen)) for _ in range(reps)])


def wishart_cholesky(reps: int, d: int, dof: int, rng: np.random.Generator) -> torch.Tensor:
    """Bartlett decomposition: W = L L^T ~ Wishart_d(dof, I) with L_ii^2 ~ χ²_{dof-i}, L_ij ~ N(0, 1) for i > j."""
    low = np.tril(rng.standard_normal((reps, d, d)), -1)
    diag = np.sqrt(rng.chisquare(dof - np.arange(d), size=(reps, d)))
    return torch.from_numpy(low + np.einsum("ri,ij->rij", diag, np.eye(d)))


def symkl_floor_draws(reps: int, d: int, n: int, rng: np.random.Generator, chunk: int = 4000) -> np.ndarray:
    """Exact draws of SymKL(moment fit, N(0, I)) without the n samples: x̄ = z/√n, (n-1) cov_hat = L L^T."""
    out = []
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        nu = n - 1
        low = wishart_cholesky(r, d, nu, rng)
        low_inv = torch.linalg.solve_triangular(low, torch.eye(d, dtype=torch.float64).expand(r, d, d), upper=False)
        xbar = torch.from_numpy(rng.standard_normal((r, d))) / math.sqrt(n)
        y = torch.einsum("rij,rj->ri", low_inv, xbar)  # xbar^T W^{-1} xbar = |L^{-1} xbar|^2
        two_k = (
            (low**2).sum((1, 2)) / nu + nu * (low_inv**2).sum((1, 2)) - 2 * d + (xbar**2).sum(1) + nu * (y**2).sum(1)
        )
        out.append(0.5 * two_k.numpy())
    return np.concatenate(out)


def assert_mean_sd(sim: np.ndarray, mean: float, sd: float, z: float = 4.0) -> None:
    """Simulated mean and sd agree with the formulas within z standard errors of the simulation."""
    r = len(sim)
    se_mean = sim.std(ddof=1) / math.sqrt(r)
    kurt = float(((sim - sim.mean()) ** 4).mean() / sim.var() ** 2)
    se_sd = sim.std(ddof=1) * math.sqrt(max(kurt - 1.0, 0.5) / (4 * r))  # delta method for the sample sd
    assert abs(sim.mean() - mean) < z * se_mean, (sim.mean(), mean, se_mean)
    assert abs(sim.std(ddof=1) - sd) < z * se_sd, (sim.std(ddof=1), sd, se_sd)


# --- moment-fit SymKL -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("d", "n", "reps"), [(2, 500, 3000), (2, 5000, 3000), (8, 500, 1500), (8, 5000, 1000),
                                                (32, 500, 400), (32, 5000, 300)])  # fmt: skip
def test_symkl_floor_mean_and_sd_match_the_metric_on_exact_samples(d: int, n: int, reps: int) -> None:
    """The suite's symkl_moment on exact samples of a non-isotropic OU law (affine invariance is part of the claim)."""
    law = make_ou(d, 3).reference(0.5)
    sim = metric_on_exact_samples(metrics.symkl_moment, law, n, reps, seed=d * 7919 + n)
    mean, var = floors.symkl_moment_floor_moments(d, n)
    assert_mean_sd(sim, mean, math.sqrt(var))


def test_symkl_floor_simulation_rejects_the_leading_order_formula() -> None:
    """The test has power: at d = 32, n = 500 the leading-order p/n (p = d(d+3)/2) is 7% low and is rejected."""
    d, n = 32, 500
    sim = symkl_floor_draws(20_000, d, n, np.random.default_rng(5))
    mean, var = floors.symkl_moment_floor_moments(d, n)
    se = sim.std(ddof=1) / math.sqrt(len(sim))
    p = d * (d + 3) / 2
    assert abs(sim.mean() - mean) < 4 * se
    assert abs(sim.mean() - p / n) > 20 * se
    assert abs(sim.std(ddof=1) - math.sqrt(var)) < 0.02 * math.sqrt(var)
    assert abs(sim.std(ddof=1) - math.sqrt(2 * p) / n) > 0.1 * math.sqrt(var)


def test_wishart_draws_match_exact_samples() -> None:
    """The Bartlett shortcut used for the quantile tests has the law of the metric on real samples (d = 3, n = 30)."""
    d, n = 3, 30
    real = metric_on_exact_samples(metrics.symkl_moment, make_ou(d, 0).reference(0.2), n, 4000, seed=1)
    fast = symkl_floor_draws(40_000, d, n, np.random.default_rng(2))
    from scipy.stats import ks_2samp

    assert ks_2samp(real, fast).pvalue > 1e-3
    # and it can tell a wrong law apart: the same draws with n off by 10%
    assert ks_2samp(real, symkl_floor_draws(40_000, d, 33, np.random.default_rng(3))).pvalue < 1e-3


@pytest.mark.parametrize(("d", "n", "reps"), [(2, 1000, 20_000), (8, 500_000, 20_000), (64, 1000, 5_000)])
def test_symkl_floor_gamma_quantile_matches_simulation(d: int, n: int, reps: int) -> None:
    """Within 2% (the simulated q95's standard error: 0.8% at d = 2, 0.15% at d = 64)."""
    sim = symkl_floor_draws(reps, d, n, np.random.default_rng(d + n))
    q_sim = float(np.quantile(sim, 0.95))
    assert floors.symkl_moment_floor(d, n).q95 == pytest.approx(q_sim, rel=0.02)


@pytest.mark.slow
def test_symkl_floor_gamma_quantile_on_the_suite_grid() -> None:
    """d in 2..64, n in 1e3..5e5: the Gamma q95 within 1.5% of the simulated one (its own 95% CI is < 1.1% wide)."""
    rng = np.random.default_rng(11)
    for d in (2, 4, 8, 16, 32, 64):
        for n in (1_000, 10_000, 100_000, 500_000):
            q_sim = float(np.quantile(symkl_floor_draws(30_000, d, n, rng), 0.95))
            assert floors.symkl_moment_floor(d, n).q95 == pytest.approx(q_sim, rel=0.015), (d, n)


def test_symkl_floor_refuses_too_few_samples_and_shrinks_like_one_over_n() -> None:
    with pytest.raises(ValueError, match="n > d"):
        floors.symkl_moment_floor(8, 12)
    a, b = floors.symkl_moment_floor(4, 10_000), floors.symkl_moment_floor(4, 100_000)
    assert a.mean / b.mean == pytest.approx(10.0, rel=1e-3) and a.method == "closed_form"
    assert a.q95 > a.mean + a.sd


def test_smallest_resolving_n_is_the_first_n_whose_q95_is_a_decade_below() -> None:
    n = floors.smallest_resolving_n(4, 1e-3, decades=1.0)
    assert floors.symkl_moment_floor(4, n).q95 <= 1e-4 < floors.symkl_moment_floor(4, n - 1).q95


def test_unbiased_symkl_is_unbiased_where_the_raw_value_is_not() -> None:
    """n = 40 samples of Q = N(μ, Σ) ≠ P in d = 4: the raw moment-fit SymKL is biased by ~ the floor mean."""
    p_law = make_ou(4, 1).reference(0.4)
    q_law = GaussianLaw(p_law.mean + 0.3, 1.3 * p_law.cov)
    exact = metrics.gaussian_symkl(q_law, p_law)
    gen = torch.Generator().manual_seed(0)
    raw, unbiased = [], []
    for _ in range(4000):
        x = q_law.sample(40, gen)
        raw.append(metrics.symkl_moment(p_law, x))
        unbiased.append(floors.symkl_moment_unbiased(p_law, x))
    raw, unbiased = np.array(raw), np.array(unbiased)
    se = unbiased.std() / math.sqrt(len(unbiased))
    assert abs(unbiased.mean() - exact) < 4 * se, (unbiased.mean(), exact, se)
    assert raw.mean() - exact > 10 * raw.std() / math.sqrt(len(raw))
    # and zero in expectation at Q = P
    zero = [floors.symkl_moment_unbiased(p_law, p_law.sample(40, gen)) for _ in range(4000)]
    assert abs(np.mean(zero)) < 4 * np.std(zero) / math.sqrt(len(zero))


# --- moment-fit Bures W2 --------------------------------------------------------------------------------------------
def bures_draws(reps: int, cov: torch.Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact draws of W2^2(moment fit, N(0, S)) from Wishart draws (independent of the expansion's algebra)."""
    lam, _ = torch.linalg.eigh(cov)
    d, nu = cov.shape[0], n - 1
    low = wishart_cholesky(reps, d, nu, rng)
    root = torch.diag(lam.sqrt())
    fit = root @ (low @ low.transpose(1, 2) / nu) @ root  # cov_hat in S's eigenbasis
    inner = root @ fit @ root
    cross = torch.linalg.eigvalsh(0.5 * (inner + inner.transpose(1, 2))).clamp_min(0).sqrt().sum(1)
    bures_sq = fit.diagonal(dim1=1, dim2=2).sum(1) + lam.sum() - 2 * cross
    mean_sq = (torch.from_numpy(rng.standard_normal((reps, d))) ** 2 * lam).sum(1) / n
    return (bures_sq + mean_sq).clamp_min(0).numpy()


def ill_conditioned_cov(d: int) -> torch.Tensor:
    return make_ou(d, 0, generator="legacy_make_spd").stationary().cov


@pytest.mark.parametrize("spectrum", ["ou", "ill_conditioned"])
@pytest.mark.parametrize(("d", "n"), [(2, 500), (2, 5000), (8, 500), (8, 5000), (32, 500), (32, 5000)])
def test_bures_expansion_matches_simulation_to_the_stated_order(d: int, n: int, spectrum: str) -> None:
    """Mean and sd of W2^2, mean, sd and q95 of W2: relative error <= 0.25 d/n plus 4 simulation standard errors.

    (Measured on OU covariances: the mean of W2^2 is low by ~0.12 d/n, e.g. -1.6% at d = 64, n = 500.)
    """
    cov = make_ou(d, 2).reference(0.5).cov if spectrum == "ou" else ill_conditioned_cov(d)
    reps = 20_000 if d < 32 else 4_000
    sq = bures_draws(reps, cov, n, np.random.default_rng(d * n))
    w2 = np.sqrt(sq)
    mean_sq, var_sq = floors.bures_w2sq_moment_floor_moments(cov, n)
    floor = floors.bures_w2_moment_floor(cov, n)
    tol = 0.25 * d / n
    for sim, predicted in ((sq, mean_sq), (w2, floor.mean)):
        se = sim.std() / math.sqrt(reps) / sim.mean()
        assert abs(predicted / sim.mean() - 1) < tol + 4 * se, (predicted, sim.mean())
    for sim, predicted in ((sq, math.sqrt(var_sq)), (w2, floor.sd)):
        assert abs(predicted / sim.std() - 1) < tol + 4 / math.sqrt(2 * reps) * 2, (predicted, sim.std())
    assert abs(floor.q95 / np.quantile(w2, 0.95) - 1) < tol + 0.01
    assert floor.method == "expansion"


def test_bures_expansion_depends_on_the_spectrum_and_the_metric_agrees() -> None:
    """The suite's bures_w2_moment on real samples of an ill-conditioned law (d = 8, condition number ~ 80) follows
    the expansion for that spectrum, and not the one for the isotropic law of the same trace (the test can fail)."""
    d, n = 8, 2000
    cov = ill_conditioned_cov(d)
    law = GaussianLaw(torch.zeros(d, dtype=torch.float64), cov)
    sim = metric_on_exact_samples(metrics.bures_w2_moment, law, n, 1500, seed=4) ** 2
    mean_sq, _ = floors.bures_w2sq_moment_floor_moments(cov, n)
    iso_sq, _ = floors.bures_w2sq_moment_floor_moments(torch.eye(d, dtype=torch.float64) * cov.trace() / d, n)
    se = sim.std() / math.sqrt(len(sim))
    assert abs(sim.mean() - mean_sq) < 4 * se + 0.25 * d / n * mean_sq
    assert abs(sim.mean() - iso_sq) > 10 * se


def test_sqrt_weighted_chi2_mean_equals_the_chi_mean_for_equal_weights() -> None:
    """E √(w χ²_k) = √(2w) Γ((k+1)/2) / Γ(k/2)."""
    for k, w in ((1, 1.0), (5, 0.3), (200, 1e-4)):
        exact = math.sqrt(2 * w) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))
        assert floors.sqrt_weighted_chi2_mean(np.full(k, w)) == pytest.approx(exact, rel=1e-7)


# --- other closed laws ------------------------------------------------------------------------------------------------
def test_standard_error_floor_is_the_one_sided_normal_quantile_and_mc_symkl_of_the_exact_density_is_zero() -> None:
    f = floors.standard_error_floor(0.01)
    assert (f.mean, f.sd) == (0.0, 0.01) and f.q95 == pytest.approx(0.016449, rel=1e-4)
    law = make_ou(3, 0).reference(0.3)
    gen = torch.Generator().manual_seed(0)
    x = law.sample(500, gen)
    value, se = metrics.mc_symkl(law, x, law.log_density(x), law.log_density, gen)
    assert value == 0.0 and se == 0.0  # why MC SymKL gets no simulated floor


def test_floor_columns() -> None:
    cols = floors.symkl_moment_floor(2, 1000).columns("symkl_moment")
    assert set(cols) == {"symkl_moment_floor_mean", "symkl_moment_floor_sd", "symkl_moment_floor_q95"}


# --- simulated floors ------------------------------------------------------------------------------------------------
def test_simulated_floor_of_the_moment_symkl_agrees_with_the_closed_form() -> None:
    """The simulation machinery against the closed form it must reproduce (d = 4, n = 200, R = 400)."""
    law = make_ou(4, 0).reference(0.5)
    sim = floors.sample_metric_floor("symkl_moment", metrics.symkl_moment, law, 200, n_reps=400, seed=1)
    exact = floors.symkl_moment_floor(4, 200)
    assert sim.method == "simulated" and sim.n_reps == 400 and len(sim.values) == 400
    assert abs(sim.mean - exact.mean) < 4 * exact.sd / math.sqrt(400)
    assert sim.sd == pytest.approx(exact.sd, rel=0.15)
    assert sim.q95 == pytest.approx(exact.q95, rel=0.1)


def test_simulated_floor_is_deterministic_cached_in_memory_and_on_disk(tmp_path) -> None:
    law = make_ou(2, 0).reference(0.5)
    calls = []

    def draw(gen: torch.Generator) -> float:
        calls.append(1)
        return metrics.noise_floor(metrics.sliced_w2, law, 100, gen)

    cache = floors.FloorCache(tmp_path)
    a = floors.simulated_floor("sw2", law, 100, draw, seed=3, cache=cache, params={"n_projections": 256})
    assert len(calls) == 20
    b = floors.simulated_floor("sw2", law, 100, draw, seed=3, cache=cache, params={"n_projections": 256})
    assert len(calls) == 20 and a == b  # memory hit
    fresh = floors.simulated_floor("sw2", law, 100, draw, seed=3, cache=floors.FloorCache(tmp_path),
                                   params={"n_projections": 256})  # fmt: skip
    assert len(calls) == 20 and fresh == a  # disk hit
    uncached = floors.simulated_floor("sw2", law, 100, draw, seed=3, params={"n_projections": 256})
    assert len(calls) == 40 and uncached == a  # deterministic without any cache
    other_seed = floors.simulated_floor("sw2", law, 100, draw, seed=4)
    assert other_seed.values != a.values
    (path,) = tmp_path.glob("*.json")
    stored = json.loads(path.read_text())  # numbers and the key's strings only
    assert stored["values"] == list(a.values) and all(isinstance(v, float) for v in stored["values"])
    assert stored["key"]["law"] == floors.law_fingerprint(law) and stored["key"]["n"] == 100


def test_more_repetitions_extend_the_same_draws_and_too_few_are_refused() -> None:
    law = make_ou(2, 0).reference(0.5)
    twenty = floors.sample_metric_floor("energy", metrics.energy_distance, law, 50, n_reps=20)
    forty = floors.sample_metric_floor("energy", metrics.energy_distance, law, 50, n_reps=40)
    assert forty.values[:20] == twenty.values
    with pytest.raises(ValueError, match="at least 20"):
        floors.sample_metric_floor("energy", metrics.energy_distance, law, 50, n_reps=10)


def test_fingerprint_changes_with_the_law() -> None:
    law = make_ou(3, 0).reference(0.5)
    moved = GaussianLaw(law.mean.clone(), law.cov.clone())
    assert floors.law_fingerprint(moved) == floors.law_fingerprint(law)
    cov = law.cov.clone()
    cov[0, 1] += 1e-9
    cov[1, 0] += 1e-9
    assert floors.law_fingerprint(GaussianLaw(law.mean, cov)) != floors.law_fingerprint(law)
    assert floors.law_fingerprint(make_ou(3, 0).reference(0.6)) != floors.law_fingerprint(law)
    b = BarenblattLaw(dim=2, m=2.0, radius=0.5)
    assert floors.law_fingerprint(b) != floors.law_fingerprint(BarenblattLaw(dim=2, m=2.0, radius=0.51))
    assert floors.law_fingerprint(b) != floors.law_fingerprint(BarenblattLaw(dim=2, m=3.0, radius=0.5))
    with pytest.raises(TypeError):
        floors.law_fingerprint(object())


def test_kde_and_statistic_floors_run_and_see_the_kde_bias() -> None:
    """KDE SymKL has a positive bias at zero error (its floor mean > 0); a statistic of the samples alone (as KSD is;
    here the squared error of the sample mean, whose floor mean tr(S)/n is known) gets its floor from exact draws."""
    law = make_ou(2, 0).reference(0.5)
    kde = floors.kde_symkl_floor(law, 300)
    assert kde.mean > 0 and kde.n_reps == 20
    stat = floors.statistic_floor("sq_mean_err", lambda x: float(((x.mean(0) - law.mean) ** 2).sum()), law, 400)
    # E |x̄ - m|^2 = tr(S)/n exactly
    assert abs(stat.mean - float(law.cov.trace()) / 400) < 4 * stat.sd / math.sqrt(20)


def test_weighted_chi2_quantile_is_exact_where_the_law_is_known() -> None:
    from scipy import integrate, optimize
    from scipy.stats import chi2

    for k in (5, 14, 44, 2144):  # equal weights: χ²_k (the floor's smallest and largest weight counts, d = 2 and 64)
        assert floors.weighted_chi2_quantile(np.full(k, 0.3)) == pytest.approx(0.3 * chi2.ppf(0.95, k), rel=1e-7)

    def two_weight_sf(x: float) -> float:  # P(10 a + 5 b > x), a, b ~ χ²_1, by one-dimensional quadrature
        inner = integrate.quad(lambda a: chi2.pdf(a, 1) * chi2.sf((x - 10 * a) / 5, 1), 0, x / 10, limit=200)[0]
        return inner + chi2.sf(x / 10, 1)

    exact = optimize.brentq(lambda x: two_weight_sf(x) - 0.05, 15, 200)
    assert floors.weighted_chi2_quantile(np.array([10.0, 5.0, 1e-9, 1e-9, 1e-9])) == pytest.approx(exact, rel=1e-5)
    # the Gamma law with the same mean and variance is not: it is 0.8% high here
    assert floors.gamma_quantile(15.0, 2 * 125.0) / exact - 1 > 0.005
