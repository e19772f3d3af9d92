r"""Log-determinants of Hessians that are never formed: conjugate gradients, Hutchinson gradients, Lanczos quadrature.

Everything here sees a batch of symmetric positive (semi-)definite matrices H_i (d x d, one per row i of a batch)
only through ``hvp(p)``, which returns the rows H_i p_i for p of shape (n, d) (for a potential psi,
Hessian-vector products by double backward through grad psi: :func:`potential_hvp`).

**Conjugate gradients** (:func:`batched_cg`; Hestenes & Stiefel 1952): solves H_i u_i = b_i for every row, with
the usual recurrences u += alpha p, r -= alpha H p, p = r + (|r_new|^2/|r|^2) p, alpha = |r|^2 / p^T H p, per
row. Two starting points, ``x0="zero"`` (u_0 = 0, r_0 = b) and ``x0="b"`` (u_0 = b, r_0 = b - H b, the choice of
the CP-Flow estimator of Huang et al., ICLR 2021, that Alvarez-Melis et al., TMLR 2022, use), and two stopping
rules, both checked over the whole batch (iteration stops when every row satisfies it): ``norm="l2"``,
|r_i|_2 <= atol + rtol |b_i|_2, and ``norm="max"``, |r_ij| <= atol + rtol |u_ij| for every entry (CP-Flow's rule).

**Log-det gradient** (Hutchinson 1989 trace estimator; Huang et al. 2021 Eq. 9): for H = H(theta) SPD,

    d/dtheta log det H = tr(H^{-1} dH/dtheta) = E_v[ v^T H^{-1} (dH/dtheta) v ],   E[v v^T] = I,

so with u = H^{-1} v computed by CG and held constant (detached), the surrogate s = u^T H v = v^T H u has
d s/dtheta = u^T (dH/dtheta) v, an unbiased estimate up to the CG error (:func:`logdet_gradient_surrogate`). The
value of s is not log det H (it is about v^T v = d); only its gradient is used.

**Stochastic Lanczos quadrature** (Golub & Meurant 2010, ch. 6; Ubaru, Chen & Saad, SIAM J. Matrix Anal. Appl.
2017, Eq. 4), the log-det VALUE (:func:`slq_logdet`): for a unit vector q_1, m steps of the Lanczos process (with
full reorthogonalisation, :func:`lanczos`) build orthonormal Q_m = [q_1 .. q_m] with Q_m^T H Q_m = T_m
tridiagonal (alpha_j on the diagonal, beta_j off it). With the spectral measure mu(lambda) = sum_i (u_i . q_1)^2
delta(lambda - lambda_i) of (H, q_1), q_1^T f(H) q_1 = ∫ f dmu, and the eigenpairs (theta_j, y_j) of T_m are
the nodes and (weights)^(1/2) of its m-point Gauss quadrature:

    q_1^T f(H) q_1  ~  e_1^T f(T_m) e_1 = sum_j (e_1 . y_j)^2 f(theta_j),

exact for every polynomial f of degree <= 2m - 1 (e_1^T T_m^k e_1 = q_1^T H^k q_1 for k <= 2m - 1), hence exact
for any f when m = d (T_d is then an orthogonal similarity of H). With q_1 = r/sqrt(d) for a Rademacher r
(E[r r^T] = I) and f = log, log det H = tr log H = E_r[r^T log(H) r] = E[d q_1^T log(H) q_1], so

    log det H  ~  d sum_j (e_1 . y_j)^2 log(theta_j + eps)

with one probe per row (Alvarez-Melis et al.: m = max(2, min(10, d)) and the CP-Flow guard eps = 1e-8, with
the Ritz values clamped at 0). A Lanczos breakdown (beta_j ~ 0: q_1 lies in an invariant subspace, where the
quadrature is already exact) continues with a random unit vector orthogonal to Q_j and beta_j kept at its tiny
value, so T_m stays (numerically) block diagonal and e_1^T f(T_m) e_1 depends on its first block only.

Tests (tests/test_stochastic_logdet.py) check CG against a direct solve, the moment identities of T_m, SLQ with
m = d against the exact log det of random SPD matrices (one probe, and the average over all 2^d sign vectors),
and the gradient surrogate against the autograd gradient of log det.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Hvp = Callable[[Tensor], Tensor]


def potential_hvp(grad: Tensor, x: Tensor, create_graph: bool = False) -> Hvp:
    """``p -> (Hess psi(x_i) p_i)_i`` by double backward, for ``grad`` = grad psi(x) built with create_graph=True.

    Rows are independent (psi(x) is a sum over rows), so one backward of <grad, p> gives every row's product.
    """

    def hvp(p: Tensor) -> Tensor:
        return torch.autograd.grad(grad, x, grad_outputs=p, retain_graph=True, create_graph=create_graph)[0]

    return hvp


def rademacher(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """i.i.d. +-1 entries (drawn on the CPU from ``generator``), in ``like``'s dtype and device."""
    return (torch.randint(0, 2, shape, generator=generator) * 2 - 1).to(like)


