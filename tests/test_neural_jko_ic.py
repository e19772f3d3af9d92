"""Importance-corrected neural JKO: the rejection step's law and density, its calibration, schedule, refusals."""

from __future__ import annotations

import math

import pytest
import torch
from wgfbench_baselines.neural_jko_ic import NeuralJKOIC, RejectionLayer, calibrate_log_c

from wgfbench.methods.base import UnsupportedProblem
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.registry import make_method, make_problem
from wgfbench.suites import SuiteError, parse_suite

torch.set_num_threads(1)
F64 = torch.float64
TINY = NeuralJKOIC.tiny_params


def _gauss(mean: float, std: float) -> GaussianLaw:
    return GaussianLaw(torch.tensor([mean], dtype=F64), torch.tensor([[std**2]], dtype=F64))


def test_calibration_hits_the_rejection_rate():
    log_ratio = 3.0 * torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=F64)
    for rate in (0.05, 0.2, 0.6):
        log_c, achieved = calibrate_log_c(log_ratio, rate)
        direct = float((1 - torch.exp((log_ratio - log_c).clamp(max=0))).mean())
        assert achieved == pytest.approx(rate, abs=1e-9) and direct == pytest.approx(rate, abs=1e-9)


def test_rejection_step_output_law_is_p_times_alpha_plus_rejection_rate():
    """Model P = N(0, 1), target Q = N(1, 0.5^2). The step's output law has density p~ = p (alpha + r) with
    alpha = min(1, q/(c p)) and r = 1 - E_P[alpha] (quadrature); checked on moments and a probability of the output
    samples, on the closed-form log-density, and on KL(P~ || Q) <= KL(P || Q) (Thm 4.2 of Hertrich & Gruhlke)."""
    model, target = _gauss(0.0, 1.0), _gauss(1.0, 0.5)
    gen = torch.Generator().manual_seed(0)

    def draw(m: int):
        x = model.sample(m, gen)
        return x, model.log_density(x)

    x, lp = draw(200_000)
    log_c, rate = calibrate_log_c(target.log_density(x) - lp, 0.2)
    layer = RejectionLayer(target.log_density, log_c, rate)
    out, out_lp, accepted = layer.apply(x, lp, draw, gen)
    assert accepted == pytest.approx(0.8, abs=0.005)
    # closed form on a grid
    s = torch.linspace(-9, 9, 180_001, dtype=F64).unsqueeze(1)
    ds = float(s[1] - s[0])
    p, q = model.log_density(s).exp(), target.log_density(s).exp()
    alpha = torch.clamp(q / (math.exp(log_c) * p), max=1.0)
    r_true = 1.0 - float((p * alpha).sum() * ds)
    assert rate == pytest.approx(r_true, abs=4 * math.sqrt(0.2 * 0.8 / 200_000))
    p_tilde = p * (alpha + r_true)
    assert float(p_tilde.sum() * ds) == pytest.approx(1.0, abs=1e-9)
    y = out.squeeze(1)
    for f in (lambda v: v, lambda v: v**2, lambda v: (v < 0.5).to(F64)):
        expected = float((f(s.squeeze(1)) * p_tilde).sum() * ds)
        vals = f(y)
        assert abs(float(vals.mean()) - expected) < 4 * float(vals.std()) / math.sqrt(len(vals)), expected
    # the density the step reports is log p + log(alpha + r), at its own outputs
    closed = model.log_density(out) + torch.log(
        torch.clamp(target.log_density(out).exp() / (math.exp(log_c) * model.log_density(out).exp()), max=1.0) + rate
    )
    torch.testing.assert_close(out_lp, closed, rtol=1e-10, atol=1e-10)

    def kl(dens):
        return float((dens * (dens.log() - q.log())).sum() * ds)

    assert kl(p_tilde) < kl(p)


def test_rejection_step_leaves_the_model_when_it_is_the_target():
    """q = p: alpha = min(1, 1/c) is constant, so p~ = p (alpha + 1 - alpha) = p."""
    model = _gauss(0.3, 1.2)
    x = model.sample(5000, torch.Generator().manual_seed(0))
    lp = model.log_density(x)
    log_c, rate = calibrate_log_c(torch.zeros_like(lp), 0.2)
    layer = RejectionLayer(model.log_density, log_c, rate)
    assert math.exp(-log_c) == pytest.approx(0.8, abs=1e-9)
    torch.testing.assert_close(layer.log_density_after(x, lp, None), lp, rtol=0, atol=1e-12)


