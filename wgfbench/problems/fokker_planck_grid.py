r"""A non-Gaussian KL transient: Fokker-Planck flow in a non-convex potential, with a finite-volume reference, d = 1, 2.

    dP/dt = div(P ∇V) + T ΔP,   V(x) = sum_j [ sin(2 pi x_j)/pi + x_j^2/4 ],   P_0 = N(m0, S0),

the W2 gradient flow of F = T KL(P || Q), Q ∝ e^{-V/T} (Jordan, Kinderlehrer & Otto 1998), T the temperature.
V is Mokrov et al.'s filtering potential (NeurIPS 2021, §5.4): V'' = 1/2 - 4 pi sin(2 pi x) changes sign, so the
Gibbs law is multimodal (one mode per period, near x = -0.25 + k) and the transient is not Gaussian. At T = 1/2
the Gibbs law has mean 0 and variance 2T = 1 to within 1e-4 per coordinate (the periodic modulation barely moves the
moments of the x^2/4 envelope), so a Gaussian moment fit cannot tell it from N(0, 2T I): a benchmark where moment
metrics are blind and sample or density metrics must do the ranking.

**Reference** (:mod:`wgfbench.problems.finite_volume`). Writing the equation as dP/dt = div(T (∇P + P ∇U)) with
U = V/T, the Scharfetter-Gummel (Chang-Cooper) finite-volume scheme on the box [-L, L]^d with zero-flux faces is
mass-conserving, positivity-preserving and has the grid Gibbs law P_i ∝ e^{-U_i} as an exact stationary state. V
is separable, so the time stepping is implicit Euler split by axes (:class:`~wgfbench.problems.finite_volume.\
SplitImplicitEuler`): K steps are M^K along every axis, M = (I - dt L_1)^{-1}. Defaults: L = 5.5 (the mass of the
Gibbs law outside the box is ~1e-7), 1100 cells in d = 1 and 440^2 in d = 2 (dx = 0.01 and 0.025), dt = 1e-4. The
solution is computed once per problem object and per requested step count (memoised); ``reference(t)`` at a t that
is not a multiple of dt interpolates linearly between the two neighbouring steps; ``reference(0)`` is P_0 itself.
The initial cell averages are 4-point Gauss-Legendre averages of the Gaussian density.

Defaults: T = 1/2; P_0 = N(1.5, 0.25) in d = 1 and N((1.5, -0.75), 0.25 [[1, 0.5], [0.5, 1]]) in d = 2 (correlated,
so the solution is not a product of 1-d solutions). There is no exact JKO iterate (``jko_reference`` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import torch
from torch import Tensor

from wgfbench.params import Positive, Range
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.finite_volume import Grid, GridLaw, SplitImplicitEuler, cell_averages, face_coefficients
from wgfbench.problems.gaussian import GaussianLaw

DEFAULT_CELLS = {1: 1100, 2: 440}


def filtering_potential(x: Tensor) -> Tensor:
    """V(x) = sum_j sin(2 pi x_j)/pi + x_j^2/4 for x of shape (..., d), in x's dtype and device (differentiable)."""
    return (torch.sin(2 * math.pi * x) / math.pi + 0.25 * x**2).sum(-1)


def filtering_potential_1d(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x) / np.pi + 0.25 * x**2


