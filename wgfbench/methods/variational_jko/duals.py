r"""The duals of the variational JKO: what depends on the functional F (Fan, Zhang, Taghvaei & Chen, ICML 2022).

Each JKO step of the variational JKO is a min-max over the map T and a dual function (paper Eq. 8), built on
the variational (Nguyen-Wainwright-Jordan) form of F. A dual object holds the reference measure Gamma and its
refit, samples Gamma, gives the dual's loss (minimised over the dual network with T(y) fixed) and the energy
term of the T-loss. The training loop is shared (:mod:`wgfbench.methods.variational_jko.method`).

**KL** (:class:`KLDual`), F = tau KL(P || Q): the paper (Cor. 3.3) changes the reference measure to the Gaussian
Gamma_k = N(mean, cov of P_k):

    KL(T#P_k || Q) = KL(T#P_k || Gamma_k) + E_{T#P_k}[log Gamma_k - log Q],
    KL(P || Gamma)  = sup_{r > 0} 1 + E_P[log r] - E_Gamma[r]        (log-ratio NWJ form),

so one step is  min_T max_r  E_y[|y - T y|^2/(2 h) + tau (log r(Ty) + log Gamma(Ty) - log Q(Ty))]
- tau E_{z~Gamma}[r(z)], with h the JKO step size. Only the unnormalised log Q is needed; for OU,
tau log Q = -V. Before the first step Gamma_0 = N(0, ``gamma0_var`` I).

**Generalised entropy** (:class:`EntropyDual`), F = G(P) = 1/(m-1) ∫P^m (porous medium): the paper (Cor. 3.4,
Eq. 10) uses Gamma = Unif(Omega_k) with density q = 1/|Omega_k| and the dual

    G(P) = sup_g  q^{m-1} ( m/(m-1) E_P[g^{m-1}] - E_Gamma[g^m] ),   optimum g = p/q,

valid when Omega_k contains the support of T#P_k (the paper calls the dual function h; here g, so that h is
only ever the JKO step size). Writing rho = q g (the optimum is rho = p, the density itself) this is
sup_rho m/(m-1) E_P[rho^{m-1}] - |Omega| E_Gamma[rho^m], the same problem in a parameterisation that does not
change scale when the box is refit. The network outputs rho = s_k net(x), with s_k fixed at each refit:
``dual_scale="moment"`` (default) s_k = (4 pi)^{-d/2} det(S_k)^{-1/2} = E[g] for g the moment-fit Gaussian of
P_k (the typical density value, so net = O(1) in every dimension); ``dual_scale="box"`` s_k = q, i.e. net = g,
Fan's parameterisation exactly. net is linear at the output (a final PReLU, as the paper's) for m = 2, where the
dual is a concave quadratic, and softplus (rho > 0) otherwise. The T-loss energy term is m/(m-1) E[rho(Ty)^{m-1}].

Points outside the reference domain (in practice only outliers, thanks to the 1.5 margin of the box) enter the
dual and the energy at their projection onto the domain, where rho is ~0 (Gamma samples there teach it so),
with the projection detached: they neither blow up the dual (a point of P outside the support of Gamma would
make the sup infinite) nor get a force from the energy term (only the transport term acts on them). The
fraction of particles outside is logged (``box_outside_frac``). A confinement lambda/2 ∫|x|^2 dP
(``problem.confinement``, the porous medium dP/dt = ΔP^m + lambda div(x P)) is a potential energy with no dual:
lambda/2 E|Ty|^2 joins the energy term, at every Ty (outside the box too).

**Interaction** (``kl_interaction``, :class:`KLDual` with the problem's pair potential W): F = tau KL(P || Q) +
½ ∫∫ W(x - x') dP dP. The pair term is estimated on the minibatch, whose rows are independent draws of P_k, by
pairing each Ty_i with Ty_{i+1} (cyclically): ½ mean_i W(Ty_i - Ty_{i+1}), unbiased for ½ E W(TX - TX'); its
gradient in T(x) is (∇W * T#P_k)(Tx) for an even W, the first variation's. **Time-dependent targets**: the method
hands the dual the static problem of the step's end, ``problem.at_time(t_{k+1})`` (:meth:`KLDual.set_problem`).

**Jensen-Shannon** (:class:`JSDDual`), F = D_f(P || Q) with f(x) = x log x - (x + 1) log((1 + x)/2) (the paper's
Cor. 3.5; Gamma = Q, the target itself, known by an exact sampler and a normalised density). Derived here:
f'(x) = log(2x/(1 + x)) < log 2, and f*(y) = sup_x xy - f(x) is attained at e^y = 2x/(1 + x), i.e.
x = e^y/(2 - e^y), where f(x) = (x + 1) y - log x, so

    f*(y) = log x - y = -log(2 - e^y),   y < log 2,
    D_f(P || Q) = sup_{g < log 2}  E_P[g] + E_Q[log(2 - e^g)],   optimum g* = f'(p/q) = log(2p/(p + q)),

whose value at g* is E_P[log(2p/(p+q))] + E_Q[log(2q/(p+q))] = D_f. With g = log 2 + log sigmoid(u) (every
g < log 2 is one; u the network's output) 2 - e^g = 2 sigmoid(-u), so the dual is the logistic (GAN
discriminator) objective plus 2 log 2,

    D_f(P || Q) = sup_u  E_P[log 2 sigmoid(u)] + E_Q[log 2 sigmoid(-u)],   optimum u* = log(p/q),

and the T-loss term of F(T#P_k) is E_y[log 2 sigmoid(u(Ty))] (the Q-term does not depend on T). At u* its
gradient in Ty is ∇ f'(p/q)(Ty), the first variation's: the flow dp/dt = div(p ∇ log(2p/(p+q)))
(:mod:`wgfbench.problems.jsd_grid`). Q samples are drawn from ``problem.target()`` with torch's global RNG, as
the Gaussian reference's are, and Q needs no refit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wgfbench.methods.base import UnsupportedProblem
from wgfbench.methods.variational_jko.references import GaussianReference, UniformReference, fit_uniform_reference
from wgfbench.nets.mlp import RatioNet, mlp_trunk
from wgfbench.problems.gaussian import moment_fit

if TYPE_CHECKING:
    from wgfbench.methods.variational_jko.method import VariationalJKOConfig

LOG2 = math.log(2.0)


def stacked(fn: Callable[[Tensor], Tensor], a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(a), fn(b)) by one call on the rows of [a; b], for a row-wise fn (a network without batch statistics)."""
    out = fn(torch.cat([a, b]))
    return out[: a.shape[0]], out[a.shape[0] :]


