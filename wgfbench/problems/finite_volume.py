r"""Finite volumes for Fokker-Planck-type equations on a box in d = 1, 2: the Scharfetter-Gummel (Chang-Cooper)
flux, its sparse operator, cell averages, and the grid solution as a samplable :class:`GridLaw`.

**Equation.** dp/dt = div(D w (∇p + p ∇U)) on a box with zero-flux boundaries, U a (dimensionless) potential,
D > 0 a diffusion constant and w > 0 an optional interface weight (w = 1 for the linear Fokker-Planck equation;
w = q/(p+q) for the Jensen-Shannon flow, :mod:`wgfbench.problems.jsd_grid`).

**Scheme.** Cells of widths dx_j per axis, unknowns the cell averages p_i. The flux through the face between cells
i and i+1 (positive towards i+1) is the Scharfetter-Gummel flux (Scharfetter & Gummel, IEEE Trans. Electron
Devices 1969; for the Fokker-Planck equation, Chang & Cooper, J. Comput. Phys. 6, 1970):

    F_{i+1/2} = (D w_{i+1/2} / dx) [ B(U_{i+1} - U_i) p_i - B(U_i - U_{i+1}) p_{i+1} ],   B(z) = z / (e^z - 1),

obtained by solving the one-dimensional flux equation F = -D w e^{-U} (e^U p)' exactly with U linear on the
face; and dp_i/dt = -(F_{i+1/2} - F_{i-1/2}) / dx, with F = 0 on the boundary faces. Properties (tested):

* **mass**: the fluxes telescope, so sum_i p_i |cell| is conserved exactly (the operator's columns sum to 0);
* **positivity**: the off-diagonal coefficients D w B(.)/dx^2 are >= 0 (B > 0), so the semi-discrete operator L is
  a Metzler matrix: implicit Euler (I - dt L)^{-1} is entrywise non-negative (an M-matrix inverse) for every dt, and
  explicit Euler keeps p >= 0 when dt max_i |L_ii| <= 1;
* **discrete Gibbs law**: B(-z) = e^z B(z), so every face flux vanishes for p_i ∝ e^{-U_i}, whatever w: the
  grid Gibbs law is an exact stationary state;
* **accuracy**: second order in dx for smooth data (observed order tested in the problems' tests).

**Grid law.** :class:`GridLaw` holds cell averages. ``sample`` draws exactly from the piecewise-constant density
(a cell by its mass, then a uniform point in it); ``log_density`` is the log of the multilinear interpolation of
the cell-centre values, with points outside the outermost centres clamped to them (the box is chosen so that the
mass there is negligible).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse
import torch
from scipy.interpolate import RegularGridInterpolator
from torch import Tensor


@dataclass(frozen=True)
class Grid:
    """A uniform box grid: ``cells[j]`` cells on [lower[j], upper[j]] along axis j (C order when flattened)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    cells: tuple[int, ...]

    def __post_init__(self) -> None:
        if not len(self.lower) == len(self.upper) == len(self.cells):
            raise ValueError("lower, upper and cells need one entry per axis")
        if any(u <= lo for lo, u in zip(self.lower, self.upper, strict=True)) or min(self.cells) < 2:
            raise ValueError(f"need upper > lower and >= 2 cells per axis, got {self}")

    @property
    def dim(self) -> int:
        return len(self.cells)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.cells

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((u - lo) / n for lo, u, n in zip(self.lower, self.upper, self.cells, strict=True))

    @property
    def cell_volume(self) -> float:
        return math.prod(self.spacing)

    def centres(self, axis: int) -> np.ndarray:
        dx = self.spacing[axis]
        return self.lower[axis] + dx * (np.arange(self.cells[axis]) + 0.5)

    def mesh(self) -> np.ndarray:
        """Cell centres as an array of shape (*cells, d)."""
        return np.stack(np.meshgrid(*[self.centres(j) for j in range(self.dim)], indexing="ij"), axis=-1)

    def refined(self, factor: int) -> Grid:
        return Grid(self.lower, self.upper, tuple(n * factor for n in self.cells))


def coarsen(values: np.ndarray, factor: int) -> np.ndarray:
    """Cell averages of a grid refined ``factor`` times along each axis, averaged back onto the coarse grid."""
    out = values
    for axis in range(values.ndim):
        n = out.shape[axis] // factor
        out = out.reshape(*out.shape[:axis], n, factor, *out.shape[axis + 1 :]).mean(axis=axis + 1)
    return out


