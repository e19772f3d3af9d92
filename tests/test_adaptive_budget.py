"""The adaptive per-step budget: the plateau rule stops on a plateau and not before, the cap holds, and both methods
that offer it (variational_jko, jko_icnn_exact) stop early on OU and still restore exactly."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from wgfbench.methods.base import UnsupportedProblem
from wgfbench.methods.plateau import PlateauRule, slope_and_standard_error
from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)


def test_slope_and_standard_error_match_numpy_least_squares() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(10, 90, 10, dtype=float)
    y = 0.3 - 2e-3 * t + rng.normal(0, 1e-2, t.size)
    coef, residuals, *_ = np.polyfit(t, y, 1, full=True)
    _, unscaled = np.polyfit(t, y, 1, cov="unscaled")  # (X^T X)^{-1}
    s_b_np = math.sqrt(residuals[0] / (t.size - 2) * unscaled[0, 0])
    b, s_b = slope_and_standard_error(list(t), list(y))
    assert b == pytest.approx(float(coef[0]), rel=1e-10)
    assert s_b == pytest.approx(s_b_np, rel=1e-8)
    with pytest.raises(ValueError):
        slope_and_standard_error([1.0, 2.0], [0.0, 1.0])


def _stop_iteration(rule: PlateauRule, values, cap: int) -> int:
    """Run the rule on J(iteration) = values(iteration); the iteration it stops at, or the cap."""
    for it in range(1, cap + 1):
        if rule.due(it) and rule.record(it, values(it)):
            return it
    return cap


@pytest.mark.parametrize("seed", range(20))
def test_stops_on_the_plateau_and_not_before(seed: int) -> None:
    """J = exp(-t/100) + N(0, 1e-3): the slope's t-statistic over the window (8 values 10 apart) is about
    648 exp(-t/100), i.e. 7 at t = 450 (no stop possible) and below 0.1 past t = 900 (pure noise)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1e-3, 2001)
    rule = PlateauRule(every=10, window=8, min_iters=50, z=1.0)
    stop = _stop_iteration(rule, lambda t: math.exp(-t / 100) + noise[t], cap=2000)
    assert 450 <= stop <= 1000, stop
    assert abs(rule.t_stat) <= 1.0


def test_a_saddle_objective_rising_to_its_value_is_not_a_plateau() -> None:
    """An objective approaching its value from below (a dual tightening its bound) keeps the step going."""
    rule = PlateauRule(every=10, window=8, min_iters=0, z=1.0)
    stop = _stop_iteration(rule, lambda t: -math.exp(-t / 200) + 1e-6 * math.sin(t), cap=500)
    assert stop == 500


def test_minimum_and_cap_hold() -> None:
    flat = PlateauRule(every=10, window=8, min_iters=200, z=1.0)
    assert _stop_iteration(flat, lambda t: 1.0, cap=1000) == 200  # flat from the start: the minimum holds
    early = PlateauRule(every=10, window=8, min_iters=0, z=1.0)
    assert _stop_iteration(early, lambda t: 1.0, cap=1000) == 80  # the window must fill first
    linear = PlateauRule(every=10, window=8, min_iters=0, z=1.0)
    assert _stop_iteration(linear, lambda t: 1.0 - 1e-9 * t, cap=300) == 300  # an exact trend never stops
    assert linear.t_stat < -1e6  # s_b is round-off only
    with pytest.raises(ValueError):
        PlateauRule(every=10, window=2, min_iters=0, z=1.0)


VJKO = dict(n_particles=2048, batch_size=256, budget="plateau", plateau_probe=1024)


def test_variational_jko_stops_early_on_ou_and_keeps_the_cap() -> None:
    problem = make_problem("ou", 2, 0)
    method = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 400}, seed=0)
    iters = [method.step().extra["inner_iters"] for _ in range(3)]
    assert all(50 <= i < 400 and i % 10 == 0 for i in iters), iters  # the minimum, the probe grid, an early stop
    capped = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 30}, seed=0)
    stats = capped.step()
    assert stats.extra["inner_iters"] == 30.0 and math.isnan(stats.extra["plateau_t_stat"])  # window never filled


def test_fixed_budget_is_the_default_and_runs_every_iteration() -> None:
    problem = make_problem("ou", 2, 0)
    method = make_method("variational_jko", problem, 0.05, dict(n_particles=1024, batch_size=128, iters_per_step=7), 0)
    assert method.config.budget == "fixed"
    stats = method.step()
    assert stats.extra["inner_iters"] == 7.0 and "plateau_t_stat" not in stats.extra


