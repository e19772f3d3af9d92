"""The method contract, checked for EVERY name in wgfbench.registry.METHODS on a tiny CPU configuration of OU d=2.

A method registered without an entry in ``TINY`` fails here: every method must be runnable by this test.
"""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch

from wgfbench.methods.base import StepStats, UnsupportedProblem
from wgfbench.registry import METHODS, make_method, make_problem, method_class

torch.set_num_threads(1)

_ICNN_TINY = {
    "hidden_width": 8,
    "rank": 2,
    "batch_size": 64,
    "iters_per_step": 3,
    "n_particles": 256,
    "pretrain_iters": 5,
    "pretrain_batch": 64,
}
TINY: dict[str, dict] = {
    "variational_jko": {"n_particles": 2048, "batch_size": 256, "iters_per_step": 5},
    "exact_jko": {},
    "jko_icnn_exact": _ICNN_TINY,
    "jko_icnn_stochastic": {**_ICNN_TINY, "cg_iters": 5},
    "em_particles": {"n_particles": 1024},
    "identity": {},
    "neural_jko": {"n_particles": 256, "batch_size": 64, "iters_per_step": 3, "width": 8, "rk4_steps": 2},
    "neural_jko_ic": {
        "n_particles": 256,
        "batch_size": 64,
        "iters_per_step": 3,
        "width": 8,
        "rk4_steps": 2,
        "n_flow_steps": 0,
    },
}
# methods whose every random draw comes from their own generator: a restored run is bit-identical
DETERMINISTIC_RESTORE = {
    "exact_jko",
    "jko_icnn_exact",
    "jko_icnn_stochastic",
    "em_particles",
    "identity",
    "neural_jko",
    "neural_jko_ic",
}
# methods that refuse OU (samplers of stationary targets) run the contract on their natural problem (name, dim)
NATURAL_PROBLEM = {"neural_jko_ic": ("hg_8modes", 2)}
H = 0.05
N_SAMPLES = 300


def _problem(dim: int = 2):
    return make_problem("ou", dim, 0)


def _natural_problem(name: str):
    problem, dim = NATURAL_PROBLEM.get(name, ("ou", 2))
    return make_problem(problem, dim, 0)


def _build(name: str, problem=None):
    if name not in TINY:
        pytest.fail(f"method {name!r} is registered but has no tiny configuration in tests/test_method_contract.py")
    return make_method(name, problem if problem is not None else _natural_problem(name), H, TINY[name], seed=3)


def test_every_registered_method_has_a_tiny_config():
    missing = sorted(set(METHODS) - set(TINY))
    assert not missing, f"registered methods without a tiny contract configuration: {missing}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_steps_samples_and_stats(name):
    method = _build(name)
    assert method.k == 0
    x0 = method.sample(N_SAMPLES, torch.Generator().manual_seed(0))
    assert x0.shape == (N_SAMPLES, 2)
    for k in (1, 2):
        stats = method.step()
        assert method.k == k
        assert isinstance(stats, StepStats)
        assert math.isfinite(stats.train_s) and stats.train_s >= 0
        assert math.isfinite(stats.regen_s) and stats.regen_s >= 0
        assert isinstance(stats.loss, float)
        assert isinstance(stats.extra, dict) and all(isinstance(v, float) for v in stats.extra.values())
    x = method.sample(N_SAMPLES, torch.Generator().manual_seed(1))
    assert x.shape == (N_SAMPLES, 2)
    assert x.dtype == method.dtype
    assert x.device.type == "cpu"
    assert bool(torch.isfinite(x).all())


@pytest.mark.parametrize("name", sorted(n for n in METHODS if method_class(n).has_density))
def test_log_densities_at_samples_and_at_arbitrary_points(name):
    problem = _natural_problem(name)
    method = _build(name, problem)
    method.step()
    method.step()
    x, lp = method.sample_with_log_density(200, torch.Generator().manual_seed(2))
    assert x.shape == (200, 2) and lp.shape == (200,)
    assert bool(torch.isfinite(x).all()) and bool(torch.isfinite(lp).all())
    # at arbitrary points (from the exact solution): finite, one value per point
    z = problem.reference(2 * H).sample(50, torch.Generator().manual_seed(4))
    lz = method.log_density(z)
    assert lz.shape == (50,) and bool(torch.isfinite(lz).all())
    # at the model's own samples, the density at a point agrees with the change of variables that made it
    torch.testing.assert_close(method.log_density(x).to(torch.float64), lp.to(torch.float64), rtol=1e-4, atol=1e-4)


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_state_dict_round_trip(name):
    original = _build(name)
    original.step()
    state = _roundtrip(original.state_dict())
    original.step()
    expected = original.sample(N_SAMPLES, torch.Generator().manual_seed(5))

    restored = _build(name)
    restored.load_state_dict(state)
    assert restored.k == 1
    restored.step()
    assert restored.k == 2
    got = restored.sample(N_SAMPLES, torch.Generator().manual_seed(5))
    assert got.shape == expected.shape and bool(torch.isfinite(got).all())
    if name in DETERMINISTIC_RESTORE:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_unsupported_functional_is_refused_clearly(name):
    problem = dataclasses.replace(_problem(), functional="interaction_energy")
    with pytest.raises(UnsupportedProblem, match="interaction_energy"):
        _build(name, problem)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_problems_outside_the_method_are_refused(name):
    cls = method_class(name)
    if cls.max_dim is not None:
        with pytest.raises(UnsupportedProblem, match="dim"):
            _build(name, _problem(cls.max_dim + 1))
    porous = make_problem("barenblatt", 2, 0)
    if "generalised_entropy" not in cls.functionals:
        with pytest.raises(UnsupportedProblem, match=r"generalised_entropy|barenblatt"):
            _build(name, porous)
    else:
        method = _build(name, porous)
        method.step()
        assert bool(torch.isfinite(method.sample(64, torch.Generator().manual_seed(0))).all())
