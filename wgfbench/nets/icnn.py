r"""Input-convex potential psi whose gradient is a transport map (Amos et al. 2017; Mokrov et al. 2021 DenseICNN).

Architecture (Mokrov et al., NeurIPS 2021, ``DenseICNN``), for hidden sizes w_1..w_L:

    z_1     = Quad_1(x)
    z_{l+1} = act( W_l^+ z_l + Quad_{l+1}(x) ),            l = 1..L-1
    psi(x)  = w_out^+ . z_L + (alpha/2) |x|^2

* Quad_j(x)_i = sum_{r <= rank} (q_{jir} . x)^2 + a_{ji} . x + c_{ji}: a convex quadratic "skip" layer on
  the input (a PSD form of rank ``rank`` plus an affine part), so z_1 is convex in x.
* W_l^+ and w_out^+ are entrywise non-negative, by one of two parametrisations (``parametrisation``):

  - ``"softplus"`` (default): BY CONSTRUCTION, the softplus of unconstrained raw parameters, so every
    parameter value, including one loaded from a checkpoint or reached by any optimiser, is convex;
  - ``"mokrov"``: as Mokrov et al.'s code: the weights are stored as they are and projected onto the
    non-negative orthant by :meth:`DenseICNN.convexify` (clamp at 0), which the training loop calls after
    every optimiser step; every parameter (quadratic factors, affine weights and biases, the non-negative
    weights) is initialised i.i.d. N(0, 1/w_1) as in their experiment scripts, with no clamp before the first
    step (so psi is convex from the first :meth:`convexify` on, as in their code).
* act is convex and non-decreasing (``softplus`` as in Mokrov's OU configs, or ``celu``), so each z_l is a
  convex function of x (a non-negative combination of convex functions passed through a convex
  non-decreasing function is convex).
* (alpha/2)|x|^2 makes psi alpha-strongly convex: <grad psi(x) - grad psi(y), x - y> >= alpha |x - y|^2,
  so the map T = grad psi is injective and its inverse is the unique minimiser of psi(x) - <x, y>
  (see :mod:`wgfbench.densities`).

With a single hidden layer no activation is ever applied, psi is a non-negative sum of convex quadratics and
T is affine (the configuration Fan et al. use for the porous medium).

The map is T(x) = grad psi(x): :meth:`DenseICNN.gradient` (autograd, optionally with ``create_graph`` so
that a loss on T trains psi); batched Hessians come from :func:`wgfbench.densities.batched_grad_and_hessian`
(torch.func). :func:`pretrain_identity` fits grad psi ~ id on P_0 samples before the first JKO step. In
Mokrov et al.'s code (``id_pretrain_model``) that is Adam with weight decay 1e-8 for 4000 iterations, at
lr 5e-3 in their OU configuration and 8e-3 in most of their mixture configurations; its early stop at
MSE < 1e-5 sits inside the verbose-logging branch, so their (non-verbose) experiment runs never stop early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wgfbench.nets.adam import adam

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"softplus": F.softplus, "celu": F.celu}


def _inv_softplus(w: Tensor) -> Tensor:
    """raw with softplus(raw) = w (w > 0)."""
    return w + torch.log(-torch.expm1(-w))


def _activation_and_derivatives(name: str, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(act(u), act'(u), act''(u)) for the convex non-decreasing activations, matching torch's definitions."""
    if name == "softplus":  # F.softplus(u) = u for u > 20 (torch's default threshold)
        s = torch.sigmoid(u)
        linear = u > 20.0
        return (
            F.softplus(u),
            torch.where(linear, torch.ones_like(s), s),
            torch.where(linear, torch.zeros_like(s), s * (1 - s)),
        )
    if name == "celu":  # celu(u) = u for u > 0, exp(u) - 1 otherwise
        e = torch.exp(u.clamp_max(0.0))
        pos = u > 0
        return F.celu(u), torch.where(pos, torch.ones_like(e), e), torch.where(pos, torch.zeros_like(e), e)
    raise ValueError(f"unknown activation {name!r}")


class ConvexQuadratic(nn.Module):
    """x -> (sum_r (q_{ir} . x)^2 + a_i . x + c_i)_i: a convex quadratic of rank ``rank`` per output."""

    def __init__(self, d_in: int, d_out: int, rank: int):
        super().__init__()
        self.quad = nn.Parameter(torch.randn(rank, d_out, d_in) / math.sqrt(d_in * rank))
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:
        proj = torch.einsum("...i,roi->...ro", x, self.quad)
        return (proj**2).sum(-2) + self.linear(x)


