r"""The residual SiLU networks of S-JKO (Choi, Choi & Kang, ICML 2024): a potential v(y) and a generator G(x0, z).

Both are built on one trunk, a residual MLP of width w with SiLU activations (the toy networks of their paper's
code, re-implemented):

    u_0 = W_in y + b_in,   u_j = (u_{j-1} + B_j(u_{j-1})) / sqrt(2)   (j = 1..n_blocks),
    B_j = [Linear(w, w) -> SiLU] x block_layers,

the 1/sqrt(2) keeping the scale of u_j that of u_{j-1} when the block's output is uncorrelated with its input.
A head ``Linear(w, w) -> SiLU -> Linear(w, d_out)`` reads the trunk out.

* :class:`SiLUPotential`: v(y) = head(trunk(y)), a scalar.
* :class:`NoisyGenerator`: G(x0, z) = head(trunk(x0) + embed(z)) with the noise embedding
  ``Linear(n_z, w) -> SiLU -> Linear(w, w)`` (no embedding when n_z = 0: a deterministic map of x0). With
  ``skip`` the generator is x0 + head(...) with the head's last layer zero-initialised, so that it starts at the
  identity (P_0 itself); without it (their code) it starts as a random network of x0 and z.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class SiLUResidualTrunk(nn.Module):
    """Linear(d_in, w), then ``n_blocks`` residual blocks u <- (u + B(u))/sqrt(2) (module docstring)."""

    def __init__(self, d_in: int, width: int, n_blocks: int, block_layers: int):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(*[m for _ in range(block_layers) for m in (nn.Linear(width, width), nn.SiLU())])
            for _ in range(n_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        u = self.inp(x)
        for block in self.blocks:
            u = (u + block(u)) / math.sqrt(2.0)
        return u


def head(width: int, d_out: int) -> nn.Sequential:
    """Linear(w, w) -> SiLU -> Linear(w, d_out)."""
    return nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, d_out))


class SiLUPotential(nn.Module):
    """v(y) = head(trunk(y)), one value per row."""

    def __init__(self, dim: int, width: int = 128, n_blocks: int = 3, block_layers: int = 3):
        super().__init__()
        self.trunk = SiLUResidualTrunk(dim, width, n_blocks, block_layers)
        self.head = head(width, 1)

    def forward(self, y: Tensor) -> Tensor:
        return self.head(self.trunk(y)).squeeze(-1)


class NoisyGenerator(nn.Module):
    """G(x0, z) = [x0 +] head(trunk(x0) + embed(z)) (module docstring)."""

    def __init__(
        self, dim: int, noise_dim: int, width: int = 128, n_blocks: int = 3, block_layers: int = 3, skip: bool = False
    ):
        super().__init__()
        self.noise_dim, self.skip = int(noise_dim), bool(skip)
        self.trunk = SiLUResidualTrunk(dim, width, n_blocks, block_layers)
        self.embed = (
            nn.Sequential(nn.Linear(noise_dim, width), nn.SiLU(), nn.Linear(width, width)) if noise_dim > 0 else None
        )
        self.head = head(width, dim)
        if skip:
            last = self.head[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x0: Tensor, z: Tensor | None) -> Tensor:
        u = self.trunk(x0)
        if self.embed is not None:
            u = u + self.embed(z)
        out = self.head(u)
        return x0 + out if self.skip else out
