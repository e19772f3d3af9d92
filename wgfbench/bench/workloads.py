"""Speed workloads shared by every timing consumer: one definition, four users.

* the asv suite (``benchmarks/asv``), the pytest-benchmark micro-benchmarks (``benchmarks/microbench``),
  the CI timing gate (``scripts/timing_gate.py``) and the timing table (``scripts/timing_table.py``)
  all build their work through the functions below and time it with :mod:`wgfbench.timing`.

A :class:`Workload` is a ``setup() -> call`` pair: ``setup`` builds the state (untimed) and returns the
zero-argument function that is timed; warm-up calls are excluded (:func:`wgfbench.timing.measure`).
For a JKO method the call is ``method.step``: the first step is the warm-up, steps 2.. are timed, so
every consumer times the same deterministic sequence of steps of a freshly built method.

This module also holds the two *reference implementations* the speed claims are measured against
(benchmark-local on purpose, they are not part of the library):

* :func:`naive_train_step`: the variational JKO inner loop written as a straightforward
  reimplementation of Fan et al.'s training loop would be (ICML 2022, Algorithm 1);
* :func:`per_coordinate_hessian`: the Hessian of an ICNN potential by d separate backward passes
  (one per coordinate of grad psi), as Mokrov et al.'s and Fan et al.'s code form it before ``logdet``.

Budgets are deliberately small (timings, not accuracy): each method's class attribute ``timing_params``. They
are stated in every table that uses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

STEP_SIZE = 0.05  # Fan et al.'s OU step


def timing_params(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The small timing budget of ``method`` (its class's ``timing_params``: paper-sized networks and minibatches,
    few inner iterations and particles), on the CPU, plus ``overrides``."""
    from wgfbench.registry import method_class

    params = {"device": "cpu", **method_class(method).timing_params}
    params.update(overrides or {})
    return params


def bench_spec(method: str, dim: int, seed: int = 0, params: dict[str, Any] | None = None, problem: str = "ou"):
    """The RunSpec of a benchmark run: ``method`` on ``problem`` in dimension ``dim`` with the timing budget."""
    from wgfbench.evaluate import EvalSpec
    from wgfbench.suites import RunSpec

    return RunSpec(
        "bench", problem, problem, {}, method, timing_params(method, params), dim, seed, STEP_SIZE, 1, EvalSpec()
    )


def build_jko(method: str, dim: int, seed: int = 0, params: dict[str, Any] | None = None, problem: str = "ou"):
    """A fresh ``method`` on ``problem`` in dimension ``dim`` with the timing budget (untimed), built by the one
    loop's :func:`wgfbench.loop.build`."""
    from wgfbench.loop import build

    return build(bench_spec(method, dim, seed, params, problem))[1]


@dataclasses.dataclass(frozen=True)
class Workload:
    """``setup()`` (untimed) returns the call to time; ``warmup`` calls are excluded, ``repeats`` timed."""

    name: str
    setup: Callable[[], Callable[[], Any]]
    warmup: int = 1
    repeats: int = 5
    description: str = ""


# --- JKO steps ---------------------------------------------------------------------------------------
def jko_step_workload(method: str, dim: int, repeats: int = 4, params: dict[str, Any] | None = None) -> Workload:
    """One JKO step of a freshly built method: step 1 is the warm-up, steps 2..repeats+1 are timed."""

    def setup() -> Callable[[], Any]:
        return build_jko(method, dim, params=params).step

    return Workload(
        f"{method}.step[d={dim}]",
        setup,
        warmup=1,
        repeats=repeats,
        description=f"one JKO step of {method} on OU, d={dim}, its timing budget (timing_params) + {params or {}}",
    )


# --- metric kernels --------------------------------------------------------------------------------
def metric_inputs(dim: int, n: int, seed: int = 0):
    """(exact reference law, n samples of a different law) on OU: the reference at t = 0.5, P_0 samples."""
    from wgfbench.registry import make_problem

    prob = make_problem("ou", dim, seed)
    gen = torch.Generator().manual_seed(seed)
    return prob.reference(0.5), prob.initial().sample(n, gen)


def metric_workload(metric: str, dim: int, n: int, repeats: int = 5) -> Workload:
    """``wgfbench.metrics.<metric>(reference, samples, generator)`` at fixed (d, n)."""

    def setup() -> Callable[[], Any]:
        import wgfbench.metrics as metrics

        fn = getattr(metrics, metric)
        ref, x = metric_inputs(dim, n)
        gen = torch.Generator()

        def call() -> float:
            gen.manual_seed(1)
            return fn(ref, x, gen)

        return call

    return Workload(f"metrics.{metric}[d={dim},n={n}]", setup, warmup=1, repeats=repeats)


def w2_emd_workload(dim: int, n: int, repeats: int = 3) -> Workload:
    """Exact W2 (POT emd2, network simplex) between two fixed n-samples in dimension ``dim``."""

    def setup() -> Callable[[], Any]:
        from wgfbench.metrics import w2_emd

        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        y = torch.randn(n, dim, generator=gen, dtype=torch.float64) + 0.5
        return lambda: w2_emd(x, y)

    return Workload(f"metrics.w2_emd[d={dim},n={n}]", setup, warmup=1, repeats=repeats)