# --- conjugate gradients -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CGResult:
    """u ~ H^{-1} b per row; ``residual`` = |b - H u|_2 per row (the recurrence's residual)."""

    x: Tensor
    iterations: int
    residual: Tensor
    converged: bool


def batched_cg(
    hvp: Hvp,
    b: Tensor,
    max_iter: int,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    x0: Literal["zero", "b"] = "zero",
    norm: Literal["l2", "max"] = "l2",
) -> CGResult:
    """Solve H_i u_i = b_i for every row by conjugate gradients (module docstring for the start and stop rules)."""
    if x0 not in ("zero", "b"):
        raise ValueError(f"x0 must be 'zero' or 'b', got {x0!r}")
    if norm not in ("l2", "max"):
        raise ValueError(f"norm must be 'l2' or 'max', got {norm!r}")
    tiny = torch.finfo(b.dtype).tiny
    b_norm = b.norm(dim=-1)
    if x0 == "zero":
        u, r = torch.zeros_like(b), b.clone()
    else:
        u = b.clone()
        r = b - hvp(u)

    def done(u: Tensor, r: Tensor) -> bool:
        if norm == "l2":
            return bool((r.norm(dim=-1) <= atol + rtol * b_norm).all())
        return bool((r.abs() <= atol + rtol * u.abs()).all())

    p = r.clone()
    rs = (r * r).sum(-1)
    it = 0
    converged = done(u, r)
    while not converged and it < max_iter:
        it += 1
        hp = hvp(p)
        curv = (p * hp).sum(-1)
        alpha = torch.where(curv > 0, rs / curv.clamp_min(tiny), torch.zeros_like(rs))
        u = u + alpha.unsqueeze(-1) * p
        r = r - alpha.unsqueeze(-1) * hp
        converged = done(u, r)
        rs_new = (r * r).sum(-1)
        p = r + (rs_new / rs.clamp_min(tiny)).unsqueeze(-1) * p
        rs = rs_new
    return CGResult(x=u, iterations=it, residual=rs.sqrt(), converged=converged)


# --- the log-det gradient --------------------------------------------------------------------------------------
def logdet_gradient_surrogate(
    hvp_graph: Hvp, hvp: Hvp, v: Tensor, cg: Callable[[Hvp, Tensor], CGResult]
) -> tuple[Tensor, CGResult]:
    """(s, CG result) with s_i = v_i^T H_i u_i, u = H^{-1} v by ``cg(hvp, v)`` detached (module docstring).

    ``hvp`` serves CG (no graph kept); ``hvp_graph`` gives the final product differentiably in theta.
    """
    with torch.no_grad():
        res = cg(hvp, v)
    surrogate = (hvp_graph(res.x.detach()) * v).sum(-1)
    return surrogate, res


