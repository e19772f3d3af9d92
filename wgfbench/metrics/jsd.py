r"""Checks of a Jensen-Shannon gradient flow that any method's samples can be put through, in any dimension.

The functional is D_f(P || Q) = E_P[log(2p/(p+q))] + E_Q[log(2q/(p+q))] (Fan et al.'s JSD, twice the usual one;
:mod:`wgfbench.problems.jsd_grid`). Three properties of the exact flow hold in every d and need no grid:

* **stationarity at Q**: started at P_0 = Q the flow does not move; :func:`stationarity_gap` compares a method's
  samples with exact samples of Q by the energy distance and its noise floor;
* **monotone decrease** of D_f(P_t || Q) along the flow (it is a gradient flow of D_f): :func:`jsd_from_densities`
  estimates D_f for a method with a density (Monte Carlo, both expectations, with a standard error),
  :func:`jsd_knn` for a sample-only method (the k-nearest-neighbour density of P plugged into the same formula, with
  the Kozachenko-Leonenko normalisation e^{psi(k)} that makes log p-hat asymptotically unbiased, Kozachenko &
  Leonenko, Probl. Inf. Transm. 1987); its finite-n bias is downward and grows with d (about -0.02 in d = 1 at
  n = 20,000 and -0.05 in d = 5 at n = 4,000, so it can go below 0 near equilibrium), so it ranks the iterates of
  one flow rather than measuring the value; :func:`decreasing` tests a sequence of estimates within their errors;
* **near-equilibrium relaxation at half the Fokker-Planck rate**: for Q = N(b, S) and P_0 = N(b + delta, S), the
  mean relaxes as b + e^{-S^{-1} t/2} delta + O(|delta|^2) (derivation in :mod:`wgfbench.problems.jsd_grid`):
  :func:`near_equilibrium_mean` is the prediction, :func:`fitted_relaxation_rate` the rate fitted to a method's
  means along a direction (1/(2 sigma^2) for an eigendirection of variance sigma^2).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import expm
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from wgfbench import metrics
from wgfbench.problems.base import Law

LOG2 = math.log(2.0)
KNN_K = 20


def _mean_se(v: Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.shape[0]))


def jsd_from_densities(
    log_p_at_p: Tensor, log_q_at_p: Tensor, log_p_at_q: Tensor, log_q_at_q: Tensor
) -> tuple[float, float]:
    """(estimate, standard error) of D_f(P || Q) from log-densities at samples of P and at samples of Q.

    E_P[log 2 + log p - logaddexp(log p, log q)] + E_Q[log 2 + log q - logaddexp(log p, log q)]; both densities must
    be normalised. Each summand lies in [-inf, log 2], the total in [0, 2 log 2].
    """
    a = LOG2 + log_p_at_p - torch.logaddexp(log_p_at_p, log_q_at_p)
    b = LOG2 + log_q_at_q - torch.logaddexp(log_p_at_q, log_q_at_q)
    (ma, sa), (mb, sb) = _mean_se(a.double()), _mean_se(b.double())
    return ma + mb, math.hypot(sa, sb)


def knn_log_density(samples: Tensor, points: Tensor | None = None, k: int = KNN_K) -> Tensor:
    """log of the kNN density estimate of the law of ``samples`` (n, d), e^{psi(k)} / (n V_d rho_k^d) at ``points``,
    or leave-one-out, e^{psi(k)} / ((n-1) V_d rho_k^d), at the samples themselves when ``points`` is None."""
    x = samples.detach().to(torch.float64).cpu().numpy()
    n, d = x.shape
    tree = cKDTree(x)
    if points is None:
        dist, _ = tree.query(x, k=k + 1)  # the nearest is the point itself
        rho, count = dist[:, k], n - 1
    else:
        dist, _ = tree.query(points.detach().to(torch.float64).cpu().numpy(), k=k)
        rho, count = dist[:, k - 1], n
    log_ball = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    with np.errstate(divide="ignore"):
        return torch.from_numpy(float(digamma(k)) - math.log(count) - log_ball - d * np.log(rho))


def jsd_knn(
    samples_p: Tensor, samples_q: Tensor, log_q_at_p: Tensor, log_q_at_q: Tensor, k: int = KNN_K
) -> tuple[float, float]:
    """(estimate, standard error) of D_f(P || Q) with P known by samples only (kNN density, module docstring)."""
    log_p_at_p = knn_log_density(samples_p, None, k)
    log_p_at_q = knn_log_density(samples_p, samples_q, k)
    return jsd_from_densities(log_p_at_p, log_q_at_p.double().cpu(), log_p_at_q, log_q_at_q.double().cpu())


def decreasing(values: list[float], ses: list[float] | None = None, z: float = 3.0, slack: float = 0.0) -> bool:
    """True if values[i+1] <= values[i] + z sqrt(se_i^2 + se_{i+1}^2) + slack for every i."""
    ses = ses or [0.0] * len(values)
    return all(values[i + 1] <= values[i] + z * math.hypot(ses[i], ses[i + 1]) + slack for i in range(len(values) - 1))


def stationarity_gap(target: Law, samples: Tensor, generator: torch.Generator) -> dict[str, float]:
    """Energy distance of a method's samples (started at Q) to exact samples of Q, with its noise floor."""
    x = samples.detach().to(torch.float64).cpu()
    return {
        "energy": metrics.energy_distance(target, x, generator),
        "energy_floor": metrics.noise_floor(metrics.energy_distance, target, x.shape[0], generator),
    }


def near_equilibrium_mean(centre: Tensor, cov: Tensor, shift: Tensor, t: float) -> Tensor:
    """b + e^{-S^{-1} t/2} delta: the first-order mean at time t of the JSD flow to N(b, S) from N(b + delta, S)."""
    prec = np.linalg.inv(cov.detach().double().cpu().numpy())
    decay = torch.from_numpy(expm(-0.5 * t * prec))
    return centre.double() + decay @ shift.double()


def fitted_relaxation_rate(times: list[float], means: list[Tensor], centre: Tensor, direction: Tensor) -> float:
    """Least-squares slope of -log <m_k - b, u> against t_k (u = direction/|direction|): the relaxation rate."""
    u = direction.double() / direction.double().norm()
    proj = np.array([float((m.double() - centre.double()) @ u) for m in means])
    if not bool(np.all(proj > 0)):
        raise ValueError("the projected mean deviation must stay positive to fit a rate")
    slope = np.polyfit(np.asarray(times, dtype=np.float64), np.log(proj), 1)[0]
    return float(-slope)
