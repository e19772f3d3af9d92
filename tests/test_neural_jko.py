"""Neural JKO with CNFs: the tau = 2h convention, the objective's terms, refusals, the optional adjoint solver."""

from __future__ import annotations

import math

import pytest
import torch
from wgfbench_baselines.cnf_flow import FlowIntegral, torchdiffeq_available
from wgfbench_baselines.neural_jko import HG_PAPER_PARAMS, NeuralJKO, NeuralJKOConfig

from wgfbench.methods.base import UnsupportedProblem, build_config
from wgfbench.problems.ou import OUProblem, exact_jko_step
from wgfbench.registry import make_method, make_problem
from wgfbench.suites import SuiteError, parse_suite

torch.set_num_threads(1)
F64 = torch.float64
TINY = NeuralJKO.tiny_params


def test_one_step_is_the_exact_jko_iterate_of_step_h_not_2h():
    """Hertrich & Gruhlke's loss divides the kinetic energy by tau; ours by 2h. One trained step on a 1-d OU
    problem (A = 1, b = 2, P_0 = N(0, 4), h = 0.5) lands on the exact JKO iterate of step h, far from that of 2h:
    means 2/3 vs 1, variances 2.40 vs 1.87."""
    problem = OUProblem(
        A=torch.eye(1, dtype=F64), b=torch.tensor([2.0], dtype=F64), m0=torch.zeros(1, dtype=F64), S0=4 * torch.eye(1)
    )
    h = 0.5
    # the learning rate halved every 50 iterations: the last iterations average out Adam's noise (5 seeds checked)
    params = {"n_particles": 4096, "batch_size": 256, "iters_per_step": 150, "rk4_steps": 2, "lr_decay": 0.5}
    params["lr_decay_every"] = 50
    method = NeuralJKO(problem, h, build_config(NeuralJKOConfig, params), seed=0)
    method.step()
    x = method.sample(40_000, torch.Generator().manual_seed(1)).to(F64)
    at_h, at_2h = exact_jko_step(problem, problem.initial(), h), exact_jko_step(problem, problem.initial(), 2 * h)
    mean, var = float(x.mean()), float(x.var())
    gap_mean = abs(float(at_h.mean) - float(at_2h.mean))
    gap_var = abs(float(at_h.cov) - float(at_2h.cov))
    assert abs(mean - float(at_h.mean)) < 0.15 * gap_mean, (mean, at_h.mean, at_2h.mean)
    assert abs(var - float(at_h.cov)) < 0.3 * gap_var, (var, at_h.cov, at_2h.cov)


def test_kl_objective_is_transport_over_2h_plus_temperature_times_kl_terms():
    problem = make_problem("ou", 2, 0, {"beta": 2.0})
    method = make_method("neural_jko", problem, 0.1, TINY, seed=0)
    z = torch.randn(7, 2)
    integral = FlowIntegral(z=z, transport=torch.rand(7), div=torch.randn(7))
    got = method._objective(integral, None, 0.1)
    expected = integral.transport.mean() / 0.2 + 0.5 * (-problem.log_target(z) - integral.div).mean()
    torch.testing.assert_close(got, expected)


def test_porous_objective_at_the_identity_is_the_exact_generalised_entropy():
    """With v = 0 the energy term is 1/(m-1) E_{P_0}[p_0^{m-1}], a Monte-Carlo estimate of G(P_0) in closed form."""
    problem = make_problem("barenblatt", 2, 0, {"m": 2.0})
    method = make_method("neural_jko", problem, 1e-3, {**TINY, "n_particles": 20_000, "dtype": "float64"}, seed=0)
    x, lp = method.particles, method.particles_logp
    zero = torch.zeros(x.shape[0], dtype=F64)
    value = float(method._objective(FlowIntegral(z=x, transport=zero, div=zero), lp, 1e-3))
    exact = problem.generalised_entropy(0.0)
    se = float(torch.exp(lp).std()) / math.sqrt(x.shape[0])
    assert abs(value - exact) < 4 * se, (value, exact, se)