class KLDual:
    """F = tau KL(P || Q) with Gamma = moment-fit Gaussian and the log-ratio NWJ dual (module docstring)."""

    def __init__(self, problem, config: VariationalJKOConfig, device: torch.device, dtype: torch.dtype) -> None:
        d = problem.dim
        self.interaction = problem.interaction if problem.functional == "kl_interaction" else None
        self.set_problem(problem)
        self.device, self.dtype = device, dtype
        self.net = RatioNet(d, config.dual_width, config.dual_hidden, config.ratio).to(device, dtype)
        eye = torch.eye(d, dtype=torch.float64)
        self.gamma = GaussianReference(torch.zeros(d, dtype=torch.float64), config.gamma0_var * eye, device, dtype)

    def set_problem(self, problem) -> None:
        """The static KL problem whose log_target and temperature the energy uses (a time-dependent problem's
        ``at_time(t_{k+1})`` for step k -> k+1)."""
        self.problem = problem
        self.tau = float(problem.temperature)

    def refit(self, particles: Tensor) -> None:
        fit = moment_fit(particles)
        self.gamma = GaussianReference(fit.mean, fit.cov, self.device, self.dtype)

    def sample_reference(self, n: int) -> Tensor:
        return self.gamma.sample(n)

    def dual_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        """- (E_P[log r] - E_Gamma[r]): minimised over r (ascent on the NWJ lower bound).

        r is evaluated on [Ty; z] in one pass (:func:`stacked`): the same values as two passes, half the
        operator calls (kernel launches on a GPU).
        """
        r_ty, r_z = stacked(self.net.ratio, ty, z)
        return -self.net.log_of(r_ty).mean() + r_z.mean()

    def energy(self, ty: Tensor) -> Tensor:
        """tau E[log r(Ty) + log Gamma(Ty) - log Q(Ty)] (+ ½ E W(Ty - Ty') for an interaction): the T-loss term of
        F(T#P_k)."""
        energy = self.net.log_ratio(ty) + self.gamma.log_density(ty) - self.problem.log_target(ty)
        out = self.tau * energy.mean()
        if self.interaction is not None:
            out = out + pair_energy(self.interaction, ty)
        return out

    def objective(self, ty: Tensor, z: Tensor) -> Tensor:
        """The dual's estimate of F(T#P_k) up to a constant of the step (the adaptive budget's probe value):

        :meth:`energy` + tau (1 - E_Gamma r(z)) = tau (1 + E log r(Ty) - E_Gamma r(z) + E[log Gamma(Ty) - log Q(Ty)]),
        the NWJ lower bound on KL(T#P_k || Gamma_k) plus the change-of-reference term; with the optimal r it is
        tau KL(T#P_k || Q) up to Q's unknown normaliser.
        """
        return self.energy(ty) + self.tau * (1.0 - self.net.ratio(z).mean())

    def diagnostics(self, particles: Tensor) -> dict[str, float]:
        return {}