@dataclass(frozen=True)
class NonconvexFokkerPlanckProblem(ProblemDefaults):
    """Fokker-Planck flow in the filtering potential with a grid reference (module docstring)."""

    dim: int
    temperature: float
    m0: Tensor
    S0: Tensor
    half_width: float = 5.5
    cells: int = 1100
    dt: float = 1e-4
    seed: int = 0
    name: str = "fokker_planck_nonconvex"
    functional: str = "kl"
    _stepper: SplitImplicitEuler = field(init=False, repr=False, compare=False)
    _snapshots: dict[int, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dim not in (1, 2):
            raise ValueError(f"the grid reference exists for d = 1, 2; got {self.dim}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        grid_1d = Grid((-self.half_width,), (self.half_width,), (self.cells,))
        potential = filtering_potential_1d(grid_1d.centres(0)) / self.temperature
        coefficients = face_coefficients(potential, grid_1d.spacing[0], 0, self.temperature)
        object.__setattr__(self, "_stepper", SplitImplicitEuler(coefficients, self.dt))
        initial = self.initial()

        def density(x: np.ndarray) -> np.ndarray:
            log_p = initial.log_density(torch.from_numpy(x).reshape(-1, self.dim)).numpy()
            return np.exp(log_p).reshape(x.shape[:-1])

        object.__setattr__(self, "_snapshots", {0: cell_averages(density, self.grid)})

    @property
    def grid(self) -> Grid:
        return Grid((-self.half_width,) * self.dim, (self.half_width,) * self.dim, (self.cells,) * self.dim)

    # --- energy --------------------------------------------------------------------------------
    def potential(self, x: Tensor) -> Tensor:
        return filtering_potential(x)

    def log_target(self, x: Tensor) -> Tensor:
        """Unnormalised log Q = -V/T, in x's dtype and device, differentiable."""
        return -filtering_potential(x) / self.temperature

    # --- laws ----------------------------------------------------------------------------------
    def initial(self) -> GaussianLaw:
        return GaussianLaw(self.m0, self.S0)

    def grid_values(self, steps: int) -> np.ndarray:
        """Cell averages after ``steps`` time steps, from the latest memoised earlier snapshot."""
        if steps not in self._snapshots:
            start = max(k for k in self._snapshots if k <= steps)
            self._snapshots[steps] = self._stepper.evolve(self._snapshots[start], steps - start)
        return self._snapshots[steps]

    def cell_values(self, t: float) -> np.ndarray:
        """Cell averages at time t (un-normalised: their mass is the initial cell averages' mass, conserved)."""
        steps = t / self.dt
        lo = math.floor(steps + 1e-9)
        frac = steps - lo
        values = self.grid_values(lo)
        if frac > 1e-9:
            values = (1 - frac) * values + frac * self.grid_values(lo + 1)
        return values

    def reference(self, t: float) -> GaussianLaw | GridLaw:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        if t == 0:
            return self.initial()
        return GridLaw(self.grid, self.cell_values(t))

    def stationary(self) -> GridLaw:
        """The grid Gibbs law P_i ∝ e^{-V(x_i)/T}: the scheme's exact stationary state."""
        return GridLaw(self.grid, np.exp(-filtering_potential_1d(self.grid.mesh()).sum(-1) / self.temperature))

    def target(self) -> GridLaw:
        """The KL target as the grid samples it: the grid Gibbs law (:meth:`stationary`), the limit of the grid
        reference (it differs from the continuum Q by the O(dx^2) discretisation and the box truncation)."""
        return self.stationary()

    def jko_reference(self, k: int, h: float) -> None:
        return None

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    def describe(self) -> dict[str, object]:
        return {
            "temperature": self.temperature,
            "half_width": self.half_width,
            "cells_per_axis": self.cells,
            "dx": 2 * self.half_width / self.cells,
            "dt": self.dt,
            "reference": "Scharfetter-Gummel finite volumes, axis-split implicit Euler",
        }


@problem_factory("fokker_planck_nonconvex")
def make_fokker_planck_nonconvex(
    dim: int,
    seed: int = 0,
    temperature: Positive = 0.5,
    cells: Annotated[int, Range(8, 20_000)] | None = None,
    half_width: Positive = 5.5,
    dt: Positive = 1e-4,
) -> NonconvexFokkerPlanckProblem:
    """The default instance of the module docstring; deterministic (``seed`` kept for records)."""
    if dim not in DEFAULT_CELLS:
        raise ValueError(f"the grid reference exists for d = 1, 2; got {dim}")
    m0 = torch.tensor([1.5, -0.75][:dim], dtype=torch.float64)
    s0 = 0.25 * torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)[:dim, :dim]
    return NonconvexFokkerPlanckProblem(
        dim=dim,
        temperature=float(temperature),
        m0=m0,
        S0=s0,
        half_width=float(half_width),
        cells=DEFAULT_CELLS[dim] if cells is None else int(cells),
        dt=float(dt),
        seed=seed,
    )
