"""Baselines: JKO-ICNN objectives and log-det gradients, Euler-Maruyama law, exact JKO oracle, identity."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from wgfbench_baselines.jko_icnn import MOKROV_GMM_PARAMS, MOKROV_OU_PARAMS, JKOICNNConfig

from wgfbench.methods.base import build_config
from wgfbench.metrics import bures_w2, gaussian_symkl
from wgfbench.problems.gaussian import GaussianLaw, moment_fit
from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)
F64 = torch.float64
ICNN_SMALL = {
    "hidden_width": 16,
    "rank": 3,
    "batch_size": 64,
    "iters_per_step": 1,
    "n_particles": 64,
    "dtype": "float64",
}


def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)]
    )


def _brute_force_grad_and_hessian(net, x):
    """grad psi and d separate backward passes for the Hessian rows."""
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(xr).sum(), xr, create_graph=True)
    rows = [torch.autograd.grad(g[:, i].sum(), xr, create_graph=True)[0] for i in range(x.shape[1])]
    return g, torch.stack(rows, dim=1)


# --- JKO-ICNN, exact log-det -----------------------------------------------------------------------------------
@pytest.mark.parametrize("hessian", ["analytic", "torch_func", "per_coordinate"])
def test_exact_icnn_kl_objective_matches_brute_force_hessian(hessian):
    problem = make_problem("ou", 3, 0, {"beta": 2.0})
    method = make_method("jko_icnn_exact", problem, 0.1, {**ICNN_SMALL, "hessian": hessian}, seed=0)
    method.psi.convexify()  # Mokrov's initialisation is convex only from the first clamp on
    x = torch.randn(40, 3, dtype=F64)
    loss, _ = method._loss(x, None)
    g, hess = _brute_force_grad_and_hessian(method.psi, x)
    tau = problem.temperature
    expected = (
        ((g - x) ** 2).sum(-1) / (2 * 0.1) - tau * (problem.log_target(g) + torch.linalg.slogdet(hess)[1])
    ).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    params = list(method.psi.parameters())
    torch.testing.assert_close(_flat_grad(loss, params), _flat_grad(expected, params), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("problem_name", ["ou", "barenblatt"])
def test_per_coordinate_hessian_equals_the_analytic_one(problem_name):
    """Mokrov's d backward passes + torch.logdet vs the closed-form sweep + Cholesky: loss values and parameter
    gradients agree to round-off (same potential, same batch), for the KL and the internal energy."""
    problem = make_problem(problem_name, 3, 0)
    h = 0.05 if problem_name == "ou" else 1e-3
    theirs = make_method("jko_icnn_exact", problem, h, {**ICNN_SMALL, "hessian": "per_coordinate"}, seed=0)
    ours = make_method("jko_icnn_exact", problem, h, {**ICNN_SMALL, "hessian": "analytic"}, seed=1)
    with torch.no_grad():  # a random, non-trivial convex potential (Mokrov's parametrisation, clamped)
        for p in theirs.psi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    theirs.psi.convexify()
    ours.psi.load_state_dict(theirs.psi.state_dict())
    x = problem.initial().sample(48, torch.Generator().manual_seed(0))
    logp = None if problem_name == "ou" else problem.initial().log_density(x)
    loss_theirs, _ = theirs._loss(x, logp)
    loss_ours, _ = ours._loss(x, logp)
    torch.testing.assert_close(loss_theirs, loss_ours, rtol=1e-11, atol=1e-12)
    g_theirs = _flat_grad(loss_theirs, list(theirs.psi.parameters()))
    g_ours = _flat_grad(loss_ours, list(ours.psi.parameters()))
    assert float(g_ours.norm()) > 1e-3
    torch.testing.assert_close(g_theirs, g_ours, rtol=1e-9, atol=1e-11)
    # and the Hessians themselves
    from wgfbench.densities import per_coordinate_grad_and_hessian

    g1, h1 = per_coordinate_grad_and_hessian(ours.psi, x)
    g2, h2 = ours.psi.grad_and_hessian(x)
    torch.testing.assert_close(h1, h2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)


def test_defaults_are_mokrovs_ou_protocol_and_the_presets_build():
    cfg = JKOICNNConfig()
    for key, value in MOKROV_OU_PARAMS.items():
        assert getattr(cfg, key) == value, key
    assert cfg.pretrain_lr == 5e-3 and cfg.pretrain_iters == 4000 and cfg.pretrain_tol is None
    for params in MOKROV_GMM_PARAMS.values():
        gmm = build_config(JKOICNNConfig, params)
        assert gmm.batch_size == 512 and gmm.lr_of_step(0) == 5e-3 and gmm.lr_of_step(19) == 5e-3
        assert gmm.lr_of_step(20) == 2e-3 and gmm.lr_of_step(39) == 2e-3
    assert MOKROV_GMM_PARAMS[2]["hidden_width"] == 256 and MOKROV_GMM_PARAMS[12]["iters_per_step"] == 1200
    # a suite gives the schedule as nested lists of (first step, lr); lr holds before the first pair's step
    listed = build_config(JKOICNNConfig, {"lr_schedule": [[2, 1e-2], [5, 1e-3]], "lr": 7e-4})
    assert listed.lr_schedule == ((2, 1e-2), (5, 1e-3))
    assert [listed.lr_of_step(k) for k in range(7)] == [7e-4, 7e-4, 1e-2, 1e-2, 1e-2, 1e-3, 1e-3]


def test_pretraining_runs_every_iteration_and_leaves_a_convex_potential():
    problem = make_problem("ou", 2, 0)
    params = {**ICNN_SMALL, "pretrain_iters": 40, "pretrain_batch": 64}
    method = make_method("jko_icnn_exact", problem, 0.05, params, seed=0)
    stats = method.step()
    assert stats.extra["pretrain_iters"] == 40.0  # no early stop (pretrain_tol=None), whatever the loss
    early = make_method("jko_icnn_exact", problem, 0.05, {**params, "pretrain_tol": 1e3}, seed=0)
    assert early.step().extra["pretrain_iters"] == 1.0  # a tolerance, where given, does stop it
    weights = [layer.weight for layer in (*method.psi.convex, method.psi.out)]
    assert all(bool((w >= 0).all()) for w in weights)
    assert any(bool((w == 0).any()) for w in weights)  # the clamp is active (Mokrov's init has negative weights)


def test_an_iteration_is_mokrovs_adam_step_on_h_times_the_objective():
    """One training iteration = torch's Adam (lr 5e-3, weight decay 1e-9) on h * (JKO objective), then the clamp."""
    problem = make_problem("ou", 2, 3)
    h = 0.05
    params = {**ICNN_SMALL, "pretrain_iters": 0, "iters_per_step": 1, "n_particles": 64}
    method = make_method("jko_icnn_exact", problem, h, params, seed=0)
    method._pretrain()
    method._draw_particles()
    start = {k: v.clone() for k, v in method.psi.state_dict().items()}
    x = method.particles.clone()

    def manual(scale: float) -> torch.Tensor:
        psi = copy.deepcopy(method.psi)
        psi.load_state_dict(start)
        opt = torch.optim.Adam(psi.parameters(), lr=5e-3, weight_decay=1e-9)
        tx, hess = psi.grad_and_hessian(x)
        loss = (((tx - x) ** 2).sum(-1) / (2 * h) - (problem.log_target(tx) + torch.logdet(hess))).mean()
        (scale * loss).backward()
        opt.step()
        psi.convexify()
        return torch.cat([p.detach().flatten() for p in psi.parameters()])

    method.step()
    got = torch.cat([p.detach().flatten() for p in method.psi.parameters()])
    torch.testing.assert_close(got, manual(h), rtol=1e-10, atol=1e-13)
    # the scaling is not cosmetic: Adam's epsilon and the weight decay see it
    assert float((got - manual(1.0)).abs().max()) > 1e-12


