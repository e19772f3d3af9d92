"""Hertrich & Gruhlke's targets: layouts, normalised densities that match their exact samplers, problem contract."""

from __future__ import annotations

import math

import pytest
import torch

from wgfbench.problems.hg_targets import FunnelLaw, MustacheLaw, shifted_eight_modes_means
from wgfbench.registry import make_problem, problems

torch.set_num_threads(1)
F64 = torch.float64
TARGETS = {"hg_8modes": 2, "hg_8peaky": 2, "hg_gmm": 10, "hg_funnel": 10, "hg_mustache": 2}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_problem_contract_of_a_stationary_target(name):
    assert name in problems()
    problem = make_problem(name, TARGETS[name], 0)
    assert problem.functional == "kl" and problem.temperature == 1.0 and problem.transient is False
    assert problem.reference(0.0) is problem.reference(3.0) and problem.jko_reference(2, 0.1) is None
    assert problem.initial().is_gaussian and torch.equal(problem.initial().cov, torch.eye(problem.dim, dtype=F64))
    x = problem.reference(1.0).sample(64, torch.Generator().manual_seed(0), dtype=torch.float32)
    assert x.dtype == torch.float32 and x.shape == (64, problem.dim)
    xr = x.clone().requires_grad_(True)
    lt = problem.log_target(xr)
    assert lt.dtype == torch.float32 and lt.shape == (64,)
    (g,) = torch.autograd.grad(lt.sum(), xr)
    assert bool(torch.isfinite(g).all())
    torch.testing.assert_close(lt.detach().to(F64), problem.reference(0.0).log_density(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["hg_8modes", "hg_8peaky", "hg_mustache"])
def test_two_dimensional_targets_refuse_other_dimensions(name):
    with pytest.raises(ValueError, match="2-dimensional"):
        make_problem(name, 3, 0)


def test_eight_modes_layout():
    means = shifted_eight_modes_means()
    torch.testing.assert_close((means - torch.tensor([-1.0, 0.0], dtype=F64)).norm(dim=1), torch.ones(8, dtype=F64))
    assert means[0].tolist() == pytest.approx([0.0, 0.0]) and means[4].tolist() == pytest.approx([-2.0, 0.0], abs=1e-12)
    modes, peaky = make_problem("hg_8modes", 2, 0).target(), make_problem("hg_8peaky", 2, 0).target()
    assert float(modes.stds[0]) ** 2 == pytest.approx(0.01) and float(peaky.stds[0]) ** 2 == pytest.approx(0.005)


def test_gmm_d_layout_is_a_pure_function_of_dim_and_seed():
    a, b, c = (make_problem("hg_gmm", 20, s).target() for s in (0, 0, 1))
    assert a.n_components == 10 and float(a.stds[0]) ** 2 == pytest.approx(0.01)
    assert torch.equal(a.means, b.means) and not torch.equal(a.means, c.means)
    assert float(a.means.abs().max()) <= 1.0


def _box_probability(law, box, n_grid=801):
    (x0, x1), (y0, y1) = box
    gx, gy = torch.linspace(x0, x1, n_grid, dtype=F64), torch.linspace(y0, y1, n_grid, dtype=F64)
    dens = law.log_density(torch.cartesian_prod(gx, gy)).exp().reshape(n_grid, n_grid)
    w = torch.ones(n_grid, dtype=F64)
    w[0] = w[-1] = 0.5  # trapezoid rule
    return float(w @ dens @ w) * float(gx[1] - gx[0]) * float(gy[1] - gy[0])


@pytest.mark.parametrize(
    "law, box",
    [
        (MustacheLaw(), ((-0.8, 0.6), (-1.0, 1.5))),
        (MustacheLaw(), ((1.0, 2.0), (0.0, 4.0))),
        (FunnelLaw(2), ((-2.0, 1.0), (-1.0, 1.0))),
        (make_problem("hg_8modes", 2, 0).target(), ((-0.3, 0.3), (-0.4, 0.4))),
    ],
)
def test_exact_sampler_matches_the_density(law, box):
    """P(X in box) from 200k exact samples against the quadrature of exp(log_density) over the box."""
    x = law.sample(200_000, torch.Generator().manual_seed(0))
    (x0, x1), (y0, y1) = box
    inside = ((x[:, 0] > x0) & (x[:, 0] < x1) & (x[:, 1] > y0) & (x[:, 1] < y1)).to(F64)
    prob = _box_probability(law, box)
    se = math.sqrt(prob * (1 - prob) / x.shape[0])
    assert prob > 0.02 and abs(float(inside.mean()) - prob) < 4 * se, (float(inside.mean()), prob)


@pytest.mark.parametrize(
    "law, box", [(MustacheLaw(), ((-6.0, 6.0), (-6.0, 8.0))), (FunnelLaw(2), ((-12, 12), (-8, 8)))]
)
def test_densities_are_normalised(law, box):
    """Most of the mass lies in these boxes (the rest is the mustache's and the funnel's far tails)."""
    mass = _box_probability(law, box, n_grid=1601)
    x = law.sample(200_000, torch.Generator().manual_seed(1))
    (x0, x1), (y0, y1) = box
    inside = float(((x[:, 0] > x0) & (x[:, 0] < x1) & (x[:, 1] > y0) & (x[:, 1] < y1)).to(F64).mean())
    assert mass == pytest.approx(inside, abs=3e-3) and mass > 0.9


def test_mustache_is_a_volume_preserving_transform_of_a_correlated_gaussian():
    law = MustacheLaw()
    x = torch.randn(50, 2, dtype=F64) * 2
    jac = torch.func.vmap(torch.func.jacrev(lambda v: law.transform(v.unsqueeze(0)).squeeze(0)))(x)
    torch.testing.assert_close(torch.linalg.det(jac), torch.ones(50, dtype=F64))
    torch.testing.assert_close(law.log_density(x), law.gaussian.log_density(law.transform(x)))
    w = law.transform(law.sample(100_000, torch.Generator().manual_seed(2)))
    torch.testing.assert_close(torch.cov(w.T), law.gaussian.cov, rtol=0, atol=0.02)


def test_funnel_density_against_its_two_stage_definition():
    law = FunnelLaw(5)
    x = law.sample(1000, torch.Generator().manual_seed(3))
    v = x[:, 0]
    expected = torch.distributions.Normal(0.0, 3.0).log_prob(v) + torch.distributions.Normal(
        0.0, torch.exp(v / 2).unsqueeze(1)
    ).log_prob(x[:, 1:]).sum(1)
    torch.testing.assert_close(law.log_density(x), expected)
    assert float(v.var()) == pytest.approx(9.0, rel=0.15)
