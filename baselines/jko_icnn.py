r"""JKO-ICNN as Mokrov et al. (NeurIPS 2021) run it: one convex potential per JKO step, trained on fresh samples.

Each JKO step looks for P_{k+1} = (grad psi)#P_k with psi convex (a :class:`~wgfbench.nets.icnn.DenseICNN`), i.e.

    psi_{k+1} = argmin_psi  E_{x~P_k}[ |x - grad psi(x)|^2 / (2h) ] + F((grad psi)#P_k)          (Mokrov Eq. 9)

and, since log p_{k+1}(grad psi(x)) = log p_k(x) - log det Hess psi(x) (change of variables, Hess psi SPD):

* ``"kl"``, F = tau KL(P || Q), Q ∝ exp(log_target), tau = problem.temperature:
  F(T#P_k) = E_{P_k}[-tau log_target(T x)] - tau E_{P_k}[log det Hess psi(x)] - tau H(P_k),
  the last term a constant of the step (for OU tau = 1/beta and -tau log_target = V);
* ``"generalised_entropy"``, F = 1/(m-1) ∫ P^m (porous medium):
  F(T#P_k) = 1/(m-1) E_{x~P_k}[ (p_k(x) / det Hess psi(x))^{m-1} ],
  with p_k at the particles tracked by change of variables along the chain (:mod:`wgfbench.densities`);
  a confinement lambda/2 ∫|x|^2 dP (``problem.confinement``) adds lambda/2 E|T x|^2 (exact variant);
* ``"kl_interaction"`` (exact variant), F = tau KL(P || Q) + ½ ∫∫ W(x - x') dP dP: the KL terms above plus the pair
  term ½ E[W(T X - T X')], estimated on the minibatch (independent rows) by pairing T x_i with T x_{i+1}
  cyclically, W = ``problem.interaction``;
* a time-dependent target (``problem.time_dependent``): step k -> k+1 uses the static problem of the step's end,
  ``problem.at_time(t_{k+1})`` (the potential frozen at t_{k+1}, as the exact time-dependent JKO iterates are).

Two variants share the step loop and differ only in how the log-det term and its gradient are obtained:

* :class:`JKOICNNExact` (``jko_icnn_exact``, Mokrov's JKO-ICNN): the exact batched Hessian, its log det
  differentiated by autograd. ``hessian`` chooses how the Hessian is built:

  - ``"analytic"`` (default; the optimised implementation): the DenseICNN's closed-form forward/reverse sweep
    (:meth:`~wgfbench.nets.icnn.DenseICNN.grad_and_hessian`), one batched pass, log det by Cholesky;
  - ``"torch_func"``: the generic ``vmap(jacfwd(grad psi))`` (:func:`wgfbench.densities.batched_grad_and_hessian`),
    one batched pass, log det by Cholesky;
  - ``"per_coordinate"`` (the published implementation's cost): as Mokrov et al.'s code
    (``Diffusion.negative_entropy_gain``), d backward passes of grad psi, one per coordinate, each with
    create_graph (:func:`wgfbench.densities.per_coordinate_grad_and_hessian`), then ``torch.logdet``.

  All three give the same values and parameter gradients to round-off (tests/test_baselines.py).
* :class:`JKOICNNCPFlowGrad` (``jko_icnn_cpflow_grad``): Mokrov's protocol with the exact log-det gradient
  replaced by the stochastic one of CP-Flow (Huang et al., ICLR 2021): the Hessian is never formed;
  d/dtheta log det H = E_v[v^T H^{-1} (dH/dtheta) v] (Hutchinson; v Rademacher, ``n_probes`` per sample), u = H^{-1} v
  by conjugate gradients on Hessian-vector products from u_0 = 0 (at most ``cg_iters``, stop at relative
  residual ``cg_rtol``), then the surrogate u^T H v with u detached (:mod:`wgfbench_baselines.stochastic_logdet`). KL
  only: the porous internal energy needs the log-det value as well. This is neither Mokrov's method nor
  Alvarez-Melis et al.'s (whose published protocol is :mod:`wgfbench_baselines.jko_icnn_am`): it isolates the effect of
  the gradient estimator inside Mokrov's protocol.

Protocol: Mokrov et al.'s code (``src/utils.py``: ``id_pretrain_model``, ``train_diffusion_model``) and
configurations; every constant is a config field, the defaults are their OU protocol
(``configs/ornstein_uhlenbeck_vary_dim.yml``, :data:`MOKROV_OU_PARAMS`) and :data:`MOKROV_GMM_PARAMS` holds their
mixture protocol per dimension:

* DenseICNN 2 hidden layers x 64, rank 5, softplus, strong convexity 1e-6, their parametrisation
  (``parametrisation="mokrov"``: every parameter initialised N(0, 1/64), non-negative weights clamped at 0 after
  every optimiser step, :meth:`~wgfbench.nets.icnn.DenseICNN.convexify`).
* Identity pretraining before the first step (lazily, inside the first ``step()``; its time is reported as
  ``extra["pretrain_s"]``, not in ``train_s``): Adam lr 5e-3 (``pretrain_learning_rate`` of their OU
  configuration; their mixture configurations use 8e-3, 5e-3 at d = 4), weight decay 1e-8, 4000 iterations
  of batch 1024 from P_0 with no early stop (``pretrain_tol=None``: their loss threshold of 1e-5 is only
  checked in verbose mode, so their experiment runs always take the 4000 iterations), clamp after each step.
* Each step: psi warm-started from the previous step's potential, a **new** Adam (lr 5e-3, weight decay 1e-9),
  ``iters_per_step`` = 500 iterations of batch 1024, clamp after each step. The loss is minimised in their
  scaling, h times the JKO objective above (½|T x - x|^2 + h (F-terms)): Adam is invariant to that factor except
  through its epsilon and the weight decay, which are therefore applied as in their code. ``lr_schedule``
  ((first step, lr) pairs, :mod:`wgfbench.schedules`; their mixtures': ((0, 5e-3), (20, 2e-3)), 5e-3 for steps
  1-20 and 2e-3 from step 21 on) sets each step's learning rate, ``lr`` where it gives none.
* Training particles: Mokrov draws a fresh batch of P_k at every iteration (P_0 samples pushed through the frozen
  maps). Here a particle set of ``n_particles`` fresh P_0 samples pushed through T_1..T_k is regenerated at the
  end of every step and the iterations walk through a random permutation of it in disjoint minibatches; with the
  default ``n_particles = batch_size * iters_per_step`` every minibatch is a fresh independent draw from P_k, the
  same law of minibatches as Mokrov's, at one regeneration per step (the time is ``regen_s``). Pushing the
  512,000 training samples of a step through k maps makes a step's cost grow linearly in k (O(K^2) per run).
* P_k for evaluation: fresh P_0 samples pushed through the frozen maps. Densities: at model samples by change of
  variables, at arbitrary points by Newton inversion of each gradient map (:mod:`wgfbench.densities`); both in
  float64 copies of the maps, whatever ``dtype`` the training used. A point whose inversion misses its
  tolerance gets a NaN log-density (with a warning), never a biased finite value. (Mokrov et al. invert by
  gradient descent in float32 to a gradient norm of 1e-5.)

Mokrov et al.'s OU experiment around the method (suite side, for reference): h = 0.05 to t = 1 (20 steps),
evaluated every 0.1 by the Monte-Carlo SymKL on 8192 samples each way, P_0 = N(0, I), instances from
``make_spd_matrix`` (the ``legacy_make_spd`` generator of :mod:`wgfbench.problems.ou`). Their mixture
experiment: P_0 = N(0, 16 I), h = 0.1 to t = 4 (40 steps).

Adaptive per-step budget (``budget="plateau"``, jko_icnn_exact only; the default ``"fixed"`` is Mokrov's
protocol): each step draws a probe of ``plateau_probe`` particles of P_k (fixed for the step) and every
``plateau_every`` iterations evaluates the JKO objective above on it; the step stops once at least
``plateau_min_iters`` iterations are done and the least-squares slope of the last ``plateau_window`` values is not
significantly different from zero (|t| <= ``plateau_z``; :mod:`wgfbench.methods.plateau`), ``iters_per_step``
being the cap. The CP-Flow variant refuses it: its loss value leaves out the log-det term.

All randomness of training (pretraining batches, minibatch order, probes) comes from the method's generator, so a
run restored from ``state_dict`` continues exactly as the original would have.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from torch import Tensor
from wgfbench_baselines.stochastic_logdet import stochastic_logdet_surrogate

from wgfbench.densities import batched_grad_and_hessian, logdet_spd, per_coordinate_grad_and_hessian
from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, UnsupportedProblem, check_finite
from wgfbench.methods.plateau import PlateauRule, plateau_rule
from wgfbench.methods.pushforward import GradientOfPotential, MapChain
from wgfbench.nets.adam import adam
from wgfbench.nets.icnn import DenseICNN, pretrain_identity
from wgfbench.params import Count, NonNegative, NonNegCount, Positive, Range
from wgfbench.schedules import StepSchedule, normalise, value_at
from wgfbench.timing import timed


@dataclasses.dataclass(frozen=True)
class JKOICNNConfig(MethodConfig):
    """Defaults: Mokrov et al.'s OU protocol (``configs/ornstein_uhlenbeck_vary_dim.yml``; module docstring)."""

    hidden_width: Count = 64
    hidden_layers: Count = 2
    rank: Count = 5
    activation: Literal["softplus", "celu"] = "softplus"
    strong_convexity: NonNegative = 1e-6
    parametrisation: Literal["mokrov", "softplus"] = "mokrov"
    # exact variant: "analytic" (DenseICNN.grad_and_hessian), "torch_func", or "per_coordinate" (Mokrov's code)
    hessian: Literal["analytic", "torch_func", "per_coordinate"] = "analytic"
    lr: Positive = 5e-3
    lr_schedule: StepSchedule = ()  # (first step, lr) pairs from step 0 on (wgfbench.schedules); () : ``lr``
    weight_decay: NonNegative = 1e-9
    batch_size: Count = 1024
    iters_per_step: Count = 500
    n_particles: NonNegCount = 0  # 0: batch_size * iters_per_step (a fresh minibatch of P_k per iteration)
    pretrain_iters: NonNegCount = 4000
    pretrain_lr: Positive = 5e-3
    pretrain_tol: NonNegative | None = None  # None: no early stop (Mokrov's runs); a float: stop below that MSE
    pretrain_batch: Count = 1024
    pretrain_weight_decay: NonNegative = 1e-8
    inversion_tol: Positive = 1e-9  # residual |grad psi(x) - y| of the float64 Newton inversion
    inversion_max_iter: Count = 100
    chunk: Count = 16_384  # rows per chunk when pushing particles through the maps
    # inner iterations per step: "fixed" (iters_per_step, Mokrov's protocol) or "plateau" (jko_icnn_exact only:
    # stop once the probe objective no longer trends, wgfbench.methods.plateau; iters_per_step is then the cap)
    budget: Literal["fixed", "plateau"] = "fixed"
    plateau_every: Count = 10  # iterations between probe values
    plateau_window: Annotated[int, Range(3, None)] = 8  # probe values in the slope test
    plateau_min_iters: NonNegCount = 50
    plateau_z: NonNegative = 1.0  # stop when the slope's t-statistic is at most this in size
    plateau_probe: Count = 2048  # probe minibatch size (particles of P_k; a probe value costs a Hessian each)

    def __post_init__(self) -> None:  # a suite gives lists; keep the frozen config hashable (and the order checked)
        object.__setattr__(self, "lr_schedule", normalise(self.lr_schedule))

    def lr_of_step(self, k: int) -> float:
        """The learning rate of JKO step k (from P_k to P_{k+1}, k = 0, 1, ...): ``lr_schedule``'s value at k,
        ``lr`` before its first step or without one."""
        return value_at(self.lr_schedule, k, self.lr)


