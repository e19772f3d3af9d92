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
allowed; :class:`SuiteError` carries them all. Checked: unknown and missing keys at every level,
types and ranges of numbers (finite; step size > 0, n_steps >= 1, dims >= 1, seeds >= 0, budgets > 0),
problem and method names against the registry, problem parameters by name and type (and by building
the problem in every dimension), method parameters by name and type against the method's ``Config``
(by value for ``device``, ``dtype`` and fields annotated ``typing.Literal[...]``), dimensions a method
cannot run (``check_supports``, given the method's parameters), report_t within the flow, and keys given
twice in the YAML.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from wgfbench import registry
from wgfbench.evaluate import EvalSpec
from wgfbench.methods.base import build_config

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
# what a missing required key must hold (the message of a missing key says it)
REQUIRED = {
    "name": "a name made of letters, digits, '_', '.', '-' (names the results folder)",
    "experiments": "a mapping of experiment names to experiments",
    "problem": "a problem name, one of {problems}",
    "dims": "a non-empty list of integers >= 1",
    "seeds": "a non-empty list of integers >= 0, or a seed count n >= 1",
    "step_size": "a number > 0 (the JKO step size h)",
    "n_steps": "an integer >= 1 (the number of JKO steps K)",
    "methods": "a mapping of method names to {{params, time_budget_s, dims}}, one of {methods}",
}
TOP = "(document)"  # the key named by a mistake in the document as a whole
TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


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
            what = REQUIRED.get(k, "a value").format(
                problems=sorted(registry.PROBLEMS), methods=sorted(registry.METHODS)
            )
            self.err(f"{key}.{k}" if key else k, f"missing required key; allowed: {what}")
        return value

    def number(
        self, value: Any, key: str, *, integer: bool = False, minimum: float | None = None, strict: bool = False
    ):
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            what = "an integer" if integer else "a finite number"
            bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
            self.err(key, f"must be {what}{bound}, got {value!r}")
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
        elif isinstance(value, float) and not math.isfinite(value):
            chk.err(f"{key}.{pname}", f"must be a finite number (default {default!r}), got {value!r}")


def _check_base_config(chk: _Checker, key: str, params: dict) -> None:
    """Values of the fields every method has (MethodConfig: device, dtype)."""
    dev = params.get("device")
    if isinstance(dev, str) and not DEVICE_RE.match(dev):
        chk.err(f"{key}.device", f"unknown device {dev!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    dtype = params.get("dtype")
    if isinstance(dtype, str) and dtype not in TORCH_DTYPES:
        chk.err(f"{key}.dtype", f"unknown dtype {dtype!r}; allowed: {list(TORCH_DTYPES)}")


def _factory_params(fn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {n: p.default for n, p in sig.parameters.items() if n not in ("dim", "seed")}


def _config_params(cls) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls.Config)}


def _literal_choices(config_cls) -> dict[str, tuple]:
    """Fields annotated ``typing.Literal[...]`` in a method's Config: the values a suite may give."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # unresolvable annotations: no choices known
        return {}
    return {n: typing.get_args(t) for n, t in hints.items() if typing.get_origin(t) is typing.Literal}


def _check_choices(chk: _Checker, key: str, params: dict, choices: dict[str, tuple]) -> None:
    for pname, allowed in choices.items():
        if pname in params and params[pname] not in allowed:
            chk.err(f"{key}.{pname}", f"unknown value {params[pname]!r}; allowed: {list(allowed)}")


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
        chk.err(key, f"has duplicates: {value!r}; allowed: distinct values")
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
    n_before_dims = len(chk.errors)
    dims = _int_list(chk, exp.get("dims"), f"{key}.dims", 1) if "dims" in exp else []
    dims_ok = "dims" in exp and len(chk.errors) == n_before_dims
    seeds = _int_list(chk, exp.get("seeds"), f"{key}.seeds", 0) if "seeds" in exp else []
    h = chk.number(exp.get("step_size"), f"{key}.step_size", minimum=0, strict=True) if "step_size" in exp else None
    n_steps = chk.number(exp.get("n_steps"), f"{key}.n_steps", integer=True, minimum=1) if "n_steps" in exp else None
    report_t = None
    if "report_t" in exp:
        report_t = chk.number(exp["report_t"], f"{key}.report_t", minimum=0)
        if report_t is not None and h is not None and n_steps is not None and report_t > h * n_steps + 1e-12:
            chk.err(
                f"{key}.report_t",
                f"{report_t} is past the final time; allowed: 0 <= report_t <= step_size * n_steps = {h * n_steps:g}",
            )
    exp_budget = defaults.get("time_budget_s")
    if "time_budget_s" in exp:
        exp_budget = chk.number(exp["time_budget_s"], f"{key}.time_budget_s", minimum=0, strict=True)
    methods = chk.mapping(exp.get("methods"), f"{key}.methods")
    if "methods" in exp and not methods and isinstance(exp.get("methods"), dict | None):
        chk.err(f"{key}.methods", f"must name at least one method; allowed: {sorted(registry.METHODS)}")

    problems = {}
    if factory is not None and len(chk.errors) == n_err:
        rejected: dict[str, list[int]] = {}
        for d in dims:
            try:
                problems[d] = factory(dim=d, seed=0, **pparams)
            except Exception as e:  # whatever the factory raises is a mistake of the suite, reported
                rejected.setdefault(str(e) or type(e).__name__, []).append(d)
        for msg, ds in rejected.items():
            where = f"{key}.problem_params" if pparams else f"{key}.dims"
            chk.err(
                where, f"problem {problem!r} rejects dim{'s' if len(ds) > 1 else ''} {ds} with these parameters: {msg}"
            )
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
        _check_base_config(chk, f"{mkey}.params", mparams)
        _check_choices(chk, f"{mkey}.params", mparams, _literal_choices(cls.Config))
        budget = entry.get("time_budget_s", exp_budget)
        if "time_budget_s" in entry:
            budget = chk.number(entry["time_budget_s"], f"{mkey}.time_budget_s", minimum=0, strict=True)
        mdims = dims
        if "dims" in entry:
            mdims = _int_list(chk, entry["dims"], f"{mkey}.dims", 1)
            for d in mdims:
                if dims_ok and d not in dims:
                    chk.err(f"{mkey}.dims", f"dim {d} is not among the experiment's dims; allowed: a subset of {dims}")
        unsupported: dict[str, list[int]] = {}
        try:  # the method's configuration, for refusals that depend on it (None where the params are invalid)
            mconfig = build_config(cls.Config, mparams)
        except Exception:  # already reported by _check_params
            mconfig = None
        for d in mdims:
            if d in problems:
                try:
                    cls.check_supports(problems[d], mconfig)
                except Exception as e:  # UnsupportedProblem, or anything else a method's check raises
                    unsupported.setdefault(str(e), []).append(d)
        for msg, ds in unsupported.items():
            ok_dims = [d for d in mdims if d in problems and not any(d in v for v in unsupported.values())]
            chk.err(
                f"{mkey}" if len(ds) == len(mdims) else f"{mkey}.dims",
                f"cannot run dim{'s' if len(ds) > 1 else ''} {ds}: {msg}; "
                + (f"allowed: restrict it with dims: {ok_dims}" if ok_dims else "allowed: another method or problem"),
            )
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
    if data is None:
        raise SuiteError([f"{path}: {TOP}: the suite is empty; required keys: ['experiments', 'name']"])
    data = chk.mapping(data, TOP, None)
    if chk.errors:
        raise SuiteError(chk.errors)
    data = chk.mapping(data, "", TOP_KEYS, {"name", "experiments"})
    name = chk.name(data.get("name"), "name") if "name" in data else None
    desc = data.get("description", "")
    if not isinstance(desc, str):
        chk.err("description", f"must be a string, got {desc!r}")
    ev_raw = chk.mapping(data.get("eval"), "eval")
    _check_params(chk, "eval", ev_raw, {f.name: f.default for f in dataclasses.fields(EvalSpec)})
    for k in ("n_samples", "n_w2", "n_mc"):
        if k in ev_raw and isinstance(ev_raw[k], int) and ev_raw[k] < 2:
            chk.err(f"eval.{k}", f"must be >= 2, got {ev_raw[k]}")
    if isinstance(ev_raw.get("every"), int) and ev_raw["every"] < 1:
        chk.err("eval.every", f"must be >= 1, got {ev_raw['every']}")
    defaults = chk.mapping(data.get("defaults"), "defaults", DEFAULT_KEYS)
    if "time_budget_s" in defaults:
        defaults = {
            "time_budget_s": chk.number(defaults["time_budget_s"], "defaults.time_budget_s", minimum=0, strict=True)
        }
    n_err = len(chk.errors)
    experiments = chk.mapping(data.get("experiments"), "experiments")
    if "experiments" in data and not experiments and len(chk.errors) == n_err:
        chk.err("experiments", "must define at least one experiment; allowed: a mapping of names to experiments")
    runs: list[RunSpec] = []
    # experiments are checked even when the top level has mistakes, so that every mistake is listed
    ev = EvalSpec(**ev_raw) if not chk.errors else EvalSpec()
    for ename, exp in experiments.items():
        if chk.name(ename, f"experiments.{ename}") is None:
            continue
        runs += _check_experiment(chk, ename, exp, defaults, name or "", ev)
    if chk.errors:
        raise SuiteError(chk.errors)
    return Suite(name=name, description=desc, path=path, runs=tuple(runs))


def load_yaml(text: str):
    """Parse YAML as suites are parsed: safe, duplicate keys refused, 1e-3 read as a number."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def load_suite(path: str | Path) -> Suite:
    """Read, validate and expand a suite file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SuiteError([f"{path}: cannot read the suite file: {e.strerror}"]) from None
    try:
        data = load_yaml(text)
    except _DuplicateKey as e:
        raise SuiteError(
            [f"{path}: {e.key}: duplicate key (line {e.line}); allowed: each key once per mapping"]
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else TOP
        problem = getattr(e, "problem", None) or str(e)
        raise SuiteError(
            [f"{path}: {where}: not valid YAML ({problem}); allowed: a YAML mapping (see suites/default.yaml)"]
        ) from None
    return parse_suite(data, str(path))


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int):
        super().__init__(f"duplicate key {key!r} on line {line}")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last one).

    Keys brought in by a merge (``<<: *anchor``) may be overridden, as YAML intends; only keys written
    twice in the same mapping are refused.
    """

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads 1e-3 and 5e+2 as strings; suites mean numbers (YAML 1.2 reads them as floats)
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
