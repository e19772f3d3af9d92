"""Suites: YAML grids of problems x methods x dimensions x seeds, validated before any job starts.

Format (``suites/default.yaml`` is the worked example)::

    name: default                  # a safe name (below); names the results folder results/<name>/
    description: free text
    eval: {n_samples: 10000, n_w2: 1000, n_mc: 4096, every: 1, seed: 2024}   # optional (wgfbench.evaluate.EvalSpec)
    defaults: {time_budget_s: 600}                                           # optional
    experiments:
      ou:                          # experiment name, a safe name
        problem: ou                # a registered problem (wgfbench list)
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
          jko_icnn_exact:
            params: {batch_size: 512, lr_schedule: [[0, 5.0e-3], [20, 2.0e-3]]}
            params_by_dim:         # optional: merged over params in the runs of that dim only
              2: {hidden_width: 256, iters_per_step: 500}
              8: {hidden_width: 512, iters_per_step: 1000}

``params_by_dim`` maps dims to parameter mappings; the run of dim d gets ``params`` updated by entry d (a key
given in both takes entry d's value), so each run's ``method_params``, and hence its run hash
(:func:`wgfbench.records.run_hash`), is its own dim's. Every key must be one of the method's dims (its ``dims``,
else the experiment's), and each entry's parameters are validated like ``params``. A parameter annotated
:data:`wgfbench.schedules.StepSchedule` (e.g. ``lr_schedule``) is a per-step schedule, a list of
``[first_step, value]`` pairs with first steps >= 0 strictly increasing (JKO steps counted from 0): from its
first step on a pair's value holds until the next pair's (:mod:`wgfbench.schedules`).

Every mistake found is reported, each in one line naming the file, the key path and what is allowed;
:class:`SuiteError` carries them all. What is checked:

* the document: UTF-8, valid YAML (safe loader: no tags that build objects), no key given twice, not nested
  deeper than the format needs, at most :data:`MAX_NODES` values once YAML aliases are expanded (an alias bomb is
  refused before anything walks it), values quoted in messages shortened;
* names (suite, experiments): :data:`NAME_RE`, i.e. a safe path component (no ``.`` or ``..``, no leading ``-``
  or ``.``, no separators or control characters, at most 64 characters);
* unknown and missing keys at every level; numbers finite and within bounds (step size > 0, 1 <= n_steps <=
  :data:`MAX_STEPS`, 1 <= dims <= :data:`MAX_DIM`, 0 <= seeds <= :data:`MAX_SEED`, budgets > 0 and at most a
  year, at most :data:`MAX_RUNS` runs per suite);
* problem and method names against the registry; problem, method and evaluation parameters by name, type and
  bounds from their annotations (:mod:`wgfbench.params`: the one validation path the command line and the Python
  API use too), schedules in order (:func:`wgfbench.schedules.order_errors`), per-dimension parameters (their
  dims among the method's, their parameters as ``params``'s), and the problem built in every dimension;
* pairings, per dimension with that dimension's parameters: dimensions and problems a method cannot run (its
  ``check_supports``), evaluation sample sizes a method cannot supply (its ``sample_limit``: ``n_w2``, ``n_mc``,
  and on a stationary target ``sliced_energy_samples``), report_t within the flow.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import yaml

from wgfbench import registry
from wgfbench.evaluate import EvalSpec
from wgfbench.params import check_params, short
from wgfbench.problems.base import StationaryProblem
from wgfbench.schedules import order_errors

# a safe path component: starts with a letter, digit or '_', then letters, digits, '_', '.', '-'; <= 64 characters
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "a name of at most 64 letters, digits, '_', '.', '-', starting with a letter, digit or '_'"
MAX_DIM = 1024  # validation builds every problem, factoring d x d matrices (O(d^3)): bounded so it stays cheap
MAX_STEPS = 100_000
MAX_SEED = 2**31 - 1
MAX_SEED_COUNT = 10_000
MAX_RUNS = 100_000
MAX_BUDGET_S = 366 * 24 * 3600.0
MAX_NODES = 100_000  # YAML values once aliases are expanded
MAX_DEPTH = 32
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
METHOD_KEYS = {"params", "params_by_dim", "time_budget_s", "dims"}
DEFAULT_KEYS = {"time_budget_s"}
# what a missing required key must hold (the message of a missing key says it)
REQUIRED = {
    "name": f"{NAME_RULE} (names the results folder)",
    "experiments": "a mapping of experiment names to experiments",
    "problem": "a problem name, one of {problems}",
    "dims": "a non-empty list of integers >= 1",
    "seeds": "a non-empty list of integers >= 0, or a seed count n >= 1",
    "step_size": "a number > 0 (the JKO step size h)",
    "n_steps": "an integer >= 1 (the number of JKO steps K)",
    "methods": "a mapping of method names to {{params, params_by_dim, time_budget_s, dims}}, one of {methods}",
}
TOP = "(document)"  # the key named by a mistake in the document as a whole


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
def _printable(text: str) -> str:
    """``text`` with every non-printable character (newlines, control characters) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class _Checker:
    def __init__(self, path: str):
        self.path = path
        self.errors: list[str] = []

    def err(self, key: str, msg: str) -> None:
        # one line whatever the user's keys and values contain: control characters are shown escaped, and a key
        # path is shortened like a value
        line = f"{self.path}: {_printable(key)[:200]}: {_printable(msg)}"
        self.errors.append(line)

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None, required: set[str] = frozenset()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.err(key, f"must be a mapping, got {type(value).__name__} {short(value)}")
            return {}
        if allowed is not None:
            for k in sorted(set(value) - allowed, key=str):
                self.err(f"{key}.{k}" if key else str(k), f"unknown key; allowed: {sorted(allowed)}")
        for k in sorted(required - set(value)):
            what = REQUIRED.get(k, "a value").format(
                problems=sorted(registry.problems()), methods=sorted(registry.methods())
            )
            self.err(f"{key}.{k}" if key else k, f"missing required key; allowed: {what}")
        return value

    def number(
        self,
        value: Any,
        key: str,
        *,
        integer: bool = False,
        minimum: float | None = None,
        strict: bool = False,
        maximum: float | None = None,
    ):
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        # (an int is finite however large: math.isfinite would overflow converting 10**400 to a float)
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            what = "an integer" if integer else "a finite number"
            bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
            self.err(key, f"must be {what}{bound}, got {short(value)}")
            return None
        if minimum is not None and (value <= minimum if strict else value < minimum):
            self.err(key, f"must be {'>' if strict else '>='} {minimum}, got {short(value)}")
            return None
        if maximum is not None and value > maximum:
            self.err(key, f"must be <= {maximum if isinstance(maximum, int) else f'{maximum:g}'}, got {short(value)}")
            return None
        return value

    def name(self, value: Any, key: str) -> str | None:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.err(key, f"must be {NAME_RULE}, got {short(value)}")
            return None
        return value

    def params(self, key: str, target, params: dict) -> bool:
        """Report every parameter that does not fit ``target`` (names, types, bounds, schedule order); True if none."""
        errors = check_params(target, params)
        wrong = {name for name, _ in errors}
        errors += order_errors(target, {k: v for k, v in params.items() if k not in wrong})
        for pname, msg in errors:
            self.err(f"{key}.{pname}", msg)
        return not errors


