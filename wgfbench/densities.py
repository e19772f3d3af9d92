r"""Densities of pushforward laws P_k = (T_k o ... o T_1) # P_0 by change of variables and by map inversion.

Shared by every method whose maps are invertible (the JKO-ICNN baselines, the variational JKO with ICNN maps).

(a) Batched derivatives with torch.func: :func:`batched_hessian` / :func:`batched_grad_and_hessian` of a
    potential psi (``vmap(jacfwd(grad psi))``, one forward-over-reverse pass for the whole batch, not d separate
    backward passes; those are :func:`per_coordinate_grad_and_hessian`, the published ICNN-JKO codes' way) and
    :func:`batched_jacobian` of a map; log-determinants by Cholesky for symmetric positive
    definite matrices (:func:`logdet_spd`, with slogdet as the fallback for rows whose Cholesky fails) and by
    slogdet for general Jacobians (:func:`logabsdet`). All of them are differentiable in the parameters.

(b) At model samples: for y = T_k o ... o T_1 (x_0), x_0 ~ P_0,

        log p_k(y) = log p_0(x_0) - sum_{i=1..k} log |det J_{T_i}(x_{i-1})|,   x_i = T_i(x_{i-1})

    (:func:`push_with_log_density`).

(c) At arbitrary points: invert the chain from the last map to the first, then apply (b) at the recovered
    points (:func:`log_density_by_inversion`). For a gradient map y = grad psi(x) of an alpha-strongly convex
    psi the inverse is the unique minimiser of the strongly convex problem  min_x psi(x) - <x, y>.

    Solver (:meth:`GradientMap.inverse`): batched damped Newton with the exact Hessian,
    x <- x - t H(x)^{-1} (grad psi(x) - y), started at x = y, with a per-point backtracking line search
    (t halved until |grad psi(x) - y| decreases by the Armijo factor 1 - 1e-4 t). A point has converged when
    its residual |grad psi(x) - y|_2 <= ``tol`` (default 1e-9 in float64, 1e-4 in float32). Points that have
    not converged after ``max_iter`` iterations, or whose line search stalls above ``tol``, are reported as
    such (:class:`InversionResult` ``converged`` mask, residuals, and |H^{-1} r| as an estimate of the error in
    x): with ``on_failure="nan"`` their log-density is NaN, with ``"raise"`` an :class:`InversionError` is
    raised. A log-density is never returned for a point that was not inverted to tolerance.

A *map* here is any object with ``__call__(x)``, ``forward_with_logdet(x) -> (T(x), log|det J_T(x)|)`` and
(for (c)) ``inverse(y, tol, max_iter) -> InversionResult``: :class:`GradientMap` (T = grad psi),
:class:`AffineMap` (x -> A x + c) and :class:`JacobianMap` (any nn.Module map; no inverse).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor, nn
from torch.func import grad, jacfwd, vmap


# --- (a) batched derivatives and log-determinants -----------------------------------------------------------
def _per_sample(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Turn a batched function (n, d) -> (n, ...) into a per-sample one (d,) -> (...) for torch.func."""

    def single(x: Tensor) -> Tensor:
        return fn(x.unsqueeze(0)).squeeze(0)

    return single


