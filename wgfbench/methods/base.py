"""The method interface: one JKO scheme, advanced step by step.

A method is built from ``(problem, step_size, config, seed)`` and then called ``step()`` once per JKO step:
after the k-th call it represents P_k, the k-th iterate of

    P_{k+1} = argmin_P  W2^2(P, P_k) / (2h) + F(P)        (Jordan, Kinderlehrer & Otto, SIAM J. Math. Anal. 1998)

with h the step size. It exposes samples of P_k (``sample``) and, where it has one, the log-density of P_k at
its own samples (``sample_with_log_density``) and at arbitrary points (``log_density``).

A method is one module holding one subclass of :class:`JKOMethod`; everything the rest of wgfbench needs to know
about it is a class attribute there (benchopt's solver files are the model):

* ``name`` (the registry key), ``role`` ("centrepiece", "baseline" or "reference": the order of rows in tables
  and figures), ``color`` (its colour in every figure; None: the next spare palette colour);
* what it can run: ``functionals``, ``requires`` (capability protocols of :mod:`wgfbench.problems.base` a
  problem must satisfy), ``max_dim``, ``needs_gaussian_start``, and :meth:`JKOMethod.check_supports` for any
  further condition; a pairing that cannot run is refused with one line at validation;
* ``has_density`` (``density_when`` where only some configurations have one), ``accelerated`` (trains networks:
  a GPU job on a cluster);
* ``Config``: a frozen dataclass of hyper-parameters whose defaults are the paper's, validated from its
  annotations (:mod:`wgfbench.params`); a suite overrides any field by name;
* ``tiny_params`` (a CPU configuration that runs two JKO steps of OU in d = 2 in about a second: the contract
  test uses it), ``timing_params`` (a small budget for the timing benchmarks);
* ``restores_exactly``: True (the default the contract test checks) when a run restored from ``state_dict()``
  continues bit for bit like the uninterrupted one; a method that cannot promise it says why in
  ``restore_note``.

Subclasses implement :meth:`JKOMethod._advance` (one step from P_k to P_{k+1}); :meth:`JKOMethod.step` counts the
steps and turns a non-finite loss into :class:`Diverged`.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from wgfbench.params import Device, build_params

Role = Literal["centrepiece", "baseline", "reference"]
ROLES: tuple[str, ...] = Role.__args__
DType = Literal["float16", "bfloat16", "float32", "float64"]


class UnsupportedProblem(ValueError):
    """The method cannot run this problem (functional, dimension or initial law)."""


class Diverged(RuntimeError):
    """A JKO step produced a non-finite loss or non-finite samples; the run is recorded as diverged."""


def check_finite(what: str, x: Tensor) -> None:
    """Raise :class:`Diverged` if ``x`` holds a NaN or an infinity."""
    if not bool(torch.isfinite(x).all()):
        raise Diverged(f"{what} became non-finite")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Fields every method accepts. Subclass it (frozen dataclass) with the method's own fields."""

    device: Device = "auto"  # "auto" = cuda when available, else cpu
    dtype: DType = "float32"


@dataclasses.dataclass
class StepStats:
    """What one JKO step reports. Times in seconds, measured by :mod:`wgfbench.timing`; ``loss`` None for a
    method that optimises nothing."""

    train_s: float = 0.0
    regen_s: float = 0.0
    loss: float | None = None
    extra: dict[str, float] = dataclasses.field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedProblem(f"device {name!r} asked for, but CUDA is not available here")
    return dev


def build_config(config_cls: type[MethodConfig], params: dict[str, Any] | None) -> MethodConfig:
    """A method's Config from a dict, checked against its annotations (:mod:`wgfbench.params`); raises
    :class:`~wgfbench.params.ParamError` naming every unknown name and every wrong value."""
    return build_params(config_cls, params)