def _int_list(chk: _Checker, value: Any, key: str, minimum: int, maximum: int) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("seeds"):
        if value < 1 or value > MAX_SEED_COUNT:
            chk.err(key, f"an integer seed count must be >= 1 and <= {MAX_SEED_COUNT}, got {value}")
            return []
        return list(range(value))
    if not isinstance(value, list) or not value:
        chk.err(key, f"must be a non-empty list of integers, got {short(value)}")
        return []
    if len(value) > MAX_SEED_COUNT:
        chk.err(key, f"has {len(value)} entries; allowed: at most {MAX_SEED_COUNT}")
        return []
    out = [
        v
        for i, v in enumerate(value)
        if chk.number(v, f"{key}[{i}]", integer=True, minimum=minimum, maximum=maximum) is not None
    ]
    if len(set(out)) != len(out):
        chk.err(key, f"has duplicates: {short(value)}; allowed: distinct values")
    return out


def _budget(chk: _Checker, value: Any, key: str) -> float | None:
    return chk.number(value, key, minimum=0, strict=True, maximum=MAX_BUDGET_S)


def _check_experiment(
    chk: _Checker, ename: str, exp: Any, defaults: dict, suite_name: str, ev: EvalSpec | None
) -> list[RunSpec]:
    key = f"experiments.{ename}"
    exp = chk.mapping(exp, key, EXPERIMENT_KEYS, {"problem", "dims", "seeds", "step_size", "n_steps", "methods"})
    if not exp:
        return []
    n_err = len(chk.errors)
    problem = exp.get("problem")
    factory = None
    if "problem" in exp:
        if not isinstance(problem, str) or not registry.is_problem(problem):
            chk.err(f"{key}.problem", f"unknown problem {short(problem)}; known: {sorted(registry.problems())}")
        else:
            factory = registry.problem_factory(problem)
    pparams = chk.mapping(exp.get("problem_params"), f"{key}.problem_params")
    if factory is not None:
        chk.params(f"{key}.problem_params", factory, pparams)
    n_before_dims = len(chk.errors)
    dims = _int_list(chk, exp.get("dims"), f"{key}.dims", 1, MAX_DIM) if "dims" in exp else []
    dims_ok = "dims" in exp and len(chk.errors) == n_before_dims
    seeds = _int_list(chk, exp.get("seeds"), f"{key}.seeds", 0, MAX_SEED) if "seeds" in exp else []
    h = chk.number(exp.get("step_size"), f"{key}.step_size", minimum=0, strict=True) if "step_size" in exp else None
    n_steps = None
    if "n_steps" in exp:
        n_steps = chk.number(exp["n_steps"], f"{key}.n_steps", integer=True, minimum=1, maximum=MAX_STEPS)
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
        exp_budget = _budget(chk, exp["time_budget_s"], f"{key}.time_budget_s")
    methods = chk.mapping(exp.get("methods"), f"{key}.methods")
    if "methods" in exp and not methods and isinstance(exp.get("methods"), dict | None):
        chk.err(f"{key}.methods", f"must name at least one method; allowed: {sorted(registry.methods())}")

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
        if not isinstance(mname, str) or not registry.is_method(mname):
            chk.err(mkey, f"unknown method {short(mname)}; known: {sorted(registry.methods())}")
            continue
        cls = registry.method_class(mname)
        entry = chk.mapping(entry, mkey, METHOD_KEYS)
        mparams = chk.mapping(entry.get("params"), f"{mkey}.params")
        params_ok = chk.params(f"{mkey}.params", cls.Config, mparams)
        budget = entry.get("time_budget_s", exp_budget)
        if "time_budget_s" in entry:
            budget = _budget(chk, entry["time_budget_s"], f"{mkey}.time_budget_s")
        mdims = dims
        n_before_mdims = len(chk.errors)
        if "dims" in entry:
            mdims = _int_list(chk, entry["dims"], f"{mkey}.dims", 1, MAX_DIM)
            for d in mdims:
                if dims_ok and d not in dims:
                    chk.err(f"{mkey}.dims", f"dim {d} is not among the experiment's dims; allowed: a subset of {dims}")
        mdims_ok = dims_ok and len(chk.errors) == n_before_mdims
        by_dim, by_dim_ok = _params_by_dim(
            chk, f"{mkey}.params_by_dim", entry.get("params_by_dim"), cls, mdims, mdims_ok
        )
        # each dim's parameters: params updated by its params_by_dim entry; its Config where both are valid
        dim_params = {d: {**mparams, **by_dim.get(d, {})} for d in mdims}
        configs = {}
        for d in mdims:
            if params_ok and by_dim_ok.get(d, True):
                configs[d] = _config(
                    chk, f"{mkey}.params_by_dim.{d}" if d in by_dim else f"{mkey}.params", cls, dim_params[d]
                )
        unsupported: dict[str, list[int]] = {}
        for d in mdims:
            if d in problems:
                try:
                    cls.check_supports(problems[d], configs.get(d))
                except Exception as e:  # UnsupportedProblem, or anything else a method's check raises
                    unsupported.setdefault(str(e), []).append(d)
        for msg, ds in unsupported.items():
            ok_dims = [d for d in mdims if d in problems and not any(d in v for v in unsupported.values())]
            chk.err(
                f"{mkey}" if len(ds) == len(mdims) else f"{mkey}.dims",
                f"cannot run dim{'s' if len(ds) > 1 else ''} {ds}: {msg}; "
                + (f"allowed: restrict it with dims: {ok_dims}" if ok_dims else "allowed: another method or problem"),
            )
        if ev is not None:
            short_of: dict[str, list[int]] = {}
            for d, config in configs.items():
                for msg in _sample_size_errors(cls, config, ev, problems.get(d)):
                    short_of.setdefault(msg, []).append(d)
            for msg, ds in short_of.items():
                if len(ds) == len(mdims):
                    chk.err(f"{mkey}.params", msg)
                else:
                    chk.err(f"{mkey}.params_by_dim", f"dim{'s' if len(ds) > 1 else ''} {ds}: {msg}")
        if h is None or n_steps is None or ev is None:
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
                        dict(dim_params[d]),
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


