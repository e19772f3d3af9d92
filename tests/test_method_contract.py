"""The method contract, checked for EVERY registered method on its own tiny CPU configuration (``tiny_params``) of OU
in d = 2: its facts live on its class, it steps, samples and (where it says so) has densities, it restores exactly
from its state dict unless it says why not, and it refuses what it cannot run with a clear reason."""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

import matplotlib.colors
import pytest
import torch

from wgfbench.methods.base import ROLES, JKOMethod, StepStats, UnsupportedProblem
from wgfbench.registry import make_method, make_problem, method_class, methods

torch.set_num_threads(1)

METHODS = tuple(methods())
H = 0.05
N_SAMPLES = 300


def _problem(dim: int = 2):
    return make_problem("ou", dim, 0)


def _natural_problem(name: str):
    """The problem (d = 2) the method's contract runs on: OU, or the one its class names (a sampler of stationary
    targets refuses OU)."""
    return make_problem(method_class(name).contract_problem, 2, 0)


def _build(name: str, problem=None):
    cls = method_class(name)
    return make_method(name, problem if problem is not None else _natural_problem(name), H, cls.tiny_params, seed=3)


@pytest.mark.parametrize("name", METHODS)
def test_facts_live_on_the_class(name):
    cls = method_class(name)
    assert issubclass(cls, JKOMethod) and cls.name == name
    assert cls.role in ROLES
    if cls.color is not None:
        matplotlib.colors.to_rgb(cls.color)  # a colour matplotlib understands
    assert isinstance(cls.tiny_params, dict) and isinstance(cls.timing_params, dict)
    assert cls.restores_exactly or cls.restore_note, f"{name} does not restore exactly and says not why"
    if cls.accelerated:  # a method that trains networks must say how small its timing budget is
        assert cls.timing_params, f"{name} trains networks but declares no timing_params"


def test_roles_order_the_methods():
    roles = [method_class(m).role for m in METHODS]
    assert roles == sorted(roles, key=ROLES.index)
    assert roles.count("centrepiece") == 1 and METHODS[0] == "variational_jko"


@pytest.mark.parametrize("name", METHODS)
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
        assert stats.loss is None or isinstance(stats.loss, float)
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
    if method_class(name).density_gaps:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "map inversion missed", RuntimeWarning)
            lz = method.log_density(z)
        assert lz.shape == (50,) and bool((torch.isfinite(lz) | torch.isnan(lz)).all())
        assert int(torch.isfinite(lz).sum()) >= 10
    else:
        lz = method.log_density(z)
        assert lz.shape == (50,) and bool(torch.isfinite(lz).all())
    # at the model's own samples, the density at a point agrees with the change of variables that made it
    if method_class(name).density_gaps:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "map inversion missed", RuntimeWarning)
            lx = method.log_density(x).to(torch.float64)
        resolved = ~torch.isnan(lx)
        assert int(resolved.sum()) >= 100
        torch.testing.assert_close(lx[resolved], lp.to(torch.float64)[resolved], rtol=1e-4, atol=1e-4)
    else:
        torch.testing.assert_close(method.log_density(x).to(torch.float64), lp.to(torch.float64), rtol=1e-4, atol=1e-4)


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", METHODS)
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
    if method_class(name).restores_exactly:
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", METHODS)
def test_unsupported_functional_is_refused_clearly(name):
    problem = dataclasses.replace(_problem(), functional="interaction_energy")
    with pytest.raises(UnsupportedProblem, match="interaction_energy"):
        _build(name, problem)


@pytest.mark.parametrize("name", METHODS)
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
