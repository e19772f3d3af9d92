r"""Porous medium equation dP/dt = Δ(P^m), m > 1, in R^n, started from a Barenblatt profile.

The PME is the W2 gradient flow (Otto 2001) of the generalised entropy

    G(P) = 1/(m-1) ∫ P^m dx,     first variation m/(m-1) P^{m-1},  velocity -m P^{m-2} ∇P.

**Barenblatt profile** (Zel'dovich-Kompaneets 1950, Barenblatt 1952, Pattle 1959; Vázquez 2007 ch. 4;
closed-forms-and-pitfalls.md §4b). With p := 1/(m-1),

    U(x, τ) = τ^{-α} (C - k |x|^2 τ^{-2β})_+^p,
    α = n/(n(m-1)+2),  β = α/n,  k = α(m-1)/(2mn),

solves the PME for every C > 0; its support is the ball of radius R(τ) = sqrt(C/k) τ^β and its mass
M(C) = C^{p+n/2} k^{-n/2} B_n(p) is constant in τ, where B_n(q) = ∫(1-|y|^2)_+^q dy
= π^{n/2} Γ(q+1)/Γ(q+1+n/2). Dividing by M, the **normalised** profile depends on R alone:

    P_R(x) = (1 - |x|^2/R^2)_+^p / (R^n B_n(p))                                   (BarenblattLaw)

(because τ^{-α} C^p / M = k^{n/2} C^{-n/2} τ^{-α} / B_n(p) = 1/(R^n B_n(p))).

**Closed forms** of P_R used as references (all derived from the radial law below):

* exact sampler: X = R sqrt(B) u with B ~ Beta(n/2, p+1) (|X|^2/R^2 has density
  ∝ s^{n/2-1}(1-s)^p) and u uniform on S^{n-1}: no rejection, any n;
* radial moments E|X|^{2j} = R^{2j} Π_{i<j} (n/2+i)/(n/2+p+1+i); second moment R^2 n/(n+2p+2);
* ∫P_R^m = R^{n(1-m)} B_n(p+1)/B_n(p)^m (since pm = p+1); G = ∫P^m/(m-1);
* self-similarity: P_R' is the (R'/R)-dilation of P_R, so W2(P_R, P_R') = |R' - R| sqrt(n/(n+2p+2)).

**Conventions and the time axis.** The suite's JKO methods evolve *probability* measures, so the
problem's reference at flow time t is always a unit-mass law, the solution of dP/dt = Δ(P^m) with
P(0) = P_0:

* ``convention="unit_mass"`` (default): C from M(C) = 1, P_0 = U(·, t0), and P_t = U(·, t0 + t).
* ``convention="fan"`` (Fan et al. 2022's support-radius convention, for reproduction): C = k R0^2
  t0^{-2β} so that U(·, t0) has support radius R0 (0.4 for n=3, 0.6 for n=6 by default), and mass
  M ≠ 1 (0.858 and 0.678 for m = 2). The particles represent P_0 = U(·, t0)/M. By the mass-time
  scaling of the PME (if u solves it, so does c u(x, c^{m-1} t)), the probability flow from there is
  P_t = U(·, t0 + t M^{1-m}) / M: the unnormalised profile's clock runs M^{1-m} times as fast as the
  flow time. This problem uses exactly that, so the reference is the true solution at flow time t
  (Fan et al.'s code compares with U(·, t0 + t) instead, a ×1.17 (n=3) or ×1.47 (n=6) time-axis
  mismatch). Equivalently the Fan instance is the unit-mass problem started at t0' = t0 M^{m-1}
  (``describe()["t0_unit_mass"]``).

In both conventions ``time_of_step(k, h) = k h`` and ``reference(t)`` is the exact P_t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

CONVENTIONS = ("unit_mass", "fan")
FAN_SUPPORT_RADIUS = {3: 0.4, 6: 0.6}


# --- exponents and constants ------------------------------------------------------------------------
def exponents(n: int, m: float) -> tuple[float, float, float]:
    """(α, β, k) of the Barenblatt profile: α = n/(n(m-1)+2), β = α/n, k = α(m-1)/(2mn)."""
    alpha = n / (n * (m - 1) + 2)
    beta = alpha / n
    k = alpha * (m - 1) / (2 * m * n)
    return alpha, beta, k


def log_ball_integral(n: int, q: float) -> float:
    """log B_n(q), B_n(q) = ∫_{R^n} (1 - |y|^2)_+^q dy = π^{n/2} Γ(q+1) / Γ(q+1+n/2)."""
    return 0.5 * n * math.log(math.pi) + math.lgamma(q + 1) - math.lgamma(q + 1 + 0.5 * n)


def mass_of_constant(C: float, n: int, m: float) -> float:
    """M(C) = ∫U(·, τ) = C^{p+n/2} k^{-n/2} B_n(p), p = 1/(m-1) (independent of τ)."""
    p = 1.0 / (m - 1)
    _, _, k = exponents(n, m)
    return math.exp((p + 0.5 * n) * math.log(C) - 0.5 * n * math.log(k) + log_ball_integral(n, p))


def unit_mass_constant(n: int, m: float) -> float:
    """The C with M(C) = 1: C = [k^{n/2} / B_n(p)]^{1/(p+n/2)}."""
    p = 1.0 / (m - 1)
    _, _, k = exponents(n, m)
    return math.exp((0.5 * n * math.log(k) - log_ball_integral(n, p)) / (p + 0.5 * n))


def barenblatt_profile(x: Tensor, tau: float | Tensor, m: float, C: float) -> Tensor:
    """The unnormalised U(x, τ) = τ^{-α} (C - k|x|^2 τ^{-2β})_+^{1/(m-1)} (float64), x of shape (..., n)."""
    x = x.to(torch.float64)
    alpha, beta, k = exponents(x.shape[-1], m)
    tau = torch.as_tensor(tau, dtype=torch.float64)
    inner = (C - k * (x**2).sum(-1) * tau ** (-2 * beta)).clamp_min(0.0)
    return tau ** (-alpha) * inner ** (1.0 / (m - 1))


# --- the normalised profile as a Law ------------------------------------------------------------------
@dataclass(frozen=True)
class BarenblattLaw:
    """The unit-mass Barenblatt law P_R of support radius R in R^n (see the module docstring)."""

    dim: int
    m: float
    radius: float

    @property
    def is_gaussian(self) -> bool:
        return False

    @property
    def p(self) -> float:
        return 1.0 / (self.m - 1)

    def log_density(self, x: Tensor) -> Tensor:
        """log P_R(x) in float64; -inf on and outside the support sphere |x| >= R."""
        x = x.detach().to(torch.float64).cpu()
        s = (x**2).sum(-1) / self.radius**2
        log_norm = self.dim * math.log(self.radius) + log_ball_integral(self.dim, self.p)
        inside = s < 1.0
        out = torch.full_like(s, -math.inf)
        out[inside] = self.p * torch.log1p(-s[inside]) - log_norm
        return out

    def density(self, x: Tensor) -> Tensor:
        return torch.exp(self.log_density(x))

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n exact samples in ``dtype``: X = R sqrt(B) u, B ~ Beta(n/2, p+1), u uniform on the sphere.

        B = G_a / (G_a + G_b) with independent Gamma variates from a numpy Generator whose seed is
        drawn from ``generator`` (so the draw is a function of the torch generator's state).
        """
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        ga = rng.standard_gamma(0.5 * self.dim, size=n)
        gb = rng.standard_gamma(self.p + 1.0, size=n)
        b = torch.from_numpy(ga / (ga + gb)).to(dtype)
        u = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        u = u / u.norm(dim=1, keepdim=True)
        return self.radius * b.sqrt().unsqueeze(1) * u

    def radial_moment(self, j: int) -> float:
        """E|X|^{2j} = R^{2j} Π_{i<j} (n/2 + i)/(n/2 + p + 1 + i) (moments of the Beta law)."""
        a, b = 0.5 * self.dim, self.p + 1.0
        return self.radius ** (2 * j) * math.prod((a + i) / (a + b + i) for i in range(j))

    def second_moment(self) -> float:
        """E|X|^2 = R^2 n / (n + 2p + 2)."""
        return self.radial_moment(1)

    def integral_pm(self) -> float:
        """∫P_R^m dx = R^{n(1-m)} B_n(p+1) / B_n(p)^m."""
        n, p, m = self.dim, self.p, self.m
        return math.exp(n * (1 - m) * math.log(self.radius) + log_ball_integral(n, p + 1) - m * log_ball_integral(n, p))

    def generalised_entropy(self) -> float:
        """G(P_R) = ∫P_R^m / (m-1)."""
        return self.integral_pm() / (self.m - 1)

    def outside_support(self, x: Tensor) -> Tensor:
        """Boolean mask of the points with |x| >= R (where the exact density vanishes)."""
        x = x.detach().to(torch.float64).cpu()
        return (x**2).sum(-1) >= self.radius**2


