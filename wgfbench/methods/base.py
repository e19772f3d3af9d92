"""The method interface: one JKO scheme, advanced step by step.

A method is built from ``(problem, step_size, config, seed, device)`` and then called ``step()``
once per JKO step: after the k-th call it represents P_k, the k-th iterate of

    P_{k+1} = argmin_P  W2^2(P, P_k) / (2h) + F(P).

It exposes samples of P_k (``sample``) and, where it has one, the log-density of P_k at its own
samples (``sample_with_log_density``) and at arbitrary points (``log_density``).

Hyper-parameters live in a frozen dataclass ``Config`` per method whose defaults are the paper's;
a suite overrides any field by name. Unknown names are an error (see :func:`build_config`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor


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

    device: str = "auto"  # "auto" = cuda when available, else cpu
    dtype: str = "float32"


@dataclasses.dataclass
class StepStats:
    """What one JKO step reports. Times in seconds, measured by :mod:`wgfbench.timing`."""

    train_s: float = 0.0
    regen_s: float = 0.0
    loss: float = float("nan")
    extra: dict[str, float] = dataclasses.field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedProblem(f"device {name!r} asked for, but CUDA is not available here")
    return dev


def build_config(config_cls: type[MethodConfig], params: dict[str, Any] | None) -> MethodConfig:
    """Instantiate a method's Config from a dict, refusing unknown keys with the allowed ones named."""
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise KeyError(f"unknown parameter(s) {unknown} for {config_cls.__qualname__}; allowed: {sorted(fields)}")
    return config_cls(**params)


class JKOMethod(ABC):
    """Base class of every method (centrepiece and baselines). See the module docstring."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    functionals: ClassVar[frozenset[str]] = frozenset({"kl"})
    has_density: ClassVar[bool] = False
    density_when: ClassVar[str] = ""  # set where an instance has a density for some configs only
    max_dim: ClassVar[int | None] = None
    needs_gaussian_start: ClassVar[bool] = False
    accelerated: ClassVar[bool] = False  # trains networks: a GPU job on a cluster (Snakefile resource gpu)
    time_dependent_ok: ClassVar[bool] = False  # queries problem.at_time(t_{k+1}) for a time-dependent target
    confinement_ok: ClassVar[bool] = False  # adds a generalised-entropy problem's confinement lambda/2 E|x|^2

    def __init__(self, problem, step_size: float, config: MethodConfig, seed: int) -> None:
        self.check_supports(problem, config)
        if not step_size > 0:
            raise ValueError(f"step size must be positive, got {step_size}")
        self.problem = problem
        self.h = float(step_size)
        self.config = config
        self.seed = int(seed)
        self.k = 0
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        self.generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)

    @classmethod
    def check_supports(cls, problem, config: MethodConfig | None = None) -> None:
        """Raise :class:`UnsupportedProblem` with a clear reason if this method cannot run ``problem``."""
        if problem.functional not in cls.functionals:
            raise UnsupportedProblem(
                f"method {cls.name!r} handles functionals {sorted(cls.functionals)}, "
                f"not {problem.functional!r} (problem {problem.name!r})"
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

    @abstractmethod
    def step(self) -> StepStats:
        """Advance from P_k to P_{k+1}; return timings and diagnostics."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n samples of the current P_k, shape (n, d), on the CPU."""

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

    def _regenerate_particles(self) -> None:
        """Draw the particle set of P_k afresh from P_0 with ``self.generator`` (methods with particles)."""
        raise NotImplementedError(f"method {self.name!r} keeps no particle set")

    def _replay_particles(self, particles_gen_state: Tensor | None) -> None:
        """Redraw a particle set by ``self._regenerate_particles()`` from the generator state it was first drawn
        from (``None``: the current state), leaving the generator where it was (for checkpoint restores)."""
        after = self.generator.get_state()
        self.generator.set_state(after if particles_gen_state is None else particles_gen_state)
        self._regenerate_particles()
        self.generator.set_state(after)
