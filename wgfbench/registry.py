"""Name -> implementation maps for problems and methods.

Adding a method is one module plus one line in ``METHODS``; adding a problem is one module plus one
line in ``PROBLEMS``. Entries are ``"module:attribute"`` strings, imported on first use so that
listing names never imports torch-heavy modules it does not need.
"""

from __future__ import annotations

import importlib
from typing import Any

PROBLEMS: dict[str, str] = {
    "ou": "wgfbench.problems.ou:make_ou",
    "barenblatt": "wgfbench.problems.barenblatt:make_barenblatt",
    "gmm": "wgfbench.problems.gmm:make_gmm",
    "hg_8modes": "wgfbench.problems.hg_targets:make_hg_8modes",
    "hg_8peaky": "wgfbench.problems.hg_targets:make_hg_8peaky",
    "hg_gmm": "wgfbench.problems.hg_targets:make_hg_gmm",
    "hg_funnel": "wgfbench.problems.hg_targets:make_hg_funnel",
    "hg_mustache": "wgfbench.problems.hg_targets:make_hg_mustache",
}

METHODS: dict[str, str] = {
    "variational_jko": "wgfbench.methods.variational_jko:VariationalJKO",
    "exact_jko": "wgfbench.methods.exact_jko:ExactJKO",
    "jko_icnn_exact": "baselines.jko_icnn:JKOICNNExact",
    "jko_icnn_stochastic": "baselines.jko_icnn:JKOICNNStochastic",
    "em_particles": "baselines.em_particles:EulerMaruyama",
    "identity": "baselines.identity:Identity",
    "neural_jko": "baselines.neural_jko:NeuralJKO",
    "neural_jko_ic": "baselines.neural_jko_ic:NeuralJKOIC",
}


def _load(table: dict[str, str], kind: str, name: str) -> Any:
    try:
        target = table[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(table)}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def problem_factory(name: str):
    """The function ``make(dim, seed, **params) -> Problem`` registered under ``name``."""
    return _load(PROBLEMS, "problem", name)


def method_class(name: str):
    """The :class:`~wgfbench.methods.base.JKOMethod` subclass registered under ``name``."""
    return _load(METHODS, "method", name)


def make_problem(name: str, dim: int, seed: int, params: dict[str, Any] | None = None):
    return problem_factory(name)(dim=dim, seed=seed, **(params or {}))


def make_method(name: str, problem, step_size: float, params: dict[str, Any] | None, seed: int):
    from wgfbench.methods.base import build_config

    cls = method_class(name)
    return cls(problem, step_size, build_config(cls.Config, params), seed)