def exact_reference_workload(dim: int, repeats: int = 5) -> Workload:
    """Build an OU instance and its exact marginal at 10 times (eigendecompositions, matrix exponentials)."""

    def setup() -> Callable[[], Any]:
        from wgfbench.registry import make_problem

        def call() -> Any:
            prob = make_problem("ou", dim, 0)
            return [prob.reference(0.1 * k) for k in range(1, 11)]

        return call

    return Workload(f"ou.make_and_reference[d={dim}]", setup, warmup=1, repeats=repeats)


# --- the variational JKO inner loop: ours vs naive -------------------------------------------------
def vjko_inner(dim: int, iters: int = 10, seed: int = 0, params: dict[str, Any] | None = None):
    """A VariationalJKO after one JKO step (warm, Gamma refitted), configured for ``iters`` inner iterations."""
    p = {"iters_per_step": iters, **(params or {})}
    m = build_jko("variational_jko", dim, seed=seed, params=p)
    m.step()
    return m


def naive_train_step(m) -> float:
    """Fan et al.'s inner loop (paper Eq. 8, J1 x [J2 h-steps, J3 T-steps]) written straightforwardly.

    Same networks, optimisers, minibatch size and iteration counts as
    ``VariationalJKO._train_step`` (equal work in the algorithm's sense), but as a direct
    transcription of the Lightning training step would do it:

    * Gamma_k is a ``torch.distributions.MultivariateNormal`` rebuilt every iteration (a Cholesky of
      the covariance and argument validation each time), sampled and evaluated through it;
    * T(y) is recomputed (under no_grad) for every h-step instead of once per iteration;
    * ``zero_grad(set_to_none=False)`` (the torch 1.x default the paper's code ran with);
    * no ``requires_grad`` toggling, so the T-step backward also fills r's gradients;
    * ``.item()`` on both losses every iteration (the per-iteration logging; a host sync on GPU);
    * r evaluated on T(y) and on the reference samples in two passes;
    * ``torch.optim.Adam`` with torch's default implementation (a per-parameter loop on the CPU, ``foreach``
      on CUDA), set up by :func:`vjko_inner_workload`, where the method uses the fused kernel.
    """
    cfg = m.config
    kl = getattr(m, "dual", m)  # the KL dual object (or, in older trees, the method itself)
    mean = kl.gamma.mean
    cov = kl.gamma.chol @ kl.gamma.chol.T
    n = m.particles.shape[0]
    m.T.train()
    logged = 0.0
    for _ in range(cfg.iters_per_step):
        idx = torch.randint(n, (cfg.batch_size,), device=m.device)
        y = m.particles[idx]
        gamma = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        z = gamma.sample((cfg.batch_size,))
        for _ in range(cfg.dual_steps):
            with torch.no_grad():
                ty = m.T(y)
            m.opt_dual.zero_grad(set_to_none=False)
            loss_h = -m.dual_net.log_ratio(ty).mean() + m.dual_net.ratio(z).mean()
            loss_h.backward()
            m.opt_dual.step()
            logged = loss_h.item()
        for _ in range(cfg.t_steps):
            m.opt_t.zero_grad(set_to_none=False)
            ty = m.T(y)
            transport = ((y - ty) ** 2).sum(-1).mean() / (2.0 * m.step_size)
            energy = m.dual_net.log_ratio(ty) + gamma.log_prob(ty) - m.problem.log_target(ty)
            loss_t = transport + kl.tau * energy.mean()
            loss_t.backward()
            m.opt_t.step()
            logged = loss_t.item()
    return logged


def vjko_inner_workload(dim: int, iters: int = 10, naive: bool = False, repeats: int = 5) -> Workload:
    """``iters`` inner iterations of the variational JKO, ours (``_train_step``) or :func:`naive_train_step`."""

    def setup() -> Callable[[], Any]:
        m = vjko_inner(dim, iters)
        if not naive:
            return m._train_step
        cfg = m.config  # the optimisers a straightforward transcription would create: torch's default Adam
        m.opt_t = torch.optim.Adam(m.T.parameters(), lr=cfg.lr_t, weight_decay=cfg.weight_decay)
        m.opt_dual = torch.optim.Adam(m.dual_net.parameters(), lr=cfg.lr_dual, weight_decay=cfg.weight_decay)
        return lambda: naive_train_step(m)

    kind = "naive" if naive else "ours"
    return Workload(f"vjko.inner_{kind}[d={dim},iters={iters}]", setup, warmup=1, repeats=repeats)


# --- exact log-det of an ICNN potential: batched vs per-coordinate backward passes ----------------------
LOGDET_IMPLS = ("analytic", "torch_func", "per_coordinate")


def icnn_potential(dim: int, seed: int = 0):
    """A DenseICNN potential psi: (n, d) -> (n,) with Mokrov et al.'s OU size (2 x 64, rank 5, softplus)."""
    from wgfbench.nets.icnn import DenseICNN

    torch.manual_seed(seed)
    return DenseICNN(dim, (64, 64), rank=5, activation="softplus")


