r"""Reference measures Gamma of the variational JKO's duals (Fan, Zhang, Taghvaei & Chen, ICML 2022, §3.2).

* :class:`GaussianReference`, for the KL: Gamma_k = N(mean, cov) of P_k (the paper's Cor. 3.3 change of
  reference measure), refit to the particles after every step.
* :class:`UniformReference`, for the generalised entropy: Gamma = Unif(Omega_k) (Cor. 3.4, Eq. 10), valid when
  Omega_k contains the support of T#P_k. The paper takes Omega = [-s, s]^d with s = 1.5 max_i |x_i|_inf. One
  outlier particle inflates that box and lowers 1/|Omega|, so that Gamma samples miss the support. Here
  (:func:`fit_uniform_reference`) the box is centred at the coordinate-wise median c with half-width
  s = ``box_scale`` * quantile_{box_quantile}(|x_i - c|_inf): with the default ``box_quantile`` = 0.999 fewer
  than 0.1 % of the particles can move it; ``box_quantile=1`` with a symmetric P_k is the paper's rule. The
  shape "ball" replaces the cube by the ball of radius s around c (|x - c|_2): a Barenblatt support of radius
  s/1.5 fills a fraction V_d (1/3)^d of the cube (7e-3 at d = 6, 4e-5 at d = 10) but (2/3)^d of the ball
  (9e-2 and 2e-2).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from wgfbench.methods.base import Diverged


class GaussianReference:
    """Gamma = N(mean, cov) on the method's device: sampling and log-density for the KL dual.

    With cov = L L^T (Cholesky, float64): z = mean + L eps, and log Gamma(x) = -|W (x - mean)|^2 / 2
    - log det L - (d/2) log 2 pi with the whitening matrix W = L^{-1}, formed once per refit in float64.
    Both are one matrix product per batch (a triangular solve per batch, forward and backward, costs more on
    the inner loop's hot path).
    """

    def __init__(self, mean: Tensor, cov: Tensor, device: torch.device, dtype: torch.dtype):
        cov = 0.5 * (cov + cov.T)
        eye = torch.eye(cov.shape[0], dtype=cov.dtype)
        scale = float(cov.diagonal().abs().mean()) or 1.0
        rel = 0.0
        while True:  # a singular fit (tiny N or collapsed particles) gets the smallest jitter that works
            chol, info = torch.linalg.cholesky_ex(cov + rel * scale * eye)
            if int(info) == 0:
                break
            rel = 1e-10 if rel == 0.0 else 10.0 * rel
            if rel > 1.0:
                raise Diverged("the reference Gaussian's covariance is not positive definite (collapsed particles?)")
        self.mean = mean.to(device, dtype)
        self.chol = chol.to(device, dtype)
        eye = torch.eye(cov.shape[0], dtype=chol.dtype)
        self.whiten = torch.linalg.solve_triangular(chol, eye, upper=False).to(device, dtype)
        log_norm = float(torch.log(torch.diagonal(chol)).sum()) + 0.5 * cov.shape[0] * math.log(2 * math.pi)
        self.log_norm = torch.tensor(
            log_norm, device=device, dtype=dtype
        )  # a tensor: a refit must not recompile a loss

    def sample(self, n: int) -> Tensor:
        z = torch.randn(n, self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + z @ self.chol.T

    def log_density(self, x: Tensor) -> Tensor:
        u = (x - self.mean) @ self.whiten.T
        return -0.5 * (u**2).sum(-1) - self.log_norm


@dataclasses.dataclass(frozen=True)
class UniformReference:
    """Unif(Omega) for Omega the cube c + [-s, s]^d or the ball B(c, s); on the method's device."""

    center: Tensor
    half_width: float
    shape: str
    # half_width and |Omega| as 0-d tensors on the device, for the losses: a compiled loss reads them as
    # inputs, where it would specialise on (and recompile for) every refit's Python float.
    half_width_t: Tensor = dataclasses.field(init=False, repr=False, compare=False)
    volume_t: Tensor = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        c = self.center
        object.__setattr__(self, "half_width_t", torch.tensor(self.half_width, device=c.device, dtype=c.dtype))
        object.__setattr__(self, "volume_t", torch.tensor(math.exp(self.log_volume), device=c.device, dtype=c.dtype))

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    @property
    def log_volume(self) -> float:
        d, s = self.dim, self.half_width
        if self.shape == "box":
            return d * math.log(2 * s)
        return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1) + d * math.log(s)

    def sample(self, n: int) -> Tensor:
        c = self.center
        if self.shape == "box":
            return c + self.half_width * (2 * torch.rand(n, self.dim, device=c.device, dtype=c.dtype) - 1)
        u = torch.randn(n, self.dim, device=c.device, dtype=c.dtype)
        u = u / u.norm(dim=1, keepdim=True)
        r = torch.rand(n, 1, device=c.device, dtype=c.dtype) ** (1.0 / self.dim)
        return c + self.half_width * r * u

    def norm(self, x: Tensor) -> Tensor:
        """|x - c| in the norm whose unit ball is Omega's shape (inf-norm for the cube)."""
        diff = x - self.center.to(x)
        return diff.abs().amax(-1) if self.shape == "box" else diff.norm(dim=-1)

    def project(self, x: Tensor) -> Tensor:
        """Nearest point of Omega (identity inside)."""
        c, s = self.center.to(x), self.half_width_t.to(x)
        if self.shape == "box":
            return c + torch.clamp(x - c, -s, s)
        scale = (s / self.norm(x).clamp_min(1e-30)).clamp(max=1.0)
        return c + (x - c) * scale.unsqueeze(-1)


def fit_uniform_reference(particles: Tensor, scale: float, quantile: float, shape: str = "box") -> UniformReference:
    """Omega centred at the coordinate-wise median c with half-width scale * quantile_q(|x - c|).

    ``quantile=1`` takes the maximum (the paper's rule, 1.5 max |x|_inf, up to the centre).
    """
    if shape not in ("box", "ball"):
        raise ValueError(f"reference_shape must be 'box' or 'ball', got {shape!r}")
    if not 0 < quantile <= 1:
        raise ValueError(f"box_quantile must be in (0, 1], got {quantile}")
    x = particles.detach()
    center = x.median(dim=0).values
    ref = UniformReference(center, 1.0, shape)
    radii = ref.norm(x).to(torch.float64)
    idx = min(radii.shape[0] - 1, math.ceil(quantile * radii.shape[0]) - 1)
    s = scale * float(torch.kthvalue(radii.cpu(), idx + 1).values)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"cannot fit a reference domain to the particles (half-width {s})")
    return UniformReference(center, s, shape)