def cell_averages(fn: Callable[[np.ndarray], np.ndarray], grid: Grid, order: int = 4) -> np.ndarray:
    """Cell averages of fn (points (..., d) -> values (...)) by tensor Gauss-Legendre quadrature of ``order`` nodes."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    centres = grid.mesh()
    total = np.zeros(grid.shape)
    for idx in np.ndindex(*([order] * grid.dim)):
        offset = np.array([0.5 * nodes[i] * dx for i, dx in zip(idx, grid.spacing, strict=True)])
        weight = math.prod(0.5 * weights[i] for i in idx)
        total += weight * fn(centres + offset)
    return total


def bernoulli(z: np.ndarray) -> np.ndarray:
    """B(z) = z / (e^z - 1), B(0) = 1, accurate near 0 and for large |z| (B(z) -> 0 as z -> +inf, ~ -z as -inf)."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 1e-6
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        val = z / np.expm1(z)
    return np.where(small, 1.0 - 0.5 * z + z**2 / 12.0, val)


def face_coefficients(
    potential: np.ndarray, spacing: float, axis: int, diffusion: float
) -> tuple[np.ndarray, np.ndarray]:
    """(out, back) along ``axis``: face flux = (out p_i - back p_{i+1}) dx, out = D B(ΔU)/dx^2, back = D B(-ΔU)/dx^2."""
    du = np.diff(potential, axis=axis)
    scale = diffusion / spacing**2
    return scale * bernoulli(du), scale * bernoulli(-du)


def face_slices(ndim: int, axis: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Index tuples of the cells left and right of the interior faces normal to ``axis``."""
    left = tuple(slice(None, -1) if j == axis else slice(None) for j in range(ndim))
    right = tuple(slice(1, None) if j == axis else slice(None) for j in range(ndim))
    return left, right


def sg_rate(
    p: np.ndarray,
    coefficients: list[tuple[np.ndarray, np.ndarray]],
    weights: list[np.ndarray] | None = None,
) -> np.ndarray:
    """dp/dt of the scheme for cell averages p, from each axis's :func:`face_coefficients` and optional face weights."""
    rate = np.zeros_like(p)
    for axis, (out, back) in enumerate(coefficients):
        left, right = face_slices(p.ndim, axis)
        flux = out * p[left] - back * p[right]  # face flux / dx
        if weights is not None:
            flux = weights[axis] * flux
        rate[left] -= flux
        rate[right] += flux
    return rate


def sg_matrix(coefficients: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...]) -> scipy.sparse.csc_matrix:
    """The semi-discrete operator L (dp/dt = L p on C-order flattened cells) with unit face weights."""
    index = np.arange(math.prod(shape)).reshape(shape)
    rows, cols, vals = [], [], []
    for axis, (out, back) in enumerate(coefficients):
        left, right = face_slices(len(shape), axis)
        i, j = index[left].ravel(), index[right].ravel()
        a, c = out.ravel(), back.ravel()
        # flux f = a p_i - c p_j leaves cell i and enters cell j
        rows += [i, i, j, j]
        cols += [i, j, i, j]
        vals += [-a, c, a, -c]
    n = math.prod(shape)
    mat = scipy.sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return mat.tocsc()


@dataclass(frozen=True)
class GridLaw:
    """A law given by cell averages on a :class:`Grid`, normalised to unit mass (module docstring)."""

    grid: Grid
    values: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64).reshape(self.grid.shape)
        if not bool(np.all(values >= 0)) or not np.isfinite(values).all():
            raise ValueError("grid densities must be finite and non-negative")
        object.__setattr__(self, "values", values / (values.sum() * self.grid.cell_volume))

    @property
    def dim(self) -> int:
        return self.grid.dim

    @property
    def is_gaussian(self) -> bool:
        return False

    @property
    def masses(self) -> np.ndarray:
        return self.values * self.grid.cell_volume

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n exact samples of the piecewise-constant density: a cell by its mass, then uniform within it."""
        probs = torch.from_numpy(self.masses.ravel())
        cell = torch.multinomial(probs, n, replacement=True, generator=generator)
        idx = np.stack(np.unravel_index(cell.numpy(), self.grid.shape), axis=-1)
        lower = torch.tensor(self.grid.lower, dtype=torch.float64)
        spacing = torch.tensor(self.grid.spacing, dtype=torch.float64)
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        return (lower + (torch.from_numpy(idx) + u) * spacing).to(dtype)

    def log_density(self, x: Tensor) -> Tensor:
        """log of the multilinear interpolation of the cell-centre values; x clamped to the centres' box (float64)."""
        pts = x.detach().to(torch.float64).cpu().numpy().reshape(-1, self.dim)
        axes = [self.grid.centres(j) for j in range(self.dim)]
        for j, c in enumerate(axes):
            pts[:, j] = np.clip(pts[:, j], c[0], c[-1])
        interp = RegularGridInterpolator(axes, self.values, method="linear")
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(interp(pts)))

    def mean(self) -> np.ndarray:
        """Exact mean of the piecewise-constant density."""
        return np.tensordot(self.masses, self.grid.mesh(), axes=self.dim)

    def cov(self) -> np.ndarray:
        """Exact covariance of the piecewise-constant density (the within-cell variance dx^2/12 included)."""
        centred = self.grid.mesh() - self.mean()
        outer = centred[..., :, None] * centred[..., None, :]
        within = np.diag(np.array(self.grid.spacing) ** 2 / 12.0)
        return np.tensordot(self.masses, outer, axes=self.dim) + within


