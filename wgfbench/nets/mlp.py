"""Fully connected networks of the variational JKO (Fan et al. 2022, §5 and Appendix E).

* :class:`ResidualMLP`, the map T(x) = x + g(x): ``Linear(d, w) -> PReLU``, then ``n_hidden`` blocks
  ``Linear(w, w) -> Dropout(p) -> PReLU``, then ``Linear(w, d)`` (optionally a final PReLU on the
  displacement, the GMM/Bayesian configs' quirk), plus the input.
* :class:`RatioNet`, the dual function as a positive density ratio r(x) ≈ dP/dGamma, the same MLP
  trunk with one output u and one of two output transforms:
  ``quadratic`` r = PReLU(u)^2 (the OU and Bayesian configs) or ``smooth``
  hbar = 20 sigmoid(0.15 PReLU(u)), r = exp(hbar) - 1 (the GMM configs; bounded so E[r] cannot
  overflow float32).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


def mlp_trunk(d_in: int, d_out: int, width: int, n_hidden: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear(d_in, w) -> PReLU -> n_hidden x [Linear(w, w) -> Dropout -> PReLU] -> Linear(w, d_out)."""
    layers: list[nn.Module] = [nn.Linear(d_in, width), nn.PReLU()]
    for _ in range(n_hidden):
        layers += [nn.Linear(width, width)]
        if dropout > 0:
            layers += [nn.Dropout(dropout)]
        layers += [nn.PReLU()]
    layers += [nn.Linear(width, d_out)]
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """T(x) = x + g(x), g an MLP (see module docstring)."""

    def __init__(self, dim: int, width: int = 64, n_hidden: int = 2, dropout: float = 0.02, final_prelu: bool = False):
        super().__init__()
        self.g = mlp_trunk(dim, dim, width, n_hidden, dropout)
        self.final = nn.PReLU() if final_prelu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.final(self.g(x))


class RatioNet(nn.Module):
    """Positive density ratio r(x) and log r(x) (see module docstring)."""

    def __init__(
        self,
        dim: int,
        width: int = 64,
        n_hidden: int = 1,
        transform: Literal["quadratic", "smooth"] = "quadratic",
        log_clamp: float = 1e-10,
    ):
        super().__init__()
        if transform not in ("quadratic", "smooth"):
            raise ValueError(f"unknown ratio transform {transform!r}")
        self.trunk = mlp_trunk(dim, 1, width, n_hidden)
        self.out_act = nn.PReLU()
        self.transform = transform
        self.log_clamp = log_clamp

    def ratio(self, x: Tensor) -> Tensor:
        u = self.out_act(self.trunk(x)).squeeze(-1)
        if self.transform == "quadratic":
            return u**2
        hbar = 20.0 * torch.sigmoid(0.15 * u)
        return torch.expm1(hbar)

    def log_of(self, ratio: Tensor) -> Tensor:
        """log r from values r of :meth:`ratio`, clamped below at ``log_clamp``."""
        return torch.log(ratio.clamp_min(self.log_clamp))

    def log_ratio(self, x: Tensor) -> Tensor:
        return self.log_of(self.ratio(x))