def test_porous_medium_is_refused_without_exact_divergences():
    porous = make_problem("barenblatt", 3, 0)
    with pytest.raises(UnsupportedProblem, match="exact divergences"):
        NeuralJKO.check_supports(porous, build_config(NeuralJKOConfig, {"exact_max_dim": 2}))
    with pytest.raises(UnsupportedProblem, match="exact divergences"):
        NeuralJKO.check_supports(porous, build_config(NeuralJKOConfig, {"train_divergence": "hutchinson"}))
    NeuralJKO.check_supports(porous)  # d = 3 <= 8 with the defaults


def test_growing_steps_are_refused_for_transient_problems_and_accepted_for_targets():
    cfg = build_config(NeuralJKOConfig, {"step_growth": 4.0})
    with pytest.raises(UnsupportedProblem, match="transient"):
        NeuralJKO.check_supports(make_problem("ou", 2, 0), cfg)
    doc = {
        "name": "g",
        "experiments": {"ou": {"problem": "ou", "dims": [2], "seeds": 1, "step_size": 0.1, "n_steps": 2}},
    }
    doc["experiments"]["ou"]["methods"] = {"neural_jko": {"params": {"step_growth": 4.0}}}
    with pytest.raises(SuiteError, match=r"neural_jko.*sampler's schedule"):  # refused at validation, by its params
        parse_suite(doc)
    NeuralJKO.check_supports(make_problem("hg_8modes", 2, 0), cfg)
    method = make_method("neural_jko", make_problem("hg_8modes", 2, 0), 0.01, {**TINY, "step_growth": 4.0}, seed=0)
    stats = [method.step() for _ in range(3)]
    assert [s.extra["h_k"] for s in stats] == pytest.approx([0.01, 0.04, 0.16])
    assert stats[-1].extra["flow_time"] == pytest.approx(0.21)


def test_hutchinson_above_the_exact_dimension_reports_the_log_density_variance():
    problem = make_problem("ou", 3, 0)
    method = make_method("neural_jko", problem, 0.1, {**TINY, "exact_max_dim": 2, "iters_per_step": 20}, seed=0)
    assert method.train_probes == 1 and method.eval_probes == 5
    s1, s2 = method.step(), method.step()
    assert s1.extra["log_density_var_step"] > 0 and s2.extra["log_density_var_step"] > 0
    assert s2.extra["log_density_var"] == pytest.approx(
        s1.extra["log_density_var_step"] + s2.extra["log_density_var_step"]
    )
    exact = make_method("neural_jko", problem, 0.1, TINY, seed=0)
    assert exact.step().extra["log_density_var"] == 0.0


def test_paper_preset_is_a_valid_configuration():
    cfg = build_config(NeuralJKOConfig, HG_PAPER_PARAMS)
    assert cfg.iters_per_step == 5000 and cfg.batch_size == 5000 and cfg.solver == "dopri5_adjoint"


def test_adjoint_option_is_refused_clearly_without_torchdiffeq(monkeypatch):
    import wgfbench_baselines.neural_jko as module

    monkeypatch.setattr(module, "torchdiffeq_available", lambda: False)
    with pytest.raises(UnsupportedProblem, match=r"torchdiffeq.*wgfbench\[cnf\]"):
        NeuralJKO.check_supports(make_problem("ou", 2, 0), build_config(NeuralJKOConfig, {"solver": "dopri5_adjoint"}))


@pytest.mark.skipif(not torchdiffeq_available(), reason="torchdiffeq (optional extra 'cnf') is not installed")
def test_adjoint_solver_trains_a_step_and_freezes_it_with_nfe_based_rk4_steps():
    problem = make_problem("ou", 2, 0)
    method = make_method("neural_jko", problem, 0.05, {**TINY, "solver": "dopri5_adjoint", "iters_per_step": 4}, seed=0)
    stats = method.step()
    assert stats.extra["nfe"] >= 6  # at least one dopri5 step (6 stages + the first evaluation)
    assert stats.extra["rk4_steps"] == math.ceil(0.25 * stats.extra["nfe"] + 1)
    assert bool(torch.isfinite(method.sample(100, torch.Generator().manual_seed(0))).all())
