r"""The Wasserstein gradient flow of the Jensen-Shannon divergence to a target Q, with a finite-volume reference.

**Functional.** Fan et al.'s (ICML 2022, Table 1) Jensen-Shannon f-divergence, f(x) = x log x - (x+1) log((1+x)/2):

    F(P) = D_f(P || Q) = ∫ q f(p/q) = ∫ p log(2p/(p+q)) + q log(2q/(p+q)) = KL(P || M) + KL(Q || M),  M = (P+Q)/2,

twice the usual JSD, bounded by 2 log 2. Its first variation is f'(p/q) = log(2p/(p+q)), so the W2 gradient flow
dp/dt = div(p ∇ log(2p/(p+q))) is (derived here)

    dp/dt = div( (q ∇p - p ∇q) / (p + q) ) = div( w (∇p + p ∇U) ),   w = q/(p+q) in (0, 1),   U = -log q,

a Fokker-Planck equation of unit temperature whose diffusion and drift are both slowed by the state-dependent
weight w (w -> 0 where p >> q, w -> 1 where p << q). There is no closed form.

**Near equilibrium: half the Fokker-Planck rate** (derived here). For p = q (1 + eps u), q ∇p - p ∇q = eps q^2 ∇u
and p + q = 2q + O(eps), so to first order d(qu)/dt = ½ div(q ∇u), while the KL flow dp/dt = div(p ∇ log(p/q))
linearises to d(qu)/dt = div(q ∇u): the JSD flow relaxes like the unit-temperature Fokker-Planck flow run at half
speed, P^JSD_t = P^KL_{t/2} + O(eps^2). For Q = N(b, S) and P_0 = N(b + delta, S) the KL flow is OU with A = S^{-1},
so the mean of the JSD flow relaxes as b + e^{-S^{-1} t/2} delta + O(|delta|^2) (tested on the grid; the check for
methods in any d is :func:`wgfbench.metrics.jsd.near_equilibrium_mean`).

**Product structure, so the reference exists in any d** (derived here). If q = q_a(x_a) q_b(x_b) and
p_0 = f_0(x_a) q_b(x_b), then p = f q_b with f solving the same flow in x_a towards q_a: for such p,
q ∇p - p ∇q = q_b^2 (q_a ∇_a f - f ∇_a q_a) and p + q = (f + q_a) q_b, so the flux has no x_b component and
div_a of it is q_b times the x_a flow of f. The problem therefore solves g = 1 or 2 "active" coordinates on a grid
and keeps the other d - g coordinates at N(0, I) in both Q and P_t: ``reference(t)`` = (grid law) x N(0, I_{d-g}).
In d > g this checks that a method moves the active coordinates correctly while leaving the equilibrated ones
alone; D_f(P_t || Q) is the grid part's divergence.

**Scheme** (:mod:`wgfbench.problems.finite_volume`). Scharfetter-Gummel fluxes for U with the face weights
w_{i+1/2} = (w_i + w_{i+1})/2 frozen at the current state, explicit Euler with dt = 1/N, N the smallest multiple of
100 with dt sum(outflow coefficients) <= 0.9 at w = 1, so that p stays non-negative (every w <= 1); mass is
conserved exactly, the grid target p_i ∝ q(x_i) is an exact stationary state (every face flux vanishes, whatever w),
and the error is O(dx^2) (tested). Box [-5.5, 5.5]^g; 440 cells (g = 1) or 220^2 (g = 2); solved once per problem
object and memoised per requested step; ``reference(0)`` is P_0 itself.

**Instances** (:func:`make_jsd_grid`): ``target="mixture"``: g = min(d, 2); in 1-d Q_a = 0.4 N(-2, 0.5^2) +
0.6 N(1.5, 0.7^2), in 2-d Q_a = equal mixture of N((-1.5, -1), 0.6^2 I), N((1.5, -1), 0.6^2 I), N((0, 1.5), 0.6^2 I);
P_0 = N(0, I_d). ``target="gaussian"``: g = 1, Q = N(0, I_d), P_0 = N(shift e_1, I_d): the near-equilibrium
relaxation (mean of x_1 ~ shift e^{-t/2}).

**For methods.** ``functional = "jsd"``; ``log_target(x)`` is the *normalised* log q (the f-divergence needs a
probability Q), ``target()`` samples Q exactly (the variational JKO's reference measure for the JSD is Q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor

from wgfbench.params import Positive, Range
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.finite_volume import (
    Grid,
    GridLaw,
    ProductLaw,
    cell_averages,
    face_coefficients,
    face_slices,
    sg_rate,
)
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.gmm import GaussianMixtureLaw

TARGETS = ("mixture", "gaussian")
DEFAULT_CELLS = {1: 440, 2: 220}
CFL = 0.9


def jsd_divergence(p: np.ndarray, q: np.ndarray, cell_volume: float) -> float:
    """D_f(p || q) = ∫ p log(2p/(p+q)) + q log(2q/(p+q)) for grid densities (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(2 * p / (p + q)), 0.0)
        b = np.where(q > 0, q * np.log(2 * q / (p + q)), 0.0)
    return float((a + b).sum() * cell_volume)