def test_schedule_and_flow_time_axis():
    method = make_method("neural_jko_ic", make_problem("hg_8modes", 2, 0), 0.01, {**TINY, "n_flow_steps": 2}, seed=0)
    assert [method.step_kind(k) for k in range(10)] == ["cnf"] * 3 + ["rejection"] * 3 + ["cnf"] + ["rejection"] * 3
    stats = [method.step() for _ in range(4)]
    assert [s.extra["step_kind"] for s in stats] == [0.0, 0.0, 0.0, 1.0]
    assert [s.extra["h_k"] for s in stats] == pytest.approx([0.01, 0.04, 0.16, 0.0])
    assert [s.extra["flow_time"] for s in stats] == pytest.approx([0.01, 0.05, 0.21, 0.21])
    assert stats[-1].extra["rejection_rate"] == pytest.approx(0.2, abs=1e-9)
    assert stats[-1].extra["accepted_frac"] == pytest.approx(0.8, abs=0.1)


def test_model_density_after_cnf_and_rejection_steps_is_normalised():
    """A rejection layer's density p (alpha + r) integrates to E[alpha] + r = 1 up to r's estimation error."""
    problem = make_problem("hg_8modes", 2, 0)
    method = make_method("neural_jko_ic", problem, 0.01, {**TINY, "n_particles": 8192, "iters_per_step": 20}, seed=0)
    for _ in range(3):  # cnf, rejection, rejection
        method.step()
    assert [layer.kind for layer in method.layers] == ["cnf", "rejection", "rejection"]
    g = torch.linspace(-7.0, 5.0, 241, dtype=F64)
    grid = torch.cartesian_prod(g, g)
    mass = float(method.log_density(grid).exp().sum()) * float(g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.03)
    x, lp = method.sample_with_log_density(500, torch.Generator().manual_seed(1))
    torch.testing.assert_close(method.log_density(x).to(F64), lp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("problem", ["ou", "barenblatt"])
def test_transient_problems_are_refused_at_suite_validation(problem):
    doc = {
        "name": "ic",
        "experiments": {
            "x": {
                "problem": problem,
                "dims": [2],
                "seeds": 1,
                "step_size": 0.01,
                "n_steps": 2,
                "methods": {"neural_jko_ic": {}},
            }
        },
    }
    with pytest.raises(SuiteError, match=r"neural_jko_ic.*(transient|generalised_entropy)"):
        parse_suite(doc)
    with pytest.raises(UnsupportedProblem):
        NeuralJKOIC.check_supports(make_problem(problem, 2, 0))
    if problem == "ou":
        with pytest.raises(SuiteError, match="sampler of a stationary target, not a time integrator"):
            parse_suite(doc)


def test_stationary_targets_pass_suite_validation():
    doc = {
        "name": "ic",
        "experiments": {
            "t": {
                "problem": "hg_8modes",
                "dims": [2],
                "seeds": 1,
                "step_size": 0.01,
                "n_steps": 2,
                "methods": {"neural_jko_ic": {}, "neural_jko": {"params": {"step_growth": 4.0}}},
            }
        },
    }
    assert len(parse_suite(doc).runs) == 2


def test_targets_suite_runs_the_published_schedules():
    """suites/cnf-targets.yaml: each importance-corrected experiment has Hertrich & Gruhlke's schedule (first step
    h_0 = tau_0 / 2, growth, CNF steps and blocks), and each plain one the same CNF steps without rejection."""
    from pathlib import Path

    import yaml
    from wgfbench_baselines.neural_jko_ic import HG_SCHEDULES

    suite = yaml.safe_load((Path(__file__).resolve().parents[1] / "suites" / "cnf-targets.yaml").read_text())
    names = {"modes8": "8modes", "peaky8": "8peaky", "mustache": "mustache", "funnel": "funnel"}
    names["gmm10"] = "gmm_d10_to_100"
    for short, key in names.items():
        sched = HG_SCHEDULES[key]
        ic, plain = suite["experiments"][f"{short}_ic"], suite["experiments"][f"{short}_plain"]
        params = ic["methods"]["neural_jko_ic"]["params"]
        assert params["n_flow_steps"] == sched["n_flow_steps"] and params["step_growth"] == sched["step_growth"]
        assert ic["n_steps"] == sched["n_flow_steps"] + 4 * sched["blocks"]
        assert plain["n_steps"] == sched["n_flow_steps"] + sched["blocks"]
        assert ic["step_size"] == plain["step_size"] == pytest.approx(sched["h0"])
        assert plain["methods"]["neural_jko"]["params"]["step_growth"] == sched["step_growth"]
