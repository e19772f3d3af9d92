r"""The worst-case flow of a distributionally robust problem (Zhu & Xie, arXiv 2412.20556, 2024) as an OU instance.

Regularised DRO with a KL penalty, max_P { E_P[l] - lambda KL(P || P_hat) }, is solved by Zhu & Xie with a
*modified JKO scheme*,

    P_{k+1} = argmin_P  -E_P[l] + lambda KL(P || P_hat) + W2^2(P, P_k) / (2h).

**Reduction to a JKO step of a KL** (re-derived here). With Z = ∫ P_hat e^{l/lambda},

    -E_P[l] + lambda KL(P || P_hat) = lambda ∫ P log( P / (P_hat e^{l/lambda}) ) = lambda KL(P || P*) - lambda log Z,

    P* ∝ P_hat e^{l/lambda}   (the Gibbs tilt of the nominal law towards high loss),

so the modified JKO scheme is the JKO scheme of F = lambda KL(P || P*), a Fokker-Planck flow of temperature lambda.

**Gaussian nominal, quadratic loss.** P_hat = N(m, S), l(x) = ½ (x - c)^T B (x - c) with B symmetric. Collecting
the quadratic and linear terms of log P* = -½ (x-m)^T S^{-1} (x-m) + (2 lambda)^{-1} (x-c)^T B (x-c) + const,

    log P*(x) = -½ x^T (S^{-1} - B/lambda) x + x^T (S^{-1} m - B c / lambda) + const,

so P* = N(b, (S^{-1} - B/lambda)^{-1}) with b = (lambda S^{-1} - B)^{-1} (lambda S^{-1} m - B c), a proper law iff
S^{-1} - B/lambda is positive definite, i.e. iff I - S^{1/2} B S^{1/2}/lambda > 0:

    lambda > lambda_max(S^{1/2} B S^{1/2})          (the robustness threshold).

Writing lambda KL(P || P*) = ∫ ½ (x-b)^T A (x-b) dP + beta^-1 ∫ P log P + const identifies the OU problem

    A = lambda S^{-1} - B,   b = A^{-1} (lambda S^{-1} m - B c),   beta = 1/lambda,   P_0 = P_hat = N(m, S),

so every OU closed form (:mod:`wgfbench.problems.ou`) and the exact Gaussian JKO iterates apply unchanged.

**Instance generator** (:func:`make_dro_ou`, a pure function of (dim, seed, parameters)): S = U diag(s) U^T with
U Haar-orthogonal and s_i ~ Unif[s_min, s_max]; m ~ N(0, I); the loss curvature B = W diag(w) W^T with W Haar and
w_i ~ Unif[0, 1], then rescaled so that lambda_max(S^{1/2} B S^{1/2}) = lambda / (1 + margin), where lambda is the
requested ``temperature``; c ~ N(0, I). The smallest eigenvalue of S^{1/2} A S^{1/2} is then
lambda margin/(1 + margin): ``margin`` -> 0 approaches the threshold, where P* flattens along one direction and the
slowest OU rate vanishes (a stiff, slowly relaxing instance); ``temperature`` = lambda sets the KL weight (the OU
temperature 1/beta).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from wgfbench.params import Positive
from wgfbench.problems.base import problem_factory
from wgfbench.problems.gaussian import GaussianLaw, sqrtm_psd, sym
from wgfbench.problems.ou import OUProblem, haar_orthogonal


@dataclass(frozen=True)
class DROIngredients:
    """The DRO data: nominal N(m, S), loss ½ (x - c)^T B (x - c), KL weight lambda."""

    nominal_mean: Tensor
    nominal_cov: Tensor
    loss_curvature: Tensor
    loss_centre: Tensor
    lam: float

    def loss(self, x: Tensor) -> Tensor:
        """l(x) = ½ (x - c)^T B (x - c), in x's dtype and device."""
        d = x - self.loss_centre.to(x)
        return 0.5 * ((d @ self.loss_curvature.to(x)) * d).sum(-1)

    def nominal(self) -> GaussianLaw:
        return GaussianLaw(self.nominal_mean, self.nominal_cov)