@dataclasses.dataclass(frozen=True)
class JKOICNNCPFlowGradConfig(JKOICNNConfig):
    """Adds the stochastic log-det gradient's settings (CP-Flow's CG with 50 iterations)."""

    n_probes: Count = 1
    cg_iters: Count = 50
    cg_rtol: Positive = 1e-5


# Mokrov et al.'s OU protocol (configs/ornstein_uhlenbeck_vary_dim.yml, src/experiments/_ou.py): the defaults,
# spelled out. Their experiment: h = 0.05, 20 steps, SymKL every 0.1 on 8192 samples, P_0 = N(0, I), d = 1..12.
MOKROV_OU_PARAMS: dict[str, Any] = {
    "hidden_width": 64,
    "hidden_layers": 2,
    "rank": 5,
    "activation": "softplus",
    "parametrisation": "mokrov",
    "batch_size": 1024,
    "iters_per_step": 500,
    "lr": 5e-3,
    "pretrain_iters": 4000,
    "pretrain_lr": 5e-3,
    "pretrain_tol": None,
    "pretrain_batch": 1024,
}


def _mokrov_gmm(width: int, iters: int, pretrain_lr: float = 8e-3) -> dict[str, Any]:
    return {
        **MOKROV_OU_PARAMS,
        "hidden_width": width,
        "iters_per_step": iters,
        "batch_size": 512,
        "pretrain_batch": 512,
        "pretrain_lr": pretrain_lr,
        "lr_schedule": ((0, 5e-3), (20, 2e-3)),
    }