def _params_by_dim(
    chk: _Checker, key: str, value: Any, cls, mdims: list[int], mdims_ok: bool
) -> tuple[dict[int, dict], dict[int, bool]]:
    """A method entry's ``params_by_dim``: ({dim: parameters}, {dim: whether they are valid}), each mistake
    reported once (a key that is no dim of the method, an entry that is no mapping, a parameter as ``params``)."""
    if value is None:
        return {}, {}
    if not isinstance(value, dict):
        chk.err(key, f"must be a mapping of dims to parameter mappings, got {short(value)}")
        return {}, {}
    by_dim: dict[int, dict] = {}
    ok: dict[int, bool] = {}
    for d, params in value.items():
        dkey = f"{key}.{short(d)}"
        if isinstance(d, bool) or not isinstance(d, int):
            chk.err(dkey, f"must be a dim (an integer), got {short(d)}; allowed: one of the method's dims {mdims}")
            continue
        if mdims_ok and d not in mdims:
            chk.err(dkey, f"dim {d} is not among the method's dims; allowed: one of {mdims}")
            continue
        n_err = len(chk.errors)
        params = chk.mapping(params, dkey)
        ok[d] = chk.params(dkey, cls.Config, params) and len(chk.errors) == n_err
        by_dim[d] = params
    return by_dim, ok


