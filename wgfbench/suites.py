"""Suites: YAML grids of problems x methods x dimensions x seeds, validated before any job starts.

Format (``suites/default.yaml`` is the worked example)::

    name: default                  # [A-Za-z0-9_.-]+, names the results folder results/<name>/
    description: free text
    eval: {n_samples: 10000, n_w2: 1000, n_mc: 4096, every: 1, seed: 2024}   # optional
    defaults: {time_budget_s: 600}                                           # optional
    experiments:
      ou:                          # experiment name, [A-Za-z0-9_.-]+
        problem: ou                # a name in wgfbench.registry.PROBLEMS
        problem_params: {generator: spectrum}   # keyword arguments of the problem's factory
        dims: [2, 4, 8]
        seeds: [0, 1]              # or an integer n meaning 0..n-1
        step_size: 0.05
        n_steps: 10
        report_t: 0.5              # time the tables report (optional; default: the final time)
        time_budget_s: 300         # optional, per run
        methods:
          variational_jko: {params: {iters_per_step: 100}, time_budget_s: 120}
          exact_jko: {}            # or null: paper defaults
          some_method: {dims: [2, 4]}   # optional restriction to a subset of the dims

Every mistake found is reported, each in one line naming the file, the key path and what is
allowed; :class:`SuiteError` carries them all.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import yaml

from wgfbench import registry
from wgfbench.evaluate import EvalSpec

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
TOP_KEYS = {"name", "description", "eval", "defaults", "experiments"}
EXPERIMENT_KEYS = {
    "problem",
    "problem_params",
    "dims",
    "seeds",
    "step_size",
    "n_steps",
    "methods",
    "report_t",
    "time_budget_s",
}
METHOD_KEYS = {"params", "time_budget_s", "dims"}
DEFAULT_KEYS = {"time_budget_s"}


class SuiteError(ValueError):
    """A suite file is malformed; ``errors`` lists one message per mistake."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid suite:\n  " + "\n  ".join(errors))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; one Snakemake job per RunSpec."""

    suite: str
    experiment: str
    problem: str
    problem_params: dict[str, Any]
    method: str
    method_params: dict[str, Any]
    dim: int
    seed: int
    step_size: float
    n_steps: int
    eval: EvalSpec
    time_budget_s: float | None = None
    report_t: float | None = None

    @property
    def job_id(self) -> str:
        return f"{self.experiment}/{self.method}/d{self.dim}/s{self.seed}"


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    runs: tuple[RunSpec, ...]

    def job(self, job_id: str) -> RunSpec:
        for r in self.runs:
            if r.job_id == job_id:
                return r
        raise KeyError(f"no job {job_id!r} in suite {self.name!r} ({self.path})")


# --- small validators -----------------------------------------------------------------------------
class _Checker:
    def __init__(self, path: str):
        self.path = path
        self.errors: list[str] = []

    def err(self, key: str, msg: str) -> None:
        self.errors.append(f"{self.path}: {key}: {msg}")

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.err(key, f"must be a mapping, got {type(value).__name__} {value!r}")
            return {}
        if allowed is not None:
            for k in sorted(set(value) - allowed, key=str):
                self.err(f"{key}.{k}" if key else str(k), f"unknown key; allowed: {sorted(allowed)}")
        for k in sorted(required - set(value)):
            self.err(f"{key}.{k}" if key else k, "missing required key")
        return value

    def number(
        self, value: Any, key: str, *, integer: bool = False, minimum: float | None = None, strict: bool = False
    ):
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            self.err(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return None
        if minimum is not None and (value <= minimum if strict else value < minimum):
            self.err(key, f"must be {'>' if strict else '>='} {minimum}, got {value!r}")
            return None
        return value

    def name(self, value: Any, key: str) -> str | None:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.err(key, f"must be a name made of letters, digits, '_', '.', '-', got {value!r}")
            return None
        return value


def _check_params(chk: _Checker, key: str, params: dict, allowed: dict[str, Any]) -> None:
    """Unknown parameter names and values whose type differs from the default's type."""
    for pname, value in params.items():
        if pname not in allowed:
            chk.err(f"{key}.{pname}", f"unknown parameter; allowed: {sorted(allowed)}")
            continue
        default = allowed[pname]
        if default is inspect.Parameter.empty or default is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            chk.err(f"{key}.{pname}", f"must be of type {type(default).__name__} (default {default!r}), got {value!r}")


def _factory_params(fn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {n: p.default for n, p in sig.parameters.items() if n not in ("dim", "seed")}


def _config_params(cls) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls.Config)}


def _int_list(chk: _Checker, value: Any, key: str, minimum: int) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("seeds"):
        if value < 1:
            chk.err(key, f"an integer seed count must be >= 1, got {value}")
            return []
        return list(range(value))
    if not isinstance(value, list) or not value:
        chk.err(key, f"must be a non-empty list of integers, got {value!r}")
        return []
    out = [v for i, v in enumerate(value) if chk.number(v, f"{key}[{i}]", integer=True, minimum=minimum) is not None]
    if len(set(out)) != len(out):
        chk.err(key, f"has duplicates: {value!r}")
    return out


