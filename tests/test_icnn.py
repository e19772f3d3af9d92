"""DenseICNN: convexity by construction, strongly monotone gradient map, identity pretraining."""

from __future__ import annotations

import pytest
import torch

from wgfbench.densities import batched_grad, batched_grad_and_hessian, batched_hessian
from wgfbench.nets.icnn import DenseICNN, pretrain_identity

torch.set_num_threads(1)


def _net(dim: int = 3, alpha: float = 0.1, seed: int = 0, **kw) -> DenseICNN:
    torch.manual_seed(seed)
    return DenseICNN(dim, kw.pop("hidden", (16, 16)), rank=kw.pop("rank", 3), strong_convexity=alpha, **kw).double()


@pytest.mark.parametrize("activation", ["softplus", "celu"])
def test_gradient_map_is_strongly_monotone(activation):
    alpha = 0.05
    net = _net(dim=4, alpha=alpha, activation=activation)
    # push the raw weights far negative and positive: non-negativity must hold by construction anyway
    with torch.no_grad():
        for p in net.parameters():
            p.add_(3.0 * torch.randn_like(p))
    gen = torch.Generator().manual_seed(1)
    x = 2.0 * torch.randn(2000, 4, generator=gen, dtype=torch.float64)
    y = x + torch.randn(2000, 4, generator=gen, dtype=torch.float64) * torch.rand(2000, 1, generator=gen).double()
    gx, gy = net.gradient(x), net.gradient(y)
    inner = ((gx - gy) * (x - y)).sum(-1)
    sq = ((x - y) ** 2).sum(-1)
    # <grad psi(x) - grad psi(y), x - y> >= alpha |x - y|^2, up to float64 round-off
    assert bool((inner >= alpha * sq - 1e-9 * (1 + inner.abs())).all())
    # and the slack is really there: some pairs are far above the strong-convexity floor
    assert float((inner - alpha * sq).max()) > 1.0


def test_weights_are_non_negative_and_hessian_psd():
    net = _net(dim=3, alpha=0.0, hidden=(8, 8, 8))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(-5.0)
    assert all(bool((layer.weight > 0).all()) for layer in [*net.convex, net.out])
    x = torch.randn(50, 3, dtype=torch.float64)
    eig = torch.linalg.eigvalsh(batched_hessian(net, x))
    assert float(eig.min()) > -1e-10


def test_autograd_gradient_matches_torch_func_and_finite_differences():
    net = _net(dim=3)
    x = torch.randn(5, 3, dtype=torch.float64)
    g = net.gradient(x)
    torch.testing.assert_close(g, batched_grad(net, x), rtol=1e-12, atol=1e-12)
    eps = 1e-6
    fd = torch.stack(
        [(net(x + eps * e) - net(x - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=torch.float64)], dim=-1
    )
    torch.testing.assert_close(g, fd.detach(), rtol=1e-6, atol=1e-7)


def test_single_hidden_layer_icnn_is_affine():
    net = _net(dim=3, hidden=(6,), alpha=1e-3)
    x = 3.0 * torch.randn(20, 3, dtype=torch.float64)
    h = batched_hessian(net, x)
    torch.testing.assert_close(h, h[:1].expand_as(h), rtol=1e-12, atol=1e-12)


def test_forward_accepts_single_points_and_batches():
    net = _net(dim=2)
    x = torch.randn(4, 2, dtype=torch.float64)
    assert net(x).shape == (4,)
    assert net(x[0]).shape == ()
    torch.testing.assert_close(net(x[0]), net(x)[0])


def test_invalid_configuration_is_refused():
    with pytest.raises(ValueError, match="activation"):
        DenseICNN(2, (4,), activation="relu")
    with pytest.raises(ValueError, match="hidden"):
        DenseICNN(2, ())


def test_identity_pretraining_reaches_its_tolerance():
    torch.manual_seed(0)
    net = DenseICNN(2, (16, 16), rank=2)
    gen = torch.Generator().manual_seed(0)
    res = pretrain_identity(net, lambda n: torch.randn(n, 2, generator=gen), batch_size=256, max_iters=3000, tol=1e-3)
    assert res.converged and res.loss < 1e-3 and res.iterations < 3000
    x = torch.randn(512, 2, generator=gen)
    assert float(((net.gradient(x) - x) ** 2).mean()) < 5e-3


@pytest.mark.parametrize("activation", ["softplus", "celu"])
@pytest.mark.parametrize("hidden", [(6,), (16, 16), (8, 8, 8)])
def test_closed_form_gradient_and_hessian_match_torch_func(activation, hidden):
    net = _net(dim=3, hidden=hidden, activation=activation, alpha=0.01)
    # scale up some weights so that pre-activations cross softplus's linear threshold (20) and celu's kink (0)
    with torch.no_grad():
        net.quadratic[-1].linear.bias.copy_(torch.linspace(-30.0, 30.0, hidden[-1], dtype=torch.float64))
    x = 2.0 * torch.randn(64, 3, dtype=torch.float64)
    g, h = net.grad_and_hessian(x)
    g_ref, h_ref = batched_grad_and_hessian(net, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)


def test_closed_form_hessian_is_differentiable_like_torch_func():
    net = _net(dim=3)
    x = torch.randn(32, 3, dtype=torch.float64)
    _, h = net.grad_and_hessian(x)
    g1 = torch.autograd.grad(torch.logdet(h).mean(), list(net.parameters()), allow_unused=True)
    _, h_ref = batched_grad_and_hessian(net, x)
    g2 = torch.autograd.grad(torch.logdet(h_ref).mean(), list(net.parameters()), allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        assert (a is None) == (b is None) or float((a if a is not None else b).abs().max()) == 0.0
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_mokrov_parametrisation_clamps_and_keeps_the_closed_form_derivatives():
    torch.manual_seed(0)
    net = DenseICNN(3, (16, 16), rank=3, strong_convexity=0.01, parametrisation="mokrov").double()
    # Mokrov's initialisation: every parameter N(0, 1/16), negative weights included until the first clamp
    raw = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert abs(float(raw.std()) - 0.25) < 0.03 and bool((net.out.weight < 0).any())
    net.convexify()
    weights = [layer.weight for layer in (*net.convex, net.out)]
    assert all(bool((w >= 0).all()) for w in weights) and any(bool((w == 0).any()) for w in weights)
    x = 2.0 * torch.randn(64, 3, dtype=torch.float64)
    g, h = net.grad_and_hessian(x)
    g_ref, h_ref = batched_grad_and_hessian(net, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    assert float(torch.linalg.eigvalsh(h).min()) >= 0.01 - 1e-9  # convex: Hess psi >= alpha I


def test_softplus_parametrisation_has_nothing_to_clamp():
    net = _net(dim=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.convexify()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="parametrisation"):
        DenseICNN(2, (4,), parametrisation="clamp")


def test_identity_pretraining_without_tolerance_runs_every_iteration_and_projects():
    torch.manual_seed(0)
    net = DenseICNN(2, (8, 8), rank=2, parametrisation="mokrov")
    gen = torch.Generator().manual_seed(0)
    calls = []

    def project() -> None:
        calls.append(1)
        net.convexify()

    res = pretrain_identity(net, lambda n: torch.randn(n, 2, generator=gen), 64, lr=5e-3, max_iters=25, tol=None,
                            project=project)  # fmt: skip
    assert res.iterations == 25 and not res.converged and len(calls) == 25
    assert all(bool((layer.weight >= 0).all()) for layer in (*net.convex, net.out))
