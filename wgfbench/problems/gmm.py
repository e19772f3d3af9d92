r"""Gaussian-mixture sampling: the KL gradient flow towards a mixture target Q, evaluated at stationarity.

F(P) = KL(P || Q) (temperature 1), Q = sum_i w_i N(m_i, s_i^2 I) an isotropic Gaussian mixture; the flow
is the Fokker-Planck equation of the Langevin SDE dX = grad log Q(X) dt + sqrt(2) dW, started from
P_0 = N(0, ``init_var`` I). There is no closed-form transient: **every error of this problem is measured
against the stationary target Q** (``reference(t)`` returns Q for every t, ``jko_reference`` is None),
as Fan et al. (2022, §5.2) and Mokrov et al. (2021, "convergence comparison") do. A table entry at time
t is thus "distance to the target after t units of flow", which includes the not-yet-converged part of
the transient (small by t = 4 for these targets).

**The target law** (:class:`GaussianMixtureLaw`), all in closed form:

* log Q(x) = logsumexp_i [log w_i - |x - m_i|^2/(2 s_i^2) - d log s_i] - (d/2) log(2 pi);
* score grad log Q(x) = sum_i gamma_i(x) (m_i - x)/s_i^2, gamma_i(x) the posterior responsibilities;
* mean E[X] = sum_i w_i m_i, covariance Cov[X] = sum_i w_i (s_i^2 I + m_i m_i^T) - E[X] E[X]^T;
* exact sampler: component i ~ Categorical(w), then m_i + s_i z.

**Instance generators** (a pure function of (dim, seed, generator); the seed picks a different target,
as in both papers, where the target is drawn after seeding):

* ``fan`` (variational-jko.md §2.3, Fan et al.'s ``gmm_d*`` configs): 10 equal-weight components
  N(m_i, I), m_i ~ Unif[-B, B]^d with B = 5 for d <= 8, 3 for 8 < d <= 32 (Fan: d = 17, 24, 32), 2 for
  32 < d <= 64, 1.5 above (Fan: d = 128). Fan has no d in 9..16; B = 3 there is our interpolation.
* ``mokrov`` (peer-methods.md §2.1, Mokrov et al.'s ``convergence_comparison_dim_*`` "cube" layout):
  n_c = d//2 + 4 equal-weight components N(m_i, I), m_i ~ Unif[-5, 5]^d (their configs: 5, 6, 7, 8, 9,
  10 centres for d = 2, 4, ..., 12; odd d use the same formula, our extension).

Both start from P_0 = N(0, 16 I). ``n_components``, ``bound`` and ``std`` override the generator's values.

**Extra metrics** (:meth:`GMMProblem.extra_metrics`, merged into every evaluated row):

* ``ksd`` / ``ksd_floor``: kernel Stein discrepancy (squared, U-statistic) with the RBF kernel
  exp(-beta |x - y|^2) and the target's score (autograd of ``log_target``), averaged over disjoint batches of
  ``ksd_batch_size`` samples (at most ``ksd_batches``), as Fan et al.'s metric; beta = 1/(2 med^2) with med the
  median distance between the disjoint pairs of 10,000 exact target samples (Fan's rule, fixed per instance,
  ``describe()["ksd_beta"]``). The floor is the same statistic on exact target samples of the same size; being an
  unbiased estimate of 0 it fluctuates around 0 (it can be negative, and so can ``ksd`` for a near-perfect model).
* ``symkl_moment_target`` / ``_floor``: closed-form SymKL between the Gaussian moment fit of the samples and the
  moment-matched Gaussian of Q (exact mean and covariance above). It **only sees the first two moments**: a
  sampler that has the right mean and covariance but the wrong modes scores 0. It is the GMM analogue of Fan's
  OU metric, a cheap companion to the KSD and the sample distances, not a substitute for them.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from wgfbench import metrics
from wgfbench.problems.gaussian import GaussianLaw, moment_fit

GENERATORS = ("fan", "mokrov")
INIT_VAR = 16.0
KSD_BETA_SAMPLES = 10_000


def fan_bound(dim: int) -> float:
    """Half-width B of the cube the means are drawn from, per dimension (Fan et al.'s configs; module docstring)."""
    if dim <= 8:
        return 5.0
    if dim <= 32:
        return 3.0
    if dim <= 64:
        return 2.0
    return 1.5


def mokrov_n_centers(dim: int) -> int:
    """Mokrov et al.'s number of mixture centres: 5, 6, 7, 8, 9, 10 for d = 2, 4, ..., 12, i.e. d//2 + 4."""
    return dim // 2 + 4


@dataclass(frozen=True)
class GaussianMixtureLaw:
    """Q = sum_i w_i N(m_i, s_i^2 I), float64 on the CPU; log-density, score and moments in closed form."""

    means: Tensor  # (K, d)
    stds: Tensor  # (K,)
    weights: Tensor  # (K,), sums to 1

    def __post_init__(self) -> None:
        means = self.means.detach().to(torch.float64).cpu()
        stds = self.stds.detach().to(torch.float64).cpu().reshape(-1)
        weights = self.weights.detach().to(torch.float64).cpu().reshape(-1)
        if means.ndim != 2 or stds.shape[0] != means.shape[0] or weights.shape[0] != means.shape[0]:
            raise ValueError(
                f"need means (K, d), stds (K,), weights (K,); got {means.shape}, {stds.shape}, {weights.shape}"
            )
        if not bool((stds > 0).all()) or not bool((weights > 0).all()):
            raise ValueError("mixture stds and weights must be positive")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        object.__setattr__(self, "weights", weights / weights.sum())

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def is_gaussian(self) -> bool:
        return False

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n exact samples, (n, d), in ``dtype``: a component from the weights, then its Gaussian."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        return self.means.to(dtype)[comp] + self.stds.to(dtype)[comp, None] * z

    def component_log_densities(self, x: Tensor) -> Tensor:
        """(n, K) matrix of log w_i + log N(x; m_i, s_i^2 I), in x's dtype and device (differentiable in x)."""
        means, stds, weights = (v.to(x) for v in (self.means, self.stds, self.weights))
        sq = ((x.unsqueeze(-2) - means) ** 2).sum(-1)  # (n, K)
        d = x.shape[-1]
        return torch.log(weights) - 0.5 * sq / stds**2 - d * torch.log(stds) - 0.5 * d * math.log(2 * math.pi)

    def log_density_any(self, x: Tensor) -> Tensor:
        """log Q(x) in x's dtype and device, differentiable (the problem's ``log_target``)."""
        return torch.logsumexp(self.component_log_densities(x), dim=-1)

    def log_density(self, x: Tensor) -> Tensor:
        """log Q(x), normalised, computed in float64 on the CPU."""
        return self.log_density_any(x.detach().to(torch.float64).cpu())

    def score(self, x: Tensor) -> Tensor:
        """grad log Q(x) = sum_i gamma_i(x) (m_i - x)/s_i^2 in closed form (x's dtype and device)."""
        gamma = torch.softmax(self.component_log_densities(x), dim=-1)  # (n, K)
        means, stds = self.means.to(x), self.stds.to(x)
        inv_var = 1.0 / stds**2
        return (gamma * inv_var) @ means - (gamma @ inv_var).unsqueeze(-1) * x

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def cov(self) -> Tensor:
        """sum_i w_i (s_i^2 I + m_i m_i^T) - mean mean^T."""
        mu = self.mean()
        second = (self.weights[:, None] * self.means).T @ self.means
        iso = float((self.weights * self.stds**2).sum())
        return second + iso * torch.eye(self.dim, dtype=torch.float64) - torch.outer(mu, mu)

    def moment_law(self) -> GaussianLaw:
        """The Gaussian with Q's exact mean and covariance."""
        return GaussianLaw(self.mean(), self.cov())


@dataclass(frozen=True)
class GMMProblem:
    """KL flow to a Gaussian mixture; errors are to the stationary target (module docstring)."""

    target: GaussianMixtureLaw
    init_var: float = INIT_VAR
    generator_name: str = "fan"
    seed: int = 0
    bound: float = 5.0
    ksd_batch_size: int = 1000
    ksd_batches: int = 10
    name: str = "gmm"
    functional: str = "kl"
    temperature: float = 1.0
    transient: ClassVar[bool] = False  # reference(t) is the stationary target Q for every t
    ksd_beta: float = field(init=False)

    def __post_init__(self) -> None:
        if self.ksd_batch_size < 2 or self.ksd_batches < 1:
            raise ValueError(
                f"need ksd_batch_size >= 2 and ksd_batches >= 1, got {self.ksd_batch_size}, {self.ksd_batches}"
            )
        gen = torch.Generator().manual_seed(
            zlib.crc32(f"wgfbench-gmm-ksd-beta-{self.generator_name}@{self.dim}@{self.seed}".encode())
        )
        beta = metrics.median_heuristic_beta(self.target.sample(KSD_BETA_SAMPLES, gen))
        object.__setattr__(self, "ksd_beta", beta)

    @property
    def dim(self) -> int:
        return self.target.dim

    def log_target(self, x: Tensor) -> Tensor:
        """Exact (normalised) log Q(x), in x's dtype and device, differentiable."""
        return self.target.log_density_any(x)

    def score(self, x: Tensor) -> Tensor:
        """grad log Q by autograd of :meth:`log_target` (rows independent: one backward gives every row)."""
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.log_target(xr).sum(), xr)
        return g

    def initial(self) -> GaussianLaw:
        d = self.dim
        return GaussianLaw(torch.zeros(d, dtype=torch.float64), self.init_var * torch.eye(d, dtype=torch.float64))

    def reference(self, t: float) -> GaussianMixtureLaw:
        """The stationary target Q, for every t (no closed-form transient; module docstring)."""
        if t < 0:
            raise ValueError(f"flow time must be >= 0, got {t}")
        return self.target

    def jko_reference(self, k: int, h: float) -> None:
        return None

    def time_of_step(self, k: int, h: float) -> float:
        return k * h

    def describe(self) -> dict[str, object]:
        return {
            "generator": self.generator_name,
            "n_components": self.target.n_components,
            "bound": self.bound,
            "std": float(self.target.stds[0]),
            "init_var": self.init_var,
            "ksd_beta": self.ksd_beta,
            "target_trace_cov": float(torch.trace(self.target.cov())),
            "reference": "stationary target for every t",
        }

    # --- metrics -------------------------------------------------------------------------------------
    def ksd(self, x: Tensor) -> float:
        """Squared KSD U-statistic of samples x against Q (module docstring)."""
        x = x.detach().to(torch.float64).cpu()
        return metrics.kernel_stein_discrepancy(
            x, self.score(x), self.ksd_beta, batch_size=self.ksd_batch_size, max_batches=self.ksd_batches
        )

    def extra_metrics(
        self,
        t: float,
        samples: Tensor,
        model_log_density_at_samples: Tensor | None = None,
        model_log_density=None,
        generator: torch.Generator | None = None,
    ) -> dict[str, float]:
        """``ksd``, ``symkl_moment_target`` and their noise floors (module docstring)."""
        x = samples.detach().to(torch.float64).cpu()
        exact = self.target.sample(x.shape[0], generator)
        target_fit = self.target.moment_law()
        return {
            "ksd": self.ksd(x),
            "ksd_floor": self.ksd(exact),
            "symkl_moment_target": metrics.gaussian_symkl(moment_fit(x), target_fit),
            "symkl_moment_target_floor": metrics.gaussian_symkl(moment_fit(exact), target_fit),
        }


