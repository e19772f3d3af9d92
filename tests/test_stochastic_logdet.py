"""Conjugate gradients, Lanczos quadrature and the Hutchinson log-det gradient against direct linear algebra."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from wgfbench_baselines.stochastic_logdet import (
    batched_cg,
    gauss_quadrature,
    lanczos,
    slq_logdet,
    stochastic_logdet_surrogate,
)

from wgfbench.nets.icnn import DenseICNN

torch.set_num_threads(1)
F64 = torch.float64


def _spd(n: int, d: int, seed: int = 0, cond: float = 50.0) -> torch.Tensor:
    """n random SPD matrices (d x d) with eigenvalues log-uniform in [1/sqrt(cond), sqrt(cond)]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, d, d, generator=gen, dtype=F64))
    lam = cond ** (torch.rand(n, d, generator=gen, dtype=F64) - 0.5)
    return (q * lam.unsqueeze(-2)) @ q.transpose(-1, -2)


def _hvp(h: torch.Tensor):
    return lambda p: (h @ p.unsqueeze(-1)).squeeze(-1)


def _logm_quadratic_form(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v_i^T log(H_i) v_i by eigendecomposition."""
    lam, u = torch.linalg.eigh(h)
    c = torch.einsum("nji,nj->ni", u, v)
    return (c**2 * torch.log(lam)).sum(-1)


# --- conjugate gradients -------------------------------------------------------------------------------------
@pytest.mark.parametrize("x0", ["zero", "b"])
def test_cg_solves_spd_systems(x0):
    h = _spd(16, 6)
    b = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    res = batched_cg(_hvp(h), b, max_iter=50, rtol=1e-12, x0=x0)
    assert res.converged and res.iterations <= 6 + 4  # exact in d steps up to round-off
    torch.testing.assert_close(res.x, torch.linalg.solve(h, b), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(res.residual, (b - _hvp(h)(res.x)).norm(dim=-1), rtol=1e-6, atol=1e-10)


def test_cg_absolute_max_norm_rule_stops_as_soon_as_every_entry_is_below_atol():
    h = _spd(32, 8, cond=1e3)
    b = torch.randn(32, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    atol = 1e-3
    res = batched_cg(_hvp(h), b, max_iter=100, atol=atol, x0="b", norm="max")
    r = b - _hvp(h)(res.x)
    assert res.converged and float(r.abs().max()) <= atol * (1 + 1e-6)
    # one iteration fewer leaves some entry above the tolerance (the rule is what stopped it)
    early = batched_cg(_hvp(h), b, max_iter=res.iterations - 1, atol=atol, x0="b", norm="max")
    assert not early.converged and float((b - _hvp(h)(early.x)).abs().max()) > atol
    # starting at x0 = b is already a solution when H = I: zero iterations
    eye = torch.eye(8, dtype=F64).expand(32, 8, 8)
    assert batched_cg(_hvp(eye), b, max_iter=10, atol=atol, x0="b", norm="max").iterations == 0


def test_cg_refuses_unknown_options():
    b = torch.ones(2, 2, dtype=F64)
    with pytest.raises(ValueError, match="x0"):
        batched_cg(lambda p: p, b, 3, x0="ones")
    with pytest.raises(ValueError, match="norm"):
        batched_cg(lambda p: p, b, 3, norm="l1")


# --- Lanczos and SLQ -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [2, 3, 5])
def test_lanczos_matrix_reproduces_the_moments_up_to_degree_2m_minus_1(m):
    d = 7
    h = _spd(8, d, seed=3)
    q1 = torch.nn.functional.normalize(torch.randn(8, d, generator=torch.Generator().manual_seed(4), dtype=F64), dim=-1)
    t = lanczos(_hvp(h), q1, m)
    assert t.shape == (8, m, m)
    torch.testing.assert_close(t, t.transpose(-1, -2))
    for k in range(2 * m):
        hk = torch.linalg.matrix_power(h, k)
        exact = torch.einsum("ni,nij,nj->n", q1, hk, q1)
        quad = gauss_quadrature(t, lambda theta, k=k: theta**k)
        torch.testing.assert_close(quad, exact, rtol=1e-9, atol=1e-9)
    # degree 2m is not exact in general (the test can fail): the quadrature error is visible
    h2m = torch.linalg.matrix_power(h, 2 * m)
    exact = torch.einsum("ni,nij,nj->n", q1, h2m, q1)
    assert float((gauss_quadrature(t, lambda theta: theta ** (2 * m)) - exact).abs().max()) > 1e-6


def test_slq_with_d_lanczos_steps_is_the_exact_quadratic_form_of_log_h():
    d = 5
    h = _spd(12, d, seed=5)
    r = (torch.randint(0, 2, (12, d), generator=torch.Generator().manual_seed(6)) * 2 - 1).to(F64)
    est = slq_logdet(_hvp(h), r, m=d, eps=0.0)
    torch.testing.assert_close(est, _logm_quadratic_form(h, r), rtol=1e-10, atol=1e-10)


def test_slq_averaged_over_every_sign_vector_is_the_exact_log_det():
    """E_r[r^T log(H) r] = tr log H = log det H, exactly, over the 2^d Rademacher vectors."""
    d = 4
    h = _spd(1, d, seed=7).expand(2**d, d, d)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)), dtype=F64)
    est = slq_logdet(_hvp(h), signs, m=d, eps=0.0)
    torch.testing.assert_close(est.mean(), torch.logdet(h[0]), rtol=1e-10, atol=1e-10)
    assert float(est.std()) > 1e-3  # one probe alone is not exact


def test_slq_with_fewer_steps_than_d_is_close_on_average():
    d, n = 12, 4000
    h = _spd(1, d, seed=8, cond=20.0).expand(n, d, d)
    r = (torch.randint(0, 2, (n, d), generator=torch.Generator().manual_seed(9)) * 2 - 1).to(F64)
    est = slq_logdet(_hvp(h), r, m=6)
    exact = float(torch.logdet(h[0]))
    se = float(est.std()) / math.sqrt(n)
    assert abs(float(est.mean()) - exact) < 4 * se + 1e-3 * abs(exact), (float(est.mean()), exact, se)


def test_lanczos_breakdown_continues_with_an_orthogonal_direction():
    """q_1 an eigenvector: beta_1 = 0, T stays block diagonal and the quadrature is exact."""
    d = 4
    h = _spd(3, d, seed=10)
    lam, u = torch.linalg.eigh(h)
    q1 = u[:, :, 0]
    t = lanczos(_hvp(h), q1, m=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(t).all()
    torch.testing.assert_close(t[:, 0, 0], lam[:, 0])
    torch.testing.assert_close(gauss_quadrature(t, torch.log), torch.log(lam[:, 0]), rtol=1e-8, atol=1e-8)


def test_lanczos_refuses_more_steps_than_dimensions():
    with pytest.raises(ValueError, match="Lanczos"):
        lanczos(lambda p: p, torch.ones(2, 3, dtype=F64) / math.sqrt(3), m=4)


# --- the log-det gradient ------------------------------------------------------------------------------------------
def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params, strict=True)]
    )


def _small_icnn_batch():
    torch.manual_seed(0)
    net = DenseICNN(3, (16, 16), rank=3, strong_convexity=0.1).double()
    x = torch.randn(32, 3, dtype=F64)
    params = list(net.parameters())
    _, hess = net.grad_and_hessian(x)
    exact = _flat_grad(torch.logdet(hess).mean(), params)
    return net, x, params, exact


def test_stochastic_logdet_gradient_is_exact_with_basis_probes():
    """Probes = the d standard basis vectors: sum_i e_i^T H^{-1} dH e_i = tr(H^{-1} dH), up to CG round-off."""
    net, x, params, exact = _small_icnn_batch()
    basis = torch.eye(3, dtype=F64)[:, None, :].expand(3, x.shape[0], 3)
    _, surrogate, diag = stochastic_logdet_surrogate(net, x, None, probes=basis, cg_iters=50, cg_rtol=1e-12)
    est = _flat_grad(3.0 * surrogate.mean(), params)  # the surrogate averages over probes; the trace sums
    assert diag["cg_iters"] <= 3 + 1  # CG is exact in d iterations
    assert float((est - exact).norm() / exact.norm()) < 1e-10


def test_stochastic_logdet_gradient_matches_exact_on_average():
    """256 Rademacher probes per point, 32 points: relative error of the gradient below 5% (measured ~1%)."""
    net, x, params, exact = _small_icnn_batch()
    gen = torch.Generator().manual_seed(0)
    _, surrogate, diag = stochastic_logdet_surrogate(net, x, gen, n_probes=256, cg_iters=50, cg_rtol=1e-10)
    est = _flat_grad(surrogate.mean(), params)
    rel = float((est - exact).norm() / exact.norm())
    assert rel < 0.05, rel
    assert diag["cg_rel_residual"] < 1e-10