# Mokrov et al.'s Gaussian-mixture convergence protocol per dimension (configs/convergence_comparison_dim_{d}.yml,
# src/experiments/_convergence.py): width and iterations grow with d, batch 512, learning rate 5e-3 for 20 steps
# then 2e-3 for 20. Their experiment: P_0 = N(0, 16 I), h = 0.1, 40 steps, "cube" mixtures of 5 to 10 components.
MOKROV_GMM_PARAMS: dict[int, dict[str, Any]] = {
    2: _mokrov_gmm(256, 500),
    4: _mokrov_gmm(384, 700, pretrain_lr=5e-3),
    6: _mokrov_gmm(512, 700),
    8: _mokrov_gmm(512, 1000),
    10: _mokrov_gmm(512, 1000),
    12: _mokrov_gmm(1024, 1200),
}

_TINY = {
    "hidden_width": 8,
    "rank": 2,
    "batch_size": 64,
    "iters_per_step": 3,
    "n_particles": 256,
    "pretrain_iters": 5,
    "pretrain_batch": 64,
}


# --- the methods ------------------------------------------------------------------------------------------------
class _JKOICNN(JKOMethod):
    """Shared step loop (module docstring); subclasses define :meth:`_energy`."""

    Config = JKOICNNConfig
    has_density = True
    accelerated = True
    time_dependent_ok = True  # the KL energy uses problem.at_time(t_{k+1}) for step k -> k+1
    tiny_params: ClassVar[dict[str, Any]] = _TINY
    timing_params: ClassVar[dict[str, Any]] = {"iters_per_step": 10, "pretrain_iters": 20}  # 10240 particles

    def __init__(self, problem, step_size: float, config: JKOICNNConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        self.psi = self._new_potential()
        # P_0 drawn in float64 (then cast), the random stream these baselines were defined with
        self.chain = MapChain(problem.initial(), self.device, self.dtype, config.chunk, p0_dtype=torch.float64)
        self.pretrained = False
        self.target_problem = problem  # the static problem whose log_target a KL step uses (module docstring)
        if problem.functional == "generalised_entropy":
            self.m = float(problem.m)
        else:
            self.tau = float(problem.temperature)
        self.n_particles = config.n_particles or config.batch_size * config.iters_per_step
        self.particles: Tensor | None = None
        self.particles_logp: Tensor | None = None
        self.inner_iters = 0
        self.plateau: PlateauRule | None = None

    def _new_potential(self) -> DenseICNN:
        cfg = self.config
        net = DenseICNN(
            self.problem.dim,
            (cfg.hidden_width,) * cfg.hidden_layers,
            rank=cfg.rank,
            activation=cfg.activation,
            strong_convexity=cfg.strong_convexity,
            parametrisation=cfg.parametrisation,
        )
        return net.to(self.device, self.dtype)

    # --- particles of P_k -------------------------------------------------------------------------------------
    def _p0(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample_p0(n, generator)

    def _draw_particles(self, state: Tensor | None = None) -> None:
        """Fresh P_0 samples through T_1..T_k (and log p_k at them, for the internal energy); ``state``: redraw
        the set drawn from that generator state (a restore)."""
        if self.problem.functional != "generalised_entropy":
            self.particles = self.chain.draw_particles(self.n_particles, self.generator, state)
            self.particles_logp = None
        else:
            after = self.generator.get_state()
            if state is not None:
                self.generator.set_state(state)
            self.chain.particles_gen_state = self.generator.get_state()
            x0 = self._p0(self.n_particles, self.generator)
            lp0 = self.problem.initial().log_density(x0)
            self.particles, self.particles_logp = self.chain.push_with_log_density(x0, lp0, self.dtype)
            if state is not None:
                self.generator.set_state(after)
        check_finite("JKO-ICNN particles", self.particles)

    # --- one JKO step -------------------------------------------------------------------------------------------
    def _pretrain(self) -> dict[str, float]:
        cfg = self.config
        with timed(self.device) as m:
            res = pretrain_identity(
                self.psi,
                lambda n: self._p0(n, self.generator).to(self.device, self.dtype),
                batch_size=cfg.pretrain_batch,
                lr=cfg.pretrain_lr,
                max_iters=cfg.pretrain_iters,
                tol=cfg.pretrain_tol,
                weight_decay=cfg.pretrain_weight_decay,
                project=self.psi.convexify,
            )
        self.psi.convexify()  # also when pretrain_iters = 0: the first step starts from a convex psi
        self.pretrained = True
        return {"pretrain_s": m.seconds, "pretrain_iters": float(res.iterations), "pretrain_loss": res.loss}

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        """(T(x), per-sample objective minus transport, diagnostics) for a minibatch x of P_k."""
        raise NotImplementedError

    def _loss(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        """The JKO objective E[|T x - x|^2/(2h) + energy] on the minibatch (training minimises h times it)."""
        tx, energy, diag = self._energy(x, logp)
        transport = ((tx - x) ** 2).sum(-1) / (2.0 * self.step_size)
        return (transport + energy).mean(), diag

    def _train_step(self) -> tuple[float, dict[str, float]]:
        cfg = self.config
        opt = adam(self.psi.parameters(), lr=cfg.lr_of_step(self.k), weight_decay=cfg.weight_decay)
        n = self.particles.shape[0]
        order = torch.randperm(n, generator=self.generator)
        pos = 0
        loss, diag = torch.tensor(float("nan")), {}
        rule = self.plateau = plateau_rule(cfg)
        probe = None
        if rule is not None:
            idx = torch.randint(n, (cfg.plateau_probe,), generator=self.generator).to(self.device)
            probe = (self.particles[idx], None if self.particles_logp is None else self.particles_logp[idx])
        for it in range(1, cfg.iters_per_step + 1):
            if pos + cfg.batch_size > n:
                order, pos = torch.randperm(n, generator=self.generator), 0
            idx = order[pos : pos + cfg.batch_size].to(self.device)
            pos += cfg.batch_size
            logp = None if self.particles_logp is None else self.particles_logp[idx]
            loss, diag = self._loss(self.particles[idx], logp)
            opt.zero_grad(set_to_none=True)
            (self.step_size * loss).backward()  # Mokrov's scaling: ½|T x - x|^2 + h F (module docstring)
            opt.step()
            self.psi.convexify()
            self.inner_iters = it
            if not math.isfinite(loss.item()):
                break
            if rule is not None and rule.due(it) and rule.record(it, self.probe_objective(*probe)):
                break
        return loss.item(), diag

    def probe_objective(self, x: Tensor, logp: Tensor | None) -> float:
        """The JKO objective on the adaptive budget's probe (value only; the parameters' gradients are untouched)."""
        return float(self._loss(x, logp)[0].detach())

    def _advance(self) -> StepStats:
        if self.problem.time_dependent:
            self.target_problem = self.problem.at_time(self.problem.time_of_step(self.k + 1, self.step_size))
        extra: dict[str, float] = {}
        if self.k == 0 and not self.pretrained:
            extra.update(self._pretrain())
        if self.particles is None:
            self._draw_particles()
        with timed(self.device) as train:
            loss, diag = self._train_step()
        self.finite_loss(loss)
        extra.update(diag)
        with timed(self.device) as regen:
            self.chain.append(GradientOfPotential(self.psi))
            self._draw_particles()
        extra["peak_mem_mb"] = train.peak_mem_mb
        extra["inner_iters"] = float(self.inner_iters)
        if self.plateau is not None:
            extra["plateau_t_stat"] = self.plateau.t_stat
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra=extra)

    # --- sampling and densities ---------------------------------------------------------------------------------
    def evaluation_particles(self) -> Tensor | None:
        """The particle set of P_k the method holds (fresh i.i.d. samples of P_k)."""
        return self.particles

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample(n, generator)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.chain.sample_with_log_density(n, generator)

    def log_density(self, x: Tensor) -> Tensor:
        return self.chain.log_density(x, tol=self.config.inversion_tol, max_iter=self.config.inversion_max_iter)

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            psi=copy.deepcopy(self.psi.state_dict()),
            maps=copy.deepcopy(self.chain.state_dict()),
            pretrained=self.pretrained,
            particles_gen_state=self.chain.particles_gen_state,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.psi.load_state_dict(state["psi"])
        self.pretrained = bool(state["pretrained"])
        self.chain.load_state_dict(state["maps"], lambda: GradientOfPotential(self._new_potential()))
        self.particles = self.particles_logp = None
        if state["particles_gen_state"] is not None:  # rebuild the very particle set the run was using
            self._draw_particles(state["particles_gen_state"])


class JKOICNNExact(_JKOICNN):
    """Mokrov et al.'s JKO-ICNN with the exact Hessian log-determinant (``hessian``: how it is built)."""

    name = "jko_icnn_exact"
    color = "#de8f05"
    functionals = frozenset({"kl", "generalised_entropy", "kl_interaction"})
    confinement_ok = True

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        if self.config.hessian == "analytic":
            tx, hess = self.psi.grad_and_hessian(x)
            logdet = logdet_spd(hess)
        elif self.config.hessian == "torch_func":
            tx, hess = batched_grad_and_hessian(self.psi, x)
            logdet = logdet_spd(hess)
        else:  # Mokrov et al.'s code: d backward passes, then torch.logdet
            tx, hess = per_coordinate_grad_and_hessian(self.psi, x, create_graph=True)
            logdet = torch.logdet(hess)
        if self.problem.functional == "generalised_entropy":
            energy = torch.exp((self.m - 1.0) * (logp - logdet)) / (self.m - 1.0)
            if self.problem.confinement:
                energy = energy + 0.5 * self.problem.confinement * (tx**2).sum(-1)
        else:
            energy = -self.tau * (self.target_problem.log_target(tx) + logdet)
            if self.problem.functional == "kl_interaction":  # ½ W(T x_i - T x_{i+1}): its mean is ½ E W(TX - TX')
                energy = energy + 0.5 * self.problem.interaction(tx - torch.roll(tx, 1, dims=0))
        return tx, energy, {}


class JKOICNNCPFlowGrad(_JKOICNN):
    """Mokrov's protocol with CP-Flow's Hutchinson + CG estimate of the log-det gradient (no Hessian); KL only."""

    name = "jko_icnn_cpflow_grad"
    color = "#029e73"
    Config = JKOICNNCPFlowGradConfig
    functionals = frozenset({"kl"})
    tiny_params: ClassVar[dict[str, Any]] = {**_TINY, "cg_iters": 5}

    @classmethod
    def check_supports(cls, problem, config: JKOICNNConfig | None = None) -> None:
        super().check_supports(problem, config)
        if config is not None and config.budget != "fixed":
            raise UnsupportedProblem(
                f"method {cls.name!r} has no adaptive budget: its loss value omits the log-det term the plateau "
                "test would watch (budget must be 'fixed')"
            )

    def _energy(self, x: Tensor, logp: Tensor | None) -> tuple[Tensor, Tensor, dict[str, float]]:
        cfg = self.config
        tx, surrogate, diag = stochastic_logdet_surrogate(
            self.psi, x, self.generator, n_probes=cfg.n_probes, cg_iters=cfg.cg_iters, cg_rtol=cfg.cg_rtol
        )
        # value = the potential term only; gradient = potential term + the log-det gradient estimate
        energy = -self.tau * (self.target_problem.log_target(tx) + (surrogate - surrogate.detach()))
        return tx, energy, diag