def _config(chk: _Checker, key: str, cls, params: dict):
    """``cls.Config(**params)`` (parameters already validated), or None with the reason reported where the Config
    refuses them (a check of its own, e.g. a cross-field one)."""
    try:
        return cls.Config(**params)
    except Exception as e:  # whatever a Config's __post_init__ raises is a mistake of the suite, reported
        chk.err(key, f"refused by {cls.name!r}: {short(str(e) or type(e).__name__)}")
        return None


def _sample_size_errors(cls, config, ev: EvalSpec, problem) -> list[str]:
    """What evaluation would ask of a method that holds fewer samples of P_k than it draws: ``n_w2`` and ``n_mc``
    samples (its moment fits use the particles it holds, so ``n_samples`` asks nothing of it), and, on a stationary
    target, ``sliced_energy_samples`` fresh samples."""
    limit = cls.sample_limit(config)
    if limit is None:
        return []
    fields = ["n_w2", "n_mc"]
    stationary = problem is not None and not problem.transient and isinstance(problem, StationaryProblem)
    if stationary and ev.sliced_energy_samples:
        fields.append("sliced_energy_samples")
    return [
        f"method {cls.name!r} holds {limit} particles but eval.{field} asks for {getattr(ev, field)} samples of P_k; "
        f"allowed: eval.{field} <= {limit}, or more particles"
        for field in fields
        if getattr(ev, field) > limit
    ]


