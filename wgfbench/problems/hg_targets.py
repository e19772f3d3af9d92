r"""Hertrich & Gruhlke's sampling targets (ICML 2025, §5, and their public code), as problems.

Each is the KL flow F(P) = KL(P || Q) (temperature 1) towards a **normalised** target Q with an exact sampler,
started from their latent law P_0 = N(0, I). They are stationary targets: ``reference(t)`` is Q for every t,
``jko_reference`` is None and ``transient`` is False; errors are distances to Q. Being normalised,
log Z = 0 is the truth for the log-normaliser estimate (ELBO) -E_P[U + log p], U = -log Q.

* ``hg_8modes`` / ``hg_8peaky`` (d = 2): the "shifted 8 modes": 8 equal-weight components N(m_k, s^2 I),
  m_k = (cos(2 pi k/8) - 1, sin(2 pi k/8)) (a unit circle of modes centred at (-1, 0)), variance s^2 = 0.01
  (8 modes) or 0.005 (8 peaky).
* ``hg_gmm`` (their GMM-d, d = 10..200): 10 equal-weight components N(m_k, 0.01 I), m_k ~ Unif[-1, 1]^d. Their
  means are stored files (5 draws per d); here they are drawn from the same law by a generator seeded with
  crc32("wgfbench-hg-gmm@{d}@{seed}"), so the instance is a pure function of (dim, seed).
* ``hg_funnel`` (Neal's funnel, d = 10 in their runs): v ~ N(0, 9), x_i | v ~ N(0, e^v) for i = 1..d-1, so
  log Q(v, x) = -v^2/18 - ½ log(18 pi) - ½ e^{-v} |x|^2 - ((d-1)/2)(v + log 2 pi). Exact sampler by the same
  two stages.
* ``hg_mustache`` (d = 2): Q = (T^{-1}) # N(0, Sigma), Sigma = [[1, rho], [rho, 1]], rho = 0.9, with the
  volume-preserving map T(x) = (x_1, x_2 - (x_1^2 - 1)^2) (det DT = 1), so log Q(x) = log N(T(x); 0, Sigma) and
  X = T^{-1}(W) = (W_1, W_2 + (W_1^2 - 1)^2), W ~ N(0, Sigma), is an exact sampler. (Their energy is the
  polynomial expansion of -log N(T(x); 0, Sigma) and their sampler -T(Z), which is the same law since
  -T(Z) = T^{-1}(-Z) and -Z ~ N(0, Sigma).)

The targets other than GMM-d are fixed: the seed changes nothing in them (only the method's randomness).

Metrics: as every stationary target, evaluation measures these by their samples and score (KSD) and, where the
suite asks for it (``eval.sliced_energy_samples``: 50,000 in Hertrich & Gruhlke's protocol), by the sliced energy
distance to Q in their convention with its noise floor (:mod:`wgfbench.metrics.sliced_energy`); for methods with
densities, by the log-normaliser estimate (:mod:`wgfbench.metrics.log_normaliser`). The problems themselves
compute no metric.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor

from wgfbench.params import Count, Positive, Range
from wgfbench.problems.base import ProblemDefaults, problem_factory
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.gmm import GaussianMixtureLaw

EIGHT_MODES_VARIANCE = 0.01
EIGHT_PEAKY_VARIANCE = 0.005
GMM_COMPONENTS = 10
GMM_VARIANCE = 0.01
FUNNEL_VARIANCE = 9.0
MUSTACHE_CORRELATION = 0.9


@dataclass(frozen=True)
class FunnelLaw:
    """Neal's funnel in R^d: v ~ N(0, var), x_{1..d-1} | v ~ N(0, e^v I) (module docstring)."""

    dim: int
    var: float = FUNNEL_VARIANCE

    @property
    def is_gaussian(self) -> bool:
        return False

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        v = math.sqrt(self.var) * z[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:]], dim=1)

    def log_density_any(self, x: Tensor) -> Tensor:
        """log Q(x) in x's dtype and device, differentiable."""
        v, rest = x[:, 0], x[:, 1:]
        k = self.dim - 1
        log_v = -0.5 * v**2 / self.var - 0.5 * math.log(2 * math.pi * self.var)
        return log_v - 0.5 * torch.exp(-v) * (rest**2).sum(-1) - 0.5 * k * (v + math.log(2 * math.pi))

    def log_density(self, x: Tensor) -> Tensor:
        return self.log_density_any(x.detach().to(torch.float64).cpu())