@dataclass(frozen=True)
class JSDGridProblem(ProblemDefaults):
    """JSD flow to Q = Q_a x N(0, I_{d-g}) from P_0 = P_a x N(0, I_{d-g}); grid reference in the g active axes."""

    dim: int
    active_target: GaussianMixtureLaw
    active_initial: GaussianLaw
    target_kind: str = "mixture"
    half_width: float = 5.5
    cells: int = 440
    seed: int = 0
    name: str = "jsd_grid"
    functional: str = "jsd"
    dt: float = field(init=False)
    _q: np.ndarray = field(init=False, repr=False, compare=False)
    _coefficients: list = field(init=False, repr=False, compare=False)
    _snapshots: dict[int, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        g = self.active_target.dim
        if g not in (1, 2) or self.active_initial.dim != g or self.dim < g:
            raise ValueError(f"need 1 or 2 active coordinates (initial and target alike) and dim >= them; got {g}")
        grid = self.grid
        q = np.exp(self.active_target.log_density(torch.from_numpy(grid.mesh().reshape(-1, g))).numpy())
        q = q.reshape(grid.shape)
        coefficients = [face_coefficients(-np.log(q), grid.spacing[j], j, 1.0) for j in range(g)]
        outflow = np.zeros(grid.shape)
        for axis, (out, back) in enumerate(coefficients):
            left, right = face_slices(g, axis)
            outflow[left] += out
            outflow[right] += back
        steps_per_unit = 100 * math.ceil(float(outflow.max()) / (100 * CFL))
        initial = self.active_initial

        def density(x: np.ndarray) -> np.ndarray:
            return np.exp(initial.log_density(torch.from_numpy(x).reshape(-1, g)).numpy()).reshape(x.shape[:-1])

        object.__setattr__(self, "dt", 1.0 / steps_per_unit)
        object.__setattr__(self, "_q", q)
        object.__setattr__(self, "_coefficients", coefficients)
        object.__setattr__(self, "_snapshots", {0: cell_averages(density, grid)})

    @property
    def active_dim(self) -> int:
        return self.active_target.dim

    @property
    def grid(self) -> Grid:
        g = self.active_dim
        return Grid((-self.half_width,) * g, (self.half_width,) * g, (self.cells,) * g)

    def _rest(self) -> GaussianLaw | None:
        r = self.dim - self.active_dim
        return None if r == 0 else GaussianLaw(torch.zeros(r, dtype=torch.float64), torch.eye(r, dtype=torch.float64))

    # --- target --------------------------------------------------------------------------------
    def log_target(self, x: Tensor) -> Tensor:
        """Normalised log q(x), in x's dtype and device, differentiable."""
        g = self.active_dim
        out = self.active_target.log_density_any(x[..., :g])
        if self.dim > g:
            rest = x[..., g:]
            out = out - 0.5 * (rest**2).sum(-1) - 0.5 * (self.dim - g) * math.log(2 * math.pi)
        return out

    def target(self) -> GaussianMixtureLaw | ProductLaw:
        rest = self._rest()
        return self.active_target if rest is None else ProductLaw((self.active_target, rest))

    def stationary(self) -> GaussianMixtureLaw | ProductLaw:
        return self.target()

    # --- the flow ------------------------------------------------------------------------------
    def initial(self) -> GaussianLaw:
        g, d = self.active_dim, self.dim
        mean = torch.zeros(d, dtype=torch.float64)
        cov = torch.eye(d, dtype=torch.float64)
        mean[:g] = self.active_initial.mean
        cov[:g, :g] = self.active_initial.cov
        return GaussianLaw(mean, cov)

    def step(self, p: np.ndarray) -> np.ndarray:
        """One explicit Euler step of the scheme (module docstring)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(p + self._q > 0, self._q / (p + self._q), 1.0)
        weights = [0.5 * (w[left] + w[right]) for left, right in (face_slices(p.ndim, j) for j in range(p.ndim))]
        return p + self.dt * sg_rate(p, self._coefficients, weights)

    def grid_values(self, steps: int) -> np.ndarray:
        """Cell averages of the active coordinates' law after ``steps`` steps (memoised)."""
        if steps not in self._snapshots:
            start = max(k for k in self._snapshots if k <= steps)
            p = self._snapshots[start]
            for _ in range(steps - start):
                p = self.step(p)
            self._snapshots[steps] = p
        return self._snapshots[steps]

    def cell_values(self, t: float) -> np.ndarray:
        steps = t / self.dt
        lo = math.floor(steps + 1e-9)
        frac = steps - lo
        values = self.grid_values(lo)
        if frac > 1e-9:
            values = (1 - frac) * values + frac * self.grid_values(lo + 1)
        return values

    def reference(self, t: float) -> GaussianLaw | GridLaw | ProductLaw:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        if t == 0:
            return self.initial()
        law = GridLaw(self.grid, self.cell_values(t))
        rest = self._rest()
        return law if rest is None else ProductLaw((law, rest))

    def divergence(self, t: float) -> float:
        """D_f(P_t || Q) on the grid (the equilibrated coordinates contribute nothing)."""
        grid = self.grid
        q = self._q / (self._q.sum() * grid.cell_volume)
        return jsd_divergence(self.cell_values(t), q, grid.cell_volume)

    def jko_reference(self, k: int, h: float) -> None:
        return None

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    def describe(self) -> dict[str, object]:
        return {
            "target": self.target_kind,
            "active_dim": self.active_dim,
            "half_width": self.half_width,
            "cells_per_axis": self.cells,
            "dt": self.dt,
            "reference": "Scharfetter-Gummel finite volumes, explicit Euler, JSD face weights",
        }


@problem_factory("jsd_grid")
def make_jsd_grid(
    dim: int,
    seed: int = 0,
    target: Literal["mixture", "gaussian"] = "mixture",
    shift: float = 0.2,
    cells: Annotated[int, Range(8, 20_000)] | None = None,
    half_width: Positive = 5.5,
) -> JSDGridProblem:
    """The instances of the module docstring; deterministic (``seed`` kept for records)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    f64 = torch.float64
    if target == "mixture":
        g = min(dim, 2)
        if g == 1:
            law = GaussianMixtureLaw(torch.tensor([[-2.0], [1.5]]), torch.tensor([0.5, 0.7]), torch.tensor([0.4, 0.6]))
        else:
            means = torch.tensor([[-1.5, -1.0], [1.5, -1.0], [0.0, 1.5]])
            law = GaussianMixtureLaw(means, torch.full((3,), 0.6), torch.full((3,), 1.0 / 3))
        start = GaussianLaw(torch.zeros(g, dtype=f64), torch.eye(g, dtype=f64))
    elif target == "gaussian":
        g = 1
        law = GaussianMixtureLaw(torch.zeros(1, 1), torch.ones(1), torch.ones(1))
        start = GaussianLaw(torch.full((1,), float(shift), dtype=f64), torch.eye(1, dtype=f64))
    else:
        raise ValueError(f"unknown JSD target {target!r}; choose one of {TARGETS}")
    return JSDGridProblem(
        dim=dim,
        active_target=law,
        active_initial=start,
        target_kind=target,
        half_width=float(half_width),
        cells=DEFAULT_CELLS[g] if cells is None else int(cells),
        seed=seed,
    )