def _check_experiment(
    chk: _Checker, ename: str, exp: Any, defaults: dict, suite_name: str, ev: EvalSpec
) -> list[RunSpec]:
    key = f"experiments.{ename}"
    exp = chk.mapping(exp, key, EXPERIMENT_KEYS, {"problem", "dims", "seeds", "step_size", "n_steps", "methods"})
    if not exp:
        return []
    n_err = len(chk.errors)
    problem = exp.get("problem")
    factory = None
    if "problem" in exp:
        if problem not in registry.PROBLEMS:
            chk.err(f"{key}.problem", f"unknown problem {problem!r}; known: {sorted(registry.PROBLEMS)}")
        else:
            factory = registry.problem_factory(problem)
    pparams = chk.mapping(exp.get("problem_params"), f"{key}.problem_params")
    if factory is not None:
        _check_params(chk, f"{key}.problem_params", pparams, _factory_params(factory))
    dims = _int_list(chk, exp.get("dims"), f"{key}.dims", 1) if "dims" in exp else []
    seeds = _int_list(chk, exp.get("seeds"), f"{key}.seeds", 0) if "seeds" in exp else []
    h = chk.number(exp.get("step_size"), f"{key}.step_size", minimum=0, strict=True) if "step_size" in exp else None
    n_steps = chk.number(exp.get("n_steps"), f"{key}.n_steps", integer=True, minimum=1) if "n_steps" in exp else None
    report_t = None
    if "report_t" in exp:
        report_t = chk.number(exp["report_t"], f"{key}.report_t", minimum=0)
        if report_t is not None and h is not None and n_steps is not None and report_t > h * n_steps + 1e-12:
            chk.err(f"{key}.report_t", f"{report_t} is past the final time {h * n_steps:g}")
    exp_budget = exp.get("time_budget_s", defaults.get("time_budget_s"))
    if exp_budget is not None:
        exp_budget = chk.number(exp_budget, f"{key}.time_budget_s", minimum=0, strict=True)
    methods = chk.mapping(exp.get("methods"), f"{key}.methods")
    if "methods" in exp and not methods and not isinstance(exp.get("methods"), list):
        chk.err(f"{key}.methods", "must name at least one method")

    problems = {}
    if factory is not None and len(chk.errors) == n_err:
        for d in dims:
            try:
                problems[d] = factory(dim=d, seed=0, **pparams)
            except (ValueError, TypeError) as e:
                chk.err(f"{key}.problem_params", f"problem {problem!r} rejects dim {d} with these parameters: {e}")
    runs: list[RunSpec] = []
    for mname, entry in methods.items():
        mkey = f"{key}.methods.{mname}"
        if mname not in registry.METHODS:
            chk.err(mkey, f"unknown method {mname!r}; known: {sorted(registry.METHODS)}")
            continue
        cls = registry.method_class(mname)
        entry = chk.mapping(entry, mkey, METHOD_KEYS)
        mparams = chk.mapping(entry.get("params"), f"{mkey}.params")
        _check_params(chk, f"{mkey}.params", mparams, _config_params(cls))
        budget = entry.get("time_budget_s", exp_budget)
        if "time_budget_s" in entry:
            budget = chk.number(entry["time_budget_s"], f"{mkey}.time_budget_s", minimum=0, strict=True)
        mdims = dims
        if "dims" in entry:
            mdims = _int_list(chk, entry["dims"], f"{mkey}.dims", 1)
            for d in mdims:
                if d not in dims:
                    chk.err(f"{mkey}.dims", f"dim {d} is not among the experiment's dims {dims}")
        for d in mdims:
            if d in problems:
                try:
                    cls.check_supports(problems[d])
                except ValueError as e:
                    chk.err(f"{mkey}", f"cannot run dim {d}: {e}")
        if h is None or n_steps is None:
            continue
        for d in mdims:
            for s in seeds:
                runs.append(
                    RunSpec(
                        suite_name,
                        ename,
                        problem,
                        dict(pparams),
                        mname,
                        dict(mparams),
                        d,
                        s,
                        float(h),
                        int(n_steps),
                        ev,
                        budget,
                        report_t,
                    )
                )
    return runs


def parse_suite(data: Any, path: str = "<suite>") -> Suite:
    """Validate a parsed suite document and expand it into runs; raise :class:`SuiteError` on mistakes."""
    chk = _Checker(path)
    data = chk.mapping(data, "", TOP_KEYS, {"name", "experiments"})
    if not data:
        raise SuiteError(chk.errors or [f"{path}: the suite is empty"])
    name = chk.name(data.get("name"), "name") if "name" in data else None
    desc = data.get("description", "")
    if not isinstance(desc, str):
        chk.err("description", f"must be a string, got {desc!r}")
    ev_raw = chk.mapping(data.get("eval"), "eval", {f.name for f in dataclasses.fields(EvalSpec)})
    _check_params(chk, "eval", ev_raw, {f.name: f.default for f in dataclasses.fields(EvalSpec)})
    for k in ("n_samples", "n_w2", "n_mc"):
        if k in ev_raw and isinstance(ev_raw[k], int) and ev_raw[k] < 2:
            chk.err(f"eval.{k}", f"must be >= 2, got {ev_raw[k]}")
    if isinstance(ev_raw.get("every"), int) and ev_raw["every"] < 1:
        chk.err("eval.every", f"must be >= 1, got {ev_raw['every']}")
    defaults = chk.mapping(data.get("defaults"), "defaults", DEFAULT_KEYS)
    experiments = chk.mapping(data.get("experiments"), "experiments")
    if "experiments" in data and not experiments:
        chk.err("experiments", "must define at least one experiment")
    runs: list[RunSpec] = []
    if not chk.errors:
        ev = EvalSpec(**ev_raw)
        for ename, exp in experiments.items():
            if chk.name(ename, f"experiments.{ename}") is None:
                continue
            runs += _check_experiment(chk, ename, exp, defaults, name or "", ev)
    if chk.errors:
        raise SuiteError(chk.errors)
    return Suite(name=name, description=desc, path=path, runs=tuple(runs))


def load_suite(path: str | Path) -> Suite:
    """Read, validate and expand a suite file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SuiteError([f"{path}: cannot read the suite file: {e.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SuiteError([f"{path}: not valid YAML: {e}"]) from None
    return parse_suite(data, str(path))
