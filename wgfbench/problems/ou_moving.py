r"""Time-dependent OU: a Fokker-Planck flow towards a moving centre (the tFPE task of Li, Hurault & Solomon,
"Self-consistent velocity matching of probability flows", NeurIPS 2023).

SDE  dX = -A (X - b(t)) dt + sqrt(2/beta) dW,   X_0 ~ N(m0, S0),   A symmetric positive definite,
FPE  dP/dt = div(P A (x - b(t))) + beta^-1 ΔP, at each t the W2 gradient of the frozen free energy

    F_t(P) = ∫ ½ (x - b(t))^T A (x - b(t)) dP + beta^-1 ∫ P log P = beta^-1 KL(P || N(b(t), (beta A)^-1)) + const,

with the centre b(t) = c + u cos(omega t) + v sin(omega t).

**Exact marginals.** The law stays Gaussian; the moments solve the linear ODEs (Särkkä & Solin, *Applied SDEs*,
2019, eq. 6.2) dm/dt = -A (m - b(t)) and dS/dt = -A S - S A + (2/beta) I. The covariance does not see b, so it is
the static OU covariance (:meth:`wgfbench.problems.ou.OUProblem.cov`). The mean, by variation of constants in the
eigenbasis A = V diag(a) V^T (y = V^T (m - c), u~ = V^T u, v~ = V^T v), is

    y(t) = e^{-a t} y(0) + a (u~ I_c(t) + v~ I_s(t)),
    I_c(t) = ∫_0^t e^{-a (t-s)} cos(w s) ds = (a cos(w t) + w sin(w t) - a e^{-a t}) / (a^2 + w^2),
    I_s(t) = ∫_0^t e^{-a (t-s)} sin(w s) ds = (a sin(w t) - w cos(w t) + w e^{-a t}) / (a^2 + w^2),   w = omega

(I_c' = cos - a I_c, I_s' = sin - a I_s, I_c(0) = I_s(0) = 0). Tested against a DOP853 integration of the ODEs.

**Exact time-dependent JKO iterates.** The step from t_k = k h to t_{k+1} freezes the potential at the step's end,

    P_{k+1} = argmin_P  W2^2(P, P_k) / (2h) + F_{t_{k+1}}(P),

an OU JKO step with centre b(t_{k+1}) (:func:`wgfbench.problems.ou.quadratic_jko_step`): Gaussians stay Gaussian,
m_{k+1} = (I + hA)^{-1} (m_k + h A b(t_{k+1})) and the covariance step of the static OU. It is first-order
accurate in h (tested).

**For methods.** ``time_dependent = True``; ``at_time(t)`` returns the static KL problem of F_t (an
:class:`~wgfbench.problems.ou.OUProblem` with centre b(t): ``log_target``, ``temperature``, ``potential``), which a
JKO method queries at t_{k+1} for step k -> k+1. ``log_target(x, t)`` needs the time explicitly, so a method
unaware of the time dependence fails loudly instead of using the t = 0 target.

**SCVM's instance** (:func:`make_ou_moving`): A = diag(1, 3), b(t) = 3 (cos pi t, sin pi t), temperature
1/beta = 0.25, P_0 = N(b(0), 0.25 I). In d > 2 the pattern is repeated on the coordinate pairs (2i, 2i+1); an odd
last coordinate gets a = 1 and centre 3 cos(pi t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from wgfbench.params import NonNegative, Positive
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.gaussian import GaussianLaw, sym
from wgfbench.problems.ou import OUProblem, quadratic_jko_step


@dataclass(frozen=True)
class MovingCentreOUProblem(ProblemDefaults):
    """OU with centre b(t) = c + u cos(omega t) + v sin(omega t); float64 on the CPU (module docstring)."""

    A: Tensor
    centre_offset: Tensor
    centre_cos: Tensor
    centre_sin: Tensor
    omega: float
    m0: Tensor
    S0: Tensor
    beta: float = 4.0
    seed: int = 0
    name: str = "ou_moving"
    functional: str = "kl"
    time_dependent: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "A", sym(self.A.to(torch.float64)))
        if float(torch.linalg.eigvalsh(self.A).min()) <= 0:
            raise ValueError("OU drift matrix A must be symmetric positive definite")

    @property
    def dim(self) -> int:
        return self.A.shape[0]

    @property
    def temperature(self) -> float:
        return 1.0 / self.beta

    def centre(self, t: float) -> Tensor:
        """b(t) = c + u cos(omega t) + v sin(omega t)."""
        return (
            self.centre_offset + self.centre_cos * math.cos(self.omega * t) + self.centre_sin * math.sin(self.omega * t)
        )

    def at_time(self, t: float) -> OUProblem:
        """The static KL problem of the frozen free energy F_t: an OU problem with centre b(t)."""
        return OUProblem(
            A=self.A,
            b=self.centre(t),
            m0=self.m0,
            S0=self.S0,
            beta=self.beta,
            generator_name="ou_moving",
            seed=self.seed,
        )

    # --- exact solution -------------------------------------------------------------------------
    def mean(self, t: float) -> Tensor:
        """Closed-form mean (module docstring)."""
        w, v = torch.linalg.eigh(self.A)
        om = self.omega
        decay = torch.exp(-w * t)
        i_c = (w * math.cos(om * t) + om * math.sin(om * t) - w * decay) / (w**2 + om**2)
        i_s = (w * math.sin(om * t) - om * math.cos(om * t) + om * decay) / (w**2 + om**2)
        y = decay * (v.T @ (self.m0 - self.centre_offset)) + w * (
            i_c * (v.T @ self.centre_cos) + i_s * (v.T @ self.centre_sin)
        )
        return self.centre_offset + v @ y

    def cov(self, t: float) -> Tensor:
        """The static OU covariance (b does not enter the covariance ODE)."""
        return self.at_time(0.0).cov(t)

    def reference(self, t: float) -> GaussianLaw:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return GaussianLaw(self.mean(t), self.cov(t))

    def initial(self) -> GaussianLaw:
        return GaussianLaw(self.m0, self.S0)

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    # --- energy --------------------------------------------------------------------------------
    def potential(self, x: Tensor, t: float) -> Tensor:
        """V(x, t) = ½ (x - b(t))^T A (x - b(t)), in x's dtype and device."""
        return self.at_time(t).potential(x)

    def log_target(self, x: Tensor, t: float) -> Tensor:
        """Unnormalised log density of the frozen target at time t: -beta V(x, t)."""
        return -self.beta * self.potential(x, t)

    def free_energy(self, law: GaussianLaw, t: float) -> float:
        """F_t(N(m, S)) (the static OU formula with centre b(t))."""
        return self.at_time(t).free_energy(law)

    # --- exact JKO -----------------------------------------------------------------------------
    def jko_step(self, law: GaussianLaw, k: int, h: float) -> GaussianLaw:
        """P_{k+1} from P_k = ``law``: the OU JKO step with the centre frozen at t_{k+1} = (k+1) h."""
        return quadratic_jko_step(law, h, self.beta, self.A, self.centre(self.time_of_step(k + 1, h)))

    def jko_reference(self, k: int, h: float) -> GaussianLaw:
        law = self.initial()
        for j in range(k):
            law = self.jko_step(law, j, h)
        return law

    def describe(self) -> dict[str, object]:
        w = torch.linalg.eigvalsh(self.A)
        return {
            "beta": self.beta,
            "temperature": self.temperature,
            "omega": self.omega,
            "a_min": float(w.min()),
            "a_max": float(w.max()),
            "centre_radius": float(torch.linalg.norm(self.centre_cos)),
            "jko_potential_time": "end of step",
        }