@dataclass(frozen=True)
class MustacheLaw:
    """(T^{-1}) # N(0, Sigma) with T(x) = (x_1, x_2 - (x_1^2 - 1)^2) (module docstring); d = 2."""

    rho: float = MUSTACHE_CORRELATION
    dim: int = 2

    @property
    def is_gaussian(self) -> bool:
        return False

    @property
    def gaussian(self) -> GaussianLaw:
        """N(0, Sigma), the law of T(X)."""
        cov = torch.tensor([[1.0, self.rho], [self.rho, 1.0]], dtype=torch.float64)
        return GaussianLaw(torch.zeros(2, dtype=torch.float64), cov)

    @staticmethod
    def transform(x: Tensor) -> Tensor:
        """T(x) = (x_1, x_2 - (x_1^2 - 1)^2)."""
        return torch.stack([x[:, 0], x[:, 1] - (x[:, 0] ** 2 - 1.0) ** 2], dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        w = self.gaussian.sample(n, generator, dtype=dtype)
        return torch.stack([w[:, 0], w[:, 1] + (w[:, 0] ** 2 - 1.0) ** 2], dim=1)

    def log_density_any(self, x: Tensor) -> Tensor:
        """log N(T(x); 0, Sigma) in x's dtype and device, differentiable (det DT = 1)."""
        u = self.transform(x)
        r = self.rho
        quad = (u[:, 0] ** 2 - 2 * r * u[:, 0] * u[:, 1] + u[:, 1] ** 2) / (1 - r**2)
        return -0.5 * quad - math.log(2 * math.pi) - 0.5 * math.log(1 - r**2)

    def log_density(self, x: Tensor) -> Tensor:
        return self.log_density_any(x.detach().to(torch.float64).cpu())


@dataclass(frozen=True)
class StationaryTargetProblem(ProblemDefaults):
    """KL flow from N(0, I) to a normalised target Q; every reference is Q (module docstring)."""

    name: str
    law: Any  # a law with sample, log_density (float64) and log_density_any (differentiable)
    seed: int = 0
    info: dict[str, object] = field(default_factory=dict)
    functional: str = "kl"
    temperature: float = 1.0
    transient: ClassVar[bool] = False

    @property
    def dim(self) -> int:
        return self.law.dim

    def target(self) -> Any:
        """The target Q (exact sampler, normalised density)."""
        return self.law

    def target_moments(self) -> None:
        """Not offered (the moment-fit metric of a mixture-like target sees two moments only)."""
        return None

    def log_target(self, x: Tensor) -> Tensor:
        """The normalised log Q(x), in x's dtype and device, differentiable."""
        return self.law.log_density_any(x)

    def score(self, x: Tensor) -> Tensor:
        """grad log Q by autograd of :meth:`log_target`."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_target(xr).sum(), xr)
        return g

    def initial(self) -> GaussianLaw:
        d = self.dim
        return GaussianLaw(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64))

    def reference(self, t: float) -> Any:
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return self.law

    def describe(self) -> dict[str, object]:
        return {**self.info, "reference": "stationary target for every t", "log_z": 0.0}


def _mixture(means: Tensor, variance: float) -> GaussianMixtureLaw:
    k = means.shape[0]
    return GaussianMixtureLaw(means, torch.full((k,), math.sqrt(variance)), torch.full((k,), 1.0 / k))


def shifted_eight_modes_means() -> Tensor:
    """(cos(2 pi k/8) - 1, sin(2 pi k/8)), k = 0..7."""
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return torch.stack([torch.cos(angles) - 1.0, torch.sin(angles)], dim=1)


def _need_dim(what: str, dim: int, allowed: int) -> None:
    if dim != allowed:
        raise ValueError(f"the {what} target is {allowed}-dimensional; got dim = {dim}")


@problem_factory("hg_8modes")
def make_hg_8modes(dim: int, seed: int) -> StationaryTargetProblem:
    _need_dim("shifted 8 modes", dim, 2)
    return StationaryTargetProblem(
        "hg_8modes",
        _mixture(shifted_eight_modes_means(), EIGHT_MODES_VARIANCE),
        seed,
        {"n_components": 8, "variance": EIGHT_MODES_VARIANCE},
    )


@problem_factory("hg_8peaky")
def make_hg_8peaky(dim: int, seed: int) -> StationaryTargetProblem:
    _need_dim("shifted 8 peaky", dim, 2)
    return StationaryTargetProblem(
        "hg_8peaky",
        _mixture(shifted_eight_modes_means(), EIGHT_PEAKY_VARIANCE),
        seed,
        {"n_components": 8, "variance": EIGHT_PEAKY_VARIANCE},
    )


def gmm_means(dim: int, seed: int, n_components: int = GMM_COMPONENTS) -> Tensor:
    """Their GMM-d layout: n_components means uniform in [-1, 1]^d, a pure function of (dim, seed)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"wgfbench-hg-gmm@{dim}@{seed}".encode()))
    return 2.0 * torch.rand(n_components, dim, generator=gen, dtype=torch.float64) - 1.0


@problem_factory("hg_gmm")
def make_hg_gmm(
    dim: int, seed: int, n_components: Count = GMM_COMPONENTS, variance: Positive = GMM_VARIANCE
) -> StationaryTargetProblem:
    return StationaryTargetProblem(
        "hg_gmm",
        _mixture(gmm_means(dim, seed, n_components), variance),
        seed,
        {"n_components": n_components, "variance": variance},
    )


@problem_factory("hg_funnel")
def make_hg_funnel(dim: int, seed: int, variance: Positive = FUNNEL_VARIANCE) -> StationaryTargetProblem:
    if dim < 2:
        raise ValueError(f"the funnel needs dim >= 2, got dim = {dim}")
    return StationaryTargetProblem(
        "hg_funnel",
        FunnelLaw(dim, variance),
        seed,
        {"variance": variance},
    )


@problem_factory("hg_mustache")
def make_hg_mustache(
    dim: int, seed: int, correlation: Annotated[float, Range(-0.999, 0.999)] = MUSTACHE_CORRELATION
) -> StationaryTargetProblem:
    _need_dim("mustache", dim, 2)
    return StationaryTargetProblem(
        "hg_mustache",
        MustacheLaw(correlation),
        seed,
        {"correlation": correlation},
    )