def stochastic_logdet_surrogate(
    potential,
    x: Tensor,
    generator: torch.Generator | None,
    n_probes: int = 1,
    cg_iters: int = 50,
    cg_rtol: float = 1e-5,
    probes: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """(T(x), s(x), diagnostics) for the CP-Flow-style gradient in Mokrov's protocol (``jko_icnn_cpflow_grad``).

    T = grad psi (differentiable in psi's parameters) and s averages the surrogate over ``n_probes``
    Rademacher probes per row (or the given ``probes``, shape (P, n, d); the full standard basis makes the
    estimate exact up to CG error). CG from u_0 = 0, stopping at |r|_2 <= ``cg_rtol`` |v|_2 per row.
    """
    xr = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(potential(xr).sum(), xr, create_graph=True)
    v = rademacher((n_probes, *x.shape), generator, x) if probes is None else probes.to(x)
    hvp, hvp_graph = potential_hvp(g, xr), potential_hvp(g, xr, create_graph=True)

    def cg(h: Hvp, b: Tensor) -> CGResult:
        return batched_cg(h, b, cg_iters, rtol=cg_rtol)

    surrogate = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    iters, worst = 0, 0.0
    for vp in v:
        s, res = logdet_gradient_surrogate(hvp_graph, hvp, vp, cg)
        rel = res.residual / vp.norm(dim=-1)
        iters, worst = max(iters, res.iterations), max(worst, float(rel.max()))
        surrogate = surrogate + s
    return g, surrogate / v.shape[0], {"cg_iters": float(iters), "cg_rel_residual": worst}


# --- Lanczos quadrature ----------------------------------------------------------------------------------------
def _orthogonalise(q: Tensor, w: Tensor) -> Tensor:
    """w minus its projection on the orthonormal rows q (n, j, d), classical Gram-Schmidt applied twice."""
    for _ in range(2):
        w = w - torch.einsum("nj,njd->nd", torch.einsum("njd,nd->nj", q, w), q)
    return w


def lanczos(hvp: Hvp, q1: Tensor, m: int, generator: torch.Generator | None = None) -> Tensor:
    """T_m (n, m, m) of m Lanczos steps from unit rows q1 (n, d), with full reorthogonalisation (module docstring).

    ``m <= d``. A breakdown (|w| below 100 machine epsilons of the largest |alpha| so far) continues with a random
    unit vector orthogonal to the basis (drawn from ``generator``), keeping the tiny beta.
    """
    d = q1.shape[-1]
    if not 1 <= m <= d:
        raise ValueError(f"need 1 <= m <= d = {d} Lanczos steps, got {m}")
    qs = [q1]
    alphas, betas = [], []
    w = hvp(q1)
    alpha = (w * q1).sum(-1)
    alphas.append(alpha)
    scale = alpha.abs().clamp_min(torch.finfo(q1.dtype).tiny)
    w = _orthogonalise(torch.stack(qs, 1), w)
    for _ in range(1, m):
        beta = w.norm(dim=-1)
        broken = beta <= 100.0 * torch.finfo(q1.dtype).eps * scale
        if bool(broken.any()):
            q = torch.stack(qs, 1)
            fresh = _orthogonalise(q, torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device))
            w = torch.where(broken.unsqueeze(-1), fresh, w)
        q_next = w / w.norm(dim=-1, keepdim=True)
        qs.append(q_next)
        betas.append(beta)
        w = hvp(q_next)
        alpha = (w * q_next).sum(-1)
        alphas.append(alpha)
        scale = torch.maximum(scale, alpha.abs())
        w = _orthogonalise(torch.stack(qs, 1), w)
    t = torch.diag_embed(torch.stack(alphas, -1))
    if betas:
        b = torch.stack(betas, -1)
        t = t + torch.diag_embed(b, offset=1) + torch.diag_embed(b, offset=-1)
    return t


def gauss_quadrature(t: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
    """e_1^T f(T) e_1 = sum_j (e_1 . y_j)^2 f(theta_j) for the symmetric tridiagonal T (n, m, m)."""
    theta, y = torch.linalg.eigh(t)
    return ((y[:, 0, :] ** 2) * f(theta)).sum(-1)


def slq_logdet(hvp: Hvp, probe: Tensor, m: int, eps: float = 1e-8, generator: torch.Generator | None = None) -> Tensor:
    """log det H_i ~ d e_1^T log(T_m + eps) e_1 (Ritz values clamped at 0), T_m from the unit rows of ``probe``.

    ``probe`` (n, d) is normalised per row (a Rademacher r gives q_1 = r/sqrt(d), module docstring).
    """
    d = probe.shape[-1]
    q1 = probe / probe.norm(dim=-1, keepdim=True)
    t = lanczos(hvp, q1, m, generator)
    return d * gauss_quadrature(t, lambda theta: torch.log(theta.clamp_min(0.0) + eps))
