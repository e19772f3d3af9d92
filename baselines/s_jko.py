r"""S-JKO, the semi-dual JKO of Choi, Choi & Kang (ICML 2024, arXiv 2402.05443): a JKO step as unbalanced OT.

**A JKO step of a KL as a source-fixed unbalanced OT problem** (their §3, re-derived here). For
F = tau KL(P || Q) the step P_{k+1} = argmin_P W2^2(P, P_k)/(2h) + F(P) is, divided by tau, the JKO step of
KL(. || Q) with step h tau. With the cost c(x, y) = |x - y|^2 / (2 h tau), it is

    min over couplings pi with first marginal P_k of  ∫ c dpi + D_f(pi_1 || Q),   f(u) = u log u - u + 1,

(D_f = KL on probabilities, and pi_1 is one since pi_0 = P_k is). The variational form
D_f(rho || Q) = sup_u ∫ u drho - ∫ f*(u) dQ with f*(s) = e^s - 1, and the exchange of the inf over pi with the
sup over u, leave for each x the inner inf_y c(x, y) + u(y); with v = -u this is the UOT semi-dual

    JKO / tau = sup_v  E_{x~P_k}[ v^c(x) ] - E_{y~Q}[ Psi*(-v(y)) ],   v^c(x) = inf_y c(x, y) - v(y),
    Psi*(s) = e^s - 1.

At the optimum u = f'(dP_{k+1}/dQ), i.e. v = -log(p_{k+1}/q), and the minimiser y = T(x) of c(x, .) - v satisfies
(T x - x)/h = tau grad v(T x) = -tau grad log(p_{k+1}/q)(T x): the JKO optimality condition. S-JKO replaces the
inner inf by a generator y = G(x) and alternates, per iteration, one Adam step on each of

    potential:  E_{y~Q}[ e^{-v(y)} - 1 ] + E[ v(G(x)) ]                 (minus the semi-dual, G fixed),
    generator:  E[ |G(x) - x|^2 / (2h) - tau v(G(x)) ]                  (tau times the inner objective, v fixed).

**One generator from the source** (their reparameterisation). P_k is the law of G_k(X0, Z), X0 ~ P_0 and
Z ~ N(0, I) of ``noise_dim`` coordinates: a single generator G(x0, z), warm-started at every step (its weights and
the Adam states carry over), is compared with a frozen copy G_old of itself at the end of the previous step
(at step 0, G_old(x0, z) = x0). The transport term pairs G(x0, z) with G_old(x0, z') through the shared x0 and
independent noise draws z, z' (as their code does): a coupling of P_k and the new law, so its cost is at least
W2^2, with equality when T_k o G_old is a function of x0 alone (a generator that learned to ignore its noise).
So **sampling P_k is one generator pass whatever k** (``extra["sample_network_passes"] = 1``), and a training
iteration evaluates G, G_old and v once each: the cost of a step does not grow with k, O(K) for a run, where
the pushforward methods regenerate through k maps (O(K^2)); the step's ``regen_s`` is the time to freeze G_old.

**Their step-size convention.** Their cost is the *mean* over coordinates, c'(x, y) = |x - y|^2 / d, in the loss
c'/(2 h') - v with tau = 1: that is |x - y|^2 / (2 d h'), the step h = d h' in the W2^2/(2h) convention used
here, i.e. their h' = h/d. This module's ``step_size`` is h itself (the transport term is the *sum* over
coordinates over 2h); tests/test_s_jko.py tells h from h/d on a Gaussian case against the exact JKO iterate.

**Networks** (:mod:`wgfbench.nets.silu_resnet`): v and G residual SiLU MLPs of width ``width`` (theirs: 128, three
blocks of three layers), G(x0, z) = head(trunk(x0) + embed(z)); ``skip`` adds x0 to G's output with the last
layer zero-initialised, so that G starts at the identity (their G is not residual and starts as a random map).

**What their repository holds and what it does not.** Their code (``train.py``, toy and image models) has the
losses above, Adam with betas (0.5, 0.9), the potential's R1 penalty (weight 0.2) on data samples, the data noise
of scale 1/(32 (k+1)) and a longer first phase (20,000 iterations by default, later phases 400). The toy runs'
settings, batch 400, lr_G 1e-4, lr_D 2e-5 and 10 phases of 5000 iterations, are not its defaults (batch 256,
2e-4, 1e-4) and come with no script. It has **no OU experiment**: the OU appendix's instances (Mokrov et al.'s),
step size, iterations per step, and how a density-free generator's SymKL was computed are not in it. Chosen here:
Mokrov's instances and step (h = 0.05 in this convention), the toy runs' settings for the per-step budget
(:data:`S_JKO_PAPER_PARAMS`: 5000 iterations per step, the first step as long as the others), and the suite's
sample-based and moment-fit metrics.

**Defaults: a CPU configuration** (:data:`S_JKO_CPU_PARAMS` spells them out): width 64 with one block, the
identity start (``skip``), Adam 1e-3 for both networks, no R1 penalty and no data noise (on OU a noise of
variance up to 1e-3 biases Q), 300 iterations per step (600 for the first). ``S_JKO_PAPER_PARAMS`` is their
code's protocol as far as it goes (above).

**Needs** an exact sampler of the target Q (:class:`~wgfbench.problems.base.SampledTargetProblem`: OU's
stationary Gaussian, a mixture target); a problem without one is refused at validation. It has no density.
All randomness of training (P_0, noise and Q draws) comes from the method's generator, so a run restored from
``state_dict`` continues exactly.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Annotated, Any, ClassVar

import torch
from torch import Tensor

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, check_finite
from wgfbench.nets.adam import adam
from wgfbench.nets.silu_resnet import NoisyGenerator, SiLUPotential
from wgfbench.params import Count, NonNegative, NonNegCount, Positive, Range
from wgfbench.problems.base import SampledTargetProblem
from wgfbench.timing import timed

AdamBeta = Annotated[float, Range(0.0, 0.9999)]

# Their code's protocol (module docstring): networks, optimiser, batch, penalties, the toy runs' 5000 iterations.
S_JKO_PAPER_PARAMS: dict[str, Any] = {
    "width": 128,
    "n_blocks": 3,
    "block_layers": 3,
    "noise_dim": None,
    "skip": False,
    "batch_size": 400,
    "iters_per_step": 5000,
    "first_step_iters": 0,
    "lr_g": 1e-4,
    "lr_d": 2e-5,
    "adam_betas": (0.5, 0.9),
    "r1_weight": 0.2,
    "data_noise": True,
}


@dataclasses.dataclass(frozen=True)
class SJKOConfig(MethodConfig):
    """Defaults: the CPU configuration (module docstring); S_JKO_PAPER_PARAMS is their code's protocol."""

    width: Count = 64
    n_blocks: Count = 1
    block_layers: Count = 3
    noise_dim: NonNegCount | None = None  # None: d (their toy generator); 0: a deterministic map of x0
    skip: bool = True  # G = x0 + net, starting at the identity (their G: no skip)
    batch_size: Count = 400
    iters_per_step: Count = 300
    first_step_iters: NonNegCount = 600  # iterations of the first step (0: iters_per_step)
    lr_g: Positive = 1e-3
    lr_d: Positive = 1e-3
    adam_betas: tuple[AdamBeta, AdamBeta] = (0.5, 0.9)
    r1_weight: NonNegative = 0.0  # R1 penalty r1_weight/2 E_Q |grad v|^2 (their code: 0.2)
    data_noise: bool = False  # Q samples + N(0, (1/(32 (k+1)))^2 I) in the potential's loss (their code: on)
    chunk: Count = 65_536  # rows per generator pass when sampling

    def __post_init__(self) -> None:  # a suite gives lists; keep the frozen config hashable
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))


