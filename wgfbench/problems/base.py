"""What a problem of the suite is: an initial law, an energy functional, and exact references.

A problem is a Wasserstein gradient flow dP/dt = -grad_W F(P) started from P_0, for which the suite
knows the exact solution P_t (``reference(t)``) and, where it exists in closed form, the exact JKO
iterate P_k^JKO of step size h (``jko_reference(k, h)``), the time-discretisation floor.

Two functional families are supported, matching the (A, B, Gamma) triples of Fan et al. (2022,
Table 1):

* ``"kl"``: F(P) = temperature * KL(P || Q) with Q ∝ exp(log_target) known up to a constant.
  For OU, temperature = 1/beta and log_target(x) = -beta/2 (x-b)^T A (x-b), so that
  F(P) = ∫ V dP + beta^-1 ∫ P log P + const with V the OU potential.
* ``"generalised_entropy"``: F(P) = 1/(m-1) ∫ P^m dx (porous medium equation, dP/dt = ΔP^m).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

Functional = Literal["kl", "generalised_entropy"]


@runtime_checkable
class Law(Protocol):
    """A probability law the suite can sample exactly; log_density may be unnormalised-free."""

    @property
    def dim(self) -> int: ...

    @property
    def is_gaussian(self) -> bool: ...

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n exact samples, (n, d), drawn in ``dtype``: float64 for references and metrics; a method may ask
        for its own dtype (float32 normals are ~5x cheaper to draw on the CPU than float64 ones)."""
        ...

    def log_density(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Problem(Protocol):
    """The contract every problem implements (see module docstring)."""

    name: str
    dim: int
    functional: Functional
    # False when reference(t) is one stationary law for every t (a sampling target); samplers that are not time
    # integrators (e.g. the importance-corrected neural JKO) run only such problems
    transient: bool

    def initial(self) -> Law:
        """P_0."""

    def reference(self, t: float) -> Law:
        """The exact solution P_t of the PDE."""

    def jko_reference(self, k: int, h: float) -> Law | None:
        """The exact k-th JKO iterate with step h, or None where no closed form exists."""

    def time_of_step(self, k: int, h: float) -> float:
        """Flow time reached after k JKO steps of size h (k*h for every problem of the suite)."""

    def describe(self) -> dict[str, object]:
        """Scalar parameters identifying the instance (stored in records)."""
