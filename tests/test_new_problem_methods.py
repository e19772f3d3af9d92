"""The methods on the problems of issue 17 against their exact references: the moving-centre OU (time-dependent
target), the confined porous medium (confinement) and the McKean-Vlasov OU (interaction). Each short run is
compared with the problem's exact JKO iterates (Euler-Maruyama with the exact law of its own chain), and with the
iterates of the problem a method would solve if it ignored the new term, so that each test can tell them apart."""

from __future__ import annotations

import math

import pytest
import torch

from wgfbench import metrics
from wgfbench.methods.variational_jko.duals import pair_energy
from wgfbench.problems.gaussian import GaussianLaw, moment_fit
from wgfbench.problems.ou import exact_jko_step, quadratic_jko_step
from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)

VJKO = {"n_particles": 4000, "batch_size": 512, "iters_per_step": 40}
ICNN = {"batch_size": 256, "iters_per_step": 100, "pretrain_iters": 300, "pretrain_batch": 256, "pretrain_tol": 1e-4}
ICNN_SMALL = {**ICNN, "hidden_width": 32}


def run(method: str, problem, h: float, steps: int, params: dict):
    m = make_method(method, problem, h, params, seed=0)
    for _ in range(steps):
        m.step()
    return m


def fit_of(method, n: int = 20_000) -> GaussianLaw:
    return moment_fit(method.sample(n, torch.Generator().manual_seed(0)).double())


# --- moving centre: the potential frozen at each step's end ----------------------------------------------------
def start_frozen_iterates(problem, h: float, steps: int) -> GaussianLaw:
    """The JKO iterates with the centre frozen at each step's *start* (the nearest wrong choice)."""
    law = problem.initial()
    for k in range(steps):
        law = quadratic_jko_step(law, h, problem.beta, problem.A, problem.centre(k * h))
    return law


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("variational_jko", VJKO),
        pytest.param("jko_icnn_exact", ICNN_SMALL, marks=pytest.mark.slow),
        pytest.param("jko_icnn_cpflow_grad", ICNN_SMALL, marks=pytest.mark.slow),
    ],
)
def test_moving_centre_against_the_exact_time_dependent_jko_iterates(method: str, params: dict) -> None:
    h, steps = 0.05, 4
    problem = make_problem("ou_moving", 2, 0)
    fit = fit_of(run(method, problem, h, steps, params))
    ours = metrics.gaussian_symkl(fit, problem.jko_reference(steps, h))
    wrong = metrics.gaussian_symkl(fit, start_frozen_iterates(problem, h, steps))
    assert ours < 0.02 and ours < 0.1 * wrong, (ours, wrong)


def em_chain_law(problem, h: float, steps: int, substeps: int, at_end: bool = False) -> GaussianLaw:
    """The exact law of the Euler-Maruyama chain for the moving-centre OU: m <- m - dt A (m - b(t)),
    S <- (I - dt A) S (I - dt A) + 2 dt tau I, with t each EM step's start (or end)."""
    dt = h / substeps
    eye = torch.eye(problem.dim, dtype=torch.float64)
    m, s = problem.m0.clone(), problem.S0.clone()
    contraction = eye - dt * problem.A
    for j in range(steps * substeps):
        centre = problem.centre((j + 1) * dt if at_end else j * dt)
        m = m - dt * problem.A @ (m - centre)
        s = contraction @ s @ contraction.T + 2 * dt * problem.temperature * eye
    return GaussianLaw(m, s)


def test_euler_maruyama_follows_its_chain_on_the_moving_centre() -> None:
    h, steps, substeps, n = 0.05, 4, 2, 20_000
    problem = make_problem("ou_moving", 2, 0)
    method = run("em_particles", problem, h, steps, {"n_particles": n, "substeps": substeps})
    x = method.sample(n, torch.Generator().manual_seed(0)).double()
    exact, late = em_chain_law(problem, h, steps, substeps), em_chain_law(problem, h, steps, substeps, at_end=True)
    se = (exact.cov.diagonal() / n).sqrt()
    assert bool(((x.mean(0) - exact.mean).abs() < 5 * se).all()), (x.mean(0), exact.mean)
    assert float((exact.mean - late.mean).abs().max()) > 10 * float(se.max())  # the test tells start from end
    torch.testing.assert_close(torch.cov(x.T), exact.cov, atol=8 * math.sqrt(2 / n) * 0.25, rtol=0)


# --- confined porous medium -------------------------------------------------------------------------------------
VJKO_POROUS = {
    "map": "icnn",
    "icnn_layers": 1,
    "icnn_rank": 1,
    "n_particles": 8000,
    "batch_size": 1024,
    "iters_per_step": 60,
    "icnn_pretrain_iters": 200,
    "dual_width": 16,
    "dual_hidden": 2,
    "lr_t": 1e-3,
    "lr_dual": 1e-3,
}
ICNN_POROUS = {"batch_size": 256, "iters_per_step": 60, "pretrain_iters": 300, "pretrain_batch": 256}