# The defaults spelled out (the CPU configuration).
S_JKO_CPU_PARAMS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(SJKOConfig) if f.name not in ("device", "dtype", "chunk")
}


class SJKO(JKOMethod):
    """Choi, Choi & Kang's S-JKO: a potential and one generator from the source, per step (module docstring)."""

    name = "s_jko"
    color = "#a11d21"  # dark red (the palette's vermillion is too close to jko_icnn_exact's orange)
    Config = SJKOConfig
    functionals = frozenset({"kl"})
    requires = (SampledTargetProblem,)
    has_density = False
    accelerated = True
    tiny_params: ClassVar[dict[str, Any]] = {
        "width": 16,
        "batch_size": 64,
        "iters_per_step": 3,
        "first_step_iters": 0,
        "r1_weight": 0.2,
        "data_noise": True,
    }
    timing_params: ClassVar[dict[str, Any]] = {"iters_per_step": 20, "first_step_iters": 0}

    def __init__(self, problem, step_size: float, config: SJKOConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        d = problem.dim
        self.tau = float(problem.temperature)
        self.noise_dim = d if config.noise_dim is None else int(config.noise_dim)
        self.initial = problem.initial()
        self.target = problem.target()
        nets = {"width": config.width, "n_blocks": config.n_blocks, "block_layers": config.block_layers}
        self.G = NoisyGenerator(d, self.noise_dim, skip=config.skip, **nets).to(self.device, self.dtype)
        self.v = SiLUPotential(d, **nets).to(self.device, self.dtype)
        self.G_old: NoisyGenerator | None = None  # None at step 0: G_old(x0, z) = x0
        self.opt_g = adam(self.G.parameters(), lr=config.lr_g, betas=config.adam_betas)
        self.opt_v = adam(self.v.parameters(), lr=config.lr_d, betas=config.adam_betas)

    # --- draws (all from the method's generator, on the CPU, then moved) --------------------------------------------
    def _noise(self, n: int, generator: torch.Generator) -> Tensor | None:
        if self.noise_dim == 0:
            return None
        return torch.randn(n, self.noise_dim, generator=generator, dtype=self.dtype).to(self.device)

    def _source(self, n: int, generator: torch.Generator) -> Tensor:
        return self.initial.sample(n, generator, dtype=self.dtype).to(self.device)

    def _old(self, x0: Tensor, z: Tensor | None) -> Tensor:
        return x0 if self.G_old is None else self.G_old(x0, z)

    # --- one iteration ----------------------------------------------------------------------------------------------
    def _potential_step(self) -> float:
        """One Adam step on E_Q[e^{-v(y)} - 1] + E[v(G(x0, z))] (+ the R1 penalty)."""
        cfg, n, gen = self.config, self.config.batch_size, self.generator
        y = self.target.sample(n, gen, dtype=self.dtype).to(self.device)
        if cfg.data_noise:
            scale = 1.0 / (32.0 * (self.k + 1))
            y = y + scale * torch.randn(y.shape, generator=gen, dtype=self.dtype).to(self.device)
        x0 = self._source(n, gen)
        z = self._noise(n, gen)
        with torch.no_grad():
            fake = self.G(x0, z)
        self.v.requires_grad_(True)
        if cfg.r1_weight > 0:
            y.requires_grad_(True)
        v_y = self.v(y)
        loss = torch.expm1(-v_y).mean() + self.v(fake).mean()
        if cfg.r1_weight > 0:
            (grad,) = torch.autograd.grad(v_y.sum(), y, create_graph=True)
            loss = loss + 0.5 * cfg.r1_weight * (grad**2).sum(-1).mean()
        self.opt_v.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_v.step()
        return loss.item()

    def _generator_step(self) -> tuple[float, float]:
        """One Adam step on E[|G(x0, z) - G_old(x0, z')|^2 / (2h) - tau v(G(x0, z))]; (loss, transport)."""
        n, gen = self.config.batch_size, self.generator
        x0 = self._source(n, gen)
        z_old = self._noise(n, gen)
        z = self._noise(n, gen)
        with torch.no_grad():
            old = self._old(x0, z_old)
        self.v.requires_grad_(False)
        g = self.G(x0, z)
        transport = ((g - old) ** 2).sum(-1).mean() / (2.0 * self.step_size)
        loss = transport - self.tau * self.v(g).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.v.requires_grad_(True)
        return loss.item(), transport.item()

    def _advance(self) -> StepStats:
        cfg = self.config
        iters = cfg.first_step_iters if self.k == 0 and cfg.first_step_iters > 0 else cfg.iters_per_step
        self.G.train()
        with timed(self.device) as train:
            loss_v = loss_g = transport = float("nan")
            for _ in range(iters):
                loss_v = self._potential_step()
                loss_g, transport = self._generator_step()
        self.finite_loss(loss_g)
        self.finite_loss(loss_v)
        with timed(self.device) as regen:
            self.G_old = copy.deepcopy(self.G).eval().requires_grad_(False)
        extra = {
            "potential_loss": loss_v,
            "transport": transport,
            "sample_network_passes": 1.0,
            "peak_mem_mb": train.peak_mem_mb,
        }
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss_g, extra=extra)

    # --- samples of P_k: one generator pass ---------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        out = []
        for start in range(0, n, self.config.chunk):
            m = min(self.config.chunk, n - start)
            x0 = self.initial.sample(m, generator, dtype=self.dtype).to(self.device)
            z = self._noise(m, generator)
            out.append(self._old(x0, z))  # G_old is the frozen G of the last finished step (x0 itself at k = 0)
        x = torch.cat(out).cpu()
        check_finite("S-JKO samples", x)
        return x

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            G=copy.deepcopy(self.G.state_dict()),
            v=copy.deepcopy(self.v.state_dict()),
            G_old=None if self.G_old is None else copy.deepcopy(self.G_old.state_dict()),
            opt_g=copy.deepcopy(self.opt_g.state_dict()),
            opt_v=copy.deepcopy(self.opt_v.state_dict()),
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.G.load_state_dict(state["G"])
        self.v.load_state_dict(state["v"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_v.load_state_dict(state["opt_v"])
        self.G_old = None
        if state["G_old"] is not None:
            self.G_old = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.G_old.load_state_dict(state["G_old"])
