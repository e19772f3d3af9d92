r"""Kernel Stein discrepancy of samples against a target known through its score (RBF kernel, U-statistic)."""

from __future__ import annotations

import torch
from torch import Tensor


def median_heuristic_beta(samples: Tensor) -> float:
    """RBF inverse bandwidth beta = 1/(2 med^2), med the median distance of the disjoint pairs (x_0,x_1), (x_2,x_3)...

    Fan et al.'s rule for their KSD (ICML 2022, §5.2), applied to exact target samples.
    """
    x = samples.detach().to(torch.float64).cpu()
    n = x.shape[0] // 2
    if n < 1:
        raise ValueError("the median heuristic needs at least 2 samples")
    med = float((x[0 : 2 * n : 2] - x[1 : 2 * n : 2]).norm(dim=1).median())
    if not med > 0:
        raise ValueError("the median heuristic got a zero median distance (duplicated samples)")
    return 1.0 / (2.0 * med**2)


def stein_kernel_matrix(x: Tensor, score: Tensor, beta: float) -> Tensor:
    r"""Langevin-Stein kernel u_Q(x_i, x_j) for the RBF kernel k(x, y) = exp(-beta |x - y|^2), all pairs.

    With s = grad log Q and r = x - y (Liu, Lee & Jordan, ICML 2016; Chwialkowski et al., ICML 2016):

        u(x, y) = s(x)^T s(y) k + s(x)^T grad_y k + s(y)^T grad_x k + tr(grad_x grad_y k)
                = k(x, y) [ s(x)^T s(y) + 2 beta (s(x) - s(y))^T r + 2 beta d - 4 beta^2 |r|^2 ].
    """
    x = x.to(torch.float64)
    s = score.to(torch.float64)
    d = x.shape[1]
    sq = torch.cdist(x, x).pow(2)
    k = torch.exp(-beta * sq)
    sx = (s * x).sum(1)  # s_i . x_i
    cross = s @ x.T  # s_i . x_j
    s_dot_r = sx[:, None] - cross  # s_i . (x_i - x_j)
    # (s_i - s_j) . (x_i - x_j) = s_i.(x_i - x_j) + s_j.(x_j - x_i)
    diff_term = s_dot_r + s_dot_r.T
    return k * (s @ s.T + 2 * beta * diff_term + 2 * beta * d - 4 * beta**2 * sq)


def ksd_u_statistic(x: Tensor, score: Tensor, beta: float) -> float:
    """Unbiased (U-statistic) estimate of KSD^2 = E_{x,y~P} u_Q(x, y): the mean of u over pairs i != j.

    Zero in expectation when P = Q (so an estimate can be slightly negative), positive otherwise.
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError("the KSD U-statistic needs at least 2 samples")
    u = stein_kernel_matrix(x, score, beta)
    return float((u.sum() - u.diagonal().sum()) / (n * (n - 1)))


def kernel_stein_discrepancy(
    x: Tensor, score: Tensor, beta: float, batch_size: int = 1000, max_batches: int | None = 10
) -> float:
    """KSD^2 U-statistic averaged over disjoint batches of ``batch_size`` rows (at most ``max_batches``).

    Fan et al.'s protocol (1000 particles per batch, 10 batches). With fewer than ``batch_size`` rows, one batch of
    all of them. ``score`` holds grad log Q at the rows of x.
    """
    n = x.shape[0]
    size = min(batch_size, n)
    n_batches = n // size if max_batches is None else min(n // size, max_batches)
    vals = [
        ksd_u_statistic(x[i * size : (i + 1) * size], score[i * size : (i + 1) * size], beta) for i in range(n_batches)
    ]
    return float(sum(vals) / len(vals))
