r"""Variational JKO (Fan, Zhang, Taghvaei & Chen, ICML 2022, arXiv 2112.02424): the centrepiece.

Each JKO step of size h is solved over maps, P_{k+1} = T#P_k with

    T_k = argmin_T  E_{X~P_k} |X - T(X)|^2 / (2h) + F(T#P_k)                        (paper Eq. 5)

and F replaced by its variational (Nguyen-Wainwright-Jordan) form, a min-max over T and a dual function (paper
Eq. 8): no Hessian log-determinant is ever formed. What depends on the functional is a small "dual" object
(:mod:`~wgfbench.methods.variational_jko.duals`: reference measure Gamma and its refit, reference sampling, the
dual's loss, the energy term of the T-loss); the training loop here is shared.

**Functionals** (one dual each, :mod:`~wgfbench.methods.variational_jko.duals`): the KL (paper Cor. 3.3), with a
pair interaction energy (``kl_interaction``) and with a time-dependent target (the potential frozen at the step's
end, ``problem.at_time(t_{k+1})``, as the exact time-dependent JKO iterates are defined); the generalised entropy
(Cor. 3.4), with a quadratic confinement; the Jensen-Shannon divergence to a samplable Q (Cor. 3.5).

**Maps** (``map``): ``"mlp"`` the residual MLP T(x) = x + g(x) (Fan's OU and mixture map); ``"icnn"``
T = grad psi with psi a :class:`~wgfbench.nets.icnn.DenseICNN` (Fan's porous map; with ``icnn_layers=1`` it is
affine), identity-pretrained on P_0 before the first step, as Mokrov et al. (NeurIPS 2021) do. With ICNN maps the
method has densities: at its samples by change of variables, at arbitrary points by inverting each gradient map
(:class:`~wgfbench.methods.pushforward.MapChain`).

**Training loop** (the paper's Algorithm 1 as its code runs it), every constant a config field; the defaults are
Fan's OU protocol and ``FAN_POROUS_PARAMS`` holds the porous one. Per JKO step, ``iters_per_step`` outer
iterations; each draws a minibatch y (``batch_size``) of the current particles and z ~ Gamma_k, takes
``dual_steps`` Adam steps on the dual with T(y) detached and ``t_steps`` Adam steps on T, on the same (y, z). T
and the dual are warm-started across steps and their Adam states persist. At the end of the step T is frozen (eval
mode, no dropout) as T_{k+1}, the particles of P_{k+1} are regenerated from fresh P_0 samples through
T_1..T_{k+1}, and Gamma is refit to them.

**Adaptive per-step budget** (``budget="plateau"``; the default ``"fixed"`` is the papers' protocol). Each step
draws a probe (``plateau_probe`` particles of P_k and as many samples of Gamma_k), fixed for the step, and every
``plateau_every`` iterations evaluates on it the step objective with T in eval mode,

    J = E_probe |y - T y|^2 / (2h) + (the dual's estimate of F(T#P_k)),

for the KL tau (1 + E log r(Ty) - E_Gamma r(z) + E[log Gamma_k(Ty) - log Q(Ty)]) (the NWJ bound of paper Eq. 8
plus the change of reference measure of Cor. 3.3), for the generalised entropy the dual's value (Eq. 10). The
step stops once at least ``plateau_min_iters`` iterations are done and the least-squares slope of the last
``plateau_window`` values of J is no longer significantly different from zero (its t-statistic is at most
``plateau_z`` in size: :mod:`wgfbench.methods.plateau`); ``iters_per_step`` is the cap. No exact solution is used. The
probe's draws come from the global RNG after the step's minibatches would (so a fixed budget's random stream is
unchanged); ``extra`` reports ``inner_iters`` and ``plateau_t_stat``.

**Particles** (``particles``): ``"regenerate"`` (the default, Fan's code) draws P_{k+1}'s particle set afresh
from P_0 through all k + 1 maps: O(k) pushes per step, O(K^2) per run. ``"carry"`` pushes the current set through
the new map only, P_{k+1} = T_{k+1}(P_k) (as Fan et al.'s image experiments update their particles): one push per
step, O(K) per run, the same particles all along (training minibatches are then drawn from one fixed sample of
P_0 carried forward; the evaluation samples stay fresh P_0 draws through the chain). A restore pushes the run's
initial P_0 draw through the saved maps in the same chunks, which gives the carried set bit for bit.

**Learning rates** (``lr_t``, ``lr_dual``; per step with ``lr_t_schedule``, ``lr_dual_schedule``: (first step,
lr) pairs, :mod:`wgfbench.schedules`). Fan et al.'s mixture runs multiply both by 0.4 after 20 steps (a StepLR in
their code): ``[[0, 1.0e-3], [20, 4.0e-4]]`` for each. The two Adams persist across steps; a schedule sets their
learning rate at the start of each step and leaves their moment estimates as they are.

**Compiled losses** (``compile``): the networks are small (width 64), so on a GPU the inner loop is bound by
kernel launches, not arithmetic. ``compile="default"`` passes the two losses (the dual's loss and the T-loss with
T's forward) through ``torch.compile`` (forward and backward graphs fused by inductor); ``"reduce-overhead"``
also replays them as CUDA graphs on a GPU (on the CPU it is ``"default"``). The minibatch draws, the optimiser
steps and the regeneration stay eager; the losses compute the same functions (tested against eager), and the
reference's refit quantities are tensors, so a refit does not recompile. The first step pays the compilation.
With ICNN maps (T = grad psi) the T-loss differentiates through a gradient (double backward), which
torch.compile's autograd does not support: only the dual's loss is compiled there.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats, UnsupportedProblem, check_finite
from wgfbench.methods.plateau import PlateauRule, plateau_rule
from wgfbench.methods.pushforward import GradientOfPotential, MapChain
from wgfbench.methods.variational_jko.duals import DUALS, EntropyDual
from wgfbench.nets.adam import adam
from wgfbench.nets.mlp import ResidualMLP
from wgfbench.params import Count, Fraction, NonNegative, NonNegCount, Positive, Range
from wgfbench.schedules import StepSchedule, normalise, value_at
from wgfbench.timing import timed

CompileMode = Literal["off", "default", "reduce-overhead"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)

# Fan et al.'s porous-medium protocol (their porous configs; step size 5e-4 and 50 steps are suite values).
# t_steps is 2 for d = 3 and 1 for d = 6 in their scripts; dual_hidden 2 / 3.
FAN_POROUS_PARAMS: dict[str, object] = {
    "map": "icnn",
    "icnn_width": 64,
    "icnn_layers": 1,
    "icnn_rank": 1,
    "iters_per_step": 1000,
    "batch_size": 1024,
    "dual_steps": 3,
    "t_steps": 2,
    "lr_t": 1e-3,
    "lr_dual": 1e-3,
    "weight_decay": 1e-7,
    "dual_width": 16,
    "dual_hidden": 2,
    "box_scale": 1.5,
}


@dataclasses.dataclass(frozen=True)
class VariationalJKOConfig(MethodConfig):
    """Defaults: Fan et al.'s OU protocol (their OU configs and Algorithm 1). Porous: FAN_POROUS_PARAMS."""

    n_particles: Count = 512_000
    batch_size: Count = 1024
    iters_per_step: Count = 500
    dual_steps: Count = 3  # Adam steps on the dual per outer iteration (Fan's "h" steps)
    t_steps: Count = 1
    lr_t: Positive = 5e-3
    lr_dual: Positive = 5e-3
    # per-step learning rates, (first step, lr) pairs from step 0 on (wgfbench.schedules); (): lr_t, lr_dual throughout
    lr_t_schedule: StepSchedule = ()
    lr_dual_schedule: StepSchedule = ()
    weight_decay: NonNegative = 0.0
    map: Literal["mlp", "icnn"] = "mlp"  # "mlp" (residual MLP) or "icnn" (gradient of a DenseICNN)
    t_width: Count = 64
    t_hidden: Count = 2
    t_dropout: Fraction = 0.02
    t_final_prelu: bool = False
    icnn_width: Count = 64
    icnn_layers: Count = 2
    icnn_rank: Count = 1
    icnn_activation: Literal["celu", "softplus"] = "celu"
    icnn_strong_convexity: NonNegative = 1e-6
    icnn_pretrain_iters: NonNegCount = 4000
    icnn_pretrain_lr: Positive = 8e-3
    dual_width: Count = 64
    dual_hidden: Count = 1
    ratio: Literal["quadratic", "smooth"] = "quadratic"  # KL only
    gamma0_var: Positive = 1.5  # KL only
    box_scale: Positive = 1.5  # generalised entropy only, from here on
    box_quantile: Annotated[float, Range(0.0, 1.0, open_low=True)] = 0.999
    reference_shape: Literal["box", "ball"] = "box"  # "box" (the paper) or "ball"
    dual_scale: Literal["moment", "box"] = "moment"  # "moment" or "box" (Fan's parameterisation)
    regen_chunk: Count = 65_536
    # "regenerate": P_{k+1}'s particles are fresh P_0 draws through T_1..T_{k+1} (Fan's code; O(k) pushes per
    # step); "carry": P_{k+1} = T_{k+1}(P_k), the same particles pushed through the new map only (one push per step)
    particles: Literal["regenerate", "carry"] = "regenerate"
    # inner iterations per step: "fixed" (iters_per_step, the papers' protocol) or "plateau" (stop once the probe
    # objective no longer decreases, wgfbench.methods.plateau; iters_per_step is then the cap)
    budget: Literal["fixed", "plateau"] = "fixed"
    plateau_every: Count = 10  # iterations between probe values
    plateau_window: Annotated[int, Range(3, None)] = 8  # probe values in the slope test
    plateau_min_iters: NonNegCount = 50
    plateau_z: NonNegative = 1.0  # stop when the slope's t-statistic is at most this in size
    plateau_probe: Count = 4096  # probe minibatch size (particles and reference samples)
    # torch.compile mode of the two losses: "off" (eager), "default", or "reduce-overhead" (CUDA graphs on a GPU)
    compile: CompileMode = "off"

    def __post_init__(self) -> None:  # a suite gives lists; keep the frozen config hashable (and the order checked)
        object.__setattr__(self, "lr_t_schedule", normalise(self.lr_t_schedule))
        object.__setattr__(self, "lr_dual_schedule", normalise(self.lr_dual_schedule))

    def learning_rates(self, k: int) -> tuple[float, float]:
        """(lr of T, lr of the dual) at JKO step k (from P_k to P_{k+1}, k = 0, 1, ...): each schedule's value at
        k, the constant lr_t / lr_dual before its first step or without one."""
        return value_at(self.lr_t_schedule, k, self.lr_t), value_at(self.lr_dual_schedule, k, self.lr_dual)