def jko_radius_step(radius: float, h: float, n: int, m: float) -> float:
    r"""Support radius of the exact JKO iterate of step h from the Barenblatt law P_R.

    The minimiser of W2^2(P, P_R)/(2h) + G(P) is the dilation P_{λR}: G is displacement convex
    (m >= 1 - 1/n), so the first-order condition characterises the minimiser, and for P' = P_{R'} the
    pressure m/(m-1) P'^{m-1} = m/(m-1) A'^{m-1} (1 - |y|^2/R'^2) on the support (A' = 1/(R'^n B_n(p))) has a
    linear gradient, so the optimal map y -> y/λ back to P_R satisfies (y/λ - y)/h = -∇ pressure(y) iff

        (λ - 1)/λ = h (2m/(m-1)) B_n(p)^{1-m} (λR)^{-n(m-1)-2}.

    The left side increases from 0 and the right side decreases in λ > 1: the root is unique (bisection
    to machine precision). As h -> 0 this gives dR/dt = (2m/(m-1)) B_n(p)^{1-m} R^{-n(m-1)-1}, the
    Barenblatt radius ODE (R = sqrt(C/k) τ^β), checked in the tests.
    """
    if not h > 0:
        raise ValueError(f"step size must be positive, got {h}")
    p = 1.0 / (m - 1)
    coef = h * (2 * m / (m - 1)) * math.exp((1 - m) * log_ball_integral(n, p))
    expo = -n * (m - 1) - 2

    def gap(lam: float) -> float:
        return (lam - 1) / lam - coef * (lam * radius) ** expo

    lo, hi = 1.0, 2.0
    while gap(hi) < 0:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4 * math.ulp(hi):
            break
    return 0.5 * (lo + hi) * radius


