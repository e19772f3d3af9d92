"""Pushforward densities: batched Hessian/log-det, change of variables, inversion of gradient maps."""

from __future__ import annotations

import pytest
import torch

from wgfbench.densities import (
    AffineMap,
    GradientMap,
    InversionError,
    JacobianMap,
    batched_grad,
    batched_grad_and_hessian,
    batched_hessian,
    batched_jacobian,
    log_density_by_inversion,
    logdet_spd,
    push_with_log_density,
)
from wgfbench.nets.icnn import DenseICNN
from wgfbench.problems.gaussian import GaussianLaw

torch.set_num_threads(1)
F64 = torch.float64


def _icnn(dim: int, hidden=(16, 16), alpha: float = 0.2, seed: int = 0) -> DenseICNN:
    torch.manual_seed(seed)
    return DenseICNN(dim, hidden, rank=3, strong_convexity=alpha).double()


def _spd(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=F64)
    return m @ m.T / dim + 0.5 * torch.eye(dim, dtype=F64)


def _brute_force_hessian(net, x: torch.Tensor) -> torch.Tensor:
    """d separate backward passes per batch: row i of the Hessian = grad of (d psi / d x_i)."""
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(xr).sum(), xr, create_graph=True)
    rows = [torch.autograd.grad(g[:, i].sum(), xr, retain_graph=True)[0] for i in range(x.shape[1])]
    return torch.stack(rows, dim=1)