def build_map(dim: int, config: VariationalJKOConfig) -> nn.Module:
    """The trainable map T: a residual MLP, or the gradient of a DenseICNN potential."""
    if config.map == "mlp":
        return ResidualMLP(dim, config.t_width, config.t_hidden, config.t_dropout, config.t_final_prelu)
    from wgfbench.nets.icnn import DenseICNN

    hidden = [config.icnn_width] * config.icnn_layers
    psi = DenseICNN(dim, hidden, config.icnn_rank, config.icnn_activation, config.icnn_strong_convexity)
    return GradientOfPotential(psi)


def compile_losses(
    dual_loss: Callable, t_loss: Callable, mode: CompileMode, compile_t: bool = True
) -> tuple[Callable, Callable]:
    """The two losses as they are (``mode="off"``) or through ``torch.compile`` (module docstring).

    ``compile_t=False`` leaves the T-loss eager (ICNN maps: it needs a double backward).

    With CUDA graphs (``"reduce-overhead"``) each call first marks a new step: a loss's outputs are consumed
    (backward) before its next call, so the graphs may reuse their memory.
    """
    if mode == "off":
        return dual_loss, t_loss

    def compiled(fn: Callable) -> Callable:
        fast = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
        if mode != "reduce-overhead":
            return fast

        def step_marked(*args: Tensor) -> Tensor:
            torch.compiler.cudagraph_mark_step_begin()
            return fast(*args)

        return step_marked

    return compiled(dual_loss), compiled(t_loss) if compile_t else t_loss


