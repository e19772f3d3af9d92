r"""Ornstein-Uhlenbeck Fokker-Planck problem from a Gaussian start.

SDE  dX = -A (X - b) dt + sqrt(2/beta) dW,   X_0 ~ N(m0, S0),   A symmetric positive definite.
FPE  dP/dt = div(P A (x - b)) + beta^-1 ΔP, the W2 gradient flow (Jordan-Kinderlehrer-Otto 1998) of

    F(P) = ∫ ½ (x-b)^T A (x-b) dP + beta^-1 ∫ P log P = beta^-1 KL(P || N(b, (beta A)^-1)) + const.

Closed forms (Risken, The Fokker-Planck Equation, 1989, §5), with A = U diag(a) U^T:

* mean        m_t = b + e^{-At} (m0 - b)
* covariance  S_t = e^{-At} S0 e^{-At} + U diag((1 - e^{-2 a_i t}) / (beta a_i)) U^T
  (the integral form (2/beta) ∫_0^t e^{-2As} ds, evaluated in the eigenbasis)
* stationary  N(b, (beta A)^-1)
* free energy F(P_t) = ½ tr(A S_t) + ½ (m_t-b)^T A (m_t-b) - (1/(2 beta)) log det(2 pi e S_t)

Exact JKO iterate (derived in :func:`exact_jko_step`): the
minimiser of (1/(2h)) W2^2(P, P_k) + F(P) over P stays Gaussian.

Instance generators (instances are a pure function of (dim, seed, generator)):

* ``spectrum`` (default, Fan et al. 2022's law): b ~ N(0, I); the stationary covariance is
  U diag(lam) U^T with U Haar-random orthogonal and lam_i ~ Unif[1/a_max, 1/a_min], so that the
  eigenvalues of A = Sigma^-1 lie in [a_min, a_max] = [1, 2]. m0 = 0, S0 = I, beta = 1.
* ``legacy_make_spd`` (Mokrov et al. 2021's construction and seeding): numpy's legacy RNG seeded
  with crc32("abacaba@{d}@{seed}numpy"), then the stationary covariance Sigma by the
  make_spd_matrix recipe (U (1 + diag(u)) V^T from the SVD of X^T X, X uniform; note the "+1" adds
  one to *every* entry, so Sigma is ill-conditioned), then b = randn(d); A = Sigma^-1.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from wgfbench.params import Positive
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.gaussian import GaussianLaw, sym, sym_fn

GENERATORS = ("spectrum", "legacy_make_spd")


def haar_orthogonal(dim: int, generator: torch.Generator) -> Tensor:
    """Haar-distributed orthogonal matrix: QR of a Gaussian matrix with the sign of diag(R) fixed."""
    z = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    return q * torch.sign(torch.diagonal(r))


def legacy_make_spd(dim: int, rng: np.random.RandomState) -> np.ndarray:
    """Mokrov et al.'s stationary covariance: the make_spd_matrix recipe on a legacy numpy RNG."""
    import scipy.linalg

    x = rng.uniform(size=(dim, dim))
    u, _, vt = scipy.linalg.svd(x.T @ x, check_finite=False)
    return u @ (1.0 + np.diag(rng.uniform(size=dim))) @ vt