@pytest.mark.parametrize(
    ("method", "params"),
    [
        pytest.param("variational_jko", VJKO_POROUS, marks=pytest.mark.slow),
        ("jko_icnn_exact", {**ICNN_POROUS, "hidden_width": 32, "pretrain_tol": 1e-4}),
    ],
)
def test_confined_porous_medium_against_the_exact_jko_iterates(method: str, params: dict) -> None:
    """Second moment and W2 of six steps (d = 2, m = 2, lambda = 10, h = 0.01) against the exact JKO iterate
    (a Barenblatt law), far from the free (unconfined) iterate's."""
    h, steps = 0.01, 6
    problem = make_problem("porous_confined", 2, 0)
    free = make_problem("barenblatt", 2, 0, {"m": problem.m, "t0": problem.t0}).jko_reference(steps, h)
    exact = problem.jko_reference(steps, h)
    x = run(method, problem, h, steps, params).sample(4000, torch.Generator().manual_seed(0)).double()
    second = float((x**2).sum(-1).mean())
    assert second == pytest.approx(exact.second_moment(), rel=0.08)
    assert abs(second - exact.second_moment()) < 0.15 * abs(free.second_moment() - exact.second_moment())
    gen = torch.Generator().manual_seed(1)
    w2 = metrics.w2_exact(exact, x[:1000], gen)
    assert w2 < 3 * metrics.noise_floor(metrics.w2_exact, exact, 1000, gen) + 0.02, w2
    assert w2 < 0.5 * metrics.w2_exact(free, x[:1000], gen)


# --- McKean-Vlasov: the interaction ------------------------------------------------------------------------------
def no_interaction_iterates(problem, h: float, steps: int) -> GaussianLaw:
    law = problem.initial()
    for _ in range(steps):
        law = quadratic_jko_step(law, h, problem.beta, problem.A, problem.b)
    return law


def test_pair_energy_is_unbiased_for_the_interaction_energy() -> None:
    """½ mean_i W(x_i - x_{i+1}) over a sample of N(m, S) against ½ E W(X - X') = kappa/2 tr S (2 kappa tr S / 4)."""
    problem = make_problem("mckean_vlasov", 3, 0, {"kappa": 1.5})
    law = GaussianLaw(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.diag(torch.tensor([0.5, 1.0, 2.0])))
    x = law.sample(400_000, torch.Generator().manual_seed(0))
    assert float(pair_energy(problem.interaction, x)) == pytest.approx(0.5 * 1.5 * 3.5, rel=0.01)


@pytest.mark.parametrize(
    ("method", "params"),
    [("variational_jko", VJKO), pytest.param("jko_icnn_exact", ICNN_SMALL, marks=pytest.mark.slow)],
)
def test_mckean_vlasov_against_the_exact_jko_iterates(method: str, params: dict) -> None:
    h, steps = 0.1, 5
    problem = make_problem("mckean_vlasov", 2, 0)
    fit = fit_of(run(method, problem, h, steps, params))
    ours = metrics.gaussian_symkl(fit, problem.jko_reference(steps, h))
    wrong = metrics.gaussian_symkl(fit, no_interaction_iterates(problem, h, steps))
    assert ours < 0.01 and ours < 0.05 * wrong, (ours, wrong)


@pytest.mark.parametrize(("n", "interaction_particles"), [(2000, 2000), (4000, 256)])
def test_euler_maruyama_mean_field_drift_follows_its_chain(n: int, interaction_particles: int) -> None:
    """The EM chain of the mean-field SDE: m <- m - dt A (m - b) (the interaction cancels in the mean),
    S <- (I - dt K) S (I - dt K) + 2 dt tau I with K = A + kappa I; the full particle set and a subsample (256) as
    the empirical law of the drift."""
    h, steps = 0.05, 8
    problem = make_problem("mckean_vlasov", 2, 0)
    params = {"n_particles": n, "interaction_particles": interaction_particles}
    x = run("em_particles", problem, h, steps, params).sample(n, torch.Generator().manual_seed(0)).double()
    eye = torch.eye(2, dtype=torch.float64)
    m, s, s_free = problem.m0.clone(), problem.S0.clone(), problem.S0.clone()
    for _ in range(steps):
        m = m - h * problem.A @ (m - problem.b)
        c, c_free = eye - h * problem.covariance_drift, eye - h * problem.A
        s = c @ s @ c.T + 2 * h * problem.temperature * eye
        s_free = c_free @ s_free @ c_free.T + 2 * h * problem.temperature * eye
    tol = 6 * math.sqrt(2 / n) * float(s.diagonal().max())
    torch.testing.assert_close(torch.cov(x.T), s, atol=tol, rtol=0)
    assert float((s - s_free).abs().max()) > 2 * tol  # the interaction is visible at this tolerance
    assert bool(((x.mean(0) - m).abs() < 6 * (s.diagonal() / n).sqrt() + 0.01).all())


@pytest.mark.parametrize("name", ["mckean_vlasov", "ou_moving"])
def test_exact_jko_row_is_the_problems_own_iterate(name: str) -> None:
    h, steps = 0.1, 3
    problem = make_problem(name, 2, 0)
    method = run("exact_jko", problem, h, steps, {})
    exact = problem.jko_reference(steps, h)
    torch.testing.assert_close(method.law.mean, exact.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(method.law.cov, exact.cov, rtol=0, atol=1e-12)
    if name == "mckean_vlasov":  # not the plain OU step of the same A, b
        law = problem.initial()
        for _ in range(steps):
            law = exact_jko_step(problem, law, h)
        assert float((law.cov - exact.cov).abs().max()) > 0.05