def test_exact_icnn_internal_energy_of_an_affine_map():
    """Porous medium: for T x = S x + c (one-layer ICNN), int p_1^m = det(S)^{1-m} int p_0^m exactly."""
    problem = make_problem("barenblatt", 2, 0)
    method = make_method("jko_icnn_exact", problem, 1e-3, {**ICNN_SMALL, "hidden_layers": 1}, seed=0)
    method.psi.convexify()
    p0 = problem.initial()
    x = p0.sample(20_000, torch.Generator().manual_seed(0))
    logp = p0.log_density(x)
    _, energy, _ = method._energy(x, logp)
    _, hess = method.psi.grad_and_hessian(x[:1])
    det_s = float(torch.linalg.det(hess[0]))
    m = problem.m
    # Monte-Carlo mean of (p_0(x)/det S)^{m-1}/(m-1) vs the closed form det(S)^{1-m} G(P_0)
    expected = det_s ** (1 - m) * p0.generalised_entropy()
    se = float(energy.std()) / math.sqrt(x.shape[0])
    assert abs(float(energy.mean()) - expected) < 5 * se
    # and energy is exactly p_0(x)^{m-1} det(S)^{1-m}/(m-1) pointwise
    torch.testing.assert_close(energy, torch.exp((m - 1) * logp) * det_s ** (1 - m) / (m - 1), rtol=1e-10, atol=0.0)


def test_exact_icnn_step_moves_towards_the_exact_jko_iterate():
    problem = make_problem("ou", 2, 1)
    h = 0.1
    params = {
        "hidden_width": 16,
        "batch_size": 256,
        "iters_per_step": 150,
        "pretrain_iters": 300,
        "pretrain_batch": 256,
    }
    method = make_method("jko_icnn_exact", problem, h, params, seed=0)
    method.step()
    fit = moment_fit(method.sample(20_000, torch.Generator().manual_seed(0)))
    target = problem.jko_reference(1, h)
    start = gaussian_symkl(problem.initial(), target)
    assert gaussian_symkl(fit, target) < 0.1 * start, (gaussian_symkl(fit, target), start)