def parse_suite(data: Any, path: str = "<suite>") -> Suite:
    """Validate a parsed suite document and expand it into runs; raise :class:`SuiteError` on mistakes."""
    chk = _Checker(path)
    if data is None:
        raise SuiteError([f"{path}: {TOP}: the suite is empty; required keys: ['experiments', 'name']"])
    _check_size(chk, data)
    data = chk.mapping(data, TOP, None)
    if chk.errors:
        raise SuiteError(chk.errors)
    data = chk.mapping(data, "", TOP_KEYS, {"name", "experiments"})
    name = chk.name(data.get("name"), "name") if "name" in data else None
    desc = data.get("description", "")
    if not isinstance(desc, str):
        chk.err("description", f"must be a string, got {short(desc)}")
    ev_raw = chk.mapping(data.get("eval"), "eval")
    n_err = len(chk.errors)
    chk.params("eval", EvalSpec, ev_raw)
    ev = EvalSpec(**ev_raw) if len(chk.errors) == n_err else None
    defaults = chk.mapping(data.get("defaults"), "defaults", DEFAULT_KEYS)
    if "time_budget_s" in defaults:
        defaults = {"time_budget_s": _budget(chk, defaults["time_budget_s"], "defaults.time_budget_s")}
    n_err = len(chk.errors)
    experiments = chk.mapping(data.get("experiments"), "experiments")
    if "experiments" in data and not experiments and len(chk.errors) == n_err:
        chk.err("experiments", "must define at least one experiment; allowed: a mapping of names to experiments")
    runs: list[RunSpec] = []
    # experiments are checked even when the top level has mistakes, so that every mistake is listed
    for ename, exp in experiments.items():
        if chk.name(ename, f"experiments.{short(ename)}" if not isinstance(ename, str) else f"experiments.{ename}"):
            runs += _check_experiment(chk, ename, exp, defaults, name or "", ev)
    if len(runs) > MAX_RUNS:
        chk.err(TOP, f"expands to {len(runs)} runs; allowed: at most {MAX_RUNS}")
    if chk.errors:
        raise SuiteError(chk.errors)
    return Suite(name=name, description=desc, path=path, runs=tuple(runs))


def _check_size(chk: _Checker, data: Any) -> None:
    """Refuse documents that are too deep or too large once YAML aliases are expanded, without expanding them
    (sizes are memoised per node, so an alias bomb costs its number of distinct nodes)."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _TooDeep
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                break
        sizes[id(node)] = total
        return total

    try:
        n = size(data, 0)
    except _TooDeep:
        raise SuiteError([f"{chk.path}: {TOP}: nested deeper than {MAX_DEPTH} levels; allowed: a suite"]) from None
    if n > MAX_NODES:
        raise SuiteError(
            [f"{chk.path}: {TOP}: more than {MAX_NODES} values once YAML aliases are expanded; allowed: a suite"]
        )


class _TooDeep(Exception):
    pass


def load_yaml(text: str):
    """Parse YAML as suites are parsed: safe, duplicate keys refused, 1e-3 read as a number."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass


def load_suite(path: str | Path) -> Suite:
    """Read, validate and expand a suite file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SuiteError([f"{path}: cannot read the suite file: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SuiteError(
            [f"{path}: byte {e.start}: not UTF-8 text ({e.reason}); allowed: a UTF-8 encoded YAML file"]
        ) from None
    try:
        data = load_yaml(text)
    except _DuplicateKey as e:
        raise SuiteError(
            [f"{path}: {e.key}: duplicate key (line {e.line}); allowed: each key once per mapping"]
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else TOP
        problem = _printable(" ".join(str(getattr(e, "problem", None) or e).split()))[:300]  # one line
        raise SuiteError(
            [f"{path}: {where}: not valid YAML ({problem}); allowed: a YAML mapping (see suites/default.yaml)"]
        ) from None
    except RecursionError:
        raise SuiteError([f"{path}: {TOP}: nested too deeply to parse; allowed: a suite"]) from None
    return parse_suite(data, str(path))


def suite_from_args(
    problem: str,
    method: str,
    dim: int,
    *,
    seed: int = 0,
    step_size: float = 0.05,
    n_steps: int = 20,
    problem_params: dict | None = None,
    method_params: dict | None = None,
    eval_params: dict | None = None,
    time_budget_s: float | None = None,
    experiment: str | None = None,
    suite: str = "adhoc",
) -> RunSpec:
    """The one run that a command line (or a Python call) describes, validated exactly as a suite's run is."""
    exp: dict[str, Any] = {
        "problem": problem,
        "problem_params": problem_params or {},
        "dims": [dim],
        "seeds": [seed],
        "step_size": step_size,
        "n_steps": n_steps,
        "methods": {method: {"params": method_params or {}}},
    }
    if time_budget_s is not None:
        exp["time_budget_s"] = time_budget_s
    doc = {"name": suite, "eval": eval_params or {}, "experiments": {experiment or problem: exp}}
    (spec,) = parse_suite(doc, "<command line>").runs
    return spec


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
