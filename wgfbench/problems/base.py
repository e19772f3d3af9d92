"""What a problem of the suite is: an initial law, an energy functional, and exact references.

A problem is a Wasserstein gradient flow dP/dt = -grad_W F(P) started from P_0, for which the suite knows the
exact solution P_t (``reference(t)``) and, where it exists in closed form, the exact JKO iterate P_k^JKO of step
size h (``jko_reference(k, h)``), the time-discretisation floor.

A problem is one module of :mod:`wgfbench.problems` with a factory ``make(dim, seed, **params)`` marked by
:func:`problem_factory`; its parameters are validated from the factory's annotations (:mod:`wgfbench.params`),
and the instance is a pure function of (dim, seed, params). The instance satisfies :class:`Problem`, the
contract every problem meets (tests/test_problem_contract.py checks it for every registered problem), and
declares what else it offers through the **capability protocols** below, which methods name in their
``requires`` so that a pairing that cannot run is refused at validation with one line. The functional kinds
(the first two and the JSD are (A, B, Gamma) triples of Fan et al., ICML 2022, Table 1):

* ``"kl"``, :class:`KLProblem`: F(P) = temperature * KL(P || Q) with Q ∝ exp(log_target) known up to a
  constant. For OU, temperature = 1/beta and log_target(x) = -beta/2 (x-b)^T A (x-b), so that
  F(P) = ∫ V dP + beta^-1 ∫ P log P + const with V the OU potential.
* ``"generalised_entropy"``, :class:`EntropyProblem`: F(P) = 1/(m-1) ∫ P^m dx + confinement/2 ∫|x|^2 dP (the
  porous medium equation dP/dt = ΔP^m + confinement div(x P); Otto, Comm. PDE 2001; ``confinement`` = 0 for
  the Barenblatt problem).
* ``"kl_interaction"``, :class:`InteractionProblem`: F(P) = temperature * KL(P || Q) + ½ ∫∫ W(x - y) dP dP with
  the pair potential ``interaction(z)`` (:mod:`wgfbench.problems.mckean_vlasov`).
* ``"jsd"``, :class:`JSDProblem`: F(P) = D_f(P || Q) with f the Jensen-Shannon generator, Q = exp(log_target)
  *normalised* and samplable by ``target()`` (:mod:`wgfbench.problems.jsd_grid`).

Further capabilities: :class:`GaussianOUProblem` (closed-form Gaussian OU marginals and exact JKO steps),
:class:`StationaryProblem` (the reference is the stationary target for every t, with an exact sampler) and
:class:`SampledTargetProblem` (a KL problem whose target Q has an exact sampler, transient or not).

Optional facts every problem has, with the defaults of :class:`ProblemDefaults` (a problem class inherits them
and overrides what differs): ``transient`` (True: reference(t) depends on t), ``time_dependent`` (True: the
target moves with t; ``log_target(x, t)`` and ``at_time(t)``, the static problem of the frozen F_t, see
:mod:`wgfbench.problems.ou_moving`), ``compact_support`` (the reference vanishes outside a ball: density SymKL is
not defined, see :mod:`wgfbench.metrics.porous`), ``confinement`` (0), ``time_of_step(k, h) = k h`` and
``jko_reference`` None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

Functional = Literal["kl", "generalised_entropy", "kl_interaction", "jsd"]


@runtime_checkable
class Law(Protocol):
    """A probability law the suite can sample exactly and whose log-density it can evaluate."""

    @property
    def dim(self) -> int: ...

    @property
    def is_gaussian(self) -> bool: ...

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
        """n exact samples, (n, d), drawn in ``dtype``: float64 for references and metrics; a method may ask
        for its own dtype (float32 normals are several times cheaper to draw on the CPU than float64 ones)."""
        ...

    def log_density(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Problem(Protocol):
    """The contract every problem implements (see the module docstring)."""

    name: str
    dim: int
    functional: Functional
    transient: bool
    time_dependent: bool
    compact_support: bool

    def initial(self) -> Law:
        """P_0."""

    def reference(self, t: float) -> Law:
        """The exact solution P_t of the PDE (for a stationary problem: the target, for every t)."""

    def jko_reference(self, k: int, h: float) -> Law | None:
        """The exact k-th JKO iterate with step h, or None where no closed form exists."""

    def time_of_step(self, k: int, h: float) -> float:
        """Flow time reached after k JKO steps of size h."""

    def describe(self) -> dict[str, object]:
        """Scalar parameters identifying the instance (stored in records)."""


@runtime_checkable
class KLProblem(Problem, Protocol):
    """a KL functional: temperature and an unnormalised log target.

    F(P) = temperature * KL(P || Q), Q ∝ exp(log_target); ``log_target`` is differentiable and computed in
    x's dtype and device.
    """

    temperature: float

    def log_target(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class EntropyProblem(Problem, Protocol):
    """a generalised-entropy functional 1/(m-1) ∫ P^m (porous medium), with m > 1 (and a confinement)."""

    m: float
    confinement: float


@runtime_checkable
class InteractionProblem(KLProblem, Protocol):
    """a KL functional plus a pair interaction energy ½ ∫∫ W(x - y) dP dP, W = ``interaction``."""

    def interaction(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class JSDProblem(Problem, Protocol):
    """a Jensen-Shannon functional D_f(P || Q): a normalised log target and an exact sampler of Q."""

    def log_target(self, x: Tensor) -> Tensor: ...

    def target(self) -> Law: ...


@runtime_checkable
class SampledTargetProblem(KLProblem, Protocol):
    """an exact sampler of the KL target Q.

    ``target()`` is the law Q ∝ exp(log_target) of the KL functional, samplable exactly (OU's stationary
    Gaussian, a mixture target): what a method that sees Q only through samples needs (S-JKO).
    """

    def target(self) -> Law: ...


@runtime_checkable
class GaussianOUProblem(KLProblem, Protocol):
    """closed-form Gaussian OU marginals and exact JKO steps.

    dX = -A (X - b) dt + sqrt(2/beta) dW from a Gaussian P_0; ``free_energy`` of a Gaussian law in closed form
    (:mod:`wgfbench.problems.ou`).
    """

    A: Tensor
    b: Tensor
    beta: float

    def free_energy(self, law) -> float: ...


@runtime_checkable
class StationaryProblem(Problem, Protocol):
    """a stationary target: reference(t) is the target for every t (``transient`` False), with an exact sampler
    (target()), its score and its exact moments (target_moments(): a GaussianLaw, or None where unknown)."""

    def target(self) -> Law: ...

    def score(self, x: Tensor) -> Tensor: ...

    def target_moments(self): ...


# what a problem of each functional kind provides (a method handling that functional relies on it)
FUNCTIONAL_PROTOCOLS: dict[str, type] = {
    "kl": KLProblem,
    "generalised_entropy": EntropyProblem,
    "kl_interaction": InteractionProblem,
    "jsd": JSDProblem,
}


class ProblemDefaults:
    """The declared defaults of the optional facts of :class:`Problem` (module docstring); inherit them."""

    transient: bool = True
    time_dependent: bool = False
    compact_support: bool = False
    confinement: float = 0.0

    def jko_reference(self, k: int, h: float) -> Law | None:
        return None

    def time_of_step(self, k: int, h: float) -> float:
        return k * h


def problem_factory(name: str) -> Callable[[Callable], Callable]:
    """Mark ``make(dim, seed, **params) -> Problem`` as the factory of the problem called ``name``
    (:mod:`wgfbench.registry` finds it)."""

    def mark(factory: Callable) -> Callable:
        factory.__wgfbench_problem__ = name
        return factory

    return mark