@dataclass(frozen=True)
class OUProblem(ProblemDefaults):
    """OU instance; all tensors float64 on the CPU. See the module docstring for the maths."""

    A: Tensor
    b: Tensor
    m0: Tensor
    S0: Tensor
    beta: float = 1.0
    generator_name: str = "spectrum"
    seed: int = 0
    name: str = "ou"
    functional: str = "kl"
    _eig: tuple[Tensor, Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = sym(self.A.to(torch.float64))
        object.__setattr__(self, "A", a)
        w, v = torch.linalg.eigh(a)
        if float(w.min()) <= 0:
            raise ValueError("OU drift matrix A must be symmetric positive definite")
        object.__setattr__(self, "_eig", (w, v))

    @property
    def dim(self) -> int:
        return self.b.shape[0]

    @property
    def temperature(self) -> float:
        """F = temperature * KL(P || Q): the KL weight 1/beta."""
        return 1.0 / self.beta

    # --- exact solution -------------------------------------------------------------------------
    def expm_neg(self, t: float) -> Tensor:
        """e^{-At} through the eigendecomposition of A."""
        w, v = self._eig
        return (v * torch.exp(-w * t)) @ v.T

    def mean(self, t: float) -> Tensor:
        return self.b + self.expm_neg(t) @ (self.m0 - self.b)

    def cov(self, t: float) -> Tensor:
        w, v = self._eig
        e = self.expm_neg(t)
        diffusion = (v * (-torch.expm1(-2.0 * w * t) / (self.beta * w))) @ v.T
        return sym(e @ self.S0 @ e + diffusion)

    def reference(self, t: float) -> GaussianLaw:
        return GaussianLaw(self.mean(t), self.cov(t))

    def initial(self) -> GaussianLaw:
        return GaussianLaw(self.m0, self.S0)

    def stationary(self) -> GaussianLaw:
        w, v = self._eig
        return GaussianLaw(self.b, (v / (self.beta * w)) @ v.T)

    def target(self) -> GaussianLaw:
        """The KL target Q = N(b, (beta A)^-1), i.e. the stationary law (an exact sampler of Q)."""
        return self.stationary()

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    # --- energy --------------------------------------------------------------------------------
    def potential(self, x: Tensor) -> Tensor:
        """V(x) = ½ (x-b)^T A (x-b), evaluated in x's dtype and device."""
        a = self.A.to(x)
        d = x - self.b.to(x)
        return 0.5 * ((d @ a) * d).sum(-1)

    def log_target(self, x: Tensor) -> Tensor:
        """Unnormalised log Q(x) = -beta V(x); the OU drift enters the methods through this."""
        return -self.beta * self.potential(x)

    def free_energy(self, law: GaussianLaw) -> float:
        """F(N(m, S)) = ½ tr(A S) + ½ (m-b)^T A (m-b) - (1/(2 beta)) log det(2 pi e S)."""
        d = law.mean - self.b
        return float(
            0.5 * torch.trace(self.A @ law.cov)
            + 0.5 * d @ self.A @ d
            - 0.5 / self.beta * torch.logdet(2.0 * math.pi * math.e * law.cov)
        )

    # --- exact JKO -----------------------------------------------------------------------------
    def jko_reference(self, k: int, h: float) -> GaussianLaw:
        law = self.initial()
        for _ in range(k):
            law = exact_jko_step(self, law, h)
        return law

    def describe(self) -> dict[str, object]:
        w, _ = self._eig
        return {
            "generator": self.generator_name,
            "beta": self.beta,
            "a_min": float(w.min()),
            "a_max": float(w.max()),
            "condition_number": float(w.max() / w.min()),
        }


def jko_mean_step(a: Tensor, centre: Tensor, mean: Tensor, h: float) -> Tensor:
    r"""Mean of the JKO minimiser for a quadratic potential ½ (x-c)^T A (x-c): m' = (I + hA)^{-1} (m + h A c).

    The first-order condition (m' - m)/h = -A (m' - c) of the mean part |m' - m|^2/(2h) + ½ (m'-c)^T A (m'-c).
    """
    m_mat = torch.eye(a.shape[0], dtype=torch.float64) + h * a
    return torch.linalg.solve(m_mat, mean + h * a @ centre)


def jko_cov_step(k: Tensor, beta: float, cov: Tensor, h: float) -> Tensor:
    r"""Covariance T S T of the JKO minimiser for the covariance part of an energy ½ tr(K S) - (2 beta)^-1 log det S.

    With M = I + hK, the symmetric PD linear part of the Brenier map is

        T = M^{-1/2} [ ½ I + (¼ I + (h/beta) M^{1/2} S^{-1} M^{1/2})^{1/2} ] M^{-1/2},

    the solution of the first-order condition (T - I)/h = -K T + beta^-1 T^{-1} S^{-1} for a linear map
    (multiply by h, symmetrise with M^{1/2}: X = M^{1/2} T M^{1/2} solves X^2 - X = (h/beta) M^{1/2} S^{-1} M^{1/2}).
    K = A for OU; K = A + kappa I with a quadratic interaction (:mod:`wgfbench.problems.mckean_vlasov`).
    """
    eye = torch.eye(k.shape[0], dtype=torch.float64)
    m_mat = eye + h * k
    m_half = sym_fn(m_mat, torch.sqrt)
    m_inv_half = sym_fn(m_mat, torch.rsqrt)
    inner = 0.25 * eye + (h / beta) * sym(m_half @ torch.linalg.inv(cov) @ m_half)
    t_map = m_inv_half @ (0.5 * eye + sym_fn(inner, torch.sqrt)) @ m_inv_half
    return t_map @ cov @ t_map


def quadratic_jko_step(
    law: GaussianLaw, h: float, beta: float, a: Tensor, centre: Tensor, cov_matrix: Tensor | None = None
) -> GaussianLaw:
    r"""Exact JKO step from N(m, S) for an energy whose value on Gaussians is

        F(N(m, S)) = ½ (m - c)^T A (m - c) + ½ tr(K S) - (2 beta)^-1 log det S + const,   K = ``cov_matrix`` or A.

    Mean and covariance decouple (W2^2 = |m - m'|^2 + Bures^2), giving :func:`jko_mean_step` and
    :func:`jko_cov_step`. For OU (K = A) and the McKean-Vlasov OU (K = A + kappa I) the functional is
    displacement convex and the Gaussian critical point satisfies the optimality condition over all laws, so
    it is the JKO minimiser over all laws, not only over Gaussians.
    """
    k = a if cov_matrix is None else cov_matrix
    return GaussianLaw(jko_mean_step(a, centre, law.mean, h), jko_cov_step(k, beta, law.cov, h))


def exact_jko_step(problem: OUProblem, law: GaussianLaw, h: float) -> GaussianLaw:
    r"""One exact JKO step for OU from N(m, S).

    The minimiser is N(m', T S T) with the symmetric PD Brenier map x -> m' + T (x - m):

    * m' = M^{-1} (m + h A b),   M = I + h A   (first-order condition on the mean);
    * T  = M^{-1/2} [ ½ I + (¼ I + (h/beta) M^{1/2} S^{-1} M^{1/2})^{1/2} ] M^{-1/2},

    the solution of (T - I)/h = -A T + beta^-1 T^{-1} S^{-1}, the optimality condition
    (T(x) - x)/h = -grad V(T x) - beta^-1 grad log P'(T x) for a linear map (checked in tests).
    Computed by :func:`quadratic_jko_step`.
    """
    return quadratic_jko_step(law, h, problem.beta, problem.A, problem.b)


@problem_factory("ou")
def make_ou(
    dim: int,
    seed: int,
    generator: Literal["spectrum", "legacy_make_spd"] = "spectrum",
    a_min: Positive = 1.0,
    a_max: Positive = 2.0,
    beta: Positive = 1.0,
    init_scale: Positive = 1.0,
) -> OUProblem:
    """Build an OU instance as a pure function of (dim, seed, generator, parameters).

    ``init_scale`` is the standard deviation of P_0 = N(0, init_scale^2 I).
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if generator == "spectrum":
        if not 0 < a_min <= a_max:
            raise ValueError(f"need 0 < a_min <= a_max, got [{a_min}, {a_max}]")
        gen = torch.Generator().manual_seed(zlib.crc32(f"wgfbench-ou@{dim}@{seed}".encode()))
        u = haar_orthogonal(dim, gen)
        lam = 1.0 / a_max + (1.0 / a_min - 1.0 / a_max) * torch.rand(dim, generator=gen, dtype=torch.float64)
        b = torch.randn(dim, generator=gen, dtype=torch.float64)
        a = (u / lam) @ u.T
    elif generator == "legacy_make_spd":
        rng = np.random.RandomState(zlib.crc32(f"abacaba@{dim}@{seed}numpy".encode()))
        sigma = legacy_make_spd(dim, rng)
        b = torch.from_numpy(rng.randn(dim))
        a = torch.linalg.inv(torch.from_numpy(sigma))
    else:
        raise ValueError(f"unknown OU generator {generator!r}; choose one of {GENERATORS}")
    m0 = torch.zeros(dim, dtype=torch.float64)
    s0 = init_scale**2 * torch.eye(dim, dtype=torch.float64)
    return OUProblem(A=a, b=b, m0=m0, S0=s0, beta=beta, generator_name=generator, seed=seed)
