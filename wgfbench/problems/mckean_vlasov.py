r"""McKean-Vlasov OU: an OU confinement plus an attractive quadratic interaction, from a Gaussian start.

Free energy (Carrillo, McCann & Villani, Rev. Mat. Iberoam. 2003, the confinement-interaction-entropy class)

    F(P) = ∫ V dP + ½ ∫∫ W(x - y) dP(x) dP(y) + beta^-1 ∫ P log P,
    V(x) = ½ (x - b)^T A (x - b),   W(z) = kappa/2 |z|^2,   kappa >= 0,

whose W2 gradient flow is dP/dt = div(P (∇V + ∇W * P)) + beta^-1 ΔP, the law of the mean-field SDE
dX = -[A (X - b) + kappa (X - E X)] dt + sqrt(2/beta) dB (∇W * P(x) = kappa (x - E_P X)).

**Exact marginals** (derived here). The drift is affine in x given the mean, so Gaussians stay Gaussian, and

    dm/dt = -A (m - b)                                     (the interaction cancels in the mean),
    dS/dt = -(A + kappa I) S - S (A + kappa I) + (2/beta) I  (the covariance feels A + kappa I),

i.e. the mean of the OU(A, b) flow and the covariance of the OU(A + kappa I) flow
(:mod:`wgfbench.problems.ou` closed forms); stationary law N(b, (beta (A + kappa I))^{-1}).

**Exact JKO iterates** (derived here). On Gaussians, ½∫∫W = kappa/4 E|X - Y|^2 = kappa/2 tr S, so

    F(N(m, S)) = ½ (m - b)^T A (m - b) + ½ tr((A + kappa I) S) - (2 beta)^{-1} log det(2 pi e S) + const,

and W2^2 = |m - m'|^2 + Bures^2(S, S'): the JKO step from N(m, S) is N(m', T S T) with
m' = (I + hA)^{-1}(m + h A b) and T the OU covariance step for A + kappa I
(:func:`wgfbench.problems.ou.quadratic_jko_step`). For a linear map y = m' + T (x - m) the optimality condition
(y - x)/h = -∇V(y) - ∇W * P'(y) - beta^-1 ∇ log P'(y) reads, on the centred part,
(T - I)/h = -(A + kappa I) T + beta^-1 T^{-1} S^{-1} (tested), and on the mean (m' - m)/h = -A (m' - b). V, W
(kappa >= 0) and the entropy are displacement convex, so this critical point is the minimiser over all laws.

**For methods.** ``functional = "kl_interaction"``: F = temperature KL(P || Q) + ½ ∫∫ W dP dP with
Q ∝ exp(log_target), temperature = 1/beta, ``interaction_kappa`` = kappa and ``interaction(z)`` = W(z). A particle
method adds the mean-field drift -kappa (x - mean of the particles); a JKO method adds the pair term
½ E[W(T(X) - T(X'))] over independent pairs (for this W, kappa/2 times the trace of the sample covariance of T(X)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from wgfbench.params import NonNegative, Positive
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.gaussian import GaussianLaw, sym
from wgfbench.problems.ou import OUProblem, make_ou, quadratic_jko_step


@dataclass(frozen=True)
class McKeanVlasovOUProblem(ProblemDefaults):
    """OU confinement + quadratic interaction; float64 on the CPU (module docstring)."""

    A: Tensor
    b: Tensor
    m0: Tensor
    S0: Tensor
    kappa: float
    beta: float = 1.0
    generator_name: str = "spectrum"
    seed: int = 0
    name: str = "mckean_vlasov"
    functional: str = "kl_interaction"
    _mean_flow: OUProblem = field(init=False, repr=False, compare=False)
    _cov_flow: OUProblem = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kappa >= 0:
            raise ValueError(f"the interaction must be attractive (kappa >= 0), got {self.kappa}")
        a = sym(self.A.to(torch.float64))
        object.__setattr__(self, "A", a)
        eye = torch.eye(a.shape[0], dtype=torch.float64)
        object.__setattr__(self, "_mean_flow", OUProblem(A=a, b=self.b, m0=self.m0, S0=self.S0, beta=self.beta))
        cov_flow = OUProblem(A=a + self.kappa * eye, b=self.b, m0=self.m0, S0=self.S0, beta=self.beta)
        object.__setattr__(self, "_cov_flow", cov_flow)

    @property
    def dim(self) -> int:
        return self.b.shape[0]

    @property
    def temperature(self) -> float:
        return 1.0 / self.beta

    @property
    def interaction_kappa(self) -> float:
        return self.kappa

    @property
    def covariance_drift(self) -> Tensor:
        """A + kappa I."""
        return self._cov_flow.A

    # --- exact solution -------------------------------------------------------------------------
    def mean(self, t: float) -> Tensor:
        return self._mean_flow.mean(t)

    def cov(self, t: float) -> Tensor:
        return self._cov_flow.cov(t)

    def reference(self, t: float) -> GaussianLaw:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return GaussianLaw(self.mean(t), self.cov(t))

    def initial(self) -> GaussianLaw:
        return GaussianLaw(self.m0, self.S0)

    def stationary(self) -> GaussianLaw:
        return GaussianLaw(self.b, self._cov_flow.stationary().cov)

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    # --- energy --------------------------------------------------------------------------------
    def potential(self, x: Tensor) -> Tensor:
        """V(x) = ½ (x-b)^T A (x-b), in x's dtype and device."""
        return self._mean_flow.potential(x)

    def log_target(self, x: Tensor) -> Tensor:
        """Unnormalised log Q(x) = -beta V(x) (the confinement part of F; the interaction is separate)."""
        return -self.beta * self.potential(x)

    def interaction(self, z: Tensor) -> Tensor:
        """W(z) = kappa/2 |z|^2 for differences z (..., d), in z's dtype and device."""
        return 0.5 * self.kappa * (z**2).sum(-1)

    def free_energy(self, law: GaussianLaw) -> float:
        """F(N(m, S)) = ½ tr(A S) + ½ (m-b)^T A (m-b) + kappa/2 tr S - (2 beta)^-1 log det(2 pi e S)."""
        return self._mean_flow.free_energy(law) + 0.5 * self.kappa * float(torch.trace(law.cov))

    # --- exact JKO -----------------------------------------------------------------------------
    def jko_step(self, law: GaussianLaw, h: float) -> GaussianLaw:
        return quadratic_jko_step(law, h, self.beta, self.A, self.b, cov_matrix=self.covariance_drift)

    def jko_reference(self, k: int, h: float) -> GaussianLaw:
        law = self.initial()
        for _ in range(k):
            law = self.jko_step(law, h)
        return law

    def describe(self) -> dict[str, object]:
        w = torch.linalg.eigvalsh(self.A)
        return {
            "generator": self.generator_name,
            "beta": self.beta,
            "kappa": self.kappa,
            "a_min": float(w.min()),
            "a_max": float(w.max()),
            "stationary_trace_cov": float(torch.trace(self.stationary().cov)),
        }


@problem_factory("mckean_vlasov")
def make_mckean_vlasov(
    dim: int,
    seed: int,
    kappa: NonNegative = 1.0,
    generator: Literal["spectrum", "legacy_make_spd"] = "spectrum",
    a_min: Positive = 1.0,
    a_max: Positive = 2.0,
    beta: Positive = 1.0,
    init_scale: Positive = 1.0,
) -> McKeanVlasovOUProblem:
    """The OU instance ``make_ou(dim, seed, ...)`` (same A, b, P_0) plus the interaction kappa/2 |x - y|^2."""
    ou = make_ou(dim, seed, generator=generator, a_min=a_min, a_max=a_max, beta=beta, init_scale=init_scale)
    if not math.isfinite(kappa):
        raise ValueError(f"kappa must be finite, got {kappa}")
    return McKeanVlasovOUProblem(
        A=ou.A, b=ou.b, m0=ou.m0, S0=ou.S0, kappa=float(kappa), beta=beta, generator_name=generator, seed=seed
    )