def make_gmm(
    dim: int,
    seed: int,
    generator: str = "fan",
    n_components: int | None = None,
    bound: float | None = None,
    std: float = 1.0,
    init_var: float = INIT_VAR,
    ksd_batch_size: int = 1000,
    ksd_batches: int = 10,
) -> GMMProblem:
    """Build a mixture instance as a pure function of (dim, seed, generator, parameters); module docstring."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if generator == "fan":
        k_default, b_default = 10, fan_bound(dim)
    elif generator == "mokrov":
        k_default, b_default = mokrov_n_centers(dim), 5.0
    else:
        raise ValueError(f"unknown mixture generator {generator!r}; choose one of {GENERATORS}")
    k = k_default if n_components is None else int(n_components)
    b = b_default if bound is None else float(bound)
    if k < 1 or not b > 0 or not std > 0 or not init_var > 0:
        raise ValueError(f"need n_components >= 1 and bound, std, init_var > 0; got {k}, {b}, {std}, {init_var}")
    gen = torch.Generator().manual_seed(zlib.crc32(f"wgfbench-gmm-{generator}@{dim}@{seed}".encode()))
    means = b * (2.0 * torch.rand(k, dim, generator=gen, dtype=torch.float64) - 1.0)
    target = GaussianMixtureLaw(means, torch.full((k,), float(std)), torch.full((k,), 1.0 / k))
    return GMMProblem(
        target=target,
        init_var=float(init_var),
        generator_name=generator,
        seed=seed,
        bound=b,
        ksd_batch_size=ksd_batch_size,
        ksd_batches=ksd_batches,
    )
