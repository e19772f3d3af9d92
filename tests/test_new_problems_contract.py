"""The problems of issue 17 against the problem contract, the evaluation pipeline, and the methods' refusals."""

from __future__ import annotations

import math

import pytest
import torch

from wgfbench import registry
from wgfbench.evaluate import EvalSpec, evaluate_step
from wgfbench.methods.base import UnsupportedProblem
from wgfbench.problems.base import Law, Problem

NEW = ["dro_ou", "ou_moving", "porous_confined", "mckean_vlasov", "fokker_planck_nonconvex", "jsd_grid"]
SMALL = {"fokker_planck_nonconvex": {"cells": 60}, "jsd_grid": {"cells": 40}}


def build(name: str, dim: int = 2):
    return registry.make_problem(name, dim, 0, SMALL.get(name, {}))


@pytest.mark.parametrize("name", NEW)
def test_contract(name: str) -> None:
    p = build(name)
    assert isinstance(p, Problem) and p.dim == 2 and isinstance(p.name, str)
    assert isinstance(p.time_dependent, bool) and isinstance(p.transient, bool) and isinstance(p.compact_support, bool)
    assert all(isinstance(v, int | float | str) for v in p.describe().values())
    assert p.time_of_step(3, 0.05) == pytest.approx(0.15)
    gen = torch.Generator().manual_seed(0)
    for law in (p.initial(), p.reference(0.1)):
        assert isinstance(law, Law) and law.dim == 2
        x = law.sample(64, gen, dtype=torch.float32)
        assert x.dtype == torch.float32 and x.shape == (64, 2)
        assert bool(torch.isfinite(law.log_density(x)).all())
    jko = p.jko_reference(2, 0.05)
    assert jko is None or isinstance(jko, Law)
    if p.functional in ("kl", "kl_interaction", "jsd"):
        y = torch.randn(5, 2, dtype=torch.float32, requires_grad=True)
        lt = p.log_target(y, 0.1) if p.time_dependent else p.log_target(y)
        assert lt.dtype == torch.float32 and lt.shape == (5,)
        (g,) = torch.autograd.grad(lt.sum(), y)
        assert bool(torch.isfinite(g).all())
    if p.functional in ("kl", "kl_interaction"):
        assert p.temperature > 0


# which registered method accepts which new problem; every other pairing is refused with a one-line reason
ACCEPTS = {
    "variational_jko": set(NEW),  # every functional and capability (duals: KL, entropy, interaction, JSD)
    "exact_jko": {"dro_ou", "ou_moving", "mckean_vlasov"},  # the problems with Gaussian exact JKO iterates
    "jko_icnn_exact": {"dro_ou", "ou_moving", "porous_confined", "mckean_vlasov", "fokker_planck_nonconvex"},
    "jko_icnn_cpflow_grad": {"dro_ou", "ou_moving", "fokker_planck_nonconvex"},  # KL only
    "jko_icnn_am": {"dro_ou", "fokker_planck_nonconvex"},  # no time-dependent target, confinement, interaction
    "em_particles": {"dro_ou", "ou_moving", "mckean_vlasov", "fokker_planck_nonconvex"},  # SDEs of KL flows
    "neural_jko": {"dro_ou", "fokker_planck_nonconvex"},  # no time-dependent target, confinement, interaction
    "neural_jko_ic": set(),  # a sampler of stationary targets: every new problem is transient or not KL
    "s_jko": {"dro_ou", "fokker_planck_nonconvex"},  # KL problems whose target Q has an exact sampler
    "identity": set(NEW),
}


def test_the_matrix_names_every_method() -> None:
    assert set(ACCEPTS) == set(registry.methods())


@pytest.mark.parametrize("method", sorted(ACCEPTS))
def test_methods_accept_or_refuse_with_a_reason(method: str) -> None:
    cls = registry.method_class(method)
    for name in NEW:
        p = build(name)
        if name in ACCEPTS[method]:
            cls.check_supports(p)
        else:
            with pytest.raises(UnsupportedProblem) as err:
                cls.check_supports(p)
            assert method in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", NEW)
def test_identity_row_evaluates_on_every_new_problem(name: str) -> None:
    p = build(name)
    method = registry.make_method("identity", p, 0.05, {}, seed=0)
    method.step()
    row = evaluate_step(p, method, 1, 0.05, EvalSpec(n_samples=400, n_w2=200, n_mc=200))
    assert all(key in row for key in ("w2", "sw2", "energy", "w2_floor"))
    assert all(math.isfinite(row[k]) for k in ("w2", "sw2", "energy"))


def test_particles_run_the_nonconvex_fokker_planck_problem() -> None:
    """Euler-Maruyama, generic over KL problems, runs it as is and approaches the grid reference."""
    p = build("fokker_planck_nonconvex", dim=1)
    method = registry.make_method("em_particles", p, 0.01, {"n_particles": 4000, "substeps": 2}, seed=0)
    for _ in range(20):
        method.step()
    row = evaluate_step(p, method, 20, 0.01, EvalSpec(n_samples=2000, n_w2=1000, n_mc=500))
    assert row["w2"] < 3 * row["w2_floor"] + 0.02
    assert "symkl_kde" in row and math.isfinite(row["symkl_kde"])