@pytest.mark.parametrize(
    "name, params",
    [
        ("variational_jko", {**VJKO, "iters_per_step": 120, "plateau_min_iters": 0, "plateau_window": 3}),
        (
            "jko_icnn_exact",
            dict(hidden_width=8, rank=2, batch_size=64, iters_per_step=60, n_particles=512, pretrain_iters=5,
                 pretrain_batch=64, budget="plateau", plateau_probe=128, plateau_min_iters=0, plateau_window=3),
        ),
    ],
)  # fmt: skip
def test_adaptive_runs_restore_exactly(name: str, params: dict) -> None:
    problem = make_problem("ou", 2, 0)
    a = make_method(name, problem, 0.05, params, 0)
    a.step()
    state = copy.deepcopy(a.state_dict())
    stats_a = [a.step() for _ in range(2)]
    torch.manual_seed(999)
    b = make_method(name, problem, 0.05, params, 0)
    b.load_state_dict(state)
    stats_b = [b.step() for _ in range(2)]
    assert [s.loss for s in stats_b] == [s.loss for s in stats_a]
    assert [s.extra["inner_iters"] for s in stats_b] == [s.extra["inner_iters"] for s in stats_a]
    x_a, x_b = a.sample(64, torch.Generator().manual_seed(1)), b.sample(64, torch.Generator().manual_seed(1))
    torch.testing.assert_close(x_a, x_b, rtol=0, atol=0)


def test_jko_icnn_exact_stops_early_and_the_cpflow_variant_refuses() -> None:
    problem = make_problem("ou", 2, 0)
    params = dict(hidden_width=16, rank=2, batch_size=128, iters_per_step=300, n_particles=2048, pretrain_iters=50,
                  budget="plateau", plateau_probe=256)  # fmt: skip
    method = make_method("jko_icnn_exact", problem, 0.05, params, 0)
    iters = [method.step().extra["inner_iters"] for _ in range(2)]
    assert all(50 <= i < 300 for i in iters), iters
    with pytest.raises(UnsupportedProblem, match="adaptive budget"):
        make_method("jko_icnn_cpflow_grad", problem, 0.05, {"budget": "plateau"}, 0)


def test_probe_objective_is_the_duals_bound_plus_transport() -> None:
    """KL: energy + tau (1 - E r(z)) equals the NWJ form written out; entropy: the dual's value."""
    problem = make_problem("ou", 3, 0)
    method = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 20}, seed=0)
    method.step()
    y = method.particles[:512]
    z = method.dual.sample_reference(512)
    with torch.no_grad():
        ty = method.T.eval()(y)
        dual = method.dual
        written = dual.tau * (
            1 + dual.net.log_ratio(ty).mean() - dual.net.ratio(z).mean()
            + (dual.gamma.log_density(ty) - problem.log_target(ty)).mean()
        )  # fmt: skip
        torch.testing.assert_close(dual.objective(ty, z), written)
        transport = ((y - ty) ** 2).sum(-1).mean() / (2 * 0.05)
    assert method.probe_objective((y, z)) == pytest.approx(float(transport + written), rel=1e-5)
    porous = make_problem("barenblatt", 2, 0)
    ent = make_method("variational_jko", porous, 1e-3, {**VJKO, "iters_per_step": 5}, seed=0)
    ent.step()
    yb, zb = ent.particles[:512], ent.dual.sample_reference(512)
    with torch.no_grad():
        torch.testing.assert_close(ent.dual.objective(yb, zb), ent.dual.dual_value(yb, zb))


def test_jsd_probe_objective_is_the_duals_bound_and_a_jsd_run_adapts() -> None:
    """JSD: the probe value is the logistic lower bound on D_f(T#P_k || Q) (plus transport), and the rule runs."""
    problem = make_problem("jsd_grid", 1, 0, {})
    method = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 200}, seed=0)
    method.step()
    assert method.inner_iters < 200
    y, z = method.particles[:512], method.dual.sample_reference(512)
    with torch.no_grad():
        ty = method.T.eval()(y)
        torch.testing.assert_close(method.dual.objective(ty, z), method.dual.dual_value(ty, z))
        transport = ((y - ty) ** 2).sum(-1).mean() / (2 * 0.05)
        expected = float(transport + method.dual.dual_value(ty, z))
    assert method.probe_objective((y, z)) == pytest.approx(expected, rel=1e-5)


def test_carried_particles_are_not_taken_as_an_independent_sample() -> None:
    problem = make_problem("ou", 2, 0)
    carry = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 5, "particles": "carry"}, 0)
    regen = make_method("variational_jko", problem, 0.05, {**VJKO, "iters_per_step": 5}, 0)
    carry.step()
    regen.step()
    assert carry.evaluation_particles() is None and regen.evaluation_particles() is regen.particles
