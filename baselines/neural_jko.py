r"""Neural JKO with continuous normalizing flows (Hertrich & Gruhlke, ICML 2025, §3 and Eq. 6): one CNF per step.

Each JKO step k trains a fresh velocity field v_k(x, t), t in [0, 1] (:class:`~wgfbench.nets.velocity.VelocityMLP`:
3 hidden layers of width 2d + 50, ELU, t fed to every layer, last layer zero so the step starts at the identity),
and P_{k+1} = T_k # P_k with T_k(x) = z(1) the flow of v_k from z(0) = x. With the augmented ODE of
:mod:`wgfbench_baselines.cnf_flow` (kinetic energy w, log-determinant l), the loss over x ~ P_k is

    L(v) = E[w(1)] / (2h) + F(T#P_k)                               (our convention: W2^2 / (2h))

and by Benamou-Brenier min_v E[w(1)] = W2^2(P_k, T#P_k) over the velocity fields with a given end map, so
min L is the JKO step  min_P W2^2(P, P_k)/(2h) + F(P). Hertrich & Gruhlke write the loss as
E[U(z(1))] + E[w(1)]/tau - E[l(1)] (and their public code): **their tau is 2h** in this convention.
The suite's ``step_size`` is always h; their tau_0 = 0.0025 is ``step_size = 0.00125`` here.

The functional term, with log p_{k+1}(T x) = log p_k(x) - l(1) (change of variables):

* ``"kl"``, F = theta KL(P || Q) with theta = ``problem.temperature`` and Q ∝ exp(``problem.log_target``):
  F(T#P_k) = theta E[-log_target(z(1)) - l(1)] + theta E[log p_k(x)] + const; the last two terms do not depend on
  v, and the reported loss leaves them out. For OU theta = 1/beta and -theta log_target = V (the potential).
* ``"generalised_entropy"``, F = 1/(m-1) ∫P^m (porous medium): F(T#P_k) = 1/(m-1) E[exp((m-1)(log p_k(x) - l(1)))],
  with log p_k at the training particles tracked through the earlier flows. A Monte-Carlo average of this
  exponential is an unbiased estimate only if l(1) and log p_k are exact: a Hutchinson estimate of l (unbiased
  for l) gives a biased exp((m-1)(...)). The method therefore runs the porous medium only where every
  divergence is exact, d <= ``exact_max_dim`` (8 by default) with ``train_divergence`` not "hutchinson", and
  refuses it otherwise (``check_supports``).

**Divergences.** Exact (trace of the Jacobian by forward tangents) for d <= ``exact_max_dim``, else Hutchinson:
``train_probes`` probes fixed along each training solve (FFJORD's rule; Hertrich & Gruhlke train with one probe
in every dimension, ``train_divergence="hutchinson"``), ``eval_probes`` fresh probes at every evaluation for the
frozen flows' densities (theirs: exact for d <= 5, else 5 probes). Above ``exact_max_dim`` the model's stored
densities are random; the variance of the log-density estimate is reported per step (``StepStats.extra``
``log_density_var_step``, its running sum over steps ``log_density_var``: the variance of log p_k at a sample).

**Solvers.** ``solver="rk4"`` (default): ``rk4_steps`` fixed RK4 steps, the gradient by direct backpropagation,
the frozen flow re-integrated with the same steps. ``solver="dopri5_adjoint"``: Hertrich & Gruhlke's adaptive
Dormand-Prince with the adjoint gradient (torchdiffeq, an optional extra: ``pip install 'wgfbench[cnf]'``;
refused with that message where it is missing), atol = rtol = 1e-3; the frozen flow is then re-integrated with
ceil(nfe/4 + 1) RK4 steps, nfe the running mean of the forward solves' evaluations (their rule).

**Training** (as their public code): a new network and a new Adam (lr ``lr``, multiplied by ``lr_decay`` every
``lr_decay_every`` iterations) per step; ``iters_per_step`` iterations over disjoint minibatches of a random
permutation of ``n_particles`` particles of P_k, which are regenerated after every step from fresh P_0 draws
through the frozen flows (with log p_k by the change of variables where the functional needs it).

**Step sizes.** ``step_growth = 1`` (default): a time integrator at constant h. Their schedule
h_k = h growth^k (4 by default, 2 for GMM-d) is a sampler's, not a time integrator's: it is accepted only for
stationary targets (``problem.transient`` False); ``StepStats.extra`` reports h_k and the cumulative flow time
sum_k h_k.

Budgets: the class defaults are a CPU budget; :data:`HG_PAPER_PARAMS` is Hertrich & Gruhlke's protocol
(their width rule is 2d + 50 except 512 at d = 200, and 256 for the funnel; set ``width`` for those).

Densities: at model samples by the change of variables along the flows, at arbitrary points by integrating every
flow backwards (:mod:`wgfbench_baselines.cnf_flow`), both in float64 copies of the networks. All randomness (network
initialisation, minibatch order, probes, P_0 draws) comes from the method's generator, so a run restored from
``state_dict`` continues bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import Tensor
from wgfbench_baselines.cnf_flow import (
    CNFLayer,
    FlowIntegral,
    FrozenFlow,
    StackLayer,
    adjoint_integrate,
    log_density_stack,
    rk4_integrate,
    rk4_steps_from_nfe,
    sample_stack,
    torchdiffeq_available,
)

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, UnsupportedProblem, check_finite
from wgfbench.nets.adam import adam
from wgfbench.nets.velocity import VelocityMLP, default_width
from wgfbench.params import Count, NonNegCount, Positive, Range
from wgfbench.timing import timed

# Hertrich & Gruhlke's protocol (their public code's configuration): 5000 Adam iterations of batch 5000
# over 50k particles per step, lr 5e-3 decayed x0.95 every 100 iterations, dopri5 with the adjoint and one
# Rademacher probe in training, frozen flows with exact divergences for d <= 5 and 5 probes above.
HG_PAPER_PARAMS: dict[str, object] = {
    "n_particles": 50_000,
    "batch_size": 5000,
    "iters_per_step": 5000,
    "lr": 5e-3,
    "lr_decay": 0.95,
    "lr_decay_every": 100,
    "solver": "dopri5_adjoint",
    "atol": 1e-3,
    "rtol": 1e-3,
    "train_divergence": "hutchinson",
    "train_probes": 1,
    "exact_max_dim": 5,
    "eval_probes": 5,
}

Divergence = Literal["auto", "exact", "hutchinson"]


@dataclasses.dataclass(frozen=True)
class NeuralJKOConfig(MethodConfig):
    """Defaults: a CPU budget (module docstring); HG_PAPER_PARAMS holds the paper's protocol."""

    n_particles: Count = 4096
    batch_size: Count = 256
    iters_per_step: Count = 40
    lr: Positive = 5e-3
    lr_decay: Annotated[float, Range(0.0, 1.0, open_low=True)] = 0.95
    lr_decay_every: Count = 100
    width: NonNegCount = 0  # 0: Hertrich & Gruhlke's 2d + 50
    n_hidden: Count = 3
    solver: Literal["rk4", "dopri5_adjoint"] = "rk4"
    rk4_steps: Count = 2
    atol: Positive = 1e-3
    rtol: Positive = 1e-3
    train_divergence: Divergence = "auto"  # auto: exact for d <= exact_max_dim, else Hutchinson
    train_probes: Count = 1
    exact_max_dim: NonNegCount = 8
    eval_probes: Annotated[int, Range(2, 1000)] = 5  # the variance of the log-density estimate needs two
    step_growth: Positive = 1.0  # h_k = h * step_growth^k; != 1 only for stationary targets
    chunk: Count = 16_384


