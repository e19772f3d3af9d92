"""The variational JKO with compiled losses (``compile="default"``; torch.compile's inductor on the CPU).

CUDA graphs (``compile="reduce-overhead"``) need a GPU; on the CPU that mode compiles the same graphs
without them, which the last test runs. What is checked: the compiled losses compute the eager
functions (values and gradients on the same inputs), a refit of the reference does not recompile, and a
compiled run learns the 2-d OU flow to the eager run's accuracy bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from wgfbench.methods.variational_jko import FAN_POROUS_PARAMS
from wgfbench.metrics import symkl_moment
from wgfbench.registry import make_method, make_problem

TINY = dict(n_particles=2048, batch_size=256, iters_per_step=3, device="cpu")


@pytest.fixture
def fail_on_recompile() -> Iterator[None]:
    """Within the test body after the first step: any recompilation raises (reset afterwards)."""
    yield
    torch.compiler.set_stance("default")


def _ou(mode: str, **params):
    return make_method("variational_jko", make_problem("ou", 3, 0), 0.05, dict(TINY, compile=mode, **params), 0)


def _porous_mlp(mode: str):
    params = dict(FAN_POROUS_PARAMS, **TINY, map="mlp", compile=mode)
    return make_method("variational_jko", make_problem("barenblatt", 2, 0), 5e-4, params, 0)


def _grads(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("build", [_ou, _porous_mlp], ids=["kl", "entropy"])
def test_compiled_losses_equal_the_eager_ones(build) -> None:
    """Same inputs, same parameters: the compiled h-loss and T-loss and their gradients equal eager's."""
    torch.manual_seed(0)
    method = build("default")
    method.step()  # compiles; Gamma refitted, networks trained a little
    method.T.eval()  # no dropout: the two runs below must see the same function
    y = method.particles[:256]
    z = method.dual.sample_reference(256)
    with torch.no_grad():
        ty = method.T(y)
    r_params, t_params = list(method.dual_net.parameters()), list(method.T.parameters())
    for eager, compiled, params, args in (
        (method.dual.dual_loss, method._dual_loss, r_params, (ty, z)),
        (method._t_loss_at, method._t_loss_of, t_params, (y,)),
    ):
        assert compiled is not eager
        want, got = eager(*args), compiled(*args)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        for g_got, g_want in zip(_grads(got, params), _grads(eager(*args), params), strict=True):
            torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("build", [_ou, _porous_mlp], ids=["kl", "entropy"])
def test_refitting_the_reference_does_not_recompile(build, fail_on_recompile) -> None:
    method = build("default")
    method.step()
    torch.compiler.set_stance("fail_on_recompile")
    for _ in range(2):
        stats = method.step()
        assert math.isfinite(stats.loss)


def test_icnn_maps_compile_the_dual_only_and_unknown_modes_are_refused() -> None:
    params = dict(FAN_POROUS_PARAMS, **TINY, icnn_pretrain_iters=10, compile="default")
    method = make_method("variational_jko", make_problem("barenblatt", 2, 0), 5e-4, params, 0)
    assert method._t_loss_of == method._t_loss_at  # eager: T = grad psi needs a double backward
    assert method._dual_loss != method.dual.dual_loss
    assert math.isfinite(method.step().loss)
    refused = r"'compile': unknown value 'fast'; allowed: \['off', 'default', 'reduce-overhead'\]"
    with pytest.raises(ValueError, match=refused):
        _ou("fast")


def test_compiled_variational_jko_on_2d_ou_reaches_the_eager_bound() -> None:
    """The accuracy test of test_variational_jko.py, compiled with the CUDA-graph mode (CPU: no graphs).

    Same budget and bound: log10 SymKL (moment fit, 20k samples) < -2.0 at t = 0.5.
    """
    torch.manual_seed(0)
    problem = make_problem("ou", 2, 0)
    budget = dict(n_particles=8192, batch_size=512, iters_per_step=40, device="cpu", compile="reduce-overhead")
    method = make_method("variational_jko", problem, 0.05, budget, seed=0)
    for _ in range(10):
        assert math.isfinite(method.step().loss)
    x = method.sample(20_000, torch.Generator().manual_seed(1))
    err = symkl_moment(problem.reference(0.5), x)
    assert math.log10(err) < -2.0, err
    assert symkl_moment(problem.jko_reference(10, 0.05), x) < 5e-3
