"""Alvarez-Melis et al.'s FICNN: convexity after the clamp, closed-form gradient and Hessian, architecture."""

from __future__ import annotations

import pytest
import torch

from wgfbench.densities import batched_grad_and_hessian
from wgfbench.nets.ficnn import FICNN, MIN_WEIGHT

torch.set_num_threads(1)
F64 = torch.float64


def _net(dim: int = 3, hidden=(16, 8), seed: int = 0, **kw) -> FICNN:
    torch.manual_seed(seed)
    return FICNN(dim, hidden, **kw).double()


def test_clamp_keeps_z_weights_non_negative_and_the_potential_convex():
    net = _net(dim=3, hidden=(12, 8, 6))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(2.0 * torch.randn_like(p))
    assert any(bool((w < 0).any()) for w in net.z_weights)  # the perturbation broke non-negativity
    net.convexify()
    assert all(bool((w >= MIN_WEIGHT).all()) for w in net.z_weights)
    # convexity along random segments: psi((x+y)/2) <= (psi(x) + psi(y))/2
    gen = torch.Generator().manual_seed(1)
    x, y = 2 * torch.randn(4000, 3, generator=gen, dtype=F64), 2 * torch.randn(4000, 3, generator=gen, dtype=F64)
    with torch.no_grad():
        gap = 0.5 * (net(x) + net(y)) - net(0.5 * (x + y))
    assert float(gap.min()) >= -1e-10 and float(gap.max()) > 1e-3
    eig = torch.linalg.eigvalsh(net.grad_and_hessian(x[:500])[1])
    assert float(eig.min()) >= -1e-10


def test_without_the_clamp_the_potential_can_be_non_convex():
    """The test above can fail: negative z-weights make psi non-convex somewhere."""
    net = _net(dim=2, hidden=(12, 8))
    with torch.no_grad():
        net.z_weights[0].copy_(-net.z_weights[0].abs() - 0.5)  # z_1 -> a_2 negative: the curvature flips sign
    eig = torch.linalg.eigvalsh(batched_grad_and_hessian(net, 3 * torch.randn(2000, 2, dtype=F64))[1])
    assert float(eig.min()) < -1e-7  # far below round-off (the clamped network stays above -1e-10)


@pytest.mark.parametrize("hidden", [(6,), (16, 8), (10, 7, 5)])
@pytest.mark.parametrize("slope", [0.01, 0.3])
def test_closed_form_gradient_and_hessian_match_torch_func(hidden, slope):
    net = _net(dim=3, hidden=hidden, negative_slope=slope)
    x = 2.0 * torch.randn(64, 3, dtype=F64)
    g, h = net.grad_and_hessian(x)
    g_ref, h_ref = batched_grad_and_hessian(net, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net.gradient(x), g_ref, rtol=1e-12, atol=1e-12)
    # and both sides of every unit's kink are visited, so the test covers the leaky branch
    a = net.input_layers[0](x)
    assert bool((a > 0).any()) and bool((a < 0).any())


def test_closed_form_hessian_is_differentiable_like_torch_func():
    net = _net(dim=3)
    x = torch.randn(32, 3, dtype=F64)
    params = list(net.parameters())
    g1 = torch.autograd.grad(torch.logdet(net.grad_and_hessian(x)[1]).mean(), params, allow_unused=True)
    g2 = torch.autograd.grad(torch.logdet(batched_grad_and_hessian(net, x)[1]).mean(), params, allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is None or b is None:
            assert (a if a is not None else b) is None or float((a if a is not None else b).abs().max()) == 0.0
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_architecture_is_theirs():
    net = _net(dim=2, hidden=(100, 20))
    assert [tuple(layer.weight.shape) for layer in net.input_layers] == [(100, 2), (20, 2), (1, 2)]
    assert [tuple(w.shape) for w in net.z_weights] == [(20, 100), (1, 20)]
    assert all(layer.bias is not None for layer in net.input_layers)
    x = torch.randn(5, 2, dtype=F64)
    assert net(x).shape == (5,)
    with pytest.raises(ValueError, match="hidden"):
        FICNN(2, ())
    with pytest.raises(ValueError, match="slope"):
        FICNN(2, (4,), negative_slope=1.5)
