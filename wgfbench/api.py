"""The Python API: ``import wgfbench as wb`` (the package re-exports these functions lazily).

A method developer builds a problem and a method by name, steps the method, evaluates it, and runs a whole
specification or suite into a DataFrame, with exactly the code paths of the command line and the pipeline:

* :func:`problem` and :func:`method`: :func:`wgfbench.registry.make_problem` / ``make_method``, whose parameters
  are validated from their annotations (:mod:`wgfbench.params`), the one validation path of suites;
* ``m.step()`` (:meth:`wgfbench.methods.base.JKOMethod.step`): one JKO step;
* :func:`evaluate`: every catalogued metric of the method's current iterate (:class:`wgfbench.evaluate.Evaluator`);
* :func:`run`: one run, specified by keyword arguments exactly as ``wgfbench run`` takes them (the same
  :func:`wgfbench.suites.suite_from_args`) or by a :class:`~wgfbench.suites.RunSpec`: the record as a DataFrame
  (:func:`wgfbench.runner.run`; schema: :mod:`wgfbench.records`);
* :func:`run_suite`: every run of a suite (file or parsed document), in this process, one after another.

**Threads.** torch's default uses as many threads as the machine has cores. On a machine whose cores are shared
(other jobs, other users, a pipeline running several jobs) the threads of one process fight each other and the
other processes for the same cores: runs of small networks and batches become several times, up to an order of
magnitude, slower. So the first API call that computes sets torch to one CPU thread, as the command line does,
unless the environment sets ``OMP_NUM_THREADS`` (then torch's own reading of it stands) or :func:`set_threads` was
called.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from wgfbench.methods.base import JKOMethod
    from wgfbench.suites import RunSpec, Suite

_threads_chosen = False
SELECTABLE = ("experiment", "problem", "method", "dim", "seed")  # RunSpec fields run_suite's ``only`` may name


def set_threads(n: int) -> None:
    """Use ``n`` torch CPU threads (intra-op) from now on; the API then leaves torch's threads alone."""
    global _threads_chosen
    import torch

    if int(n) < 1:
        raise ValueError(f"set_threads needs n >= 1, got {n}")
    torch.set_num_threads(int(n))
    _threads_chosen = True


def _default_threads() -> None:
    """One torch thread unless the user chose (module docstring: Threads)."""
    global _threads_chosen
    if _threads_chosen:
        return
    if not os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(1)
    _threads_chosen = True


def list_problems() -> list[str]:
    """The registered problem names."""
    from wgfbench import registry

    return sorted(registry.problems())


def list_methods() -> list[str]:
    """The registered method names (the package's and the baselines')."""
    from wgfbench import registry

    return sorted(registry.methods())


def problem(name: str, dim: int, seed: int = 0, **params: Any):
    """The problem ``name`` in dimension ``dim``; its instance (e.g. OU's random covariances) is a function of
    ``seed``; ``params``: the problem's parameters (``wgfbench list`` shows them), validated (a mistake raises
    :class:`wgfbench.params.ParamError` naming every wrong parameter)."""
    from wgfbench import registry

    _default_threads()
    return registry.make_problem(name, int(dim), int(seed), params)


def method(name: str, problem, step_size: float, seed: int = 0, **params: Any) -> JKOMethod:
    """The method ``name`` on ``problem`` with JKO step size ``step_size`` (h) and the seed of its networks and
    samples; ``params``: its hyper-parameters (its Config), validated. Step it with ``m.step()``; ``m.k`` counts the
    steps taken. A pairing the method cannot run raises :class:`wgfbench.problems.base.UnsupportedProblem`."""
    from wgfbench import registry

    _default_threads()
    return registry.make_method(name, problem, float(step_size), params, int(seed))


def evaluate(
    method: JKOMethod,
    problem,
    k: int | None = None,
    eval: Mapping[str, Any] | None = None,
    floor_cache: str | Path | None = None,
) -> dict[str, float]:
    """Every metric of ``method``'s current iterate P_k against ``problem``'s references, with noise floors: the
    columns a record holds for that step (:mod:`wgfbench.metrics.catalogue`). ``k``: the step the iterate is (default
    ``method.k``: the flow time is t = problem.time_of_step(k, h)); ``eval``: evaluation settings
    (:class:`wgfbench.evaluate.EvalSpec`, validated), e.g. ``{"sample_metrics": ["sw2"]}`` to leave exact W2 out;
    ``floor_cache``: a folder that keeps simulated floors between calls."""
    from wgfbench.evaluate import EvalSpec, Evaluator
    from wgfbench.params import build_params

    _default_threads()
    spec = build_params(EvalSpec, dict(eval or {}), owner="eval")
    k = method.k if k is None else int(k)
    return Evaluator(problem, spec, method.seed, floor_cache)(method, k, method.step_size)