class JKOMethod(ABC):
    """Base class of every method (centrepiece, baselines, references). See the module docstring."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    role: ClassVar[Role] = "baseline"
    color: ClassVar[str | None] = None
    functionals: ClassVar[frozenset[str]] = frozenset({"kl"})
    requires: ClassVar[tuple[type, ...]] = ()
    has_density: ClassVar[bool] = False
    density_when: ClassVar[str] = ""  # set where an instance has a density for some configs only
    max_dim: ClassVar[int | None] = None
    needs_gaussian_start: ClassVar[bool] = False
    accelerated: ClassVar[bool] = False  # trains networks: a GPU job on a cluster (Snakefile resource gpu)
    time_dependent_ok: ClassVar[bool] = False  # queries problem.at_time(t_{k+1}) for a time-dependent target
    confinement_ok: ClassVar[bool] = False  # adds a generalised-entropy problem's confinement lambda/2 E|x|^2
    tiny_params: ClassVar[dict[str, Any]] = {}
    timing_params: ClassVar[dict[str, Any]] = {}
    restores_exactly: ClassVar[bool] = True
    restore_note: ClassVar[str] = ""
    density_gaps: ClassVar[str] = ""  # non-empty: why log_density may be NaN at some points (unresolved there)
    contract_problem: ClassVar[str] = "ou"  # the problem (d = 2) the contract test runs the tiny_params on

    def __init__(self, problem, step_size: float, config: MethodConfig, seed: int) -> None:
        self.check_supports(problem, config)
        if not step_size > 0:
            raise ValueError(f"step size must be positive, got {step_size}")
        self.problem = problem
        self.step_size = float(step_size)
        self.config = config
        self.seed = int(seed)
        self.k = 0
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        self.generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)

    @classmethod
    def check_supports(cls, problem, config: MethodConfig | None = None) -> None:
        """Raise :class:`UnsupportedProblem` with a clear reason if this method cannot run ``problem``.

        Subclasses with further conditions extend it (and call this one).
        """
        if problem.functional not in cls.functionals:
            raise UnsupportedProblem(
                f"method {cls.name!r} handles functionals {sorted(cls.functionals)}, "
                f"not {problem.functional!r} (problem {problem.name!r})"
            )
        from wgfbench.problems.base import FUNCTIONAL_PROTOCOLS

        for capability in (FUNCTIONAL_PROTOCOLS[problem.functional], *cls.requires):
            if not isinstance(problem, capability):
                raise UnsupportedProblem(
                    f"method {cls.name!r} needs a problem with {capability.__doc__.splitlines()[0].rstrip('.')}"
                    f" ({capability.__name__}); problem {problem.name!r} is not one"
                )
        if cls.max_dim is not None and problem.dim > cls.max_dim:
            raise UnsupportedProblem(f"method {cls.name!r} supports dim <= {cls.max_dim}, got {problem.dim}")
        if cls.needs_gaussian_start and not problem.initial().is_gaussian:
            raise UnsupportedProblem(f"method {cls.name!r} needs a Gaussian initial law")
        if problem.time_dependent and not cls.time_dependent_ok:
            raise UnsupportedProblem(
                f"method {cls.name!r} does not query a time-dependent target ({problem.name!r} needs at_time(t))"
            )
        if problem.functional == "generalised_entropy" and problem.confinement != 0 and not cls.confinement_ok:
            raise UnsupportedProblem(
                f"method {cls.name!r} has no confinement term ({problem.name!r} has lambda = {problem.confinement})"
            )

    @classmethod
    def sample_limit(cls, config: MethodConfig) -> int | None:
        """The most samples of P_k one ``sample()`` call can return (None: any number; a particle method holds a
        fixed set). Validation refuses an evaluation that asks for more."""
        return None

    def step(self) -> StepStats:
        """Advance from P_k to P_{k+1}; raise :class:`Diverged` if the step's loss is not finite."""
        stats = self._advance()
        if stats.loss is not None:
            self.finite_loss(stats.loss)
        self.k += 1
        return stats

    def finite_loss(self, loss: float) -> float:
        """``loss`` if it is finite, else :class:`Diverged` (a method may call it before work that depends on it)."""
        if not math.isfinite(loss):
            raise Diverged(f"{self.name} loss became non-finite")
        return loss

    @abstractmethod
    def _advance(self) -> StepStats:
        """One JKO step from P_k to P_{k+1} (``self.k`` is still k); timings and diagnostics."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n samples of the current P_k, shape (n, d), on the CPU."""

    def evaluation_particles(self) -> Tensor | None:
        """The particle set of P_k the method holds (i.i.d. samples of P_k, any device and dtype), or None.

        Evaluation fits moments on all of them, so that a table resolves what the method affords; a method that
        returns None is sampled instead (``eval.n_samples``)."""
        return None

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n samples of P_k and log p_k at them (change of variables). Only if ``has_density``."""
        raise NotImplementedError(f"method {self.name!r} has no density")

    def log_density(self, x: Tensor) -> Tensor:
        """log p_k at arbitrary points x (n, d). Only if ``has_density``."""
        raise NotImplementedError(f"method {self.name!r} has no density")

    # --- checkpointing (resume a run from its last finished JKO step) ------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from step k; methods with learned state extend it."""
        return {"k": self.k, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k = int(state["k"])
        self.generator.set_state(state["generator"])