def pair_energy(interaction: Callable[[Tensor], Tensor], ty: Tensor) -> Tensor:
    """½ mean_i W(Ty_i - Ty_{i+1}) (cyclic pairs of independent rows): unbiased for ½ E W(TX - TX')."""
    return 0.5 * interaction(ty - torch.roll(ty, 1, dims=0)).mean()


class DensityNet(nn.Module):
    """rho(x) = scale * out(u(x)), u an MLP trunk (PReLU), out = PReLU (m = 2) or softplus (rho > 0)."""

    def __init__(self, dim: int, width: int, n_hidden: int, positive: bool):
        super().__init__()
        self.trunk = mlp_trunk(dim, 1, width, n_hidden)
        self.out = nn.Softplus() if positive else nn.PReLU()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.out(self.trunk(x)).squeeze(-1)


class EntropyDual:
    """F = 1/(m-1) ∫P^m with Gamma uniform on a robust box and the density dual rho (module docstring)."""

    def __init__(self, problem, config: VariationalJKOConfig, device: torch.device, dtype: torch.dtype) -> None:
        self.m = float(problem.m)
        if not self.m > 1:
            raise UnsupportedProblem(f"generalised entropy needs m > 1, got {self.m}")
        self.config = config
        self.net = DensityNet(problem.dim, config.dual_width, config.dual_hidden, positive=self.m != 2.0).to(
            device, dtype
        )
        self.confinement = float(problem.confinement)
        self.gamma: UniformReference | None = None
        self.outside_frac = math.nan

    def refit(self, particles: Tensor) -> None:
        cfg = self.config
        self.gamma = fit_uniform_reference(particles, cfg.box_scale, cfg.box_quantile, cfg.reference_shape)
        self.outside_frac = float((self.gamma.norm(particles) > self.gamma.half_width).double().mean())
        if cfg.dual_scale == "box":
            log_scale = -self.gamma.log_volume
        else:
            d = particles.shape[1]
            _, logdet = torch.linalg.slogdet(moment_fit(particles).cov)
            log_scale = -0.5 * d * math.log(4 * math.pi) - 0.5 * float(logdet)
        self.net.scale.fill_(math.exp(log_scale))

    def sample_reference(self, n: int) -> Tensor:
        return self.gamma.sample(n)

    def _power_m_minus_1(self, rho: Tensor) -> Tensor:
        return rho if self.m == 2.0 else rho ** (self.m - 1)

    def _inside(self, x: Tensor) -> Tensor:
        """x where it lies in Omega; elsewhere its projection onto Omega, detached (no force there)."""
        outside = (self.gamma.norm(x) > self.gamma.half_width_t).unsqueeze(-1)
        return torch.where(outside, self.gamma.project(x).detach(), x)

    def _energy_of(self, rho: Tensor) -> Tensor:
        """m/(m-1) E[rho^{m-1}] from values rho of the network at the (projected) samples."""
        return self.m / (self.m - 1) * self._power_m_minus_1(rho).mean()

    def energy(self, ty: Tensor) -> Tensor:
        """m/(m-1) E[rho(Ty)^{m-1}], Ty outside Omega taken at its projection (+ confinement/2 E|Ty|^2, at every
        Ty): the T-loss term of F(T#P_k)."""
        out = self._energy_of(self.net(self._inside(ty)))
        if self.confinement:
            out = out + 0.5 * self.confinement * (ty**2).sum(-1).mean()
        return out

    def dual_value(self, ty: Tensor, z: Tensor) -> Tensor:
        """m/(m-1) E_P[rho^{m-1}] - |Omega| E_Gamma[rho^m]: a lower bound on G(P), tight at rho = p.

        rho is evaluated on [Ty (projected onto Omega); z] in one pass (:func:`stacked`).
        """
        rho_ty, rho_z = stacked(self.net, self._inside(ty), z)
        return self._energy_of(rho_ty) - self.gamma.volume_t * (rho_z**self.m).mean()

    def dual_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        return -self.dual_value(ty, z)

    def objective(self, ty: Tensor, z: Tensor) -> Tensor:
        """The dual's estimate of G(T#P_k) (the adaptive budget's probe value): :meth:`energy` - |Omega| E_Gamma[rho^m],
        i.e. :meth:`dual_value` (the same lower bound, tight at rho = p)."""
        return self.energy(ty) - self.gamma.volume_t * (self.net(z) ** self.m).mean()

    @torch.no_grad()
    def diagnostics(self, particles: Tensor, n: int = 16_384) -> dict[str, float]:
        """The dual's estimate of G at the new particles (before the refit), and the reference's size."""
        idx = torch.randperm(particles.shape[0], device=particles.device)[:n]
        value = float(self.dual_value(particles[idx], self.sample_reference(n)))
        return {"gen_entropy_dual": value, "box_half_width": self.gamma.half_width}