@problem_factory("ou_moving")
def make_ou_moving(
    dim: int,
    seed: int = 0,
    temperature: Positive = 0.25,
    radius: NonNegative = 3.0,
    omega: float = math.pi,
    stiffness: tuple[Positive, Positive] = (1.0, 3.0),
    init_var: Positive = 0.25,
) -> MovingCentreOUProblem:
    """SCVM's moving-centre OU (module docstring); deterministic (``seed`` kept for records)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not temperature > 0 or not init_var > 0 or min(stiffness) <= 0:
        raise ValueError(f"need temperature, init_var and stiffness > 0; got {temperature}, {init_var}, {stiffness}")
    a = torch.tensor([stiffness[i % 2] for i in range(dim)], dtype=torch.float64)
    u = torch.zeros(dim, dtype=torch.float64)
    v = torch.zeros(dim, dtype=torch.float64)
    u[0::2] = radius
    v[1::2] = radius
    offset = torch.zeros(dim, dtype=torch.float64)
    return MovingCentreOUProblem(
        A=torch.diag(a),
        centre_offset=offset,
        centre_cos=u,
        centre_sin=v,
        omega=float(omega),
        m0=offset + u,
        S0=init_var * torch.eye(dim, dtype=torch.float64),
        beta=1.0 / temperature,
        seed=seed,
    )