def spec(problem: str, method: str, dim: int, **kwargs: Any) -> RunSpec:
    """One run's specification from keyword arguments, validated as ``wgfbench run`` validates its flags
    (:func:`wgfbench.suites.suite_from_args`: ``seed``, ``step_size``, ``n_steps``, ``problem_params``,
    ``method_params``, ``eval_params``, ``time_budget_s``, ``experiment``, ``suite``); a mistake raises
    :class:`wgfbench.suites.SuiteError` with one line per mistake."""
    from wgfbench.suites import suite_from_args

    return suite_from_args(problem, method, int(dim), **kwargs)


def run(
    spec_or_problem: RunSpec | str | None = None,
    /,
    *,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | str = False,
    floor_cache: str | Path | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """One run; its record (one row per evaluated step) as a DataFrame. Either a :class:`~wgfbench.suites.RunSpec`,
    or the keyword arguments of :func:`spec` (``problem``, ``method``, ``dim``, ...). ``out``: also write the record
    there (parquet); ``checkpoint``: resume from / save to this file; ``progress``: False (default), True (a bar on
    a terminal, a line per step elsewhere), "bar" or "lines". A run that diverges, times out or fails is a record
    too: look at its ``status`` and ``message`` columns."""
    from wgfbench.runner import run as run_spec
    from wgfbench.suites import RunSpec

    if isinstance(spec_or_problem, RunSpec):
        if kwargs:
            raise TypeError(f"run(spec) takes no specification keywords; got {sorted(kwargs)}")
        the_spec = spec_or_problem
    else:
        if spec_or_problem is not None:
            kwargs["problem"] = spec_or_problem
        missing = [key for key in ("problem", "method", "dim") if key not in kwargs]
        if missing:
            raise TypeError(f"run() needs a RunSpec or problem=, method=, dim=; missing {missing}")
        the_spec = spec(**kwargs)
    _default_threads()
    return run_spec(the_spec, out=out, checkpoint=checkpoint, progress=progress, floor_cache=floor_cache)


def load_suite(suite: str | Path | Mapping[str, Any]) -> Suite:
    """A suite from its YAML file, or from a parsed document (a dict as the YAML would give), validated."""
    from wgfbench.suites import load_suite as load_file
    from wgfbench.suites import parse_suite

    if isinstance(suite, Mapping):
        return parse_suite(dict(suite), "<python>")
    return load_file(suite)


def select(runs: Collection[RunSpec], only: Mapping[str, Any] | None) -> list[RunSpec]:
    """The runs whose fields match ``only``: a mapping of ``experiment``, ``problem``, ``method``, ``dim`` or
    ``seed`` to a value or a collection of values (a run is kept when every named field is one of them)."""
    only = dict(only or {})
    unknown = sorted(set(only) - set(SELECTABLE))
    if unknown:
        raise ValueError(f"only= may name {list(SELECTABLE)}; got {unknown}")
    wanted = {
        key: {value} if isinstance(value, str | int) or not isinstance(value, Collection) else set(value)
        for key, value in only.items()
    }
    return [r for r in runs if all(getattr(r, key) in values for key, values in wanted.items())]


def run_suite(
    suite: str | Path | Mapping[str, Any],
    only: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool | str = False,
    floor_cache: str | Path | None = None,
) -> pd.DataFrame:
    """Every run of ``suite`` (a file or a parsed document; :func:`load_suite`) that ``only`` selects
    (:func:`select`), in this process, one after another; their records as one DataFrame. ``out``: also write each
    record where the pipeline keeps it (``<out>/runs/<experiment>/<method>/d<dim>_s<seed>.parquet``), so that
    ``wgfbench table`` reads them; ``floor_cache``: a folder shared by the runs' simulated noise floors (default
    ``<out>/floors`` when ``out`` is given). Nothing is skipped or resumed: for that, use the pipeline."""
    from wgfbench.records import concat_records, record_path, to_frame
    from wgfbench.runner import run_record

    runs = select(load_suite(suite).runs, only)
    if not runs:
        raise ValueError(f"only={dict(only or {})} selects no run of the suite")
    if floor_cache is None and out is not None:
        floor_cache = Path(out) / "floors"
    _default_threads()
    tables = [
        run_record(r, out=record_path(out, r) if out is not None else None, progress=progress, floor_cache=floor_cache)
        for r in runs
    ]
    return to_frame(concat_records(tables))
