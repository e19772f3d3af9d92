"""Gaussian-mixture sampling problem: target law closed forms, KSD, extra metrics, and a short variational JKO run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as td

from wgfbench import metrics
from wgfbench.evaluate import EvalSpec, Evaluator, evaluate_step
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.gmm import GaussianMixtureLaw, fan_bound, make_gmm, mokrov_n_centers
from wgfbench.registry import make_method, make_problem


def torch_mixture(law: GaussianMixtureLaw) -> td.MixtureSameFamily:
    """The same mixture through torch.distributions (an independent implementation)."""
    comp = td.Independent(td.Normal(law.means, law.stds[:, None].expand_as(law.means)), 1)
    return td.MixtureSameFamily(td.Categorical(probs=law.weights), comp)


# --- instances -------------------------------------------------------------------------------------------
def test_generators_follow_the_papers_protocols() -> None:
    for d, b in [(2, 5.0), (8, 5.0), (17, 3.0), (32, 3.0), (64, 2.0), (128, 1.5)]:
        p = make_gmm(d, 0, "fan")
        assert fan_bound(d) == b and p.target().n_components == 10
        assert float(p.target().means.abs().max()) <= b
    for d, k in [(2, 5), (4, 6), (6, 7), (8, 8), (10, 9), (12, 10)]:  # Mokrov's configs
        p = make_gmm(d, 0, "mokrov")
        assert mokrov_n_centers(d) == k and p.target().n_components == k
        assert float(p.target().means.abs().max()) <= 5.0
    p = make_gmm(3, 1, "mokrov")
    torch.testing.assert_close(p.initial().cov, 16.0 * torch.eye(3, dtype=torch.float64))
    assert p.jko_reference(3, 0.1) is None
    assert p.reference(0.0) is p.reference(2.5) is p.target()  # stationary target at every t


def test_instance_is_a_pure_function_of_dim_seed_generator() -> None:
    a, b = make_gmm(4, 3, "fan"), make_gmm(4, 3, "fan")
    torch.testing.assert_close(a.target().means, b.target().means, rtol=0, atol=0)
    assert Evaluator(a, EvalSpec()).ksd_beta() == Evaluator(b, EvalSpec()).ksd_beta()
    assert not torch.equal(a.target().means, make_gmm(4, 4, "fan").target().means)
    assert make_problem("gmm", 4, 3, {"generator": "fan"}).describe() == a.describe()


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown mixture generator"):
        make_gmm(2, 0, "cube")
    with pytest.raises(ValueError):
        make_gmm(0, 0)
    with pytest.raises(ValueError):
        make_gmm(2, 0, std=0.0)


# --- the target law ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dim", "generator"), [(3, "fan"), (4, "mokrov")])
def test_sampler_matches_closed_form_moments(dim: int, generator: str) -> None:
    law = make_gmm(dim, 2, generator).target()
    n = 400_000
    x = law.sample(n, torch.Generator().manual_seed(0))
    mean, cov = law.mean(), law.cov()
    # MC tolerance: 5 standard errors of each entry (var of X_i X_j bounded by the 4th moments)
    se_mean = (cov.diagonal() / n).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 5 * se_mean).all())
    xc = x - mean
    emp = xc.T @ xc / n
    se_cov = ((xc[:, :, None] * xc[:, None, :]).var(0) / n).sqrt()
    assert bool(((emp - cov).abs() < 5 * se_cov + 1e-12).all())
    # closed-form moments against torch.distributions' own
    ref = torch_mixture(law)
    torch.testing.assert_close(mean, ref.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cov.diagonal(), ref.variance, rtol=1e-12, atol=1e-12)


def test_log_density_normalised_in_1d_by_quadrature() -> None:
    law = make_gmm(1, 0, "fan").target()
    grid = torch.linspace(-20, 20, 200_001, dtype=torch.float64)[:, None]
    mass = torch.trapezoid(law.log_density(grid).exp(), grid[:, 0])
    assert abs(float(mass) - 1.0) < 1e-9


def test_log_density_normalised_in_2d_by_monte_carlo() -> None:
    """E_g[q(X)/g(X)] = 1 for a wide Gaussian proposal g covering the mixture."""
    law = make_gmm(2, 1, "mokrov").target()
    g = GaussianLaw(torch.zeros(2, dtype=torch.float64), 36.0 * torch.eye(2, dtype=torch.float64))
    x = g.sample(400_000, torch.Generator().manual_seed(1))
    w = (law.log_density(x) - g.log_density(x)).exp()
    se = float(w.std() / math.sqrt(len(w)))
    assert abs(float(w.mean()) - 1.0) < 5 * se
    assert se < 0.01


def test_log_density_equals_torch_distributions_in_any_dtype() -> None:
    p = make_gmm(5, 0, "fan")
    x = p.target().sample(1000, torch.Generator().manual_seed(2)) * 1.5
    torch.testing.assert_close(p.target().log_density(x), torch_mixture(p.target()).log_prob(x), rtol=1e-12, atol=1e-10)
    lt32 = p.log_target(x.float())
    assert lt32.dtype == torch.float32
    torch.testing.assert_close(lt32.double(), p.target().log_density(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_score_equals_autograd(dtype: torch.dtype) -> None:
    p = make_gmm(6, 3, "mokrov")
    x = (p.initial().sample(500, torch.Generator().manual_seed(3))).to(dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(p.target().score(x), p.score(x), **tol)


# --- kernel Stein discrepancy ----------------------------------------------------------------------------------
def test_stein_kernel_matches_its_definition_by_autograd() -> None:
    """u(x,y) = s(x)^T s(y) k + s(x)^T grad_y k + s(y)^T grad_x k + tr(grad_x grad_y k), derivatives by autograd."""
    p = make_gmm(3, 0, "fan")
    x = p.initial().sample(6, torch.Generator().manual_seed(4))
    beta = 0.3
    s = p.target().score(x)
    u = metrics.stein_kernel_matrix(x, s, beta)

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-beta * ((a - b) ** 2).sum())

    for i in range(3):
        for j in range(3):
            gx, gy = torch.autograd.functional.jacobian(k, (x[i], x[j]))
            hess = torch.autograd.functional.hessian(k, (x[i], x[j]))[0][1]  # d^2 k / dx dy
            expected = s[i] @ s[j] * k(x[i], x[j]) + s[i] @ gy + s[j] @ gx + torch.trace(hess)
            torch.testing.assert_close(u[i, j], expected, rtol=1e-10, atol=1e-12)


def test_ksd_vanishes_on_exact_samples_and_is_positive_for_a_wrong_law() -> None:
    p = make_gmm(2, 0, "fan")
    gen = torch.Generator().manual_seed(5)
    x = p.target().sample(10_000, gen)
    s = p.score(x)
    ev = Evaluator(p, EvalSpec())
    batches = torch.tensor(
        [metrics.ksd_u_statistic(x[i : i + 1000], s[i : i + 1000], ev.ksd_beta()) for i in range(0, 10_000, 1000)]
    )
    se = float(batches.std() / math.sqrt(len(batches)))
    exact = ev.ksd(x)
    assert exact == pytest.approx(float(batches.mean()), abs=1e-9)  # closed-form vs autograd score: round-off
    assert abs(exact) < 4 * se  # unbiased: zero within its sampling error
    wrong = ev.ksd(x + 0.5)  # every mode shifted by 0.5
    start = ev.ksd(p.initial().sample(10_000, gen))
    assert wrong > 50 * se and start > 50 * se
    assert start > wrong  # P_0 = N(0, 16 I) is further away than a small shift


def test_median_heuristic_beta() -> None:
    x = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    # |X - X'|^2 / 2 ~ chi^2_2 for standard Gaussians: median distance sqrt(2 * 2 ln 2)
    assert metrics.median_heuristic_beta(x) == pytest.approx(1.0 / (2 * 4 * math.log(2)), rel=0.03)
    with pytest.raises(ValueError):
        metrics.median_heuristic_beta(x[:1])


# --- target metrics and the evaluation ------------------------------------------------------------------------------
def test_target_metrics_and_their_floors() -> None:
    p = make_gmm(3, 0, "mokrov")
    gen = torch.Generator().manual_seed(7)
    ev = Evaluator(p, EvalSpec())
    good = ev.target_metrics(p.target().sample(4000, gen), gen)
    bad = ev.target_metrics(p.initial().sample(4000, gen), gen)
    assert set(good) == {
        f"{m}{part}" for m in ("ksd", "symkl_moment_target") for part in ("", "_floor", "_floor_sd", "_floor_q95")
    }
    assert good["symkl_moment_target"] < 5 * good["symkl_moment_target_floor"] + 1e-3
    assert bad["symkl_moment_target"] > 100 * bad["symkl_moment_target_floor"]
    assert bad["ksd"] > 100 * abs(bad["ksd_floor"])
    # moment fit is blind beyond two moments: a Gaussian with the target's moments scores ~0 on it
    fit = p.target().moment_law().sample(4000, gen)
    blind = ev.target_metrics(fit, gen)
    assert blind["symkl_moment_target"] < 10 * blind["symkl_moment_target_floor"] + 1e-3
    assert blind["ksd"] > 20 * abs(blind["ksd_floor"])  # ... the KSD is not


def test_evaluation_of_a_mixture_run_has_every_metric() -> None:
    p = make_gmm(2, 0, "fan")
    method = make_method("identity", p, 0.1, {"device": "cpu"}, seed=0)
    row = evaluate_step(p, method, 0, 0.1, EvalSpec(n_samples=2000, n_w2=200, n_mc=1000), run_seed=0)
    for key in (
        "w2",
        "w2_floor",
        "sw2",
        "energy",
        "energy_floor",
        "symkl_mc",
        "ksd",
        "ksd_floor",
        "symkl_moment_target",
    ):
        assert key in row and math.isfinite(row[key]), key
    assert "symkl_moment" not in row and "w2_vs_jko" not in row  # no Gaussian reference, no exact JKO iterate
    assert row["w2"] > 2 * row["w2_floor"]  # plug-in W2 of 200 mixture samples has a large floor


def test_variational_jko_smooth_ratio_reduces_ksd() -> None:
    """Fan et al.'s GMM variant (bounded 'smooth' ratio, final PReLU on T) on a 2-d mixture, tiny budget."""
    torch.set_num_threads(1)
    p = make_gmm(2, 0, "fan")
    params = dict(
        n_particles=4000,
        batch_size=256,
        iters_per_step=40,
        ratio="smooth",
        gamma0_var=4.0,
        t_final_prelu=True,
        t_dropout=0.04,
        t_width=32,
        dual_width=32,
        dual_hidden=2,
        t_steps=2,
        device="cpu",
    )
    method = make_method("variational_jko", p, 0.1, params, seed=0)
    gen = torch.Generator().manual_seed(8)
    ev = Evaluator(p, EvalSpec())
    ksd0 = ev.ksd(method.sample(2000, gen))
    for _ in range(5):
        method.step()
    ksd5 = ev.ksd(method.sample(2000, gen))
    floor = abs(ev.ksd(p.target().sample(2000, gen)))
    assert ksd5 < 0.7 * ksd0
    assert ksd5 > floor  # still far from converged after t = 0.5: the test checks progress, not convergence