# --- the problem -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarenblattProblem:
    """PME from a Barenblatt profile; all references are unit-mass laws (module docstring)."""

    dim: int
    m: float
    t0: float
    C: float
    convention: str = "unit_mass"
    seed: int = 0
    name: str = "barenblatt"
    functional: str = "generalised_entropy"
    transient: ClassVar[bool] = True  # reference(t) is the spreading Barenblatt profile P_t
    compact_support: ClassVar[bool] = True  # no generic SymKL: see wgfbench.metrics_porous for the KL directions

    @property
    def mass(self) -> float:
        """Mass M of the unnormalised profile U with this C (1 for the unit-mass convention)."""
        return mass_of_constant(self.C, self.dim, self.m)

    def profile_time(self, t: float) -> float:
        """The unnormalised profile's clock τ(t) = t0 + t M^{1-m} at flow time t (mass-time scaling)."""
        return self.t0 + t * self.mass ** (1 - self.m)

    def radius(self, t: float) -> float:
        """Support radius of P_t: R = sqrt(C/k) τ(t)^β."""
        _, beta, k = exponents(self.dim, self.m)
        return math.sqrt(self.C / k) * self.profile_time(t) ** beta

    def reference(self, t: float) -> BarenblattLaw:
        """The exact unit-mass solution P_t = U(·, τ(t)) / M."""
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return BarenblattLaw(self.dim, self.m, self.radius(t))

    def initial(self) -> BarenblattLaw:
        return self.reference(0.0)

    def jko_reference(self, k: int, h: float) -> BarenblattLaw:
        """The exact k-th JKO iterate of step h: a Barenblatt law, radius by :func:`jko_radius_step`."""
        radius = self.radius(0.0)
        for _ in range(k):
            radius = jko_radius_step(radius, h, self.dim, self.m)
        return BarenblattLaw(self.dim, self.m, radius)

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    def density(self, x: Tensor, t: float) -> Tensor:
        """Exact P_t(x) computed from the unnormalised profile, U(x, τ(t))/M (float64)."""
        return barenblatt_profile(x, self.profile_time(t), self.m, self.C) / self.mass

    def generalised_entropy(self, t: float) -> float:
        """G(P_t) = 1/(m-1) ∫P_t^m."""
        return self.reference(t).generalised_entropy()

    def second_moment(self, t: float) -> float:
        return self.reference(t).second_moment()

    def w2_between(self, s: float, t: float) -> float:
        """W2(P_s, P_t) = |R_t - R_s| sqrt(n/(n+2p+2)) (self-similarity: the laws are dilations)."""
        law = self.reference(s)
        return abs(self.radius(t) - law.radius) * math.sqrt(law.second_moment()) / law.radius

    def describe(self) -> dict[str, object]:
        return {
            "m": self.m,
            "t0": self.t0,
            "convention": self.convention,
            "C": self.C,
            "mass": self.mass,
            "t0_unit_mass": self.t0 * self.mass ** (self.m - 1),
            "radius0": self.radius(0.0),
        }

    def extra_metrics(
        self,
        t: float,
        samples: Tensor,
        model_log_density_at_samples: Tensor | None = None,
        model_log_density=None,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """Porous-medium metrics of model samples at flow time t; see :mod:`wgfbench.metrics_porous`."""
        from wgfbench.metrics_porous import porous_metrics

        return porous_metrics(
            self.reference(t),
            samples,
            model_log_density_at_samples=model_log_density_at_samples,
            model_log_density=model_log_density,
            generator=generator,
        )


def make_barenblatt(
    dim: int,
    seed: int = 0,
    m: float = 2.0,
    t0: float = 1e-3,
    convention: str = "unit_mass",
    support_radius: float | None = None,
) -> BarenblattProblem:
    """Build a Barenblatt problem. The instance does not depend on ``seed`` (kept for records).

    ``convention="unit_mass"``: C from M(C) = 1 (``support_radius`` must be None).
    ``convention="fan"``: C = k R0^2 t0^{-2β} with R0 = ``support_radius`` (default 0.4 for n=3 and
    0.6 for n=6, Fan et al.'s values; required for other n); the time axis is rescaled as the module
    docstring explains.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not m > 1:
        raise ValueError(f"the porous medium exponent must be m > 1, got {m}")
    if not t0 > 0:
        raise ValueError(f"t0 must be positive, got {t0}")
    if convention == "unit_mass":
        if support_radius is not None:
            raise ValueError("support_radius is only used with convention='fan'")
        C = unit_mass_constant(dim, m)
    elif convention == "fan":
        if support_radius is None:
            if dim not in FAN_SUPPORT_RADIUS:
                raise ValueError(f"convention='fan' needs support_radius for dim={dim} (Fan et al. used n=3, 6)")
            support_radius = FAN_SUPPORT_RADIUS[dim]
        if not support_radius > 0:
            raise ValueError(f"support_radius must be positive, got {support_radius}")
        _, beta, k = exponents(dim, m)
        C = k * support_radius**2 * t0 ** (-2 * beta)
    else:
        raise ValueError(f"unknown Barenblatt convention {convention!r}; choose one of {CONVENTIONS}")
    return BarenblattProblem(dim=dim, m=float(m), t0=float(t0), C=float(C), convention=convention, seed=seed)