class LogitNet(nn.Module):
    """u(x): an MLP trunk (PReLU) with one linear output, the JSD dual's logit (module docstring)."""

    def __init__(self, dim: int, width: int, n_hidden: int):
        super().__init__()
        self.trunk = mlp_trunk(dim, 1, width, n_hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x).squeeze(-1)


class JSDDual:
    """F = D_f(P || Q), f the Jensen-Shannon generator, Gamma = Q, the logistic dual (module docstring)."""

    def __init__(self, problem, config: VariationalJKOConfig, device: torch.device, dtype: torch.dtype) -> None:
        self.target = problem.target()
        self.device, self.dtype = device, dtype
        self.net = LogitNet(problem.dim, config.dual_width, config.dual_hidden).to(device, dtype)

    def refit(self, particles: Tensor) -> None:
        """Gamma = Q does not move."""

    def sample_reference(self, n: int) -> Tensor:
        return self.target.sample(n, None, dtype=self.dtype).to(self.device)

    def critic(self, x: Tensor) -> Tensor:
        """g(x) = log 2 + log sigmoid(u(x)), the estimate of f'(p/q) = log(2p/(p+q))."""
        return LOG2 + F.logsigmoid(self.net(x))

    def dual_value(self, ty: Tensor, z: Tensor) -> Tensor:
        """E_P[log 2 sigmoid(u)] + E_Q[log 2 sigmoid(-u)]: a lower bound on D_f(P || Q), tight at u = log(p/q).

        u is evaluated on [Ty; z] in one pass (:func:`stacked`).
        """
        u_ty, u_z = stacked(self.net, ty, z)
        return 2 * LOG2 + F.logsigmoid(u_ty).mean() + F.logsigmoid(-u_z).mean()

    def dual_loss(self, ty: Tensor, z: Tensor) -> Tensor:
        return -self.dual_value(ty, z)

    def energy(self, ty: Tensor) -> Tensor:
        """E[log 2 sigmoid(u(Ty))]: the T-loss term of D_f(T#P_k || Q)."""
        return self.critic(ty).mean()

    def objective(self, ty: Tensor, z: Tensor) -> Tensor:
        """The dual's estimate of D_f(T#P_k || Q) (the adaptive budget's probe value): :meth:`dual_value`."""
        return self.dual_value(ty, z)

    @torch.no_grad()
    def diagnostics(self, particles: Tensor, n: int = 16_384) -> dict[str, float]:
        """The dual's estimate of D_f(P_{k+1} || Q) at the new particles."""
        idx = torch.randperm(particles.shape[0], device=particles.device)[:n]
        return {"jsd_dual": float(self.dual_value(particles[idx], self.sample_reference(n)))}


DUALS: dict[str, type] = {
    "kl": KLDual,
    "kl_interaction": KLDual,
    "generalised_entropy": EntropyDual,
    "jsd": JSDDual,
}
