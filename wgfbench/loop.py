"""The one stepping loop: build a run's problem and method from its spec, advance them step by step.

Every code path that advances a method goes through here: the runner (:mod:`wgfbench.runner`: records,
evaluation, checkpoints), the sample figures and radial profiles (:mod:`wgfbench.reports`) and the benchmark
workloads (:mod:`wgfbench.bench.workloads`). So a figure, a benchmark and a record of the same spec are the same
computation, under the same time budget.

Time budget (``Budget``): the seconds a run may spend in total, counting earlier attempts of the same run (a
resumed run carries them over). It is enforced in the middle of a step too: a SIGALRM timer in the main thread
interrupts the step once the budget is spent (:class:`BudgetExceeded`; the interrupted step is not kept); off the
main thread, or on a platform without SIGALRM, the budget is checked after every step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator

from wgfbench import registry
from wgfbench.methods.base import JKOMethod, StepStats


class BudgetExceeded(BaseException):
    """The run's time budget ran out: in the middle of a step (raised by the SIGALRM timer; ``between_steps``
    False) or at the end of one (True).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in a method swallows it.
    """

    def __init__(self, between_steps: bool = False):
        super().__init__("time budget exceeded")
        self.between_steps = between_steps


def build(spec):
    """(problem, method) of a :class:`~wgfbench.suites.RunSpec` (untrained: a method may pre-train in its
    constructor)."""
    problem = registry.make_problem(spec.problem, spec.dim, spec.seed, spec.problem_params)
    method = registry.make_method(spec.method, problem, spec.step_size, spec.method_params, spec.seed)
    return problem, method


class Budget:
    """Seconds left of a run's time budget (None: no budget), counting ``spent_before`` seconds of earlier
    attempts; the clock starts when the Budget is made."""

    def __init__(self, seconds: float | None, spent_before: float = 0.0):
        self.seconds, self.spent_before = seconds, float(spent_before)
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self.spent_before + time.perf_counter() - self._start

    def remaining(self) -> float | None:
        return None if self.seconds is None else self.seconds - self.elapsed()

    def exceeded(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    @contextlib.contextmanager
    def enforced(self) -> Iterator[None]:
        """Raise :class:`BudgetExceeded` inside the block once the budget is spent (module docstring)."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise BudgetExceeded(between_steps=True)
        usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        if left is None or not usable:
            yield
            return

        def on_alarm(signum, frame):
            raise BudgetExceeded

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def advance(
    method: JKOMethod,
    until: int,
    budget: Budget | None = None,
    on_step: Callable[[int, StepStats], None] | None = None,
) -> None:
    """Step ``method`` from its current k to ``until``, calling ``on_step(k, stats)`` after each step (inside the
    budget's enforcement: an evaluation there counts against the budget and is interrupted with the step).

    Raises :class:`BudgetExceeded` when the budget runs out before ``until`` is reached (the steps finished
    before stay done), and whatever the method raises (e.g. :class:`~wgfbench.methods.base.Diverged`).
    """
    budget = budget or Budget(None)
    while method.k < until:
        with budget.enforced():
            stats = method.step()
            if on_step is not None:
                on_step(method.k, stats)
        if method.k < until and budget.exceeded():
            raise BudgetExceeded(between_steps=True)
