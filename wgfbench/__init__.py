"""wgfbench: benchmark and reproducibility suite for neural Wasserstein gradient flows (JKO schemes).

``import wgfbench as wb`` is cheap (no torch, pandas or POT): the Python API of :mod:`wgfbench.api` is loaded on
first use of one of its names::

    p = wb.problem("ou", dim=2)
    m = wb.method("exact_jko", p, step_size=0.05)
    m.step()
    wb.evaluate(m, p)                        # dict of metrics of P_1
    wb.run(problem="ou", method="exact_jko", dim=2, n_steps=5)   # the record, a DataFrame

``wb.evaluate`` is the API's function, also once the module :mod:`wgfbench.evaluate` is loaded (importing a
submodule would otherwise rebind the package attribute of its name to the module): take that module's contents
with ``from wgfbench.evaluate import Evaluator, EvalSpec``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

API = (
    "problem",
    "method",
    "evaluate",
    "spec",
    "run",
    "run_suite",
    "load_suite",
    "select",
    "list_problems",
    "list_methods",
    "set_threads",
)
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from wgfbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'wgfbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})


class _Package(types.ModuleType):
    """The package module: an API name stays the API's function when a submodule of the same name is imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in API and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return  # the submodule stays reachable through sys.modules and `from wgfbench.<name> import ...`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