def train_probe_count(config: NeuralJKOConfig, dim: int) -> int:
    """Probes of the training solves: 0 (exact divergence) or ``train_probes``."""
    if config.train_divergence == "exact" or (config.train_divergence == "auto" and dim <= config.exact_max_dim):
        return 0
    return config.train_probes


def eval_probe_count(config: NeuralJKOConfig, dim: int) -> int:
    """Probes of the frozen flows' log-densities: 0 (exact) for d <= ``exact_max_dim``, else ``eval_probes``."""
    return 0 if dim <= config.exact_max_dim else config.eval_probes


class NeuralJKO(JKOMethod):
    """Hertrich & Gruhlke's neural JKO without importance correction, as a time integrator (module docstring)."""

    name = "neural_jko"
    Config = NeuralJKOConfig
    functionals = frozenset({"kl", "generalised_entropy"})
    has_density = True
    accelerated = True
    color = "#ca9161"
    tiny_params: ClassVar[dict[str, Any]] = {
        "n_particles": 256,
        "batch_size": 64,
        "iters_per_step": 3,
        "width": 8,
        "rk4_steps": 2,
    }
    timing_params: ClassVar[dict[str, Any]] = {"n_particles": 4096, "batch_size": 512, "iters_per_step": 10}

    @classmethod
    def check_supports(cls, problem, config: NeuralJKOConfig | None = None) -> None:
        super().check_supports(problem, config)
        cfg = config if config is not None else cls.Config()
        if cfg.solver == "dopri5_adjoint" and not torchdiffeq_available():
            raise UnsupportedProblem(
                f"method {cls.name!r} with solver='dopri5_adjoint' needs torchdiffeq, which is not installed "
                "(pip install 'wgfbench[cnf]'); use solver='rk4'"
            )
        if cfg.step_growth != 1.0 and problem.transient:
            raise UnsupportedProblem(
                f"method {cls.name!r} with step_growth={cfg.step_growth:g} takes growing steps h_k = h growth^k, a "
                f"sampler's schedule, not a time integrator's: problem {problem.name!r} is transient; use "
                "step_growth=1 or a stationary target"
            )
        if problem.functional == "generalised_entropy":
            d = problem.dim
            if train_probe_count(cfg, d) or eval_probe_count(cfg, d):
                raise UnsupportedProblem(
                    f"method {cls.name!r} runs the generalised entropy only with exact divergences (a Hutchinson "
                    f"log-determinant makes E[p^(m-1)] biased): d = {d} needs d <= exact_max_dim = "
                    f"{cfg.exact_max_dim} and train_divergence != 'hutchinson'"
                )

    def __init__(self, problem, step_size: float, config: NeuralJKOConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        cfg = config
        if cfg.batch_size > cfg.n_particles:
            raise ValueError(f"batch_size {cfg.batch_size} exceeds n_particles {cfg.n_particles}")
        d = problem.dim
        self.width = cfg.width or default_width(d)
        self.train_probes = train_probe_count(cfg, d)
        self.eval_probes = eval_probe_count(cfg, d)
        if problem.functional == "kl":
            self.theta = float(problem.temperature)
        else:
            self.m = float(problem.m)
        self.layers: list[StackLayer] = []
        self.n_cnf = 0
        self.flow_time = 0.0
        self.log_density_var = 0.0
        self.particles: Tensor | None = None
        self.particles_logp: Tensor | None = None
        self._particles_gen_state: Tensor | None = None
        self._regenerate_particles()

    def _replay_particles(self, state: Tensor) -> None:
        """Redraw the particle set drawn from generator state ``state``, leaving the generator where it was."""
        after = self.generator.get_state()
        self.generator.set_state(state)
        self._regenerate_particles()
        self.generator.set_state(after)

    # --- what needs log-densities ---------------------------------------------------------------------------
    def _training_needs_log_density(self) -> bool:
        return self.problem.functional == "generalised_entropy"

    def _sampling_needs_log_density(self) -> bool:
        return any(layer.kind != "cnf" for layer in self.layers)

    # --- particles of P_k -----------------------------------------------------------------------------------
    def _draw(self, n: int, generator: torch.Generator, dtype: torch.dtype, with_log_density: bool, upto=None):
        layers = self.layers if upto is None else self.layers[:upto]
        return sample_stack(layers, self.problem.initial(), n, generator, dtype, self.device, with_log_density)

    def _regenerate_particles(self) -> None:
        """Fresh P_0 draws of the method's generator through every layer (its state before them is kept)."""
        self._particles_gen_state = self.generator.get_state()
        with_lp = self._training_needs_log_density() or self._sampling_needs_log_density()
        self.particles, self.particles_logp = self._draw(self.config.n_particles, self.generator, self.dtype, with_lp)
        check_finite("neural JKO particles", self.particles)

    # --- one CNF step -----------------------------------------------------------------------------------------
    def step_size_of(self, cnf_index: int) -> float:
        """h_j = h * step_growth^j for the j-th CNF step (j from 0)."""
        return self.step_size * self.config.step_growth**cnf_index

    def _integrate_train(self, net: VelocityMLP, x: Tensor) -> tuple[FlowIntegral, int]:
        cfg = self.config
        if cfg.solver == "rk4":
            return rk4_integrate(net, x, cfg.rk4_steps, self.train_probes, self.generator), 4 * cfg.rk4_steps
        return adjoint_integrate(net, x, self.train_probes, self.generator, cfg.atol, cfg.rtol)

    def _objective(self, integral: FlowIntegral, log_p: Tensor | None, h: float) -> Tensor:
        """E[w(1)]/(2h) + F(T#P_k) up to terms constant in v (module docstring)."""
        transport = integral.transport.mean() / (2.0 * h)
        if self.problem.functional == "kl":
            return transport + self.theta * (-self.problem.log_target(integral.z) - integral.div).mean()
        log_p_next = log_p - integral.div
        return transport + torch.exp((self.m - 1.0) * log_p_next).mean() / (self.m - 1.0)

    def _train_flow(self, h: float) -> tuple[FrozenFlow, float, dict[str, float]]:
        cfg = self.config
        net = VelocityMLP(self.problem.dim, self.width, cfg.n_hidden, generator=self.generator).to(
            self.device, self.dtype
        )
        opt = adam(net.parameters(), lr=cfg.lr)
        n = self.particles.shape[0]
        order, pos = torch.randperm(n, generator=self.generator), 0
        lr, nfe_avg, ema_weight = cfg.lr, 0.0, 0.0
        loss = torch.tensor(float("nan"))
        transport = torch.tensor(float("nan"))
        for it in range(cfg.iters_per_step):
            if (it + 1) % cfg.lr_decay_every == 0:
                lr *= cfg.lr_decay
                for group in opt.param_groups:
                    group["lr"] = lr
            if pos + cfg.batch_size > n:
                order, pos = torch.randperm(n, generator=self.generator), 0
            idx = order[pos : pos + cfg.batch_size].to(self.device)
            pos += cfg.batch_size
            log_p = None if self.particles_logp is None else self.particles_logp[idx]
            integral, nfe = self._integrate_train(net, self.particles[idx])
            loss = self._objective(integral, log_p, h)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # running mean of the evaluations, exponentially weighted (0.9) with the start-up bias removed
            nfe_avg, ema_weight = 0.9 * nfe_avg + 0.1 * nfe, 0.9 * ema_weight + 0.1
            transport = integral.transport.detach().mean()
            if not math.isfinite(loss.item()):
                break
        steps = cfg.rk4_steps if cfg.solver == "rk4" else rk4_steps_from_nfe(nfe_avg / ema_weight)
        flow = FrozenFlow(net, steps, cfg.chunk)
        diag = {"nfe": nfe_avg / max(ema_weight, 1e-12), "rk4_steps": float(steps), "transport": float(transport)}
        return flow, loss.item(), diag

    def _log_density_variance(self, flow: FrozenFlow, x: Tensor, n: int = 1024) -> float:
        """Mean over n of the P_k particles of the variance of the flow's Hutchinson log-determinant (0 if exact)."""
        if self.eval_probes == 0:
            return 0.0
        _, _, var = flow.forward_with_logdet(x[:n], self.eval_probes, self.generator)
        return float(var.mean())

    def _cnf_step(self) -> StepStats:
        h = self.step_size_of(self.n_cnf)
        with timed(self.device) as train:
            flow, loss, diag = self._train_flow(h)
        self.finite_loss(loss)
        with timed(self.device) as regen:
            var_step = self._log_density_variance(flow, self.particles)
            self.layers.append(CNFLayer(flow, self.eval_probes))
            self._regenerate_particles()
        self.n_cnf += 1
        self.flow_time += h
        self.log_density_var += var_step
        extra = {
            **diag,
            "step_kind": 0.0,
            "h_k": h,
            "flow_time": self.flow_time,
            "log_density_var_step": var_step,
            "log_density_var": self.log_density_var,
            "peak_mem_mb": train.peak_mem_mb,
        }
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra=extra)

    def _advance(self) -> StepStats:
        return self._cnf_step()

    # --- sampling and densities -----------------------------------------------------------------------------------
    def evaluation_particles(self) -> Tensor | None:
        """The particle set of P_k the method holds (fresh i.i.d. samples of P_k)."""
        return self.particles

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        x, _ = self._draw(n, generator, self.dtype, self._sampling_needs_log_density())
        return x.cpu()

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Samples of P_k and log p_k at them, through float64 copies of the flows."""
        x, lp = self._draw(n, generator, torch.float64, True)
        return x.to(self.dtype).cpu(), lp.cpu()

    def log_density(self, x: Tensor) -> Tensor:
        """log p_k at arbitrary points: every layer pulled back (flows integrated backwards) in float64. Hutchinson
        probes (d > exact_max_dim) come from a generator seeded by (seed, k), so a call is deterministic."""
        gen = torch.Generator().manual_seed(1_000_003 * self.seed + self.k)
        lp = log_density_stack(self.layers, self.problem.initial(), x.to(self.device), gen, torch.float64)
        return lp.cpu()

    # --- checkpointing ------------------------------------------------------------------------------------------
    def _layer_state(self, layer: StackLayer) -> dict[str, Any]:
        if isinstance(layer, CNFLayer):
            return {
                "kind": "cnf",
                "velocity": copy.deepcopy(layer.flow.velocity.state_dict()),
                "n_steps": layer.flow.n_steps,
                "n_probes": layer.n_probes,
            }
        raise TypeError(f"unknown layer {type(layer).__name__}")

    def _layer_from_state(self, state: dict[str, Any]) -> StackLayer:
        if state["kind"] == "cnf":
            # a throwaway generator: restoring must not consume the method's own random stream
            net = VelocityMLP(self.problem.dim, self.width, self.config.n_hidden, torch.Generator().manual_seed(0))
            net = net.to(self.device, self.dtype)
            net.load_state_dict(state["velocity"])
            return CNFLayer(FrozenFlow(net, state["n_steps"], self.config.chunk), state["n_probes"])
        raise ValueError(f"unknown layer kind {state['kind']!r}")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            layers=[self._layer_state(layer) for layer in self.layers],
            n_cnf=self.n_cnf,
            flow_time=self.flow_time,
            log_density_var=self.log_density_var,
            particles_gen_state=self._particles_gen_state,
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.layers = [self._layer_from_state(s) for s in state["layers"]]
        self.n_cnf = int(state["n_cnf"])
        self.flow_time = float(state["flow_time"])
        self.log_density_var = float(state["log_density_var"])
        self._restore_particles(state)

    def _restore_particles(self, state: dict[str, Any]) -> None:
        """The particle set the run was using: redrawn from the generator state it was first drawn from."""
        self._replay_particles(state["particles_gen_state"])
