"""The variational JKO's Jensen-Shannon dual (wgfbench/methods/variational_jko/duals.py, JSDDual): the conjugate,
the dual's maximiser and maximum against closed forms, and the method on jsd_grid against the grid reference (d = 1)
and through the checks of wgfbench.metrics.jsd (d = 5)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import optimize

from wgfbench import metrics
from wgfbench.methods.variational_jko import VariationalJKOConfig
from wgfbench.methods.variational_jko.duals import JSDDual
from wgfbench.metrics.jsd import (
    decreasing,
    fitted_relaxation_rate,
    jsd_from_densities,
    near_equilibrium_mean,
    stationarity_gap,
)
from wgfbench.problems.gaussian import GaussianLaw, moment_fit
from wgfbench.problems.jsd_grid import jsd_divergence
from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)
F64 = torch.float64
P = GaussianLaw(torch.tensor([0.7], dtype=F64), torch.tensor([[0.5]], dtype=F64))
Q = GaussianLaw(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))


def f_jsd(x: float) -> float:
    return x * math.log(x) - (x + 1) * math.log((1 + x) / 2)


@pytest.mark.parametrize("y", [-3.0, -1.0, 0.0, 0.3, 0.6])
def test_conjugate_is_minus_log_of_two_minus_exp(y: float) -> None:
    """f*(y) = sup_x xy - f(x) by numerical maximisation against -log(2 - e^y) (y < log 2)."""
    res = optimize.minimize_scalar(lambda s: f_jsd(math.exp(s)) - math.exp(s) * y, bounds=(-30, 30), method="bounded")
    assert -res.fun == pytest.approx(-math.log(2 - math.exp(y)), abs=1e-7)


def quadrature_dual(u_of_x) -> float:
    """∫ p log(2 sigmoid(u)) + q log(2 sigmoid(-u)) dx on a fine grid (the dual functional, no sampling)."""
    x = torch.linspace(-9, 9, 36_001, dtype=F64)[:, None]
    p, q = P.log_density(x).exp(), Q.log_density(x).exp()
    u = u_of_x(x)
    integrand = p * (math.log(2) + torch.nn.functional.logsigmoid(u)) + q * (
        math.log(2) + torch.nn.functional.logsigmoid(-u)
    )
    return float(integrand.sum() * (x[1, 0] - x[0, 0]))


def exact_divergence() -> float:
    x = np.linspace(-9, 9, 36_001)
    lp = P.log_density(torch.from_numpy(x)[:, None]).numpy()
    lq = Q.log_density(torch.from_numpy(x)[:, None]).numpy()
    return jsd_divergence(np.exp(lp), np.exp(lq), x[1] - x[0])


def log_ratio(x: torch.Tensor) -> torch.Tensor:
    return P.log_density(x) - Q.log_density(x)


def test_dual_maximiser_is_the_log_ratio_and_its_maximum_the_divergence() -> None:
    """At u = log(p/q) the dual equals D_f(P || Q) (quadrature of the closed-form densities); moving u off it in
    any of a few directions lowers it."""
    exact = exact_divergence()
    assert quadrature_dual(log_ratio) == pytest.approx(exact, abs=1e-9)
    for perturb in (lambda x: 0.3 + 0 * x[:, 0], lambda x: -0.3 * x[:, 0], lambda x: 0.5 * torch.tanh(x[:, 0])):
        assert quadrature_dual(lambda x, f=perturb: log_ratio(x) + f(x)) < exact - 1e-3


def test_trained_dual_estimates_the_divergence_and_the_first_variation() -> None:
    """JSDDual's network trained on samples of P and Q: dual value ≈ D_f, critic ≈ f'(p/q) = log(2p/(p+q))."""
    torch.manual_seed(0)
    problem = SimpleNamespace(dim=1, target=lambda: Q)
    dual = JSDDual(problem, VariationalJKOConfig(dual_width=32, dual_hidden=1), torch.device("cpu"), F64)
    opt = torch.optim.Adam(dual.net.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(600):
        loss = dual.dual_loss(P.sample(512, gen), Q.sample(512, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        value = float(dual.dual_value(P.sample(200_000, gen), Q.sample(200_000, gen)))
        x = torch.linspace(-0.5, 1.9, 17, dtype=F64)[:, None]  # the bulk of P (mean 0.7, sd 0.71)
        first_variation = math.log(2) + log_ratio(x) - torch.logaddexp(log_ratio(x), torch.zeros(()))
        critic = dual.critic(x)
    assert value == pytest.approx(exact_divergence(), abs=0.01)
    torch.testing.assert_close(critic, first_variation, atol=0.08, rtol=0)


def test_variational_jko_follows_the_grid_reference_in_one_dimension() -> None:
    """A short run on the 1-d mixture (JSD flow from N(0, 1)) stays at the noise floor of W2 to the grid reference
    while P_0 drifts away from it; the dual's estimate of D_f tracks the grid's divergence."""
    h, steps = 0.1, 6
    p = make_problem("jsd_grid", 1, 0, {})
    method = make_method("variational_jko", p, h, {"n_particles": 4000, "batch_size": 512, "iters_per_step": 40}, 0)
    for _ in range(steps):
        stats = method.step()
    gen = torch.Generator().manual_seed(0)
    t = steps * h
    ref = p.reference(t)
    w2 = metrics.w2_exact(ref, method.sample(2000, gen).double(), gen)
    start = metrics.w2_exact(ref, p.initial().sample(2000, gen), gen)
    floor = metrics.noise_floor(metrics.w2_exact, ref, 2000, gen)
    assert w2 < 2 * floor + 0.02 and start > 5 * w2, (w2, start, floor)
    assert stats.extra["jsd_dual"] == pytest.approx(p.divergence(t), abs=0.02)


def fitted_divergence(x: torch.Tensor, problem, gen: torch.Generator) -> tuple[float, float]:
    """D_f(P || Q) with P the Gaussian moment fit of the samples (Monte Carlo, both expectations)."""
    fit = moment_fit(x.double())
    xp, xq = fit.sample(40_000, gen), problem.target().sample(40_000, gen)
    return jsd_from_densities(fit.log_density(xp), problem.log_target(xp), fit.log_density(xq), problem.log_target(xq))


@pytest.mark.slow
def test_jsd_flow_checks_in_five_dimensions() -> None:
    """jsd_grid (d = 5, target "gaussian"): from P_0 = Q the run stays at Q; from the shift 0.2 the divergence
    decreases along the run and the mean relaxes at half the Fokker-Planck rate: the JKO iterates' rate is
    log(1 + h/2)/h = 0.47 at h = 0.25, where the KL flow's would be log(1 + h)/h = 0.89. At this budget the dual
    underestimates the small logit slope log(p/q) a little (a noisy logistic fit of two laws 0.1 apart), so the
    fitted rate comes out at 0.44-0.48 over seeds 0-2 (0.33-0.52 with a tenth of the dual's samples); the bounds
    separate the half rate from the KL rate and from a quarter rate."""
    params = {"n_particles": 20_000, "batch_size": 1024, "iters_per_step": 100}
    h, steps = 0.25, 8
    gen = torch.Generator().manual_seed(0)
    # stationarity: started at Q, four steps later the samples are as close to Q as ...
    still = make_problem("jsd_grid", 5, 0, {"target": "gaussian", "shift": 0.0, "cells": 40})
    method = make_method("variational_jko", still, h, params, 0)
    for _ in range(4):
        method.step()
    gap = stationarity_gap(still.target(), method.sample(2000, gen), gen)
    moved = make_problem("jsd_grid", 5, 0, {"target": "gaussian", "shift": 0.2, "cells": 40})
    start_gap = stationarity_gap(still.target(), moved.initial().sample(2000, gen), gen)
    # ... a fifth of the start of the shifted problem (the method is not exact: its networks add a little noise)
    assert gap["energy"] < 0.2 * start_gap["energy"], (gap, start_gap)
    x = method.sample(40_000, gen)
    assert float(x.mean(0).abs().max()) < 0.02 and float((moment_fit(x.double()).cov - torch.eye(5)).abs().max()) < 0.04
    # the shifted start: monotone decrease and the half-rate relaxation
    method = make_method("variational_jko", moved, h, params, 0)
    times, means, values, ses = [], [], [], []
    for k in range(steps + 1):
        if k:
            method.step()
        x = method.sample(40_000, gen)
        value, se = fitted_divergence(x, moved, gen)
        times.append(k * h)
        means.append(x.double().mean(0))
        values.append(value)
        ses.append(se)
    assert decreasing(values, ses) and values[-1] < 0.4 * values[0], values
    rate = fitted_relaxation_rate(times[1:], means[1:], torch.zeros(5), torch.eye(5)[0])
    assert 0.3 < rate < 0.65, rate
    # the first-order prediction of the flow, b + e^{-t/2} delta, against the kl flow's e^{-t} delta
    shift = torch.zeros(5, dtype=F64)
    shift[0] = 0.2
    half = near_equilibrium_mean(torch.zeros(5), torch.eye(5), shift, times[-1])
    assert abs(float(means[-1][0] - half[0])) < abs(float(means[-1][0]) - 0.2 * math.exp(-times[-1])), means[-1]


def test_evaluation_reports_the_jsd_along_the_flow_with_its_floor() -> None:
    """jsd_grid's evaluation columns (wgfbench.evaluate): jsd_exact is the grid's D_f(P_t || Q), which decreases
    along the flow; jsd_knn of exact samples of P_0 estimates D_f(P_0 || Q) within its bias; at t = 2 the floor (the
    estimate on exact samples of P_t) sits near the exact value, and P_0 (a method that did not move) lies above it."""
    from wgfbench.evaluate import EvalSpec, evaluate_step

    problem = make_problem("jsd_grid", 1, 0, {"target": "mixture"})
    method = make_method("identity", problem, 0.1, {}, 0)
    spec = EvalSpec(n_samples=4000, n_w2=200, n_mc=256, sample_metrics=("sw2",), floor_reps=20)
    start = evaluate_step(problem, method, 0, 0.1, spec)
    end = evaluate_step(problem, method, 20, 0.1, spec)
    assert start["jsd_exact"] == pytest.approx(problem.divergence(0.0))
    assert end["jsd_exact"] == pytest.approx(problem.divergence(2.0)) and end["jsd_exact"] < 0.5 * start["jsd_exact"]
    # P_0's samples at k = 0 are exact: the kNN estimate is D_f(P_0 || Q) up to its noise and small downward bias
    assert abs(start["jsd_knn"] - start["jsd_exact"]) < 4 * start["jsd_knn_se"] + 0.05, start
    assert abs(end["jsd_knn_floor"] - end["jsd_exact"]) < 0.06, end
    assert end["jsd_knn"] > end["jsd_knn_floor_q95"] > end["jsd_knn_floor"], end  # not moving is resolved
