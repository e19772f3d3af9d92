"""Time-dependent OU (moving centre): moments against ODE integration and simulation, exact time-dependent JKO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gaussian_jko_numerics import gaussian_entropy_term, minimise_jko_over_gaussians
from scipy.integrate import solve_ivp

from wgfbench.metrics import bures_w2
from wgfbench.problems.gaussian import GaussianLaw
from wgfbench.problems.ou import OUProblem, haar_orthogonal
from wgfbench.problems.ou_moving import MovingCentreOUProblem, make_ou_moving
from wgfbench.registry import make_problem


def general_instance(dim: int = 3) -> MovingCentreOUProblem:
    """A non-diagonal A, a non-zero offset and independent u, v: every term of the closed form is exercised."""
    gen = torch.Generator().manual_seed(11)
    q = haar_orthogonal(dim, gen)
    a = (q * torch.tensor([0.7, 1.9, 3.2][:dim], dtype=torch.float64)) @ q.T
    vec = lambda: torch.randn(dim, generator=gen, dtype=torch.float64)  # noqa: E731
    s0 = torch.eye(dim, dtype=torch.float64) * 0.4 + 0.1
    return MovingCentreOUProblem(
        A=a, centre_offset=vec(), centre_cos=vec(), centre_sin=vec(), omega=2.3, m0=vec(), S0=s0, beta=1.6
    )


def moments_by_ode(p: MovingCentreOUProblem, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """dm/dt = -A (m - b(t)), dS/dt = -A S - S A + (2/beta) I by DOP853 at tight tolerances."""
    d = p.dim
    a = p.A.numpy()

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        m, s = y[:d], y[d:].reshape(d, d)
        dm = -a @ (m - p.centre(t).numpy())
        ds = -a @ s - s @ a + 2.0 / p.beta * np.eye(d)
        return np.concatenate([dm, ds.ravel()])

    y0 = np.concatenate([p.m0.numpy(), p.S0.numpy().ravel()])
    sol = solve_ivp(rhs, (0.0, t_end), y0, method="DOP853", rtol=1e-12, atol=1e-13)
    y = sol.y[:, -1]
    return y[:d], y[d:].reshape(d, d)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.7, 6.0])
def test_closed_form_moments_match_ode_integration(t: float) -> None:
    for p in (general_instance(), make_ou_moving(2), make_ou_moving(5)):
        mean, cov = moments_by_ode(p, t) if t > 0 else (p.m0.numpy(), p.S0.numpy())
        np.testing.assert_allclose(p.mean(t).numpy(), mean, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(p.cov(t).numpy(), cov, rtol=1e-9, atol=1e-10)


def test_moments_match_a_simulation_of_the_sde() -> None:
    p = make_ou_moving(2)
    gen = torch.Generator().manual_seed(0)
    n, t_end, dt = 40_000, 1.0, 1e-3
    x = p.initial().sample(n, gen)
    a = p.A
    for j in range(round(t_end / dt)):
        b = p.centre((j + 0.5) * dt)
        x = x - dt * (x - b) @ a + math.sqrt(2 * dt / p.beta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    ref = p.reference(t_end)
    # MC standard error of the mean ~ sqrt(0.25/n) ~ 2.5e-3; the O(dt) bias is ~ a_max dt |b'| ~ 1e-2 at most
    torch.testing.assert_close(x.mean(0), ref.mean, atol=1.5e-2, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), ref.cov, atol=5e-3, rtol=0)


def test_scvm_instance_and_padding() -> None:
    p = make_problem("ou_moving", 2, 0)
    assert p.time_dependent and p.temperature == pytest.approx(0.25)
    torch.testing.assert_close(p.A, torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64)))
    torch.testing.assert_close(p.centre(0.5), torch.tensor([0.0, 3.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(p.initial().mean, torch.tensor([3.0, 0.0], dtype=torch.float64))
    p5 = make_ou_moving(5)
    torch.testing.assert_close(torch.diagonal(p5.A), torch.tensor([1.0, 3, 1, 3, 1], dtype=torch.float64))
    torch.testing.assert_close(
        p5.centre(0.25)[[0, 2, 4]], torch.full((3,), 3 * math.cos(math.pi / 4), dtype=torch.float64)
    )
    torch.testing.assert_close(
        p5.centre(0.25)[[1, 3]], torch.full((2,), 3 * math.sin(math.pi / 4), dtype=torch.float64)
    )


def test_at_time_is_the_frozen_static_problem() -> None:
    p = general_instance()
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (0.0, 0.4, 2.0):
        view = p.at_time(t)
        assert isinstance(view, OUProblem) and view.temperature == pytest.approx(p.temperature)
        torch.testing.assert_close(view.log_target(x), p.log_target(x, t))
        # the frozen target's score is -beta A (x - b(t)), by autograd
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(view.log_target(xr).sum(), xr)
        torch.testing.assert_close(g, -p.beta * (x - p.centre(t)) @ p.A)
    with pytest.raises(TypeError):
        p.log_target(x)  # the time is required: an unaware method fails loudly


def test_exact_jko_step_minimises_the_frozen_jko_objective() -> None:
    p = general_instance()
    h, k = 0.2, 3
    law = p.jko_reference(k, h)
    t_next = p.time_of_step(k + 1, h)
    a, b = p.A.numpy(), p.centre(t_next).numpy()

    def energy(m: np.ndarray, s: np.ndarray) -> float:
        return 0.5 * np.trace(a @ s) + 0.5 * (m - b) @ a @ (m - b) + gaussian_entropy_term(s, p.beta)

    mean, cov = minimise_jko_over_gaussians(energy, law.mean.numpy(), law.cov.numpy(), h)
    exact = p.jko_step(GaussianLaw(law.mean, law.cov), k, h)
    np.testing.assert_allclose(mean, exact.mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(cov, exact.cov.numpy(), atol=1e-6)


def test_time_dependent_jko_converges_at_first_order() -> None:
    p = make_ou_moving(2)
    t = 1.2
    errs = [bures_w2(p.jko_reference(round(t / h), h), p.reference(t)) for h in (0.04, 0.004, 0.0004)]
    rates = [math.log10(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(0.9 < r < 1.1 for r in rates), (errs, rates)
    # freezing the potential at the start of the step instead is also first order, but a different scheme
    start_frozen = p.initial()
    h = 0.04
    from wgfbench.problems.ou import quadratic_jko_step

    for j in range(round(t / h)):
        start_frozen = quadratic_jko_step(start_frozen, h, p.beta, p.A, p.centre(j * h))
    assert bures_w2(start_frozen, p.jko_reference(round(t / h), h)) > 10 * errs[2]
