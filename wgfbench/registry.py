"""Name -> implementation for problems and methods, found where they are defined.

* A **method** is a module in :mod:`wgfbench.methods` or in the baselines (``baselines/``, imported as
  ``wgfbench_baselines``) that defines a subclass of :class:`~wgfbench.methods.base.JKOMethod` with a ``name``:
  nothing else is edited to add one.
* A **problem** is a module in :mod:`wgfbench.problems` with a factory ``make(dim, seed, **params)`` marked by
  :func:`wgfbench.problems.base.problem_factory` (the name it is registered under).
* Methods and problems from **outside the repository** come through the Python entry-point groups
  ``wgfbench.methods`` and ``wgfbench.problems`` (``name = "package.module:attribute"`` in the distribution's
  metadata, e.g. ``[project.entry-points."wgfbench.methods"]`` in its pyproject.toml); the entry point's name must
  equal the method's ``name`` (or the factory's registered name), and may not shadow a built-in one.

The tables are built on first use; a name that two modules claim is an error naming both. Looking one name up
imports only the module that defines it (an index of the packages' source, read without importing them, says which),
so that a run starts without importing every method and problem; listing every name imports them all.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

METHOD_PACKAGES = ("wgfbench.methods", "wgfbench_baselines")
PROBLEM_PACKAGES = ("wgfbench.problems",)
METHOD_GROUP, PROBLEM_GROUP = "wgfbench.methods", "wgfbench.problems"


class RegistryError(RuntimeError):
    """Two implementations claim one name, or an entry point does not match what it names."""


def _modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."))
    return [pkg, *(importlib.import_module(n) for n in names)]


def _claim(table: dict[str, Any], where: dict[str, str], name: str, obj: Any, origin: str, kind: str) -> None:
    if name in table and table[name] is not obj:
        raise RegistryError(f"{kind} name {name!r} is claimed by {where[name]} and by {origin}")
    table[name], where[name] = obj, origin


@functools.cache
def methods() -> dict[str, type]:
    """Every method: name -> JKOMethod subclass (built-in ones in role order, then entry points)."""
    from wgfbench.methods.base import ROLES, JKOMethod

    found: dict[str, type] = {}
    where: dict[str, str] = {}
    for package in METHOD_PACKAGES:
        for module in _modules(package):
            for obj in vars(module).values():
                if (
                    isinstance(obj, type)
                    and issubclass(obj, JKOMethod)
                    and obj.__module__ == module.__name__
                    and "name" in vars(obj)
                ):
                    _claim(found, where, obj.name, obj, f"{module.__name__}.{obj.__qualname__}", "method")
    for ep in entry_points(group=METHOD_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, JKOMethod)):
            raise RegistryError(f"entry point {ep.name!r} ({ep.value}) is not a JKOMethod subclass")
        if getattr(cls, "name", None) != ep.name:
            raise RegistryError(f"entry point {ep.name!r} ({ep.value}) names a method called {cls.name!r}")
        if ep.name in found and found[ep.name] is not cls:
            raise RegistryError(f"entry point {ep.name!r} ({ep.value}) shadows the method of {where[ep.name]}")
        found[ep.name], where[ep.name] = cls, f"entry point {ep.value}"
    for name, cls in found.items():
        if cls.role not in ROLES:
            raise RegistryError(f"method {name!r} has role {cls.role!r}; allowed: {list(ROLES)}")
    order = {role: i for i, role in enumerate(ROLES)}
    return dict(sorted(found.items(), key=lambda item: (order[item[1].role], item[0])))


@functools.cache
def problems() -> dict[str, Any]:
    """Every problem: name -> factory ``make(dim, seed, **params)``."""
    found: dict[str, Any] = {}
    where: dict[str, str] = {}
    for package in PROBLEM_PACKAGES:
        for module in _modules(package):
            for obj in vars(module).values():
                name = getattr(obj, "__wgfbench_problem__", None)
                if name is not None and getattr(obj, "__module__", None) == module.__name__:
                    _claim(found, where, name, obj, f"{module.__name__}.{obj.__qualname__}", "problem")
    for ep in entry_points(group=PROBLEM_GROUP):
        factory = ep.load()
        if getattr(factory, "__wgfbench_problem__", None) != ep.name:
            raise RegistryError(
                f"entry point {ep.name!r} ({ep.value}) is not a factory marked @problem_factory({ep.name!r})"
            )
        if ep.name in found and found[ep.name] is not factory:
            raise RegistryError(f"entry point {ep.name!r} ({ep.value}) shadows the problem of {where[ep.name]}")
        found[ep.name], where[ep.name] = factory, f"entry point {ep.value}"
    return dict(sorted(found.items()))


def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(table)}") from None


@functools.cache
def _source_index(packages: tuple[str, ...]) -> dict[str, list[str]]:
    """name -> modules whose source defines it (a class attribute ``name = "..."`` or a ``@problem_factory("...")``
    decorator), read with :mod:`ast` without importing anything but the packages themselves."""
    index: dict[str, list[str]] = {}
    for package in packages:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            spec = importlib.util.find_spec(info.name)
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                continue
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                for name in _declared_names(node):
                    index.setdefault(name, []).append(info.name)
    return index


def _declared_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ClassDef):
        return [
            stmt.value.value
            for stmt in node.body
            if isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)
            and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str)
        ]
    if isinstance(node, ast.FunctionDef):
        return [
            dec.args[0].value
            for dec in node.decorator_list
            if isinstance(dec, ast.Call)
            and getattr(dec.func, "id", getattr(dec.func, "attr", None)) == "problem_factory"
            and dec.args
            and isinstance(dec.args[0], ast.Constant)
        ]
    return []


def _quick(kind: str, name: str):
    """The implementation of ``name`` from the module the source index names, when exactly one does and no entry
    point claims the name; None otherwise (then the full table decides)."""
    from wgfbench.methods.base import JKOMethod

    packages, group = (METHOD_PACKAGES, METHOD_GROUP) if kind == "method" else (PROBLEM_PACKAGES, PROBLEM_GROUP)
    modules = _source_index(packages).get(name, [])
    if len(modules) != 1 or any(ep.name == name for ep in entry_points(group=group)):
        return None
    module = importlib.import_module(modules[0])
    for obj in vars(module).values():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if kind == "method" and isinstance(obj, type) and issubclass(obj, JKOMethod) and vars(obj).get("name") == name:
            return obj
        if kind == "problem" and getattr(obj, "__wgfbench_problem__", None) == name:
            return obj
    return None


def is_method(name: str) -> bool:
    """Whether ``name`` is a registered method (imports only its module where the source index knows it)."""
    return _quick("method", name) is not None or name in methods()


def is_problem(name: str) -> bool:
    """Whether ``name`` is a registered problem (imports only its module where the source index knows it)."""
    return _quick("problem", name) is not None or name in problems()


def problem_factory(name: str):
    """The function ``make(dim, seed, **params) -> Problem`` registered under ``name``."""
    return _quick("problem", name) or _lookup(problems(), "problem", name)


def method_class(name: str):
    """The :class:`~wgfbench.methods.base.JKOMethod` subclass registered under ``name``."""
    return _quick("method", name) or _lookup(methods(), "method", name)


def make_problem(name: str, dim: int, seed: int, params: dict[str, Any] | None = None):
    from wgfbench.params import ParamError, check_params

    factory = problem_factory(name)
    errors = check_params(factory, dict(params or {}))
    if errors:
        raise ParamError(f"problem {name}", errors)
    return factory(dim=dim, seed=seed, **(params or {}))


def make_method(name: str, problem, step_size: float, params: dict[str, Any] | None, seed: int):
    from wgfbench.methods.base import build_config

    cls = method_class(name)
    return cls(problem, step_size, build_config(cls.Config, params), seed)