def robustness_threshold(nominal_cov: Tensor, loss_curvature: Tensor) -> float:
    """lambda_max(S^{1/2} B S^{1/2}): the tilted law P* ∝ N(m, S) e^{l/lambda} is proper iff lambda exceeds it."""
    s_half = sqrtm_psd(nominal_cov)
    return float(torch.linalg.eigvalsh(sym(s_half @ loss_curvature @ s_half)).max())


def tilted_ou_parameters(ing: DROIngredients) -> tuple[Tensor, Tensor, float]:
    """(A, b, beta) of the OU flow of lambda KL(P || P*) (module docstring); ValueError below the threshold."""
    threshold = robustness_threshold(ing.nominal_cov, ing.loss_curvature)
    if not ing.lam > threshold:
        raise ValueError(
            f"lambda = {ing.lam} must exceed lambda_max(S^1/2 B S^1/2) = {threshold} for the tilted law to exist"
        )
    s_inv = torch.linalg.inv(ing.nominal_cov)
    a = sym(ing.lam * s_inv - ing.loss_curvature)
    b = torch.linalg.solve(a, ing.lam * s_inv @ ing.nominal_mean - ing.loss_curvature @ ing.loss_centre)
    return a, b, 1.0 / ing.lam


@dataclass(frozen=True)
class DROOUProblem(OUProblem):
    """An :class:`OUProblem` built from DRO ingredients; ``ingredients`` keeps the nominal law and the loss."""

    ingredients: DROIngredients | None = None
    margin: float = float("nan")

    def describe(self) -> dict[str, object]:
        ing = self.ingredients
        threshold = robustness_threshold(ing.nominal_cov, ing.loss_curvature) if ing is not None else float("nan")
        return {**super().describe(), "lambda": 1.0 / self.beta, "margin": self.margin, "threshold": threshold}


@problem_factory("dro_ou")
def make_dro_ou(
    dim: int,
    seed: int,
    temperature: Positive = 2.0,
    margin: Positive = 0.25,
    s_min: Positive = 0.5,
    s_max: Positive = 2.0,
) -> DROOUProblem:
    """A DRO-tilted OU instance (module docstring): lambda = ``temperature``, lambda = (1 + margin) threshold."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not temperature > 0 or not margin > 0 or not 0 < s_min <= s_max:
        raise ValueError(f"need temperature > 0, margin > 0, 0 < s_min <= s_max; got {temperature}, {margin}")
    gen = torch.Generator().manual_seed(zlib.crc32(f"wgfbench-dro-ou@{dim}@{seed}".encode()))
    u = haar_orthogonal(dim, gen)
    s = s_min + (s_max - s_min) * torch.rand(dim, generator=gen, dtype=torch.float64)
    cov = (u * s) @ u.T
    mean = torch.randn(dim, generator=gen, dtype=torch.float64)
    w_basis = haar_orthogonal(dim, gen)
    w = torch.rand(dim, generator=gen, dtype=torch.float64)
    curvature = (w_basis * w) @ w_basis.T
    centre = torch.randn(dim, generator=gen, dtype=torch.float64)
    curvature = curvature * (temperature / (1.0 + margin) / robustness_threshold(cov, curvature))
    ing = DROIngredients(mean, cov, sym(curvature), centre, float(temperature))
    a, b, beta = tilted_ou_parameters(ing)
    return DROOUProblem(
        A=a,
        b=b,
        m0=mean,
        S0=cov,
        beta=beta,
        generator_name="dro",
        seed=seed,
        name="dro_ou",
        ingredients=ing,
        margin=float(margin),
    )


def whitened_drift_spectrum(problem: DROOUProblem) -> Tensor:
    """Eigenvalues of S^{1/2} A S^{1/2} = lambda I - S^{1/2} B S^{1/2}: the smallest is lambda margin/(1+margin)."""
    ing = problem.ingredients
    s_half = sqrtm_psd(ing.nominal_cov)
    return torch.linalg.eigvalsh(sym(s_half @ problem.A @ s_half))