class VariationalJKO(JKOMethod):
    """Fan et al.'s variational JKO for the KL (with an interaction), the generalised entropy (with a confinement)
    and the Jensen-Shannon divergence. See the module docstring."""

    name = "variational_jko"
    role = "centrepiece"
    color = "#0173b2"
    Config = VariationalJKOConfig
    functionals = frozenset(DUALS)
    accelerated = True
    time_dependent_ok = True  # KL: the dual's energy uses problem.at_time(t_{k+1}) for step k -> k+1
    confinement_ok = True  # the entropy dual adds confinement/2 E|Ty|^2
    density_when = "map=icnn"  # with ICNN maps only (T = grad psi): an instance sets has_density
    tiny_params: ClassVar[dict[str, Any]] = {"n_particles": 2048, "batch_size": 256, "iters_per_step": 5}
    timing_params: ClassVar[dict[str, Any]] = {"n_particles": 8192, "iters_per_step": 10, "regen_chunk": 8192}

    def __init__(self, problem, step_size: float, config: VariationalJKOConfig, seed: int) -> None:
        super().__init__(problem, step_size, config, seed)
        d = problem.dim
        self.has_density = config.map == "icnn"
        self.T = build_map(d, config).to(self.device, self.dtype)
        self.dual = DUALS[problem.functional](problem, config, self.device, self.dtype)
        self.dual_net = self.dual.net
        self.opt_t = adam(self.T.parameters(), lr=config.lr_t, weight_decay=config.weight_decay)
        self.opt_dual = adam(self.dual_net.parameters(), lr=config.lr_dual, weight_decay=config.weight_decay)
        self._dual_loss, self._t_loss_of = compile_losses(
            self.dual.dual_loss, self._t_loss_at, config.compile, compile_t=config.map != "icnn"
        )
        # P_0 in the method's own dtype: the maps run in it, and float64 normals cost several times more to draw
        self.chain = MapChain(problem.initial(), self.device, self.dtype, config.regen_chunk, p0_dtype=self.dtype)
        self.particles = self.chain.draw_particles(config.n_particles, self.generator)
        if isinstance(self.dual, EntropyDual):
            self.dual.refit(self.particles)
        self.pretrain_s = 0.0
        self.inner_iters = 0
        self.plateau: PlateauRule | None = None
        if config.map == "icnn" and config.icnn_pretrain_iters > 0:
            self._pretrain_identity()

    @classmethod
    def check_supports(cls, problem, config: VariationalJKOConfig | None = None) -> None:
        super().check_supports(problem, config)
        if problem.time_dependent and problem.functional != "kl":
            raise UnsupportedProblem(
                f"method {cls.name!r} follows a time-dependent target for the KL only, not {problem.functional!r}"
            )

    def _pretrain_identity(self) -> None:
        """Fit grad psi ~ id on P_0 particles (Mokrov et al., NeurIPS 2021, §4: identity initialisation)."""
        from wgfbench.nets.icnn import pretrain_identity

        cfg = self.config
        n = self.particles.shape[0]
        with timed(self.device) as m:
            pretrain_identity(
                self.T.potential,
                lambda b: self.particles[torch.randint(n, (b,), device=self.device)],
                batch_size=cfg.batch_size,
                lr=cfg.icnn_pretrain_lr,
                max_iters=cfg.icnn_pretrain_iters,
            )
        self.pretrain_s = m.seconds

    # --- samples and densities of P_k = (T_k o ... o T_1) # P_0 ------------------------------------------------
    def evaluation_particles(self) -> Tensor | None:
        """The particle set of P_k the method holds, when it is a fresh i.i.d. sample of P_k (regenerated from
        P_0 each step); None with ``particles="carry"``: the carried set trained the maps, so it is not
        independent of them and the evaluation draws fresh samples instead."""
        return None if self.config.particles == "carry" else self.particles

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.chain.sample(n, generator)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Samples of P_k and log p_k at them (ICNN maps only; change of variables)."""
        if not self.has_density:
            return super().sample_with_log_density(n, generator)
        return self.chain.sample_with_log_density(n, generator)

    def log_density(self, x: Tensor) -> Tensor:
        """log p_k at arbitrary points by inverting T_k, ..., T_1 (ICNN maps only; NaN where an inversion fails)."""
        if not self.has_density:
            return super().log_density(x)
        return self.chain.log_density(x)

    # --- one JKO step --------------------------------------------------------------------------------
    def _t_loss(self, y: Tensor, ty: Tensor) -> Tensor:
        """E|y - Ty|^2/(2h) + the dual's estimate of F(T#P_k) (up to terms constant in T)."""
        transport = ((y - ty) ** 2).sum(-1).mean() / (2.0 * self.step_size)
        return transport + self.dual.energy(ty)

    def _t_loss_at(self, y: Tensor) -> Tensor:
        """The T-loss at the minibatch y, T's forward included (the unit that ``compile`` compiles)."""
        return self._t_loss(y, self.T(y))

    def _draw_probe(self) -> tuple[Tensor, Tensor]:
        """The adaptive budget's probe of this step: particles of P_k and reference samples, fixed for the step."""
        n = self.particles.shape[0]
        idx = torch.randint(n, (self.config.plateau_probe,), device=self.device)
        return self.particles[idx], self.dual.sample_reference(self.config.plateau_probe)

    def probe_objective(self, probe: tuple[Tensor, Tensor]) -> float:
        """The step objective E|y - Ty|^2/(2h) + (the dual's estimate of F(T#P_k)) on the probe, T in eval mode
        (the map the step would freeze now); no parameter gradients."""
        y, z = probe
        self.T.eval()
        try:
            with torch.no_grad():
                ty = self.T(y)
                transport = ((y - ty) ** 2).sum(-1).mean() / (2.0 * self.step_size)
                return float(transport + self.dual.objective(ty, z))
        finally:
            self.T.train()

    def _train_step(self) -> float:
        cfg = self.config
        n = self.particles.shape[0]
        self.T.train()
        loss_t = torch.zeros((), device=self.device)
        rule = plateau_rule(cfg)
        probe = self._draw_probe() if rule is not None else None
        self.plateau = rule
        self.inner_iters = 0
        for it in range(1, cfg.iters_per_step + 1):
            idx = torch.randint(n, (cfg.batch_size,), device=self.device)
            y = self.particles[idx]
            z = self.dual.sample_reference(cfg.batch_size)
            with torch.no_grad():
                ty = self.T(y)
            self.dual_net.requires_grad_(True)
            for _ in range(cfg.dual_steps):
                self.opt_dual.zero_grad(set_to_none=True)
                self._dual_loss(ty, z).backward()
                self.opt_dual.step()
            self.dual_net.requires_grad_(False)
            for _ in range(cfg.t_steps):
                self.opt_t.zero_grad(set_to_none=True)
                loss_t = self._t_loss_of(y)
                loss_t.backward()
                self.opt_t.step()
            self.inner_iters = it
            if rule is not None and rule.due(it) and rule.record(it, self.probe_objective(probe)):
                break
        self.dual_net.requires_grad_(True)
        return loss_t.item()

    def _next_particles(self) -> Tensor:
        """The particles of P_{k+1} once T_{k+1} is appended to the chain (the ``particles`` option)."""
        if self.config.particles == "carry":
            return self.chain.push_last(self.particles)
        return self.chain.draw_particles(self.config.n_particles, self.generator)

    def _set_learning_rates(self) -> None:
        """This step's learning rates (``lr_t_schedule``, ``lr_dual_schedule``) in the two persistent Adams (their
        moment estimates carry over, as in Fan et al.'s code, where a StepLR scheduler changes them)."""
        for opt, lr in zip((self.opt_t, self.opt_dual), self.config.learning_rates(self.k), strict=True):
            for group in opt.param_groups:
                group["lr"] = lr

    def _advance(self) -> StepStats:
        if self.problem.time_dependent:  # the potential frozen at the step's end (the exact JKO iterates' choice)
            self.dual.set_problem(self.problem.at_time(self.problem.time_of_step(self.k + 1, self.step_size)))
        self._set_learning_rates()
        with timed(self.device) as train:
            loss = self.finite_loss(self._train_step())
        with timed(self.device) as regen:
            self.chain.append(self.T)
            self.particles = self._next_particles()
            check_finite("variational JKO particles", self.particles)
            diagnostics = self.dual.diagnostics(self.particles)
            self.dual.refit(self.particles)
        extra = {"peak_mem_mb": train.peak_mem_mb, "inner_iters": float(self.inner_iters), **diagnostics}
        if self.plateau is not None:
            extra["plateau_t_stat"] = self.plateau.t_stat
        if isinstance(self.dual, EntropyDual):
            extra["box_outside_frac"] = self.dual.outside_frac
        if self.k == 0 and self.pretrain_s:
            extra["pretrain_s"] = self.pretrain_s
        return StepStats(train_s=train.seconds, regen_s=regen.seconds, loss=loss, extra=extra)

    # --- checkpointing --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            T=self.T.state_dict(),
            dual=self.dual_net.state_dict(),
            opt_t=self.opt_t.state_dict(),
            opt_dual=self.opt_dual.state_dict(),
            maps=self.chain.state_dict(),
            particles_gen_state=self.chain.particles_gen_state,
            # minibatch draws, reference samples and dropout use torch's global RNG (dropout cannot take a
            # generator): its state makes a resumed run continue exactly as the uninterrupted one
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.T.load_state_dict(state["T"])
        self.dual_net.load_state_dict(state["dual"])
        self.opt_t.load_state_dict(state["opt_t"])
        self.opt_dual.load_state_dict(state["opt_dual"])
        self.chain.load_state_dict(state["maps"], lambda: copy.deepcopy(self.T))
        # the very particle set the run was using, then the global RNGs where the run left it
        self.particles = self.chain.draw_particles(
            self.config.n_particles, self.generator, state["particles_gen_state"]
        )
        self.dual.refit(self.particles)
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