Parametrisation = Literal["softplus", "mokrov"]
PARAMETRISATIONS: tuple[str, ...] = ("softplus", "mokrov")


class NonNegLinear(nn.Module):
    """z -> W^+ z, W^+ >= 0 entrywise (no bias; offsets live in the quadratic layers).

    ``"softplus"``: W^+ = softplus(raw) > 0. ``"mokrov"``: W^+ = raw, kept >= 0 by :meth:`convexify`.
    """

    def __init__(self, d_in: int, d_out: int, parametrisation: Parametrisation = "softplus"):
        super().__init__()
        self.parametrisation = parametrisation
        init = torch.empty(d_out, d_in).uniform_(1e-3, 1.0 / math.sqrt(d_in))
        self.raw = nn.Parameter(_inv_softplus(init) if parametrisation == "softplus" else init)

    @property
    def weight(self) -> Tensor:
        return F.softplus(self.raw) if self.parametrisation == "softplus" else self.raw

    @torch.no_grad()
    def convexify(self) -> None:
        """Project the stored weights onto W >= 0 (``"mokrov"``; nothing to do for ``"softplus"``)."""
        if self.parametrisation == "mokrov":
            self.raw.clamp_(min=0.0)

    def forward(self, z: Tensor) -> Tensor:
        return z @ self.weight.T


