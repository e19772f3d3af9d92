r"""Per-step schedules of a method setting (a learning rate): (first JKO step, value) pairs.

A schedule S = ((k_1, v_1), (k_2, v_2), ..., (k_n, v_n)) with 0 <= k_1 < k_2 < ... < k_n gives at JKO step k
(counted from 0: step k takes P_k to P_{k+1}) the value

    S(k) = v_j   with j the largest index such that k_j <= k,   and the setting's constant value where k < k_1

(an empty schedule: the constant value at every step). A suite writes it as a YAML list of pairs, e.g. Mokrov et
al.'s (NeurIPS 2021) mixture protocol, learning rate 5e-3 for the first 20 steps and 2e-3 from the 21st on::

    lr_schedule: [[0, 5.0e-3], [20, 2.0e-3]]

A method's Config field holding one is annotated :data:`StepSchedule`: the element types (integer steps >= 0,
values > 0) are checked by :func:`wgfbench.params.check_params` like any annotation, and the order (first steps
strictly increasing) by :func:`order_errors`, which suite validation runs beside it; a Config's ``__post_init__``
calls :func:`normalise` (lists to tuples, the order checked) so that the Python API refuses the same mistakes.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from wgfbench.params import NonNegCount, Positive, check_value, short, spec_of


@dataclasses.dataclass(frozen=True)
class Ordered:
    """Metadata of a :data:`StepSchedule` annotation: its first steps must be strictly increasing."""

    def check(self, value: Sequence[Sequence[float]]) -> str | None:
        steps = [pair[0] for pair in value]
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                return (
                    f"first steps must be strictly increasing, got {steps[i - 1]} then {steps[i]} in {short(value)}; "
                    "allowed: [[first_step, value], ...] sorted by first step, each step once"
                )
        return None


StepSchedule = Annotated[tuple[tuple[NonNegCount, Positive], ...], Ordered()]


def _ordered(annotation: Any) -> Ordered | None:
    if typing.get_origin(annotation) is not Annotated:
        return None
    return next((m for m in typing.get_args(annotation)[1:] if isinstance(m, Ordered)), None)


def order_errors(target: type | Callable, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, message) for every schedule parameter of ``target`` whose value has the right types but is not
    sorted (values of the wrong type are :func:`~wgfbench.params.check_params`'s to report, not repeated here)."""
    spec = spec_of(target)
    errors = []
    for name, value in params.items():
        if name not in spec or (rule := _ordered(spec[name][0])) is None:
            continue
        if check_value(spec[name][0], value) is None and (wrong := rule.check(value)) is not None:
            errors.append((name, wrong))
    return errors


def normalise(schedule: Sequence[Sequence[float]]) -> tuple[tuple[int, float], ...]:
    """``schedule`` as a tuple of (int, float) pairs (a suite gives nested lists); ValueError if not sorted."""
    wrong = Ordered().check(schedule)
    if wrong is not None:
        raise ValueError(f"schedule: {wrong}")
    return tuple((int(k), float(v)) for k, v in schedule)


def value_at(schedule: Sequence[tuple[int, float]], k: int, constant: float) -> float:
    """S(k) of the module docstring: the value of the last pair whose first step is <= k, else ``constant``."""
    value = constant
    for first, v in schedule:
        if first > k:
            break
        value = v
    return value
