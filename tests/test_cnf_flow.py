"""CNF machinery: divergences by forward tangents, RK4 and adjoint solvers, densities of frozen flows and stacks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap
from wgfbench_baselines.cnf_flow import (
    CNFLayer,
    FrozenFlow,
    adjoint_integrate,
    log_density_stack,
    rk4_integrate,
    rk4_steps_from_nfe,
    sample_stack,
    torchdiffeq_available,
)

from wgfbench.nets.velocity import VelocityMLP, divergence_from_jvp, rademacher
from wgfbench.problems.gaussian import GaussianLaw

torch.set_num_threads(1)
F64 = torch.float64


def _random_velocity(dim: int, width: int = 16, seed: int = 0) -> VelocityMLP:
    """A VelocityMLP whose output layer is not zero (a freshly built one is v = 0)."""
    gen = torch.Generator().manual_seed(seed)
    net = VelocityMLP(dim, width, generator=gen).double()
    with torch.no_grad():
        for p in (net.wx[-1], net.wt[-1], net.b[-1]):
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=F64))
    return net


class AffineVelocity(nn.Module):
    """v(x, t) = B x + c: its flow is T(x) = e^B x + B^{-1}(e^B - I) c, with log det DT = tr B."""

    def __init__(self, b: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.b, self.c = nn.Parameter(b), nn.Parameter(c)

    def forward(self, x, t):
        return x @ self.b.T + self.c

    def forward_with_jvp(self, x, t, tangents):
        e = torch.eye(x.shape[1], dtype=x.dtype).expand(x.shape[0], -1, -1) if tangents is None else tangents
        return self(x, t), e @ self.b.T


class TanhVelocity(nn.Module):
    """A smooth nonlinear field v(x, t) = W tanh(B x + t c) (an ELU network is only C^1, too rough for RK4's order)."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.b = nn.Parameter(torch.randn(8, dim, generator=gen, dtype=F64))
        self.c = nn.Parameter(torch.randn(8, generator=gen, dtype=F64))
        self.w = nn.Parameter(0.5 * torch.randn(dim, 8, generator=gen, dtype=F64))

    def forward(self, x, t):
        return torch.tanh(x @ self.b.T + t * self.c) @ self.w.T

    def forward_with_jvp(self, x, t, tangents):
        a = torch.tanh(x @ self.b.T + t * self.c)
        e = torch.eye(x.shape[1], dtype=x.dtype).expand(x.shape[0], -1, -1) if tangents is None else tangents
        return a @ self.w.T, ((e @ self.b.T) * (1 - a**2).unsqueeze(-2)) @ self.w.T


def test_new_velocity_field_is_zero_and_time_enters_every_layer():
    net = VelocityMLP(3, 10, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 3)
    assert torch.equal(net(x, 0.7), torch.zeros(5, 3))
    assert [w.shape[1] for w in net.wx] == [3, 10, 10, 10] and len(net.wt) == 4
    # the same seed gives the same network; another seed another one
    again = VelocityMLP(3, 10, generator=torch.Generator().manual_seed(0))
    other = VelocityMLP(3, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net.wx[0], again.wx[0]) and not torch.equal(net.wx[0], other.wx[0])


@pytest.mark.parametrize("t", [0.0, 0.6])
def test_forward_tangents_give_the_autograd_jacobian_and_its_trace(t):
    net = _random_velocity(4)
    x = torch.randn(9, 4, dtype=F64)
    v, jv = net.forward_with_jvp(x, t, None)
    jac = vmap(jacrev(lambda xi: net(xi.unsqueeze(0), t).squeeze(0)))(x)  # (n, d, d), J[i, j] = dv_i/dx_j
    torch.testing.assert_close(v, net(x, t), rtol=0, atol=0)
    torch.testing.assert_close(jv, jac.transpose(1, 2), rtol=1e-12, atol=1e-12)  # row i of jv = column i of J
    div = divergence_from_jvp(jv, None).squeeze(-1)
    torch.testing.assert_close(div, torch.diagonal(jac, dim1=1, dim2=2).sum(-1), rtol=1e-12, atol=1e-12)
    probes = rademacher((9, 3, 4), torch.Generator().manual_seed(0), F64, "cpu")
    _, jv_p = net.forward_with_jvp(x, t, probes)
    expected = torch.einsum("npi,nij,npj->np", probes, jac, probes)
    torch.testing.assert_close(divergence_from_jvp(jv_p, probes), expected, rtol=1e-12, atol=1e-12)


def test_divergence_gradient_is_that_of_autograd():
    """The tangent divergence is an ordinary differentiable expression: its parameter gradient is autograd's."""
    net = _random_velocity(3)
    x = torch.randn(6, 3, dtype=F64)
    _, jv = net.forward_with_jvp(x, 0.3, None)
    params = list(net.parameters())

    def grads(value):  # the output layer's bias and time column do not enter the divergence: zero gradients
        gs = torch.autograd.grad(value, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]

    g1 = grads(divergence_from_jvp(jv, None).sum())

    def div_autograd():
        xr = x.clone().requires_grad_(True)
        v = net(xr, 0.3)
        rows = [torch.autograd.grad(v[:, i].sum(), xr, create_graph=True)[0][:, i] for i in range(3)]
        return torch.stack(rows, 1).sum()

    g2 = grads(div_autograd())
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_affine_flow_map_log_determinant_and_density_against_closed_form():
    gen = torch.Generator().manual_seed(3)
    b = 0.4 * torch.randn(2, 2, generator=gen, dtype=F64)
    c = torch.randn(2, generator=gen, dtype=F64)
    flow = FrozenFlow(AffineVelocity(b, c), n_steps=16)
    e_b = torch.linalg.matrix_exp(b)
    shift = torch.linalg.solve(b, (e_b - torch.eye(2, dtype=F64)) @ c)
    x = torch.randn(50, 2, generator=gen, dtype=F64)
    y, logdet, var = flow.forward_with_logdet(x, 0, None)
    torch.testing.assert_close(y, x @ e_b.T + shift, rtol=1e-7, atol=1e-7)  # RK4 error (|B|/16)^5
    torch.testing.assert_close(logdet, torch.full((50,), float(torch.trace(b)), dtype=F64), rtol=0, atol=1e-12)
    assert torch.equal(var, torch.zeros(50, dtype=F64))
    x_back, logdet_back = flow.inverse_with_logdet(y, 0, None)
    torch.testing.assert_close(x_back, x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(logdet_back, logdet, rtol=0, atol=1e-12)
    # P_1 = T # N(0, I) = N(shift, e^B e^B^T): the stack's log-densities, at its samples and anywhere
    p0 = GaussianLaw(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    exact = GaussianLaw(shift, e_b @ e_b.T)
    layers = [CNFLayer(flow, 0)]
    ys, lp = sample_stack(layers, p0, 400, torch.Generator().manual_seed(0), F64, torch.device("cpu"), True)
    torch.testing.assert_close(lp, exact.log_density(ys), rtol=1e-7, atol=1e-7)
    z = torch.randn(300, 2, generator=gen, dtype=F64) * 2
    lz = log_density_stack(layers, p0, z, torch.Generator().manual_seed(0), F64)
    torch.testing.assert_close(lz, exact.log_density(z), rtol=1e-7, atol=1e-7)


def test_rk4_kinetic_energy_and_order_of_accuracy():
    """w(1) of a constant velocity is |c|^2; the RK4 errors of a smooth nonlinear flow fall like dt^4."""
    flow = AffineVelocity(torch.zeros(2, 2, dtype=F64), torch.tensor([0.3, -1.2], dtype=F64))
    out = rk4_integrate(flow, torch.randn(5, 2, dtype=F64), 3, 0)
    torch.testing.assert_close(out.transport, torch.full((5,), 0.09 + 1.44, dtype=F64), rtol=1e-12, atol=0)
    net = TanhVelocity(2)
    x = torch.randn(20, 2, dtype=F64)
    with torch.no_grad():
        ref = rk4_integrate(net, x, 512, 0)
        for what in ("z", "div", "transport"):
            errs = [
                float((getattr(rk4_integrate(net, x, n, 0), what) - getattr(ref, what)).abs().max()) for n in (8, 16)
            ]
            assert 12.0 < errs[0] / errs[1] < 20.0, (what, errs)  # 2^4 = 16


def test_hutchinson_log_determinant_is_unbiased_and_its_variance_is_estimated():
    net = _random_velocity(3, seed=2)
    flow = FrozenFlow(net, n_steps=4)
    x = torch.randn(8, 3, dtype=F64)
    _, exact, _ = flow.forward_with_logdet(x, 0, None)
    gen = torch.Generator().manual_seed(0)
    draws = [flow.forward_with_logdet(x, 4, gen) for _ in range(400)]
    est = torch.stack([d[1] for d in draws])  # (400, n)
    reported_var = torch.stack([d[2] for d in draws]).mean(0)
    empirical_var = est.var(0)
    se = (empirical_var / est.shape[0]).sqrt()
    assert bool(((est.mean(0) - exact).abs() < 4.5 * se).all())
    ratio = reported_var / empirical_var
    assert bool(((ratio > 0.75) & (ratio < 1.33)).all()), ratio


def test_rk4_steps_from_nfe():
    assert [rk4_steps_from_nfe(n) for n in (0, 4, 14, 26.5)] == [1, 2, 5, 8]


@pytest.mark.skipif(not torchdiffeq_available(), reason="torchdiffeq (optional extra 'cnf') is not installed")
def test_adjoint_solver_agrees_with_rk4_in_values_and_gradients():
    net = TanhVelocity(2, seed=4)
    x = torch.randn(16, 2, dtype=F64)
    ad, nfe = adjoint_integrate(net, x, 0, None, atol=1e-9, rtol=1e-9)
    rk = rk4_integrate(net, x, 64, 0)
    assert nfe > 6
    for a, b in ((ad.z, rk.z), (ad.transport, rk.transport), (ad.div, rk.div)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    def loss(integral):
        return (integral.z**2).sum() + integral.transport.sum() - integral.div.sum()

    params = list(net.parameters())
    g_ad = torch.autograd.grad(loss(adjoint_integrate(net, x, 0, None, atol=1e-9, rtol=1e-9)[0]), params)
    g_rk = torch.autograd.grad(loss(rk4_integrate(net, x, 64, 0)), params)
    for a, b in zip(g_ad, g_rk, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adjoint_solver_refuses_clearly_without_torchdiffeq(monkeypatch):
    import wgfbench_baselines.cnf_flow as cnf_flow

    monkeypatch.setattr(cnf_flow, "torchdiffeq_available", lambda: False)
    with pytest.raises(ImportError, match=r"wgfbench\[cnf\]"):
        cnf_flow.adjoint_integrate(_random_velocity(2), torch.randn(3, 2, dtype=F64), 0, None)


def test_probe_count_one_reports_no_variance():
    with torch.no_grad():
        out = rk4_integrate(
            _random_velocity(2), torch.randn(4, 2, dtype=F64), 2, 1, torch.Generator(), fresh_probes=True
        )
    assert out.div_var is None and math.isfinite(float(out.div.sum()))
