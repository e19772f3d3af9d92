"""The problem contract, checked for EVERY registered problem (as sbibm's task-interface test does).

Each problem is built by its registered factory with its default parameters in a small dimension it accepts, and
must: satisfy the :class:`~wgfbench.problems.base.Problem` protocol and the capability protocol of its functional;
be a pure function of (dim, seed); give exact laws (P_0, P_t, the exact JKO iterate where it has one) that sample
in the requested dtype and evaluate finite log-densities at their samples; describe itself with JSON scalars; and
be evaluable by the identity method, emitting only catalogued metric columns.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from wgfbench.evaluate import EvalSpec, evaluate_step
from wgfbench.problems.base import FUNCTIONAL_PROTOCOLS, Law, Problem, StationaryProblem
from wgfbench.registry import make_method, problem_factory, problems

torch.set_num_threads(1)
H = 0.05
N = 400


def _build(name: str, seed: int = 0):
    """The problem in the smallest of d = 2, 1, 3 its factory accepts with its defaults."""
    errors = []
    for dim in (2, 1, 3):
        try:
            return problem_factory(name)(dim=dim, seed=seed)
        except (ValueError, TypeError) as e:
            errors.append(f"d={dim}: {e}")
    pytest.fail(f"problem {name!r} builds in none of d = 2, 1, 3 with its defaults: {errors}")


def _check_law(law, dim: int, what: str) -> None:
    assert isinstance(law, Law), what
    assert law.dim == dim, what
    for dtype in (torch.float64, torch.float32):
        x = law.sample(N, torch.Generator().manual_seed(1), dtype=dtype)
        assert x.shape == (N, dim) and x.dtype == dtype and bool(torch.isfinite(x).all()), what
    lp = law.log_density(x.double())
    assert lp.shape == (N,) and not bool(torch.isnan(lp).any()), what
    assert bool(torch.isfinite(lp).all()), f"{what}: log-density not finite at its own samples"


@pytest.mark.parametrize("name", sorted(problems()))
def test_problem_meets_the_contract(name: str) -> None:
    problem = _build(name)
    assert isinstance(problem, Problem)
    assert isinstance(problem.name, str) and problem.name
    assert problem.functional in FUNCTIONAL_PROTOCOLS, f"unknown functional kind {problem.functional!r}"
    assert isinstance(problem, FUNCTIONAL_PROTOCOLS[problem.functional]), "lacks its functional's capability"
    assert isinstance(problem.transient, bool) and isinstance(problem.compact_support, bool)
    d = problem.dim
    _check_law(problem.initial(), d, "initial()")
    for t in (0.0, H, 2 * H):
        _check_law(problem.reference(t), d, f"reference({t})")
    assert problem.time_of_step(0, H) == 0.0
    assert 0 < problem.time_of_step(1, H) < problem.time_of_step(2, H)
    jko = problem.jko_reference(2, H)
    if jko is not None:
        _check_law(jko, d, "jko_reference(2, h)")
    info = problem.describe()
    assert isinstance(info, dict) and all(isinstance(v, str | int | float | bool) for v in info.values())
    json.dumps(info)
    if not problem.transient:
        assert isinstance(problem, StationaryProblem), "a non-transient problem must expose its target()"


@pytest.mark.parametrize("name", sorted(problems()))
def test_problem_is_a_pure_function_of_dim_and_seed(name: str) -> None:
    a, b = _build(name, seed=3), _build(name, seed=3)
    assert a.describe() == b.describe()
    xa = a.reference(H).sample(64, torch.Generator().manual_seed(0))
    xb = b.reference(H).sample(64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(xa, xb, rtol=0, atol=0)


def _names(condition) -> list[str]:
    """The registered problems (built with their defaults) for which ``condition(problem)`` holds."""
    return [name for name in sorted(problems()) if condition(_build(name))]


@pytest.mark.parametrize("name", _names(lambda p: p.transient))
def test_transient_problems_start_at_their_initial_law(name: str) -> None:
    """reference(0) is P_0 (moments of 20,000 samples of each agree to sampling error)."""
    problem = _build(name)
    gen = torch.Generator().manual_seed(2)
    x, y = problem.initial().sample(20_000, gen), problem.reference(0.0).sample(20_000, gen)
    sd = x.std(0).clamp_min(1e-12)
    assert bool(((x.mean(0) - y.mean(0)).abs() / sd < 0.06).all())
    assert bool(((x.std(0) / y.std(0)).log().abs() < 0.06).all())


@pytest.mark.parametrize("name", _names(lambda p: p.functional in ("kl", "kl_interaction")))
def test_kl_problems_have_a_differentiable_log_target(name: str) -> None:
    problem = _build(name)
    assert problem.temperature > 0
    static = problem.at_time(H) if problem.time_dependent else problem  # a moving target: its frozen F_t
    for dtype in (torch.float32, torch.float64):
        x = problem.initial().sample(32, torch.Generator().manual_seed(3), dtype=dtype).requires_grad_(True)
        lt = static.log_target(x)
        assert lt.shape == (32,) and lt.dtype == dtype and bool(torch.isfinite(lt).all())
        (g,) = torch.autograd.grad(lt.sum(), x)
        assert bool(torch.isfinite(g).all())


@pytest.mark.parametrize("name", sorted(problems()))
def test_every_problem_is_evaluable(name: str) -> None:
    """The identity method on the problem, evaluated at k = 0 and 1: every emitted column is catalogued (checked
    inside the evaluation) and the headline error of P_0 is a number."""
    problem = _build(name)
    method = make_method("identity", problem, H, {}, seed=0)
    spec = EvalSpec(n_samples=400, n_w2=100, n_mc=100, ksd_batch_size=100, ksd_batches=2)
    row0 = evaluate_step(problem, method, 0, H, spec)
    method.step()
    row1 = evaluate_step(problem, method, 1, H, spec)
    assert row1 and set(row1) <= set(row0)  # P_0 may be Gaussian (moment-fit columns) where P_t is not
    assert any(math.isfinite(v) for v in row1.values())
