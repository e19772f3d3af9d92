r"""Time-dependent velocity field v(x, t) of a continuous normalizing flow, with its divergence by forward tangents.

Architecture (Hertrich & Gruhlke, ICML 2025, §5: the FFJORD-style network of their neural JKO steps): an MLP
with ``n_hidden`` hidden layers of width w and ELU activations, the time t concatenated to the input of every
layer (the hidden ones and the output one),

    h_0 = x,   h_l = ELU(W_l [h_{l-1}; t] + b_l)  (l = 1..L),   v(x, t) = W_out [h_L; t] + b_out,

with W_out and b_out initialised to zero, so that a freshly built field is v = 0 and its flow the identity.
The hidden layers get the usual uniform initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the
layer's inputs including t (``nn.Linear``'s default for the bias, and the same bound for the weights), drawn
from a given generator so that a run's networks are a function of its seed alone.

**Divergence by forward tangents.** The Jacobian of v in x applied to a matrix of tangents E (d x P per
sample) is propagated layer by layer with the forward pass (forward-mode differentiation written out):

    dh_0 = E,   dh_l = ELU'(a_l) * (W_l^x dh_{l-1}),   J_v E = W_out^x dh_L,

where a_l is the pre-activation, W^x the columns of W that multiply h (t does not depend on x) and
ELU'(a) = exp(min(a, 0)) = 1 + min(ELU(a), 0). Then

* exact divergence: E = I (P = d), div v = tr(J_v) = sum_i (J_v)_{ii};
* Hutchinson's estimate (Hutchinson 1989; FFJORD, Grathwohl et al., ICLR 2019): E = P Rademacher probes,
  div v ~ (1/P) sum_p e_p^T J_v e_p, unbiased since E[e e^T] = I.

Both are plain differentiable tensor expressions of the parameters, so a loss on them trains the network by
ordinary backpropagation (no double backward). The cost is that of P + 1 forward passes.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn


def default_width(dim: int) -> int:
    """Hertrich & Gruhlke's hidden width 2d + 50."""
    return 2 * dim + 50


class VelocityMLP(nn.Module):
    """v(x, t) for x of shape (n, d) and a scalar t (module docstring).

    Layer l holds W_l^x (``wx[l]``), the column W_l^t that multiplies t (``wt[l]``) and b_l (``b[l]``) as separate
    parameters, so the time enters as the bias b_l + t W_l^t (no concatenation, no slicing of the weights).
    """

    def __init__(self, dim: int, width: int, n_hidden: int = 3, generator: torch.Generator | None = None):
        super().__init__()
        if dim < 1 or width < 1 or n_hidden < 1:
            raise ValueError(f"need dim, width, n_hidden >= 1, got {dim}, {width}, {n_hidden}")
        self.dim = dim
        sizes = [dim] + [width] * n_hidden + [dim]
        self.wx, self.wt, self.b = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            last = i == len(sizes) - 2
            bound = 0.0 if last else 1.0 / math.sqrt(n_in + 1)  # fan_in counts the time input
            self.wx.append(nn.Parameter(_uniform((n_out, n_in), bound, generator)))
            self.wt.append(nn.Parameter(_uniform((n_out,), bound, generator)))
            self.b.append(nn.Parameter(_uniform((n_out,), bound, generator)))

    def _pre_activation(self, i: int, h: Tensor, t: Tensor | float) -> Tensor:
        """W_i^x h + b_i + t W_i^t."""
        bias = torch.add(self.b[i], self.wt[i], alpha=t) if isinstance(t, float | int) else self.b[i] + t * self.wt[i]
        return torch.addmm(bias, h, self.wx[i].T)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        h = x
        for i in range(len(self.wx) - 1):
            h = nn.functional.elu(self._pre_activation(i, h, t))
        return self._pre_activation(len(self.wx) - 1, h, t)

    def forward_with_jvp(self, x: Tensor, t: Tensor | float, tangents: Tensor | None) -> tuple[Tensor, Tensor]:
        """(v(x, t), the Jacobian applied to the tangents): shapes (n, d) and (n, P, d).

        ``tangents`` holds P tangent vectors per sample as rows, shape (n, P, d), and the result row p is
        J_v(x, t) e_p; None means the d basis vectors (E = I), so that row i is the i-th column of J_v.
        """
        h = x
        dh: Tensor | None = tangents
        for i in range(len(self.wx) - 1):
            h = nn.functional.elu(self._pre_activation(i, h, t))
            # ELU'(a) = 1 + min(ELU(a), 0); J of the first layer applied to E = I is W^x itself
            slope = (1.0 + h.clamp(max=0.0)).unsqueeze(-2)
            dh = slope * (self.wx[i].T if dh is None else dh @ self.wx[i].T)
        last = len(self.wx) - 1
        return self._pre_activation(last, h, t), dh @ self.wx[last].T


def divergence_from_jvp(jv: Tensor, tangents: Tensor | None) -> Tensor:
    """Per-probe divergence estimates (n, P): e_p . J e_p; with ``tangents=None`` (E = I) the exact trace, (n, 1)."""
    if tangents is None:
        return torch.diagonal(jv, dim1=-2, dim2=-1).sum(-1, keepdim=True)
    return (jv * tangents).sum(-1)


def rademacher(shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    """Independent +-1 entries with probability 1/2 each, drawn on the CPU from ``generator``."""
    e = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8).to(dtype) * 2 - 1
    return e.to(device)


def _uniform(shape: torch.Size, bound: float, generator: torch.Generator | None) -> Tensor:
    u = (2.0 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1.0) * bound
    return u.to(torch.get_default_dtype())
