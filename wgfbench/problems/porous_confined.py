r"""Porous medium with quadratic confinement, dP/dt = Δ(P^m) + lambda div(x P), from a Barenblatt profile.

This is the W2 gradient flow (Otto 2001; Carrillo, McCann & Villani, Rev. Mat. Iberoam. 2003) of

    F(P) = G(P) + lambda/2 ∫|x|^2 dP,   G(P) = 1/(m-1) ∫ P^m,   first variation m/(m-1) P^{m-1} + lambda |x|^2/2,

with velocity -∇(m/(m-1) P^{m-1}) - lambda x. Write n for the dimension, e := n(m-1) + 2 and p := 1/(m-1).

**Exact solution by dilation** (derived here). If u solves the PME u_s = Δ(u^m), then

    P(x, t) = a(t)^n u(a(t) x, s(t)),   a(t) = e^{lambda t},   s(t) = (e^{e lambda t} - 1)/(e lambda),

solves the confined equation: with y = a x, P_t = a^n [n (a'/a) u + (a'/a) y·∇u + s' u_s], while
Δ(P^m) = a^{nm+2} Δ(u^m) and lambda div(x P) = lambda a^n [n u + y·∇u]; the two agree iff a'/a = lambda and
s' a^n = a^{nm+2}, i.e. s' = e^{e lambda t}, s(0) = 0. Starting from the unit-mass Barenblatt profile U(·, t0)
(:mod:`wgfbench.problems.barenblatt`), u(·, s) = U(·, t0 + s), so P_t is again a unit-mass Barenblatt law
P_R (:class:`~wgfbench.problems.barenblatt.BarenblattLaw`) of radius

    R(t) = e^{-lambda t} sqrt(C/k) (t0 + s(t))^beta,   beta = 1/e,

which decreases or increases monotonically to R_inf = sqrt(C/k) (e lambda)^{-1/e}. Independently, the stationary law
balances pressure and confinement, m/(m-1) P^{m-1} + lambda |x|^2/2 = const on its support; for P_R this reads
c R^{-e} = lambda with c := (2m/(m-1)) B_n(p)^{1-m}, B_n(q) = ∫(1 - |y|^2)_+^q dy, so R_inf = (c/lambda)^{1/e}
(the two expressions agree: tested).

**Exact JKO iterates** (derived here, as for the free Barenblatt flow in
:func:`wgfbench.problems.barenblatt.jko_radius_step`). F is displacement convex (m >= 1 - 1/n and lambda >= 0),
so a critical point is the minimiser of W2^2(P, P_R)/(2h) + F(P). Try P' = P_{mu R} reached by y = mu x: on the
support the pressure m/(m-1) P'^{m-1} = m/(m-1) A'^{m-1} (1 - |y|^2/R'^2), A' = 1/(R'^n B_n(p)), has a linear
gradient, and the optimality condition (y - y/mu)/h = -∇[m/(m-1) P'^{m-1} + lambda |y|^2/2] holds iff

    (mu - 1)/mu = h (c (mu R)^{-e} - lambda).

The left side increases from -∞ to 1 on mu in (0, ∞) and the right side decreases, so the root is unique
(bisection). As h -> 0 this is dR/dt = c R^{1-e} - lambda R, which the closed-form R(t) solves (tested); its
fixed point is R_inf.

**For methods.** ``functional = "generalised_entropy"`` with ``m`` and ``confinement`` = lambda: a method must add
the potential-energy term lambda/2 E|T(X)|^2 to its generalised-entropy JKO objective (``confinement = 0`` is the
free Barenblatt flow). The references are compactly supported (``compact_support``), as for Barenblatt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor

from wgfbench.params import Positive, Range
from wgfbench.problems.barenblatt import (
    BarenblattLaw,
    barenblatt_profile,
    exponents,
    log_ball_integral,
    unit_mass_constant,
)
from wgfbench.problems.base import ProblemDefaults, problem_factory


def pressure_coefficient(n: int, m: float) -> float:
    """c = (2m/(m-1)) B_n(p)^{1-m}: the unit-mass law P_R has pressure gradient -c R^{-e} y on its support."""
    p = 1.0 / (m - 1)
    return (2 * m / (m - 1)) * math.exp((1 - m) * log_ball_integral(n, p))


def stationary_radius(n: int, m: float, confinement: float) -> float:
    """R_inf = (c / lambda)^{1/e}: pressure balances confinement (module docstring)."""
    if not confinement > 0:
        raise ValueError(f"a stationary law needs confinement > 0, got {confinement}")
    return (pressure_coefficient(n, m) / confinement) ** (1.0 / (n * (m - 1) + 2))


def confined_jko_radius_step(radius: float, h: float, n: int, m: float, confinement: float) -> float:
    """Support radius mu R of the exact JKO iterate from P_R: the root of (mu-1)/mu = h (c (mu R)^{-e} - lambda)."""
    if not h > 0:
        raise ValueError(f"step size must be positive, got {h}")
    coef = h * pressure_coefficient(n, m)
    expo = -(n * (m - 1) + 2)

    def gap(mu: float) -> float:
        return (mu - 1) / mu - coef * (mu * radius) ** expo + h * confinement

    lo = hi = 1.0
    while gap(hi) < 0:
        hi *= 2
    while gap(lo) > 0:
        lo *= 0.5
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4 * math.ulp(hi):
            break
    return 0.5 * (lo + hi) * radius


@dataclass(frozen=True)
class ConfinedPorousProblem(ProblemDefaults):
    """PME with quadratic confinement from the unit-mass Barenblatt profile U(·, t0) (module docstring)."""

    dim: int
    m: float
    t0: float
    C: float
    confinement: float
    seed: int = 0
    name: str = "porous_confined"
    functional: str = "generalised_entropy"
    compact_support: ClassVar[bool] = True

    @property
    def rate_exponent(self) -> float:
        """e = n(m-1) + 2."""
        return self.dim * (self.m - 1) + 2

    def dilation(self, t: float) -> float:
        """a(t) = e^{lambda t}."""
        return math.exp(self.confinement * t)

    def profile_time(self, t: float) -> float:
        """t0 + s(t), s(t) = (e^{e lambda t} - 1)/(e lambda) (s = t when lambda = 0)."""
        rate = self.rate_exponent * self.confinement
        return self.t0 + (math.expm1(rate * t) / rate if rate != 0 else t)

    def radius(self, t: float) -> float:
        """R(t) = e^{-lambda t} sqrt(C/k) (t0 + s(t))^beta."""
        _, beta, k = exponents(self.dim, self.m)
        return math.sqrt(self.C / k) * self.profile_time(t) ** beta / self.dilation(t)

    def reference(self, t: float) -> BarenblattLaw:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return BarenblattLaw(self.dim, self.m, self.radius(t))

    def initial(self) -> BarenblattLaw:
        return self.reference(0.0)

    def stationary(self) -> BarenblattLaw:
        return BarenblattLaw(self.dim, self.m, stationary_radius(self.dim, self.m, self.confinement))

    def density(self, x: Tensor, t: float) -> Tensor:
        """P(x, t) = a^n U(a x, t0 + s(t)) from the unnormalised profile formula (float64)."""
        a = self.dilation(t)
        return a**self.dim * barenblatt_profile(a * x.to(torch.float64), self.profile_time(t), self.m, self.C)

    def jko_reference(self, k: int, h: float) -> BarenblattLaw:
        radius = self.radius(0.0)
        for _ in range(k):
            radius = confined_jko_radius_step(radius, h, self.dim, self.m, self.confinement)
        return BarenblattLaw(self.dim, self.m, radius)

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    def free_energy(self, law: BarenblattLaw) -> float:
        """F(P_R) = G(P_R) + lambda/2 E|X|^2."""
        return law.generalised_entropy() + 0.5 * self.confinement * law.second_moment()

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"m": self.m, "t0": self.t0, "C": self.C, "confinement": self.confinement}
        out["radius0"] = self.radius(0.0)
        if self.confinement > 0:
            out["radius_inf"] = stationary_radius(self.dim, self.m, self.confinement)
        return out


@problem_factory("porous_confined")
def make_porous_confined(
    dim: int,
    seed: int = 0,
    m: Annotated[float, Range(1.0, None, open_low=True)] = 2.0,
    t0: Positive = 1e-3,
    confinement: Positive = 10.0,
) -> ConfinedPorousProblem:
    """Unit-mass Barenblatt start U(·, t0), confinement lambda >= 0; deterministic (``seed`` kept for records)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not m > 1 or not t0 > 0 or confinement < 0:
        raise ValueError(f"need m > 1, t0 > 0, confinement >= 0; got {m}, {t0}, {confinement}")
    return ConfinedPorousProblem(
        dim=dim, m=float(m), t0=float(t0), C=unit_mass_constant(dim, m), confinement=float(confinement), seed=seed
    )