def test_batched_hessian_and_logdet_match_brute_force():
    net = _icnn(4)
    x = torch.randn(32, 4, dtype=F64)
    g, h = batched_grad_and_hessian(net, x)
    h_bf = _brute_force_hessian(net, x)
    torch.testing.assert_close(h, h_bf, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g, net.gradient(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logdet_spd(h), torch.linalg.slogdet(h_bf)[1], rtol=1e-10, atol=1e-12)
    ld_bf = torch.linalg.slogdet(h_bf)[1]
    for mode in ("auto", "torch_func"):  # the DenseICNN's closed form, and torch.func
        tx, ld = GradientMap(net, hessian=mode).forward_with_logdet(x)
        torch.testing.assert_close(tx, net.gradient(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ld, ld_bf, rtol=1e-10, atol=1e-12)
    # the Jacobian of the gradient map is the Hessian
    torch.testing.assert_close(batched_jacobian(lambda z: batched_grad(net, z), x), h, rtol=1e-10, atol=1e-12)


def test_logdet_is_differentiable_in_the_parameters():
    net = _icnn(3)
    x = torch.randn(16, 3, dtype=F64)
    logdet_spd(batched_hessian(net, x)).mean().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(gr).all()) for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_logdet_spd_reports_indefinite_matrices_as_nan():
    h = torch.stack([torch.eye(2, dtype=F64) * 2.0, torch.diag(torch.tensor([1.0, -1.0], dtype=F64))])
    out = logdet_spd(h)
    assert out[0].item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    assert torch.isnan(out[1])


def test_inversion_recovers_points_to_tolerance():
    net = _icnn(5, alpha=0.05)
    gen = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(400, 5, generator=gen, dtype=F64)
    y = net.gradient(x)
    inv = GradientMap(net).inverse(y, tol=1e-10)
    assert bool(inv.converged.all())
    assert float(inv.residual.max()) <= 1e-10
    # the x-error is bounded by residual / lambda_min(H) <= residual / alpha
    assert float((inv.x - x).norm(dim=-1).max()) <= 1e-10 / 0.05
    assert float(inv.step.max()) <= 1e-10 / 0.05


def test_inversion_failure_is_reported_never_silent():
    net = _icnn(3)
    y = 3.0 * net.gradient(torch.randn(10, 3, dtype=F64))
    with pytest.warns(RuntimeWarning, match="missed its tolerance"):
        res = log_density_by_inversion(
            [GradientMap(net)], y, GaussianLaw(torch.zeros(3), torch.eye(3)).log_density, max_iter=0
        )
    assert res.n_failed == 10 and bool(torch.isnan(res.log_density).all())
    with pytest.raises(InversionError):
        log_density_by_inversion(
            [GradientMap(net)], y, GaussianLaw(torch.zeros(3), torch.eye(3)).log_density, max_iter=0, on_failure="raise"
        )


def test_affine_map_change_of_variables_is_exact_for_gaussians():
    d = 3
    p0 = GaussianLaw(torch.tensor([0.5, -1.0, 0.0], dtype=F64), _spd(d, 1))
    a, c = _spd(d, 2), torch.tensor([1.0, 2.0, -0.5], dtype=F64)
    pk = GaussianLaw(a @ p0.mean + c, a @ p0.cov @ a.T)
    maps = [AffineMap(a, c)]
    x0 = p0.sample(256, torch.Generator().manual_seed(0))
    y, lp = push_with_log_density(maps, x0, p0.log_density(x0))
    torch.testing.assert_close(lp, pk.log_density(y), rtol=1e-12, atol=1e-12)
    z = 2.0 * torch.randn(256, d, dtype=F64)
    res = log_density_by_inversion(maps, z, p0.log_density)
    torch.testing.assert_close(res.log_density, pk.log_density(z), rtol=1e-12, atol=1e-12)


def _affine_part_of_one_layer_icnn(net: DenseICNN) -> tuple[torch.Tensor, torch.Tensor]:
    """grad psi(x) = S x + c for a one-hidden-layer ICNN, read off its parameters (independent of autograd)."""
    quad = net.quadratic[0]
    w = net.out.weight.detach().squeeze(0)  # (width,)
    q = quad.quad.detach()  # (rank, width, d)
    s = 2.0 * torch.einsum("j,rji,rjk->ik", w, q, q) + net.strong_convexity * torch.eye(net.dim, dtype=F64)
    c = quad.linear.weight.detach().T @ w
    return s, c


def test_one_layer_icnn_chain_density_matches_the_gaussian_exactly():
    d = 3
    p0 = GaussianLaw(torch.zeros(d, dtype=F64), _spd(d, 4))
    nets = [_icnn(d, hidden=(8,), alpha=0.3, seed=s) for s in (0, 1)]
    law = p0
    for net in nets:  # the exact pushforward: N(S m + c, S C S)
        s, c = _affine_part_of_one_layer_icnn(net)
        law = GaussianLaw(s @ law.mean + c, s @ law.cov @ s)
    maps = [GradientMap(n) for n in nets]
    x0 = p0.sample(300, torch.Generator().manual_seed(1))
    y, lp = push_with_log_density(maps, x0, p0.log_density(x0))
    torch.testing.assert_close(lp, law.log_density(y), rtol=1e-11, atol=1e-11)
    z = law.sample(300, torch.Generator().manual_seed(2))
    res = log_density_by_inversion(maps, z, p0.log_density)
    assert res.n_failed == 0
    torch.testing.assert_close(res.log_density, law.log_density(z), rtol=1e-11, atol=1e-11)


def test_inversion_and_change_of_variables_agree_on_a_deep_icnn_chain():
    d = 2
    p0 = GaussianLaw(torch.zeros(d, dtype=F64), torch.eye(d, dtype=F64))
    maps = [GradientMap(_icnn(d, hidden=(16, 16), alpha=0.3, seed=s)) for s in (0, 1, 2)]
    x0 = p0.sample(200, torch.Generator().manual_seed(5))
    y, lp = push_with_log_density(maps, x0, p0.log_density(x0))
    res = log_density_by_inversion(maps, y, p0.log_density)
    assert res.n_failed == 0
    torch.testing.assert_close(res.x0, x0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(res.log_density, lp, rtol=1e-8, atol=1e-8)


def test_jacobian_map_logdet_equals_gradient_map_logdet():
    net = _icnn(3)
    x = torch.randn(20, 3, dtype=F64)
    _, ld_grad = GradientMap(net).forward_with_logdet(x)
    _, ld_jac = JacobianMap(lambda z: batched_grad(net, z)).forward_with_logdet(x)
    torch.testing.assert_close(ld_grad, ld_jac, rtol=1e-10, atol=1e-12)