class SplitImplicitEuler:
    r"""Implicit Euler, split by axes, for a separable potential U(x) = sum_j U_1(x_j) on a cubic grid.

    The operator is then a Kronecker sum L = sum_j I ⊗ .. ⊗ L_1 ⊗ .. ⊗ I of one 1-d operator L_1 (same potential
    and spacing on every axis) whose terms commute. One step applies M = (I - dt L_1)^{-1} along every axis (the
    locally one-dimensional implicit Euler step); since the terms commute, its error is that of implicit Euler,
    O(dt), and the exact semi-discrete flow is the limit dt -> 0 (tested against the full operator's exponential).
    M is the inverse of a tridiagonal M-matrix, computed by elimination without cancellation, so it is entrywise
    non-negative with columns summing to 1 (positivity and mass conservation hold to round-off in the relative
    sense, tails included); K steps are M^K, by repeated squaring of non-negative matrices (memoised).
    """

    def __init__(self, coefficients_1d: tuple[np.ndarray, np.ndarray], dt: float) -> None:
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        out, back = coefficients_1d
        n = out.shape[0] + 1
        # L_1 as a banded matrix: diagonal -(out_i + back_{i-1}), super-diagonal back_i, sub-diagonal out_i
        diag = np.zeros(n)
        diag[:-1] -= out
        diag[1:] -= back
        banded = np.zeros((3, n))
        banded[0, 1:] = -dt * back  # (I - dt L_1) upper diagonal
        banded[1] = 1.0 - dt * diag
        banded[2, :-1] = -dt * out
        self.dt = float(dt)
        self.step_matrix = scipy.linalg.solve_banded((1, 1), banded, np.eye(n))
        self._powers: dict[int, np.ndarray] = {0: np.eye(n), 1: self.step_matrix}

    def power(self, k: int) -> np.ndarray:
        """M^k by binary powers (each M^{2^j} and each requested power memoised)."""
        if k < 0:
            raise ValueError(f"need k >= 0, got {k}")
        if k in self._powers:
            return self._powers[k]
        half = self.power(k // 2)
        out = half @ half
        if k % 2:
            out = out @ self.step_matrix
        self._powers[k] = out
        return out

    def evolve(self, values: np.ndarray, steps: int) -> np.ndarray:
        """Cell averages after ``steps`` steps: M^steps applied along every axis of ``values``."""
        prop = self.power(steps)
        out = values
        for axis in range(values.ndim):
            out = np.moveaxis(np.tensordot(prop, out, axes=(1, axis)), 0, axis)
        return np.clip(out, 0.0, None)  # exact zeros stay zero; no negative round-off can arise, see docstring


@dataclass(frozen=True)
class ProductLaw:
    """The product of independent laws on consecutive coordinate blocks (e.g. a grid law times a Gaussian)."""

    factors: tuple

    @property
    def dim(self) -> int:
        return sum(f.dim for f in self.factors)

    @property
    def is_gaussian(self) -> bool:
        return all(f.is_gaussian for f in self.factors)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        return torch.cat([f.sample(n, generator, dtype) for f in self.factors], dim=1)

    def log_density(self, x: Tensor) -> Tensor:
        out, start = 0.0, 0
        for f in self.factors:
            out = out + f.log_density(x[:, start : start + f.dim])
            start += f.dim
        return out