def _scalar_potential(potential: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    single = _per_sample(potential)
    return lambda x: single(x).reshape(())


def batched_grad(potential: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """grad psi at each row of x (n, d) -> (n, d), via vmap(grad); differentiable in psi's parameters."""
    return vmap(grad(_scalar_potential(potential)))(x)


def batched_grad_and_hessian(potential: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """(grad psi(x), Hessian psi(x)) for x (n, d): shapes (n, d) and (n, d, d), from one vmap(jacfwd(grad)).

    ``potential`` maps (n, d) to (n,) (or (n, 1)). Forward-over-reverse: the Hessian costs one batched
    reverse pass plus d forward tangents, not d separate backward passes.
    """
    g = grad(_scalar_potential(potential))

    def g_aux(xi: Tensor) -> tuple[Tensor, Tensor]:
        gi = g(xi)
        return gi, gi

    hess, gval = vmap(jacfwd(g_aux, has_aux=True))(x)
    return gval, hess


def per_coordinate_grad_and_hessian(
    potential: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """(grad psi(x), Hessian psi(x)) by d backward passes: row i of H is grad_x (d psi / d x_i).

    How the ICNN-JKO codes build the Hessian before ``torch.logdet`` (Mokrov et al. 2021,
    ``Diffusion.negative_entropy_gain``): one autograd call for grad psi with ``create_graph=True``, then one
    ``autograd.grad`` of each coordinate of grad psi (summed over the batch) per coordinate, with
    ``create_graph`` when the log-det is differentiated in the parameters (training). The gradient keeps its
    graph. d + 1 backward passes instead of one batched pass; equal to :func:`batched_grad_and_hessian`.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(potential(xr).sum(), xr, create_graph=True)
        rows = [
            torch.autograd.grad(g[:, i].sum(), xr, retain_graph=True, create_graph=create_graph)[0]
            for i in range(x.shape[1])
        ]
    return g, torch.stack(rows, dim=1)


def batched_hessian(potential: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Hessian of psi at each row of x: (n, d, d)."""
    return batched_grad_and_hessian(potential, x)[1]


def batched_jacobian(map_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Jacobian DT at each row of x (n, d): (n, d_out, d), via vmap(jacfwd). J[n, i, j] = dT_i/dx_j."""
    return vmap(jacfwd(_per_sample(map_fn)))(x)


def logdet_spd(h: Tensor) -> Tensor:
    """log det H for a batch of symmetric positive-definite matrices (..., d, d).

    Cholesky: log det H = 2 sum log diag(L). Rows whose Cholesky fails (numerically indefinite) fall back to
    ``slogdet``; a non-positive determinant there gives NaN, never a silently wrong finite value.
    """
    chol, info = torch.linalg.cholesky_ex(h)
    out = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    bad = info != 0
    if bool(bad.any()):
        sign, lad = torch.linalg.slogdet(h[bad])
        fallback = torch.where(sign > 0, lad, torch.full_like(lad, float("nan")))
        out = out.clone()
        out[bad] = fallback
    return out


def logabsdet(j: Tensor) -> Tensor:
    """log |det J| for a batch of square matrices (slogdet)."""
    return torch.linalg.slogdet(j)[1]


# --- maps ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InversionResult:
    """Solution x of T(x) = y per row, with convergence diagnostics.

    ``residual`` = |T(x) - y|_2 at the returned x; ``step`` = |H(x)^{-1} (T(x) - y)|_2, the Newton estimate of
    |x - x*|; ``converged`` = residual <= tol; ``iterations`` = Newton iterations used; ``logdet`` =
    log |det J_T(x)| at the returned x when the solver has it (saves recomputing the Jacobian).
    """

    x: Tensor
    converged: Tensor
    residual: Tensor
    step: Tensor
    iterations: int
    tol: float
    logdet: Tensor | None = None


class InversionError(RuntimeError):
    """Some points could not be inverted to the stated tolerance."""


class PushforwardMap(Protocol):
    def __call__(self, x: Tensor) -> Tensor: ...

    def forward_with_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def inverse(self, y: Tensor, tol: float | None = None, max_iter: int = 100) -> InversionResult: ...


def default_tol(dtype: torch.dtype) -> float:
    """Residual tolerance of the inversion: 1e-9 in float64, 1e-4 in lower precision."""
    return 1e-9 if dtype == torch.float64 else 1e-4


class GradientMap:
    """T = grad psi for a strongly convex potential psi: (n, d) -> (n,). The Jacobian is Hess psi (SPD).

    ``hessian="auto"`` uses the potential's own closed-form ``grad_and_hessian(x)`` when it has one (the
    DenseICNN does; equal to the torch.func result to round-off), else :func:`batched_grad_and_hessian`;
    ``"torch_func"`` always uses the latter.
    """

    def __init__(self, potential: Callable[[Tensor], Tensor], hessian: Literal["auto", "torch_func"] = "auto"):
        if hessian not in ("auto", "torch_func"):
            raise ValueError(f"hessian must be 'auto' or 'torch_func', got {hessian!r}")
        self.potential = potential
        own = getattr(potential, "grad_and_hessian", None) if hessian == "auto" else None
        self.grad_and_hessian = own if own is not None else (lambda x: batched_grad_and_hessian(self.potential, x))

    def __call__(self, x: Tensor) -> Tensor:
        return batched_grad(self.potential, x)

    def forward_with_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        g, h = self.grad_and_hessian(x)
        return g, logdet_spd(h)

    def inverse(self, y: Tensor, tol: float | None = None, max_iter: int = 100) -> InversionResult:
        """Damped Newton on min_x psi(x) - <x, y> (module docstring), batched over rows of y."""
        tol = default_tol(y.dtype) if tol is None else float(tol)
        with torch.no_grad():
            y = y.detach()
            x = y.clone()
            g, h = self.grad_and_hessian(x)
            r = g - y
            res = r.norm(dim=-1)
            active = res > tol
            stalled = torch.zeros_like(active)
            it = 0
            while bool(active.any()) and it < max_iter:
                it += 1
                idx = active.nonzero().squeeze(-1)
                xa, ya, ra, ha, res_a = x[idx], y[idx], r[idx], h[idx], res[idx]
                dx = -_spd_solve(ha, ra)
                t = torch.ones_like(res_a)
                accepted = torch.zeros_like(res_a, dtype=torch.bool)
                x_new, g_new, h_new, res_new = xa, None, None, res_a
                for _ in range(40):  # backtracking on the residual norm
                    x_try = xa + t.unsqueeze(-1) * dx
                    g_try, h_try = self.grad_and_hessian(x_try)
                    res_try = (g_try - ya).norm(dim=-1)
                    ok = (res_try <= (1.0 - 1e-4 * t) * res_a) & ~accepted
                    if g_new is None:
                        x_new, g_new, h_new, res_new = x_try.clone(), g_try.clone(), h_try.clone(), res_try.clone()
                    else:
                        x_new[ok], g_new[ok], h_new[ok], res_new[ok] = x_try[ok], g_try[ok], h_try[ok], res_try[ok]
                    accepted |= ok
                    if bool(accepted.all()):
                        break
                    t = torch.where(accepted, t, 0.5 * t)
                # rows whose line search found no decrease keep their point and are marked stalled
                keep = ~accepted
                x_new[keep], g_new[keep], h_new[keep], res_new[keep] = xa[keep], g[idx][keep], ha[keep], res_a[keep]
                x[idx], g[idx], h[idx], res[idx] = x_new, g_new, h_new, res_new
                stalled[idx[keep]] = True
                r = g - y
                active = (res > tol) & ~stalled
            step = _spd_solve(h, r).norm(dim=-1)
            logdet = logdet_spd(h)
        return InversionResult(
            x=x, converged=res <= tol, residual=res, step=step, iterations=it, tol=tol, logdet=logdet
        )


def _spd_solve(h: Tensor, r: Tensor) -> Tensor:
    """Solve H u = r per row (Cholesky; least squares where Cholesky fails)."""
    chol, info = torch.linalg.cholesky_ex(h)
    u = torch.cholesky_solve(r.unsqueeze(-1), chol).squeeze(-1)
    bad = info != 0
    if bool(bad.any()):
        u = u.clone()
        u[bad] = torch.linalg.lstsq(h[bad], r[bad].unsqueeze(-1)).solution.squeeze(-1)
    return u


class AffineMap:
    """T(x) = A x + c with A invertible (constant Jacobian A)."""

    def __init__(self, a: Tensor, c: Tensor):
        self.a, self.c = a, c
        self._logdet = logabsdet(a)

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.a.T + self.c

    def forward_with_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x), self._logdet.expand(x.shape[0])

    def inverse(self, y: Tensor, tol: float | None = None, max_iter: int = 100) -> InversionResult:
        tol = default_tol(y.dtype) if tol is None else float(tol)
        x = torch.linalg.solve(self.a, (y - self.c).T).T
        res = (self(x) - y).norm(dim=-1)
        return InversionResult(
            x=x, converged=res <= tol, residual=res, step=torch.zeros_like(res), iterations=0, tol=tol
        )


class JacobianMap:
    """Any map module (n, d) -> (n, d), e.g. a residual MLP: log |det J| by batched Jacobian; no inverse."""

    def __init__(self, module: nn.Module | Callable[[Tensor], Tensor]):
        self.module = module

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)

    def forward_with_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.module(x), logabsdet(batched_jacobian(self.module, x))

    def inverse(self, y: Tensor, tol: float | None = None, max_iter: int = 100) -> InversionResult:
        raise NotImplementedError("a general map has no inverse here; use a GradientMap (ICNN) for densities")


# --- (b) and (c): chains ------------------------------------------------------------------------------------
def push_with_log_density(
    maps: Sequence[PushforwardMap], x0: Tensor, log_p0: Tensor, chunk: int = 65_536
) -> tuple[Tensor, Tensor]:
    """Push x0 (n, d) through the maps and carry log p: returns (y, log p_k(y)) = (T(x0), log_p0 - sum logdet).

    Computed under ``torch.no_grad`` in chunks of ``chunk`` rows (evaluation path).
    """
    ys, lps = [], []
    with torch.no_grad():
        for xs, lp in zip(torch.split(x0, chunk), torch.split(log_p0, chunk), strict=True):
            lp = lp.clone()
            for t_map in maps:
                xs, ld = t_map.forward_with_logdet(xs)
                lp = lp - ld.to(lp.dtype)
            ys.append(xs)
            lps.append(lp)
    return torch.cat(ys), torch.cat(lps)


@dataclass(frozen=True)
class ChainLogDensity:
    """log p_k at the query points; ``converged`` is False where some inversion missed its tolerance."""

    log_density: Tensor
    x0: Tensor
    converged: Tensor
    max_residual: float

    @property
    def n_failed(self) -> int:
        return int((~self.converged).sum())


def log_density_by_inversion(
    maps: Sequence[PushforwardMap],
    y: Tensor,
    log_p0: Callable[[Tensor], Tensor],
    tol: float | None = None,
    max_iter: int = 100,
    on_failure: Literal["nan", "raise"] = "nan",
    chunk: int = 65_536,
) -> ChainLogDensity:
    """log p_k(y) for P_k = (T_k o ... o T_1) # P_0 at arbitrary points y (n, d), by inverting each map.

    x_k = y, x_{i-1} = T_i^{-1}(x_i) (each to residual ``tol``), then
    log p_k(y) = log p_0(x_0) - sum_i log |det J_{T_i}(x_{i-1})|. Points where any inversion failed get NaN
    (``on_failure="nan"``, with a RuntimeWarning giving the count) or raise :class:`InversionError`.
    """
    if on_failure not in ("nan", "raise"):
        raise ValueError(f"on_failure must be 'nan' or 'raise', got {on_failure!r}")
    outs, x0s, convs, max_res = [], [], [], 0.0
    for ys in torch.split(y.detach(), chunk):
        x = ys
        conv = torch.ones(ys.shape[0], dtype=torch.bool, device=ys.device)
        logdet = torch.zeros(ys.shape[0], dtype=ys.dtype, device=ys.device)
        for t_map in reversed(list(maps)):
            inv = t_map.inverse(x, tol=tol, max_iter=max_iter)
            conv &= inv.converged
            max_res = max(max_res, float(inv.residual.max()) if inv.residual.numel() else 0.0)
            x = inv.x
            with torch.no_grad():
                ld = inv.logdet if inv.logdet is not None else t_map.forward_with_logdet(x)[1]
                logdet = logdet + ld.to(logdet.dtype)
        with torch.no_grad():
            lp = log_p0(x).to(device=logdet.device, dtype=logdet.dtype) - logdet
        outs.append(torch.where(conv, lp, torch.full_like(lp, float("nan"))))
        x0s.append(x)
        convs.append(conv)
    result = ChainLogDensity(torch.cat(outs), torch.cat(x0s), torch.cat(convs), max_res)
    if result.n_failed:
        msg = (
            f"map inversion missed its tolerance at {result.n_failed} of {y.shape[0]} points "
            f"(max residual {result.max_residual:.3g}); their log-density is NaN"
        )
        if on_failure == "raise":
            raise InversionError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return result