class DenseICNN(nn.Module):
    """Convex potential psi: R^d -> R (module docstring). ``forward`` maps (..., d) to (...)."""

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (64, 64),
        rank: int = 5,
        activation: str = "softplus",
        strong_convexity: float = 1e-6,
        parametrisation: Parametrisation = "softplus",
    ):
        super().__init__()
        if not hidden:
            raise ValueError("DenseICNN needs at least one hidden layer")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if strong_convexity < 0:
            raise ValueError(f"strong_convexity must be >= 0, got {strong_convexity}")
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"unknown parametrisation {parametrisation!r}; choose one of {PARAMETRISATIONS}")
        self.dim = dim
        self.hidden = tuple(int(w) for w in hidden)
        self.activation = activation
        self.strong_convexity = float(strong_convexity)
        self.parametrisation = parametrisation
        self.act = ACTIVATIONS[activation]
        self.quadratic = nn.ModuleList(ConvexQuadratic(dim, w, rank) for w in self.hidden)
        self.convex = nn.ModuleList(
            NonNegLinear(a, b, parametrisation) for a, b in zip(self.hidden[:-1], self.hidden[1:], strict=True)
        )
        self.out = NonNegLinear(self.hidden[-1], 1, parametrisation)
        if parametrisation == "mokrov":
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn_like(p) / math.sqrt(self.hidden[0]))

    def convexify(self) -> None:
        """Clamp the non-negative weights at 0 after an optimiser step (``"mokrov"``; a no-op for ``"softplus"``)."""
        for layer in (*self.convex, self.out):
            layer.convexify()

    def forward(self, x: Tensor) -> Tensor:
        z = self.quadratic[0](x)
        for quad, conv in zip(self.quadratic[1:], self.convex, strict=True):
            z = self.act(conv(z) + quad(x))
        return self.out(z).squeeze(-1) + 0.5 * self.strong_convexity * (x**2).sum(-1)

    def grad_and_hessian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""(grad psi(x), Hess psi(x)) for x (n, d) in closed form, differentiable in the parameters.

        Forward sweep: pre-activations u_l and their x-Jacobians J_l (n, w_l, d),
        J_1 = D Quad_1, J_l = W_{l-1}^+ diag(act'(u_{l-1})) J_{l-1} + D Quad_l. Reverse sweep of the output
        weights: c_L = w_out^+, b_l = c_l * act'(u_l) (b_1 = c_1, no activation), c_{l-1} = W_{l-1}^{+T} b_l. Then

            grad psi = sum_l D Quad_l^T b_l + alpha x,
            Hess psi = sum_{l >= 2} J_l^T diag(c_l act''(u_l)) J_l + sum_l sum_j b_lj Hess Quad_lj + alpha I,

        with Hess Quad_lj = 2 sum_r q_ljr q_ljr^T. Cost O(n w^2 d + n w d^2 (rank + 1)) and no (n, w, d, d)
        tensor; equal to the torch.func Hessian of ``forward`` to round-off (tests/test_icnn.py), including
        softplus's switch to the identity above 20 (as ``F.softplus``).
        """
        layers = []  # (D Quad_l, J_l, act'(u_l), act''(u_l)) per layer
        z = jz = None
        for i, quad in enumerate(self.quadratic):
            proj = torch.einsum("ni,roi->nro", x, quad.quad)
            # D Quad_l = 2 sum_r proj_r q_r + A_l, as a batched matmul over the outputs: (o, n, r) @ (o, r, d)
            jq = 2.0 * (proj.permute(2, 0, 1) @ quad.quad.permute(1, 0, 2)).permute(1, 0, 2) + quad.linear.weight
            q_val = (proj * proj).sum(1) + quad.linear(x)
            if i == 0:
                u, ju, d1, d2 = q_val, jq, None, None
                z, jz = u, ju
            else:
                w = self.convex[i - 1].weight
                u = z @ w.T + q_val
                ju = (jz.transpose(1, 2) @ w.T).transpose(1, 2) + jq  # one (n d, w) @ (w, o) matmul
                z, d1, d2 = _activation_and_derivatives(self.activation, u)
                jz = d1.unsqueeze(-1) * ju
            layers.append((jq, ju, d1, d2))
        n, d = x.shape
        c = self.out.weight.squeeze(0).expand(n, -1)
        grad = self.strong_convexity * x
        hess = self.strong_convexity * torch.eye(d, dtype=x.dtype, device=x.device).expand(n, d, d)
        for i in range(len(self.quadratic) - 1, -1, -1):
            jq, ju, d1, d2 = layers[i]
            quad = self.quadratic[i]
            if d1 is None:
                b = c
            else:
                b = c * d1
                hess = hess + (ju * (c * d2).unsqueeze(-1)).transpose(1, 2) @ ju
            grad = grad + (b.unsqueeze(1) @ jq).squeeze(1)
            curvature = 2.0 * torch.einsum("roi,roj->oij", quad.quad, quad.quad)  # Hess Quad_lj, no batch
            hess = hess + (b @ curvature.reshape(curvature.shape[0], d * d)).reshape(n, d, d)
            if i > 0:
                c = b @ self.convex[i - 1].weight
        return grad, hess

    def gradient(self, x: Tensor, create_graph: bool = False) -> Tensor:
        """T(x) = grad psi(x) for x of shape (n, d), by autograd.

        With ``create_graph=True`` the result is differentiable in the parameters (training); otherwise
        it is detached. Works inside ``torch.no_grad()`` blocks.
        """
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(xr).sum(), xr, create_graph=create_graph)
        return g if create_graph else g.detach()


@dataclass(frozen=True)
class PretrainResult:
    iterations: int
    loss: float
    converged: bool


def pretrain_identity(
    potential: nn.Module,
    sample: Callable[[int], Tensor],
    batch_size: int = 1024,
    lr: float = 8e-3,
    max_iters: int = 4000,
    tol: float | None = 1e-5,
    weight_decay: float = 0.0,
    project: Callable[[], None] | None = None,
) -> PretrainResult:
    """Fit grad psi ~ identity: minimise MSE(grad psi(X), X) (mean over entries), X ~ ``sample(batch_size)``.

    Adam with ``lr``; stops at the first iteration whose minibatch MSE is below ``tol`` or after
    ``max_iters`` iterations; ``tol=None`` never stops early (every iteration runs, as in Mokrov et al.'s
    experiment runs; see the module docstring). ``project`` is called after every optimiser step (e.g.
    :meth:`DenseICNN.convexify`). ``sample`` returns a batch already on the potential's device and dtype.
    ``converged`` is True when the last minibatch MSE is below ``tol`` (always False with ``tol=None``).
    """
    opt = adam(potential.parameters(), lr=lr, weight_decay=weight_decay)
    loss_value = float("inf")
    for it in range(1, max_iters + 1):
        x = sample(batch_size)
        loss = F.mse_loss(potential.gradient(x, create_graph=True), x)
        loss_value = loss.item()
        if tol is not None and loss_value < tol:
            return PretrainResult(iterations=it, loss=loss_value, converged=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if project is not None:
            project()
    return PretrainResult(iterations=max_iters, loss=loss_value, converged=False)