def per_coordinate_hessian(potential: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = False) -> Tensor:
    """Hessian of psi at each row of x by d backward passes: row i of H is grad_x (d psi / d x_i).

    This is how the ICNN-JKO codes form the Hessian before ``torch.logdet``: one autograd call for
    grad psi with ``create_graph=True``, then one ``autograd.grad`` per coordinate (with ``create_graph``
    when the log-det must be differentiated in the parameters, i.e. in training). Returns (n, d, d).
    """
    from wgfbench.densities import per_coordinate_grad_and_hessian

    return per_coordinate_grad_and_hessian(potential, x, create_graph=create_graph)[1]


def icnn_hessian(psi, x: Tensor, impl: str, create_graph: bool = False) -> Tensor:
    """Hess psi at the rows of x by ``impl``: the DenseICNN closed form ("analytic", what jko_icnn_exact uses),
    ``wgfbench.densities.batched_hessian`` ("torch_func", vmap(jacfwd(grad))), or d backward passes."""
    if impl == "analytic":
        return psi.grad_and_hessian(x)[1]
    if impl == "torch_func":
        from wgfbench.densities import batched_hessian

        return batched_hessian(psi, x)
    if impl == "per_coordinate":
        return per_coordinate_hessian(psi, x, create_graph=create_graph)
    raise ValueError(f"unknown Hessian implementation {impl!r}; choose one of {LOGDET_IMPLS}")


def logdet_workload(dim: int, n: int = 256, impl: str = "analytic", train: bool = False, repeats: int = 5) -> Workload:
    """log det Hess psi at n points (``logdet_spd``); with ``train`` also its gradient in psi's parameters
    (``logdet.mean().backward()``, the cost inside a JKO-ICNN-d training iteration)."""

    def setup() -> Callable[[], Any]:
        from wgfbench.densities import logdet_spd

        psi = icnn_potential(dim)
        x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))

        def value() -> Tensor:
            with torch.no_grad():
                return logdet_spd(icnn_hessian(psi, x, impl))

        def value_and_grad() -> Tensor:
            psi.zero_grad(set_to_none=True)
            out = logdet_spd(icnn_hessian(psi, x, impl, create_graph=True)).mean()
            out.backward()
            return out.detach()

        if impl != "per_coordinate":  # the no-grad value path still needs autograd for per-coordinate passes
            return value_and_grad if train else value
        return value_and_grad if train else (lambda: logdet_spd(icnn_hessian(psi, x, impl)).detach())

    mode = "value+grad" if train else "value"
    return Workload(f"logdet.{impl}.{mode}[d={dim},n={n}]", setup, warmup=1, repeats=repeats)


# --- the CI gate's set ---------------------------------------------------------------------------------
def gate_workloads() -> list[Workload]:
    """What the CI timing gate compares between two trees: each 0.05-1 s per call on one core."""
    return [
        jko_step_workload("variational_jko", 4, repeats=3),
        jko_step_workload("variational_jko", 64, repeats=3),
        jko_step_workload("exact_jko", 128, repeats=10),
        vjko_inner_workload(16, iters=10, repeats=3),
        metric_workload("symkl_moment", 64, 65_536),
        metric_workload("bures_w2_moment", 64, 65_536),
        metric_workload("sliced_w2", 32, 4_096),
        w2_emd_workload(8, 400),
        exact_reference_workload(128),
        logdet_workload(16, 128, impl="analytic", train=True),
    ]


# --- accuracy after a fixed small budget (asv track_ benchmarks) --------------------------------------
ACCURACY_ITERS = 100  # inner iterations per JKO step of the accuracy budget (the timing budget otherwise)


def accuracy_after_budget(method: str, dim: int, steps: int = 3, n_eval: int = 8192, seed: int = 0) -> dict[str, float]:
    """Errors of ``method`` after ``steps`` JKO steps with the small accuracy budget (OU, h = STEP_SIZE): the
    timing budget with ``ACCURACY_ITERS`` inner iterations per step where the method has them.

    Moment-fit SymKL and Bures W2 of n_eval samples against the exact JKO iterate (the method's own
    target) and against the PDE solution at t = steps * h. Deterministic for a fixed seed on one thread.
    """
    import dataclasses as dc

    from wgfbench.loop import advance
    from wgfbench.metrics import bures_w2_moment, symkl_moment
    from wgfbench.registry import method_class

    fields = {f.name for f in dc.fields(method_class(method).Config)}
    m = build_jko(
        method, dim, seed=seed, params={"iters_per_step": ACCURACY_ITERS} if "iters_per_step" in fields else {}
    )
    advance(m, steps)
    x = m.sample(n_eval, torch.Generator().manual_seed(seed + 1))
    jko_ref = m.problem.jko_reference(steps, m.step_size)
    pde_ref = m.problem.reference(m.problem.time_of_step(steps, m.step_size))
    return {
        "symkl_vs_jko": symkl_moment(jko_ref, x),
        "bures_w2_vs_jko": bures_w2_moment(jko_ref, x),
        "symkl_vs_pde": symkl_moment(pde_ref, x),
    }
