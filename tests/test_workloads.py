"""The speed workloads compute what they claim: reference implementations agree with the library (nothing timed)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from wgfbench.bench import workloads as W

TINY_VJKO = {"n_particles": 256, "batch_size": 64, "iters_per_step": 2, "regen_chunk": 256}


@pytest.mark.parametrize("impl", ["analytic", "torch_func"])
def test_per_coordinate_hessian_matches_batched(impl):
    psi = W.icnn_potential(3).double()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = W.per_coordinate_hessian(psi, x)
    assert ref.shape == (5, 3, 3)
    torch.testing.assert_close(W.icnn_hessian(psi, x, impl), ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ref, ref.transpose(1, 2))


def test_icnn_hessian_rejects_unknown_impl():
    with pytest.raises(ValueError, match="unknown Hessian implementation"):
        W.icnn_hessian(W.icnn_potential(2), torch.zeros(1, 2), "magic")


@pytest.mark.parametrize("impl", W.LOGDET_IMPLS)
@pytest.mark.parametrize("train", [False, True])
def test_logdet_workloads_agree(impl, train):
    out = W.logdet_workload(3, 8, impl=impl, train=train).setup()()
    ref = W.logdet_workload(3, 8, impl="per_coordinate", train=train).setup()()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_naive_and_ours_train_the_same_networks():
    m = W.vjko_inner(2, params=TINY_VJKO)
    before = [p.detach().clone() for p in m.T.parameters()]
    loss = W.naive_train_step(m)
    assert torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, m.T.parameters(), strict=True))
    assert torch.isfinite(torch.tensor(m._train_step()))


def test_the_naive_workload_uses_torch_default_adam_and_ours_the_fused_one():
    naive = W.vjko_inner_workload(2, iters=1, naive=True)
    ours = W.vjko_inner_workload(2, iters=1)
    assert naive.setup.__code__ is ours.setup.__code__  # one setup, the variant chosen inside
    m = W.vjko_inner(2, iters=1)
    assert m.opt_t.param_groups[0]["fused"] is True and m.opt_dual.param_groups[0]["fused"] is True
    call = naive.setup()
    opt = call.__closure__[0].cell_contents.opt_t  # the method the naive loop trains
    assert not opt.param_groups[0]["fused"]
    assert math.isfinite(call())


def test_timing_params_keep_only_known_fields():
    from wgfbench.registry import method_class, methods

    for name in methods():
        params = W.timing_params(name)
        fields = {f.name for f in dataclasses.fields(method_class(name).Config)}
        assert set(params) <= fields, name
        assert params["device"] == "cpu"


def test_gate_workloads_have_unique_names():
    names = [w.name for w in W.gate_workloads()]
    assert len(names) == len(set(names))
