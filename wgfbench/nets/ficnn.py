r"""Fully input-convex network of Alvarez-Melis, Schiff & Mroueh (TMLR 2022): leaky-ReLU, squared first layer.

The FICNN of Amos, Xu & Kolter (ICML 2017, Eq. 2) as Alvarez-Melis et al. parametrise it, for hidden sizes
w_1..w_L and sigma = leaky-ReLU of slope ``negative_slope`` (0.01):

    a_1     = A_0 x + c_0,                    z_1     = sigma(a_1)^2
    a_{l+1} = W_l z_l + A_l x + c_l,          z_{l+1} = sigma(a_{l+1}),      l = 1..L
    psi(x)  = z_{L+1}                         (a scalar: the last layer has one output, sigma applied too)

* z_1 is convex in x: t -> sigma(t)^2 is convex (t^2 for t > 0, slope^2 t^2 below, C^1 at 0) and a_1 is affine;
  it need not be monotone, its input being affine (Makkuva et al., ICML 2020).
* W_l >= 0 entrywise, kept there by :meth:`FICNN.convexify` after every optimiser step, which clamps them at
  1e-18 as Alvarez-Melis et al.'s ``PositiveWeightClipper`` does (a clamp, not a reparametrisation); sigma is
  convex and non-decreasing, so every z_l is convex and so is psi. No quadratic skip layers, no strong
  convexity term (their PDE experiments run without their optional ``strongify_icnn``).
* Initialisation as theirs: every A_l, c_l and W_l as torch's ``nn.Linear`` (Kaiming-uniform, a = sqrt(5);
  biases U(-1/sqrt(d), 1/sqrt(d))), then W_l clamped at 1e-18.

**Gradient and Hessian in closed form** (:meth:`FICNN.grad_and_hessian`). With e_{L+1} = sigma'(a_{L+1}) and,
going down, e_l = (e_{l+1}^T W_l) * sigma'(a_l) for the pre-activations of layers l >= 2 and
g_1 = e_2^T W_1 for z_1 (so dpsi/da_1 = g_1 * 2 sigma(a_1) sigma'(a_1)):

    grad psi = sum_{l >= 2} A_{l-1}^T e_l + A_0^T (g_1 * 2 sigma(a_1) sigma'(a_1)),

and because sigma is piecewise linear (sigma'' = 0 away from its kink, a null set), the only curvature is that of
the squared first layer, d^2 sigma(a)^2 / da^2 = 2 sigma'(a)^2:

    Hess psi = A_0^T diag(2 g_1 * sigma'(a_1)^2) A_0,

positive semi-definite since g_1 >= 0 (W >= 0, sigma' > 0). psi is piecewise quadratic and its Hessian piecewise
constant. Both equal the torch.func derivatives of :meth:`FICNN.forward` to round-off (tests/test_ficnn.py);
:class:`wgfbench.densities.GradientMap` uses them for inversion and log-determinants.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_WEIGHT = 1e-18  # Alvarez-Melis et al.'s clamp of the non-negative weights


class FICNN(nn.Module):
    """Convex potential psi: R^d -> R (module docstring); ``forward`` maps (..., d) to (...)."""

    def __init__(self, dim: int, hidden: Sequence[int] = (100, 20), negative_slope: float = 0.01):
        super().__init__()
        hidden = tuple(int(w) for w in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"FICNN needs at least one hidden layer of positive width, got {hidden}")
        if not 0 <= negative_slope < 1:
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope}")
        self.dim = dim
        self.hidden = hidden
        self.negative_slope = float(negative_slope)
        sizes = (*hidden, 1)
        self.input_layers = nn.ModuleList(nn.Linear(dim, w) for w in sizes)  # A_l, c_l
        self.z_weights = nn.ParameterList(
            nn.Parameter(torch.empty(w_out, w_in)) for w_in, w_out in itertools.pairwise(sizes)
        )
        with torch.no_grad():
            for w in self.z_weights:
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.convexify()

    @torch.no_grad()
    def convexify(self) -> None:
        """Clamp the z-weights at 1e-18 (called after every optimiser step)."""
        for w in self.z_weights:
            w.clamp_(min=MIN_WEIGHT)

    def _sigma(self, a: Tensor) -> Tensor:
        return F.leaky_relu(a, self.negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        z = self._sigma(self.input_layers[0](x)) ** 2
        for layer, w in zip(self.input_layers[1:], self.z_weights, strict=True):
            z = self._sigma(z @ w.T + layer(x))
        return z.squeeze(-1)

    def grad_and_hessian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(grad psi(x), Hess psi(x)) for x (n, d) in closed form (module docstring), differentiable in the weights."""
        slope = self.negative_slope
        a = self.input_layers[0](x)
        s1 = torch.where(a > 0, torch.ones_like(a), torch.full_like(a, slope))
        z = (a * s1) ** 2
        derivs = []  # sigma'(a_l) for l >= 2
        for layer, w in zip(self.input_layers[1:], self.z_weights, strict=True):
            u = z @ w.T + layer(x)
            s = torch.where(u > 0, torch.ones_like(u), torch.full_like(u, slope))
            derivs.append(s)
            z = u * s
        grad = torch.zeros_like(x)
        e = derivs[-1]  # dpsi/da_{L+1}, (n, 1)
        for i in range(len(self.z_weights) - 1, -1, -1):
            grad = grad + e @ self.input_layers[i + 1].weight
            g = e @ self.z_weights[i]  # dpsi/dz_{i+1}
            e = g * derivs[i - 1] if i > 0 else g
        g1 = e  # dpsi/dz_1
        grad = grad + (g1 * 2.0 * (a * s1) * s1) @ self.input_layers[0].weight
        a0 = self.input_layers[0].weight  # (w_1, d)
        hess = torch.einsum("ki,nk,kj->nij", a0, 2.0 * g1 * s1 * s1, a0)
        return grad, hess

    def gradient(self, x: Tensor, create_graph: bool = False) -> Tensor:
        """T(x) = grad psi(x) by autograd (detached unless ``create_graph``); works under ``torch.no_grad``."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self(xr).sum(), xr, create_graph=create_graph)
        return g if create_graph else g.detach()