# --- JKO-ICNN, Mokrov's protocol with CP-Flow's log-det gradient ----------------------------------------------
def test_cpflow_grad_method_gradient_matches_exact_method_gradient():
    """The two registered variants on the same potential and batch: their loss gradients agree (many probes)."""
    problem = make_problem("ou", 3, 0)
    exact = make_method("jko_icnn_exact", problem, 0.05, ICNN_SMALL, seed=0)
    exact.psi.convexify()
    stoch = make_method("jko_icnn_cpflow_grad", problem, 0.05, {**ICNN_SMALL, "n_probes": 256, "cg_rtol": 1e-10}, 0)
    stoch.psi.load_state_dict(exact.psi.state_dict())
    x = torch.randn(32, 3, dtype=F64)
    params = list(exact.psi.parameters())
    g_exact = _flat_grad(exact._loss(x, None)[0], params)
    g_stoch = _flat_grad(stoch._loss(x, None)[0], list(stoch.psi.parameters()))
    # measured against the log-det part alone (the transport and potential parts are computed identically)
    g_logdet = _flat_grad(-problem.temperature * torch.logdet(exact.psi.grad_and_hessian(x)[1]).mean(), params)
    rel = float((g_stoch - g_exact).norm() / g_logdet.norm())
    assert rel < 0.05, rel


# --- Euler-Maruyama -------------------------------------------------------------------------------------------
def _exact_em_law(problem, h: float, k: int) -> GaussianLaw:
    """closed-forms-and-pitfalls.md §4e: m' = (I - hA) m + hAb, S' = (I - hA) S (I - hA)^T + (2h/beta) I."""
    law = problem.initial()
    step = torch.eye(problem.dim, dtype=F64) - h * problem.A
    mean, cov = law.mean, law.cov
    for _ in range(k):
        mean = step @ mean + h * problem.A @ problem.b
        cov = step @ cov @ step.T + (2 * h / problem.beta) * torch.eye(problem.dim, dtype=F64)
    return GaussianLaw(mean, cov)


def test_euler_maruyama_moments_follow_the_exact_em_law():
    problem = make_problem("ou", 2, 0, {"beta": 2.0})
    h, k, n = 0.2, 15, 100_000
    method = make_method("em_particles", problem, h, {"n_particles": n}, seed=0)
    for _ in range(k):
        method.step()
    x = method.particles.to(F64)
    em = _exact_em_law(problem, h, k)
    fit = moment_fit(x)
    var = torch.diagonal(em.cov)
    # Monte-Carlo standard errors: mean_i ~ sqrt(S_ii/n), cov_ij ~ sqrt((S_ii S_jj + S_ij^2)/n)
    se_mean = torch.sqrt(var / n)
    se_cov = torch.sqrt((var[:, None] * var[None, :] + em.cov**2) / n)
    assert bool(((fit.mean - em.mean).abs() < 5 * se_mean).all())
    assert bool(((fit.cov - em.cov).abs() < 5 * se_cov).all())
    # the test discriminates: the EM law at h = 0.2 is far (>> 5 se) from the exact OU marginal
    ou = problem.reference(k * h)
    assert bool(((fit.cov - ou.cov).abs() > 20 * se_cov).any())


def test_euler_maruyama_refuses_more_samples_than_particles():
    method = make_method("em_particles", make_problem("ou", 2, 0), 0.05, {"n_particles": 100}, seed=0)
    with pytest.raises(ValueError, match="particles"):
        method.sample(101, torch.Generator().manual_seed(0))


# --- exact JKO oracle and identity -------------------------------------------------------------------------------
def test_exact_jko_method_converges_to_the_ou_solution_at_first_order():
    """The registered oracle (the method class, not only the closed form): error at t = 0.5 ~ h."""
    problem = make_problem("ou", 3, 2)
    t = 0.5
    errors = []
    for h in (0.05, 0.005):
        method = make_method("exact_jko", problem, h, {}, seed=0)
        for _ in range(round(t / h)):
            method.step()
        errors.append(bures_w2(method.law, problem.reference(t)))
    assert 8.0 < errors[0] / errors[1] < 12.0, errors


def test_identity_stays_at_the_initial_law():
    problem = make_problem("ou", 2, 0)
    method = make_method("identity", problem, 0.05, {}, seed=0)
    for _ in range(3):
        method.step()
    x = torch.randn(10, 2, dtype=F64)
    torch.testing.assert_close(method.log_density(x), problem.initial().log_density(x))
    fit = moment_fit(method.sample(50_000, torch.Generator().manual_seed(0)))
    assert gaussian_symkl(fit, problem.initial()) < 1e-3
