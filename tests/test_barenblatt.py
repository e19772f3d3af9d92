"""Barenblatt problem: mass, sampler, PDE residual, closed forms, time axis, exact JKO, porous metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from wgfbench.metrics.porous import knn_integral_power, porous_metrics
from wgfbench.problems.barenblatt import (
    BarenblattLaw,
    barenblatt_profile,
    exponents,
    jko_radius_step,
    make_barenblatt,
    mass_of_constant,
)
from wgfbench.registry import make_problem


def radial_integral(fn, dim: int, radius: float) -> float:
    """∫_{R^n} fn(|x|) dx = |S^{n-1}| ∫_0^R fn(r) r^{n-1} dr for a radial fn supported in the ball."""
    sphere = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)
    value, _ = integrate.quad(lambda r: fn(r) * r ** (dim - 1), 0.0, radius, epsabs=1e-13, epsrel=1e-11, limit=200)
    return sphere * value


def on_axis(r: float, dim: int) -> torch.Tensor:
    x = torch.zeros(1, dim, dtype=torch.float64)
    x[0, 0] = r
    return x


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("m", [2.0, 3.0])
def test_exact_density_has_unit_mass(dim, m):
    problem = make_barenblatt(dim, 0, m=m)
    assert problem.mass == pytest.approx(1.0, rel=1e-12)
    for t in (0.0, 0.02):
        law = problem.reference(t)
        from_law = radial_integral(lambda r, law=law: float(law.density(on_axis(r, dim))), dim, law.radius)
        from_profile = radial_integral(lambda r, t=t: float(problem.density(on_axis(r, dim), t)), dim, law.radius)
        assert from_law == pytest.approx(1.0, abs=1e-8)
        assert from_profile == pytest.approx(1.0, abs=1e-8)


def test_unit_mass_constants_match_reference_values():
    # closed-forms-and-pitfalls.md §4b, m = 2
    expected = {1: 0.360562, 2: 0.199471, 3: 0.134810, 6: 0.069715, 10: 0.045803}
    for dim, c in expected.items():
        assert make_barenblatt(dim, 0).C == pytest.approx(c, abs=2e-6)
    assert make_barenblatt(1, 0).C == pytest.approx((3 / 64) ** (1 / 3), rel=1e-12)


@pytest.mark.parametrize(("dim", "radius", "mass"), [(3, 0.4, 0.858), (6, 0.6, 0.678)])
def test_fan_convention_mass(dim, radius, mass):
    problem = make_barenblatt(dim, 0, convention="fan")
    assert problem.radius(0.0) == pytest.approx(radius, rel=1e-12)
    assert problem.mass == pytest.approx(mass, abs=5e-4)
    # the unnormalised profile's mass by quadrature agrees with the formula
    quad = radial_integral(
        lambda r: float(barenblatt_profile(on_axis(r, dim), problem.t0, 2.0, problem.C)), dim, radius
    )
    assert quad == pytest.approx(problem.mass, rel=1e-8)
    assert mass_of_constant(problem.C, dim, 2.0) == pytest.approx(problem.mass, rel=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3, 6, 10])
def test_sampler_radial_moments_and_law(dim):
    law = make_barenblatt(dim, 0).reference(0.01)
    x = law.sample(200_000, torch.Generator().manual_seed(dim))
    assert x.dtype == torch.float64 and x.shape == (200_000, dim)
    assert bool((law.outside_support(x)).sum() == 0)
    r2 = (x**2).sum(1)
    for j in (1, 2, 3):
        vals = r2**j
        se = float(vals.std()) / math.sqrt(len(vals))
        assert abs(float(vals.mean()) - law.radial_moment(j)) < 5 * se
    assert law.second_moment() == pytest.approx(law.radius**2 * dim / (dim + 2 / (law.m - 1) + 2), rel=1e-12)
    # |X|^2 / R^2 ~ Beta(n/2, p+1): Kolmogorov-Smirnov at a generous level
    ks = stats.kstest((r2 / law.radius**2).numpy(), stats.beta(dim / 2, law.p + 1).cdf)
    assert ks.pvalue > 1e-3
    # isotropy: the mean is 0 within sampling error
    assert float(x.mean(0).abs().max()) < 5 * math.sqrt(law.second_moment() / dim / len(x))


def test_sampler_is_a_function_of_the_generator():
    law = make_barenblatt(3, 0).initial()
    a = law.sample(100, torch.Generator().manual_seed(7))
    b = law.sample(100, torch.Generator().manual_seed(7))
    c = law.sample(100, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def pde_residual(density, x: torch.Tensor, t: float, m: float, dt: float = 1e-7, dx: float = 1e-4) -> torch.Tensor:
    """Relative residual |∂_t P - Δ(P^m)| / |∂_t P| by central finite differences (float64)."""
    dp_dt = (density(x, t + dt) - density(x, t - dt)) / (2 * dt)
    lap = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = dx
        lap += (density(x + e, t) ** m - 2 * density(x, t) ** m + density(x - e, t) ** m) / dx**2
    return (dp_dt - lap).abs() / dp_dt.abs()


PDE_CASES = [(d, "unit_mass", m) for d in (1, 2, 3, 6) for m in (2.0, 3.0)] + [(3, "fan", 2.0), (6, "fan", 2.0)]


@pytest.mark.parametrize(("dim", "convention", "m"), PDE_CASES)
def test_profile_satisfies_the_pde(dim, convention, m):
    problem = make_barenblatt(dim, 0, m=m, convention=convention)
    gen = torch.Generator().manual_seed(0)
    for t in (1e-3, 0.01):
        law = problem.reference(t)
        # points strictly inside the support (|x| <= 0.8 R), away from the free boundary
        x = law.sample(8, gen) * 0.8
        res = pde_residual(problem.density, x, t, m)
        assert float(res.max()) < 1e-4, (t, res)


def test_fan_time_axis_is_needed():
    """U(., t0 + t)/M (Fan's code's clock) is not a solution: the residual test above can fail."""
    problem = make_barenblatt(6, 0, convention="fan")

    def wrong_clock(x, t):
        return barenblatt_profile(x, problem.t0 + t, 2.0, problem.C) / problem.mass

    x = problem.reference(0.01).sample(8, torch.Generator().manual_seed(1)) * 0.8
    assert float(pde_residual(wrong_clock, x, 0.01, 2.0).min()) > 0.1
    # and the Fan instance is the unit-mass problem started at t0' = t0 M^{m-1}
    unit = make_barenblatt(6, 0, t0=problem.describe()["t0_unit_mass"])
    for t in (0.0, 0.01, 0.03):
        assert unit.radius(t) == pytest.approx(problem.radius(t), rel=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3, 6])
@pytest.mark.parametrize("m", [2.0, 3.0])
def test_generalised_entropy_and_second_moment_closed_forms(dim, m):
    problem = make_barenblatt(dim, 0, m=m)
    t = 0.005
    law = problem.reference(t)
    # quadrature of ∫P^m and ∫|x|^2 P
    int_pm = radial_integral(lambda r: float(law.density(on_axis(r, dim))) ** m, dim, law.radius)
    second = radial_integral(lambda r: r**2 * float(law.density(on_axis(r, dim))), dim, law.radius)
    assert law.integral_pm() == pytest.approx(int_pm, rel=1e-8)
    assert problem.second_moment(t) == pytest.approx(second, rel=1e-8)
    assert problem.generalised_entropy(t) == pytest.approx(int_pm / (m - 1), rel=1e-8)
    # the §4b formula for the unnormalised unit-mass profile
    alpha, _, k = exponents(dim, m)
    q = m / (m - 1)
    tau = problem.profile_time(t)
    formula = (
        tau ** (-alpha * (m - 1))
        * problem.C ** (q + dim / 2)
        * k ** (-dim / 2)
        * math.pi ** (dim / 2)
        * math.gamma(q + 1)
        / math.gamma(q + 1 + dim / 2)
    )
    assert law.integral_pm() == pytest.approx(formula, rel=1e-10)
    # Monte Carlo: ∫P^m = E_P[P^{m-1}]
    x = law.sample(100_000, torch.Generator().manual_seed(3))
    vals = law.density(x) ** (m - 1)
    assert abs(float(vals.mean()) - law.integral_pm()) < 5 * float(vals.std()) / math.sqrt(len(vals))


def test_log_density_outside_support_is_minus_infinity():
    law = BarenblattLaw(3, 2.0, 0.5)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.4, 0.4], [2.0, 0.0, 0.0]])
    lp = law.log_density(x)
    assert torch.isfinite(lp[:2]).all()
    assert bool((lp[2:] == -math.inf).all())
    assert law.outside_support(x).tolist() == [False, False, True, True, True]


def test_self_similar_w2_closed_form_against_sorted_samples():
    problem = make_barenblatt(1, 0)
    s, t = 0.0, 0.02
    gen = torch.Generator().manual_seed(11)
    n = 400_000
    xs = torch.sort(problem.reference(s).sample(n, gen)[:, 0]).values
    xt = torch.sort(problem.reference(t).sample(n, gen)[:, 0]).values
    w2_sorted = math.sqrt(float(((xs - xt) ** 2).mean()))
    assert w2_sorted == pytest.approx(problem.w2_between(s, t), rel=0.01)
    assert problem.w2_between(t, s) == problem.w2_between(s, t)
    assert problem.w2_between(t, t) == 0.0


@pytest.mark.parametrize("dim", [1, 3, 10])
def test_exact_jko_iterate_converges_at_first_order(dim):
    problem = make_barenblatt(dim, 0)
    t = 0.01
    errors = [abs(problem.jko_reference(k, t / k).radius - problem.radius(t)) for k in (10, 20, 40)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.1)
    assert errors[1] / errors[2] == pytest.approx(2.0, rel=0.05)
    # the JKO step expands (the PME spreads) and the k = 0 iterate is P_0
    assert problem.jko_reference(1, 1e-3).radius > problem.radius(0.0)
    assert problem.jko_reference(0, 1e-3).radius == problem.radius(0.0)


def test_exact_jko_step_minimises_the_jko_functional_among_dilations():
    """Among Barenblatt dilations P_{λR}, the JKO objective is smallest at the closed-form λ."""
    dim, m, radius, h = 3, 2.0, 0.4, 5e-4
    law = BarenblattLaw(dim, m, radius)
    rms = math.sqrt(law.second_moment()) / radius

    def objective(r_new: float) -> float:
        return (rms * (r_new - radius)) ** 2 / (2 * h) + BarenblattLaw(dim, m, r_new).generalised_entropy()

    best = jko_radius_step(radius, h, dim, m)
    for factor in (0.98, 0.995, 1.005, 1.02):
        assert objective(best) < objective(best * factor)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="m > 1"):
        make_barenblatt(2, 0, m=1.0)
    with pytest.raises(ValueError, match="support_radius"):
        make_barenblatt(2, 0, convention="fan")
    with pytest.raises(ValueError, match="only used"):
        make_barenblatt(2, 0, support_radius=0.5)
    with pytest.raises(ValueError, match="convention"):
        make_barenblatt(2, 0, convention="mass_two")
    with pytest.raises(ValueError, match="flow time"):
        make_barenblatt(2, 0).reference(-1.0)
    assert make_barenblatt(2, 0, convention="fan", support_radius=0.5).radius(0.0) == pytest.approx(0.5)


def test_registry_and_problem_contract():
    problem = make_problem("barenblatt", 3, 0, {"m": 2.0})
    assert problem.functional == "generalised_entropy" and problem.m == 2.0 and problem.dim == 3
    assert problem.time_of_step(50, 5e-4) == pytest.approx(0.025)
    assert not problem.initial().is_gaussian
    info = problem.describe()
    assert set(info) >= {"m", "t0", "convention", "C", "mass", "radius0"}


def test_knn_integral_estimator_on_exact_samples():
    law = make_barenblatt(2, 0).reference(0.005)
    x = law.sample(8_000, torch.Generator().manual_seed(2))
    assert knn_integral_power(x, 2.0) == pytest.approx(law.integral_pm(), rel=0.04)
    with pytest.raises(ValueError, match="q < k"):
        knn_integral_power(x, 7.0, k=5)


def test_porous_metrics_exact_model_and_outside_support():
    problem = make_barenblatt(2, 0)
    law = problem.reference(0.005)
    gen = torch.Generator().manual_seed(4)
    x = law.sample(4000, gen)
    # a perfect model: its own density at its samples and everywhere
    out = porous_metrics(law, x, law.log_density(x), law.log_density, gen)
    assert out["frac_outside_support"] == 0.0
    assert out["kl_model_exact"] == 0.0 and out["kl_exact_model"] == 0.0
    assert "symkl_mc" not in out  # the generic column of wgfbench.evaluate is not overwritten
    assert out["gen_entropy_rel_err"] < 0.03 and out["second_moment_rel_err"] < 0.05
    assert out["gen_entropy_exact"] == pytest.approx(problem.generalised_entropy(0.005))
    # a model 10 % too wide puts mass outside the exact support: KL(model||exact) is NaN, the fraction is
    # recorded; the reverse KL is finite and positive
    wide = BarenblattLaw(2, 2.0, 1.1 * law.radius)
    y = wide.sample(4000, gen)
    out = porous_metrics(law, y, wide.log_density(y), wide.log_density, gen)
    expected_outside = 1 - stats.beta(1.0, 2.0).cdf(1 / 1.1**2)
    assert out["frac_outside_support"] == pytest.approx(expected_outside, abs=0.015)
    assert math.isnan(out["kl_model_exact"])
    assert out["kl_exact_model"] > 0 and math.isfinite(out["kl_exact_model"])
    assert out["frac_exact_outside_model_support"] == 0.0
    # sample-only call: density columns are NaN, sample columns are filled
    out = porous_metrics(problem.reference(0.005), y, generator=gen)
    assert math.isnan(out["gen_entropy_rel_err"]) and math.isnan(out["kl_model_exact"])
    assert np.isfinite(out["gen_entropy_rel_err_knn"]) and out["second_moment_rel_err"] > 0.1


def test_radial_profile_density_and_figure(tmp_path):
    from wgfbench.reports.profiles import radial_density, radial_profile_figure

    for dim in (1, 3, 6):
        law = BarenblattLaw(dim, 2.0, 0.7)
        value, _ = integrate.quad(lambda r, law=law: float(radial_density(law, np.array([r]))[0]), 0.0, 0.7)
        assert value == pytest.approx(1.0, abs=1e-8)
        # the histogram of |X| of exact samples matches it
        r = law.sample(50_000, torch.Generator().manual_seed(dim)).norm(dim=1).numpy()
        hist, edges = np.histogram(r, bins=20, range=(0.0, 0.7), density=True)
        centers = 0.5 * (edges[1:] + edges[:-1])
        assert np.abs(hist - radial_density(law, centers)).max() < 0.15 * radial_density(law, centers).max()
    problem = make_barenblatt(2, 0)
    radii = {k: problem.reference(k * 1e-3).sample(500, torch.Generator()).norm(dim=1).numpy() for k in (0, 5)}
    written = radial_profile_figure([(problem, radii, 1e-3, "exact samples")], tmp_path / "radial")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in written)


def test_porous_discretisation_errors_are_closed_forms_and_recorded():
    """The exact JKO iterate's own errors against the PDE solution (the time-discretisation floor): W2 between two
    dilations against the 1-d quantile coupling (scipy's Beta quantile function: in 1-d, |X| = R sqrt(B) with
    B ~ Beta(1/2, p + 1)), the relative errors against the laws' closed forms; the evaluation of a porous run
    records them."""
    from wgfbench.evaluate import EvalSpec, evaluate_step
    from wgfbench.metrics.porous import porous_discretisation_metrics
    from wgfbench.registry import make_method

    problem = make_barenblatt(1, 0)
    k, h = 4, 5e-3
    jko, pde = problem.jko_reference(k, h), problem.reference(k * h)
    disc = porous_discretisation_metrics(jko, pde)
    u = (np.arange(200_000) + 0.5) / 200_000

    def quantile(radius: float) -> np.ndarray:
        return np.sign(u - 0.5) * radius * np.sqrt(stats.beta(0.5, 1.0 / (problem.m - 1) + 1).ppf(np.abs(2 * u - 1)))

    w2_quadrature = float(np.sqrt(np.mean((quantile(jko.radius) - quantile(pde.radius)) ** 2)))
    assert disc["w2_jko_pde"] == pytest.approx(w2_quadrature, rel=1e-4)
    assert disc["second_moment_rel_err_jko_pde"] == pytest.approx(abs(jko.second_moment() / pde.second_moment() - 1))
    assert disc["gen_entropy_rel_err_jko_pde"] > 0 and disc["w2_jko_pde"] > 0
    method = make_method("identity", problem, h, {}, seed=0)
    for _ in range(k):
        method.step()
    row = evaluate_step(problem, method, k, h, EvalSpec(n_samples=500, n_w2=100, n_mc=100))
    for key, value in disc.items():
        assert row[key] == pytest.approx(value)


def test_method_colours_are_distinct() -> None:
    """Known methods get colours > 0.25 apart in RGB (the colour-blind palette's orange and vermillion, once
    both used, are 0.20 apart); a few unknown methods get further distinct ones (> 0.15)."""
    import itertools

    from wgfbench.registry import methods
    from wgfbench.reports.figures import method_colors

    METHOD_ORDER = list(methods())

    def dist(a, b) -> float:
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5

    colors = method_colors([*METHOD_ORDER, "new_a", "new_b", "new_c"])
    assert set(METHOD_ORDER) <= set(colors)
    for a, b in itertools.combinations(METHOD_ORDER, 2):
        assert dist(colors[a], colors[b]) > 0.25, (a, b)
    for (a, ca), (b, cb) in itertools.combinations(colors.items(), 2):
        assert dist(ca, cb) > 0.15, (a, b)


def test_porous_second_moment_uses_every_particle_and_its_floor_that_many() -> None:
    """The second moment is a moment statistic: evaluation takes it over every particle a method holds (not over the
    n_mc density sample), and its simulated floor is at that sample size (issue 11 item 1); the kNN entropy keeps
    the density sample, with its floor at that size."""
    from wgfbench.evaluate import EvalSpec, evaluate_step
    from wgfbench.metrics.porous import second_moment_rel_err
    from wgfbench.registry import make_method

    problem = make_barenblatt(2, 0)
    h = 5e-4
    params = {"n_particles": 6000, "iters_per_step": 2, "batch_size": 128, "dual_width": 8, "icnn_pretrain_iters": 0}
    method = make_method("variational_jko", problem, h, {"map": "icnn", "icnn_layers": 1, **params}, seed=0)
    method.step()
    held = method.evaluation_particles()
    assert held is not None and held.shape[0] == 6000
    spec = EvalSpec(n_samples=500, n_w2=100, n_mc=200, sample_metrics=("sw2",))
    row = evaluate_step(problem, method, 1, h, spec)
    pde = problem.reference(problem.time_of_step(1, h))
    assert row["second_moment_rel_err"] == pytest.approx(second_moment_rel_err(pde, held), rel=1e-12)
    # the floor is that of 6000 particles: about sqrt(6000 / 200) = 5.5 times below the floor of the 200-sample
    # density draw the metric used before
    from wgfbench.metrics.floors import statistic_floor

    def stat(y):
        return second_moment_rel_err(pde, y)

    at_n_mc = statistic_floor("second_moment_rel_err", stat, pde, 200, n_reps=20, seed=2024)
    assert row["second_moment_rel_err_floor_q95"] < 0.4 * at_n_mc.q95
    exact = pde.sample(6000, torch.Generator().manual_seed(1))
    assert second_moment_rel_err(pde, exact) < 3 * row["second_moment_rel_err_floor_q95"]
