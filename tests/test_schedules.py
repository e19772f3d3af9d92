"""Per-step learning-rate schedules: the (first step, value) rule, and the methods' optimisers following it."""

from __future__ import annotations

import copy

import pytest
import torch
import wgfbench_baselines.jko_icnn as jko_icnn
from wgfbench_baselines.jko_icnn import MOKROV_GMM_PARAMS, JKOICNNConfig

from wgfbench.methods.variational_jko.method import VariationalJKOConfig
from wgfbench.registry import make_method, make_problem
from wgfbench.schedules import normalise, order_errors, value_at

ICNN_TINY = {"hidden_width": 8, "rank": 2, "batch_size": 64, "iters_per_step": 3, "n_particles": 256,
             "pretrain_iters": 5, "pretrain_batch": 64}  # fmt: skip
VJKO_TINY = {"n_particles": 2048, "batch_size": 256, "iters_per_step": 5}


def brute_force(schedule, k: int, constant: float) -> float:
    """S(k) by its definition: the value of the pair with the largest first step <= k (constant if none)."""
    eligible = [(first, v) for first, v in schedule if first <= k]
    return max(eligible)[1] if eligible else constant


@pytest.mark.parametrize("schedule", [(), ((0, 5e-3), (20, 2e-3)), ((3, 1.0),), ((1, 3.0), (2, 1.0), (7, 2.0))])
def test_value_at_is_the_last_pair_at_or_before_the_step(schedule) -> None:
    for k in range(30):
        assert value_at(schedule, k, 0.5) == brute_force(schedule, k, 0.5)
    if schedule == ((0, 5e-3), (20, 2e-3)):  # Mokrov's mixtures: 5e-3 for steps 1..20, 2e-3 from step 21 on
        assert [value_at(schedule, k, 1.0) for k in (0, 19, 20, 39)] == [5e-3, 5e-3, 2e-3, 2e-3]


def test_order_is_checked_and_lists_become_tuples() -> None:
    assert normalise([[0, 5e-3], [20, 2e-3]]) == ((0, 5e-3), (20, 2e-3))
    with pytest.raises(ValueError, match="strictly increasing, got 20 then 3"):
        normalise([[20, 5e-3], [3, 2e-3]])
    assert order_errors(JKOICNNConfig, {"lr_schedule": [[1, 1.0], [1, 2.0]], "lr": 1.0})[0][0] == "lr_schedule"
    assert order_errors(JKOICNNConfig, {"lr_schedule": [[0, 1.0], [1, 2.0]]}) == []
    assert order_errors(JKOICNNConfig, {"lr_schedule": "not pairs"}) == []  # a type error is check_params's to report
    cfg = VariationalJKOConfig(lr_t_schedule=[[0, 1e-3], [20, 4e-4]], lr_dual=2e-3)
    assert cfg.learning_rates(19) == (1e-3, 2e-3) and cfg.learning_rates(20) == (4e-4, 2e-3)


def test_mokrovs_mixture_presets_change_the_learning_rate_after_twenty_steps() -> None:
    for params in MOKROV_GMM_PARAMS.values():
        cfg = JKOICNNConfig(**params)
        assert [cfg.lr_of_step(k) for k in (0, 19, 20, 39)] == [5e-3, 5e-3, 2e-3, 2e-3]


def test_jko_icnn_trains_each_step_at_its_scheduled_learning_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step's (new) Adam has the schedule's learning rate when it steps: 7e-4 (lr) at step 0, 1e-2 from step
    1, 1e-3 from step 2."""
    seen: list[float] = []
    real_adam = jko_icnn.adam

    def recording_adam(params, lr, **kw):
        opt = real_adam(params, lr=lr, **kw)
        real_step = opt.step

        def step(*a, **k):
            seen.append(opt.param_groups[0]["lr"])
            return real_step(*a, **k)

        opt.step = step
        return opt

    monkeypatch.setattr(jko_icnn, "adam", recording_adam)
    params = {**ICNN_TINY, "lr": 7e-4, "lr_schedule": [[1, 1e-2], [2, 1e-3]]}
    method = make_method("jko_icnn_exact", make_problem("ou", 2, 0), 0.05, params, seed=0)
    for _ in range(4):
        method.step()
    iters = ICNN_TINY["iters_per_step"]
    assert seen == [7e-4] * iters + [1e-2] * iters + [1e-3] * (2 * iters)


def test_variational_jko_changes_both_learning_rates_at_the_stated_step() -> None:
    """With lr_t_schedule / lr_dual_schedule the run is the constant-lr run, bit for bit, up to the stated step, and
    differs from there on; the Adams' learning rates are the scheduled ones and their moment estimates carry over."""
    problem = make_problem("ou", 2, 0)
    sched = {"lr_t_schedule": [[0, 5e-3], [2, 1e-3]], "lr_dual_schedule": [[2, 2e-3]]}
    scheduled = make_method("variational_jko", problem, 0.05, {**VJKO_TINY, **sched}, seed=0)
    constant = make_method("variational_jko", problem, 0.05, VJKO_TINY, seed=0)
    lrs, adam_steps, same = [], [], []
    for k in range(4):
        torch.manual_seed(100 + k)  # the same global stream for both runs' minibatches at each step
        a = scheduled.step()
        torch.manual_seed(100 + k)
        b = constant.step()
        lrs.append((scheduled.opt_t.param_groups[0]["lr"], scheduled.opt_dual.param_groups[0]["lr"]))
        adam_steps.append(int(next(iter(scheduled.opt_t.state.values()))["step"]))
        same.append(a.loss == b.loss and torch.equal(scheduled.particles, constant.particles))
    assert lrs == [(5e-3, 5e-3), (5e-3, 5e-3), (1e-3, 2e-3), (1e-3, 2e-3)]
    assert same == [True, True, False, False]
    t_steps = VJKO_TINY["iters_per_step"]  # one map step per iteration: Adam's step count runs on across JKO steps
    assert adam_steps == [t_steps * (k + 1) for k in range(4)]


def test_a_scheduled_variational_run_restores_exactly() -> None:
    """A run restored from its state after step 1 continues as the uninterrupted one, through the change of lr."""
    problem = make_problem("ou", 2, 0)
    params = {**VJKO_TINY, "lr_t_schedule": [[0, 5e-3], [2, 1e-3]]}
    straight = make_method("variational_jko", problem, 0.05, params, seed=0)
    straight.step()
    state = copy.deepcopy(straight.state_dict())  # (a state dict holds live parameter tensors)
    losses = [straight.step().loss for _ in range(2)]
    restored = make_method("variational_jko", problem, 0.05, params, seed=0)
    restored.load_state_dict(state)
    assert [restored.step().loss for _ in range(2)] == losses
    assert torch.equal(restored.particles, straight.particles)
