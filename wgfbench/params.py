"""Parameter validation from annotations: the one path every parameter of a method, problem or evaluation takes.

A method's ``Config`` dataclass and a problem factory's signature are the specification: a parameter's type
comes from its annotation (``int``, ``float``, ``bool``, ``str``, ``typing.Literal[...]``, ``X | None``) and its
bounds from ``typing.Annotated[..., Range(...)]`` (the aliases :data:`Count`, :data:`Positive`, ... below).
:func:`check_params` returns one message per mistake; suites (:mod:`wgfbench.suites`), the command line and
:func:`build_params` (the Python API) all use it, so a mistake reads the same wherever it is made.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import reprlib
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

# Bounds that keep every size within what this code can hold and a machine can allocate: counts (particles,
# iterations, batch sizes, samples) up to 10^8, anything else finite.
MAX_COUNT = 10**8


_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 6, 6, 2


def short(value: Any) -> str:
    """repr of a value from a user's document, shortened so that no message repeats a huge (or aliased) value."""
    return _short.repr(value)


@dataclasses.dataclass(frozen=True)
class Range:
    """Closed (or, with ``open_low``, left-open) interval of allowed values; None: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def check(self, value: float) -> str | None:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"must be {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}"
        return None


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A string matching ``regex`` (whole string); ``allowed`` says in words what matches."""

    regex: str
    allowed: str

    def check(self, value: str) -> str | None:
        return None if re.fullmatch(self.regex, value) else f"unknown value {short(value)}; allowed: {self.allowed}"


Count = Annotated[int, Range(1, MAX_COUNT)]  # a size or a number of iterations, >= 1
NonNegCount = Annotated[int, Range(0, MAX_COUNT)]  # the same, 0 allowed (e.g. "no pretraining")
SampleSize = Annotated[int, Range(2, MAX_COUNT)]  # a number of samples a statistic is computed from
Positive = Annotated[float, Range(0.0, None, open_low=True)]  # a rate, a scale, a step: > 0
NonNegative = Annotated[float, Range(0.0)]
Fraction = Annotated[float, Range(0.0, 1.0)]  # a probability, a dropout rate, a quantile
Device = Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?|mps", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")]


class ParamError(ValueError):
    """Parameters that do not fit their specification; ``errors`` holds (name, message) pairs."""

    def __init__(self, owner: str, errors: list[tuple[str, str]]):
        self.owner, self.errors = owner, errors
        super().__init__("; ".join(f"{owner} parameter {name!r}: {msg}" for name, msg in errors))


def spec_of(target: type | Callable) -> dict[str, tuple[Any, Any]]:
    """{name: (annotation, default)} of a dataclass's fields or a function's keyword parameters.

    A function's ``dim`` and ``seed`` are not parameters (a suite gives them separately).
    """
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target, include_extras=True)
        return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(target)}
    hints = typing.get_type_hints(target, include_extras=True)
    sig = inspect.signature(target)
    return {
        n: (hints.get(n, Any), p.default)
        for n, p in sig.parameters.items()
        if n not in ("dim", "seed") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _describe(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _describe(args[0])
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if annotation is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def check_value(annotation: Any, value: Any) -> str | None:
    """None if ``value`` fits ``annotation``, else what is wrong (one line, with what is allowed)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return None
    if origin is Annotated:
        base, *meta = args
        wrong = check_value(base, value)
        if wrong is not None:
            return wrong
        for m in meta:
            if isinstance(m, Range) and (bound := m.check(value)) is not None:
                return f"{bound}, got {short(value)}"
            if isinstance(m, Pattern) and (wrong := m.check(value)) is not None:
                return wrong
        return None
    if origin in (typing.Union, types.UnionType):
        if all(check_value(a, value) is not None for a in args):
            return f"must be {_describe(annotation)}, got {short(value)}"
        return None
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        hint = ""
        if isinstance(value, bool) and any(isinstance(a, str) for a in args):
            hint = " (YAML reads unquoted off/on/no/yes as false/true: quote the word)"
        return f"unknown value {short(value)}; allowed: {list(args)}{hint}"
    if origin in (tuple, list):  # tuple[X, Y] (fixed length), tuple[X, ...] or list[X]: a YAML list
        if not isinstance(value, list | tuple):
            return f"must be a list, got {short(value)}"
        if origin is tuple and args and args[-1] is not Ellipsis and len(value) != len(args):
            return f"must be a list of {len(args)} values, got {short(value)}"
        items = args[:1] * len(value) if (origin is list or args[-1:] == (Ellipsis,)) else args
        for i, (item_type, item) in enumerate(zip(items, value, strict=False)):
            if (wrong := check_value(item_type, item)) is not None:
                return f"[{i}] {wrong}"
        return None
    if annotation is type(None):
        return None if value is None else f"must be null, got {short(value)}"
    if annotation is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {short(value)}"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -(2**63) <= value < 2**63:  # what torch, numpy and parquet can hold
            return f"must be an integer of at most 64 bits, got {short(value)}"
        return None if ok else f"must be an integer, got {short(value)}"
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {short(value)}"
        finite = abs(value) < 1e308 if isinstance(value, int) else math.isfinite(value)  # 10**400 is no float
        return None if finite else f"must be a finite number, got {short(value)}"
    if annotation is str:
        return None if isinstance(value, str) else f"must be a string, got {short(value)}"
    if isinstance(annotation, type):
        return None if isinstance(value, annotation) else f"must be {_describe(annotation)}, got {short(value)}"
    return None


def check_params(target: type | Callable, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, message) for every unknown name and every value that does not fit its annotation."""
    spec = spec_of(target)
    errors: list[tuple[str, str]] = []
    for name, value in params.items():
        if name not in spec:
            errors.append((str(name), f"unknown parameter; allowed: {sorted(spec)}"))
            continue
        wrong = check_value(spec[name][0], value)
        if wrong is not None:
            errors.append((name, wrong))
    return errors


def build_params(target: type, params: dict[str, Any] | None, owner: str = ""):
    """``target(**params)`` (a Config dataclass) after :func:`check_params`; raises :class:`ParamError`."""
    params = dict(params or {})
    errors = check_params(target, params)
    if errors:
        raise ParamError(owner or target.__qualname__, errors)
    return target(**params)
