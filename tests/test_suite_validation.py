"""Malformed suites: each mistake gives exactly one message naming the file, the key and what is allowed,
and the pipeline (Snakefile) refuses the suite before any job starts."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wgfbench_baselines.identity import Identity

from wgfbench import registry
from wgfbench.cli import main
from wgfbench.methods.base import MethodConfig
from wgfbench.records import run_hash
from wgfbench.suites import SuiteError, load_suite, parse_suite

ROOT = Path(__file__).resolve().parents[1]

VALID = {
    "name": "valid",
    "description": "the valid suite every malformed one is derived from",
    "eval": {"n_samples": 200, "n_w2": 100, "n_mc": 64, "every": 1},
    "defaults": {"time_budget_s": 60},
    "experiments": {
        "ou": {
            "problem": "ou",
            "problem_params": {"generator": "spectrum"},
            "dims": [2, 4],
            "seeds": [0, 1],
            "step_size": 0.1,
            "n_steps": 3,
            "report_t": 0.2,
            "time_budget_s": 30,
            "methods": {
                "variational_jko": {"params": {"iters_per_step": 3}, "time_budget_s": 20, "dims": [2]},
                "exact_jko": {},
            },
        }
    },
}
EXP = ("experiments", "ou")
METHODS = (*EXP, "methods")
DELETE = object()


def changed(path: tuple, value: Any) -> dict:
    """VALID with the entry at ``path`` set to ``value`` (or removed, for DELETE)."""
    doc = copy.deepcopy(VALID)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


BARENBLATT = {"problem": "barenblatt", "dims": [3], "seeds": 1, "step_size": 0.01, "n_steps": 2}

# (id, document, key path the message must name, what it must say is allowed)
CASES: list[tuple[str, Any, str, str]] = [
    ("unknown-top-key", changed(("experiment",), {}), "experiment", "allowed: ['defaults', 'description'"),
    ("missing-name", changed(("name",), DELETE), "name", "allowed: a name of at most 64 letters"),
    ("bad-name", changed(("name",), "my suite!"), "name", "letters, digits, '_', '.', '-', starting with"),
    ("missing-experiments", changed(("experiments",), DELETE), "experiments", "allowed: a mapping of experiment"),
    ("experiments-list", changed(("experiments",), ["ou"]), "experiments", "must be a mapping"),
    ("bad-experiment-name", changed(("experiments", "o u"), VALID["experiments"]["ou"]), "experiments.o u", "letters"),
    ("description-list", changed(("description",), ["a"]), "description", "must be a string"),
    ("unknown-problem", changed((*EXP, "problem"), "ouu"), "experiments.ou.problem", "known: ['barenblatt'"),
    ("missing-problem", changed((*EXP, "problem"), DELETE), "experiments.ou.problem", "allowed: a problem name"),
    ("unknown-method", changed((*METHODS, "variational"), {}), "experiments.ou.methods.variational", "known: ["),
    (
        "unknown-compile-mode",
        changed((*METHODS, "variational_jko", "params", "compile"), "fast"),
        "experiments.ou.methods.variational_jko.params.compile",
        "allowed: ['off', 'default', 'reduce-overhead']",
    ),
    (
        "unknown-map",
        changed((*METHODS, "variational_jko", "params", "map"), "resnet"),
        "experiments.ou.methods.variational_jko.params.map",
        "allowed: ['mlp', 'icnn']",
    ),
    ("negative-step", changed((*EXP, "step_size"), -0.1), "experiments.ou.step_size", "must be > 0"),
    ("zero-step", changed((*EXP, "step_size"), 0), "experiments.ou.step_size", "must be > 0"),
    ("nan-step", changed((*EXP, "step_size"), float("nan")), "experiments.ou.step_size", "finite number > 0"),
    ("string-step", changed((*EXP, "step_size"), "0.1a"), "experiments.ou.step_size", "finite number > 0"),
    ("bool-step", changed((*EXP, "step_size"), True), "experiments.ou.step_size", "finite number > 0"),
    ("missing-step", changed((*EXP, "step_size"), DELETE), "experiments.ou.step_size", "allowed: a number > 0"),
    ("zero-steps", changed((*EXP, "n_steps"), 0), "experiments.ou.n_steps", "must be >= 1"),
    ("float-steps", changed((*EXP, "n_steps"), 2.5), "experiments.ou.n_steps", "must be an integer >= 1"),
    ("dim-zero", changed((*EXP, "dims"), [0, 2]), "experiments.ou.dims[0]", "must be >= 1"),
    ("dims-string", changed((*EXP, "dims"), "2"), "experiments.ou.dims", "non-empty list of integers"),
    ("dims-empty", changed((*EXP, "dims"), []), "experiments.ou.dims", "non-empty list of integers"),
    ("dims-duplicate", changed((*EXP, "dims"), [2, 2]), "experiments.ou.dims", "allowed: distinct values"),
    ("missing-dims", changed((*EXP, "dims"), DELETE), "experiments.ou.dims", "allowed: a non-empty list"),
    ("negative-seed", changed((*EXP, "seeds"), [-1]), "experiments.ou.seeds[0]", "must be >= 0"),
    ("zero-seed-count", changed((*EXP, "seeds"), 0), "experiments.ou.seeds", "must be >= 1"),
    ("unknown-method-param", changed((*METHODS, "variational_jko", "params", "iters"), 3),
     "experiments.ou.methods.variational_jko.params.iters", "allowed: ['batch_size'"),
    ("method-param-type", changed((*METHODS, "variational_jko", "params", "iters_per_step"), "many"),
     "experiments.ou.methods.variational_jko.params.iters_per_step", "must be an integer, got 'many'"),
    ("method-param-bool-for-int", changed((*METHODS, "variational_jko", "params", "n_particles"), True),
     "experiments.ou.methods.variational_jko.params.n_particles", "must be an integer, got True"),
    ("bad-device", changed((*METHODS, "variational_jko", "params", "device"), "gpu0"),
     "experiments.ou.methods.variational_jko.params.device", "allowed: 'auto', 'cpu', 'cuda'"),
    ("bad-dtype", changed((*METHODS, "variational_jko", "params", "dtype"), "float8"),
     "experiments.ou.methods.variational_jko.params.dtype", "allowed: ['float16'"),
    ("params-list", changed((*METHODS, "variational_jko", "params"), [1]),
     "experiments.ou.methods.variational_jko.params", "must be a mapping"),
    ("unknown-problem-param", changed((*EXP, "problem_params", "spectrum"), 1),
     "experiments.ou.problem_params.spectrum", "allowed: ['a_max', 'a_min', 'beta'"),
    ("problem-param-type", changed((*EXP, "problem_params", "beta"), "one"),
     "experiments.ou.problem_params.beta", "must be a number, got 'one'"),
    ("problem-param-value", changed((*EXP, "problem_params", "generator"), "nope"),
     "experiments.ou.problem_params.generator", "allowed: ['spectrum', 'legacy_make_spd']"),
    ("method-dims-outside", changed((*METHODS, "variational_jko", "dims"), [8]),
     "experiments.ou.methods.variational_jko.dims", "allowed: a subset of [2, 4]"),
    ("report-time-past-end", changed((*EXP, "report_t"), 5.0), "experiments.ou.report_t", "<= step_size * n_steps"),
    ("negative-budget", changed((*EXP, "time_budget_s"), -1), "experiments.ou.time_budget_s", "must be > 0"),
    ("infinite-budget", changed((*EXP, "time_budget_s"), float("inf")), "experiments.ou.time_budget_s", "finite"),
    ("zero-default-budget", changed(("defaults", "time_budget_s"), 0), "defaults.time_budget_s", "must be > 0"),
    ("zero-method-budget", changed((*METHODS, "exact_jko"), {"time_budget_s": 0}),
     "experiments.ou.methods.exact_jko.time_budget_s", "must be > 0"),
    ("unknown-default-key", changed(("defaults", "budget"), 3), "defaults.budget", "allowed: ['time_budget_s']"),
    ("unknown-eval-key", changed(("eval", "samples"), 10), "eval.samples", "allowed: ['every', 'floor_reps'"),
    ("eval-too-few-samples", changed(("eval", "n_samples"), 1), "eval.n_samples", "must be >= 2"),
    ("eval-every-zero", changed(("eval", "every"), 0), "eval.every", "must be >= 1"),
    ("unknown-method-entry-key", changed((*METHODS, "exact_jko"), {"param": {}}),
     "experiments.ou.methods.exact_jko.param", "allowed: ['dims', 'params', 'params_by_dim', 'time_budget_s']"),
    ("method-entry-int", changed((*METHODS, "exact_jko"), 3), "experiments.ou.methods.exact_jko", "must be a mapping"),
    ("unknown-experiment-key", changed((*EXP, "step"), 0.1), "experiments.ou.step", "allowed: ['dims', 'methods'"),
    ("missing-methods", changed((*EXP, "methods"), DELETE), "experiments.ou.methods", "allowed: a mapping of method"),
    ("methods-empty", changed((*EXP, "methods"), {}), "experiments.ou.methods", "allowed: ['em_particles'"),
    ("methods-list", changed((*EXP, "methods"), ["exact_jko"]), "experiments.ou.methods", "must be a mapping"),
    ("experiment-not-mapping", changed(EXP, 3), "experiments.ou", "must be a mapping"),
    # a method that cannot run the problem (functional / initial law): the whole method entry is refused
    ("method-wrong-functional", changed(EXP, {**BARENBLATT, "methods": {"em_particles": {}}}),
     "experiments.ou.methods.em_particles", "handles functionals ['kl', 'kl_interaction'], not 'generalised_entropy'"),
    ("oracle-on-wrong-problem", changed(EXP, {**BARENBLATT, "methods": {"exact_jko": {}}}),
     "experiments.ou.methods.exact_jko", "handles functionals ['kl', 'kl_interaction'], not 'generalised_entropy'"),
    ("oracle-on-a-mixture", changed(EXP, {**BARENBLATT, "problem": "gmm", "dims": [2], "methods": {"exact_jko": {}}}),
     "experiments.ou.methods.exact_jko", "needs exact JKO iterates that are Gaussian laws in closed form"),
    ("problem-rejects-dim", changed(EXP, {**BARENBLATT, "dims": [2], "problem_params": {"convention": "fan"},
                                          "methods": {"identity": {}}}),
     "experiments.ou.problem_params", "rejects dim [2] with these parameters: convention='fan' needs support_radius"),
]  # fmt: skip


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False) if not isinstance(doc, str) else doc)
    return path


def only_error(path: Path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert len(info.value.errors) == 1, "\n".join(info.value.errors)
    return info.value.errors[0]


def test_the_base_suite_is_valid(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, VALID))
    assert {r.job_id for r in suite.runs} == {
        "ou/variational_jko/d2/s0",
        "ou/variational_jko/d2/s1",
        "ou/exact_jko/d2/s0",
        "ou/exact_jko/d2/s1",
        "ou/exact_jko/d4/s0",
        "ou/exact_jko/d4/s1",
    }
    assert {r.time_budget_s for r in suite.runs} == {20, 30}


@pytest.mark.parametrize(("doc", "key", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_clear_message_per_mistake(tmp_path: Path, doc: Any, key: str, allowed: str) -> None:
    path = write(tmp_path, doc)
    msg = only_error(path)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert allowed in msg, msg


def test_every_mistake_is_listed(tmp_path: Path) -> None:
    doc = changed((*EXP, "step_size"), -1.0)
    doc["experiments"]["ou"]["methods"]["exact_jko"] = {"params": {"dtype": "float8"}}
    doc["name"] = "bad name"
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, doc))
    keys = sorted(e.split(": ")[1] for e in info.value.errors)
    assert keys == ["experiments.ou.methods.exact_jko.params.dtype", "experiments.ou.step_size", "name"]


def test_a_dimension_the_method_cannot_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Identity, "max_dim", 3)
    doc = changed((*METHODS,), {"identity": {}})
    msg = only_error(write(tmp_path, doc))
    assert msg.startswith(f"{tmp_path / 'suite.yaml'}: experiments.ou.methods.identity.dims: cannot run dim [4]"), msg
    assert "supports dim <= 3" in msg and "allowed: restrict it with dims: [2]" in msg


@dataclasses.dataclass(frozen=True)
class _ChoiceConfig(MethodConfig):
    kind: Literal["a", "b"] = "a"


class _ChoiceMethod(Identity):
    name = "choice_method"
    Config = _ChoiceConfig


def test_literal_config_fields_are_checked_by_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.methods(), "choice_method", _ChoiceMethod)
    assert load_suite(write(tmp_path, changed((*METHODS,), {"choice_method": {"params": {"kind": "b"}}}))).runs
    msg = only_error(write(tmp_path, changed((*METHODS,), {"choice_method": {"params": {"kind": "c"}}})))
    assert "experiments.ou.methods.choice_method.params.kind: unknown value 'c'; allowed: ['a', 'b']" in msg


@pytest.mark.parametrize(
    ("text", "where", "allowed"),
    [
        ("name: x\nexperiments: {ou: {problem: ou\n", "line 3, column 1", "not valid YAML"),
        ("name: x\nname: y\nexperiments: {}\n", "name", "duplicate key (line 2); allowed: each key once"),
        (yaml.safe_dump(VALID).replace("  ou:\n", "  ou:\n    n_steps: 3\n", 1), "n_steps", "duplicate key"),
        ("", "(document)", "the suite is empty; required keys: ['experiments', 'name']"),
        ("- ou\n- exact_jko\n", "(document)", "must be a mapping, got list"),
    ],
    ids=["yaml-syntax", "duplicate-top-key", "duplicate-experiment-key", "empty-file", "top-level-list"],
)
def test_unreadable_documents(tmp_path: Path, text: str, where: str, allowed: str) -> None:
    path = write(tmp_path, text)
    msg = only_error(path)
    assert msg.startswith(f"{path}: {where}: "), msg
    assert allowed in msg, msg


def test_merge_keys_may_override(tmp_path: Path) -> None:
    text = """
name: merged
experiments:
  ou: &base
    problem: ou
    dims: [2]
    seeds: 1
    step_size: 0.1
    n_steps: 3
    methods: {exact_jko: {}}
  ou2:
    <<: *base
    n_steps: 2
"""
    suite = load_suite(write(tmp_path, text))
    assert {r.n_steps for r in suite.runs if r.experiment == "ou2"} == {2}


def test_exponent_notation_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 would read 1e-3 as the string '1e-3' (and the type check would refuse it)
    doc = yaml.safe_dump(changed((*METHODS, "variational_jko", "params", "lr_t"), "LR"), sort_keys=False)
    suite = load_suite(write(tmp_path, doc.replace("lr_t: LR", "lr_t: 1e-3")))
    assert {r.method_params.get("lr_t") for r in suite.runs if r.method == "variational_jko"} == {0.001}


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_are_valid(path: Path) -> None:
    assert load_suite(path).runs


def test_missing_file(tmp_path: Path) -> None:
    msg = only_error(tmp_path / "nope.yaml")
    assert msg.startswith(f"{tmp_path / 'nope.yaml'}: cannot read the suite file"), msg


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")


def test_pipeline_refuses_a_malformed_suite_before_any_job(tmp_path: Path) -> None:
    path = write(tmp_path, changed((*EXP, "step_size"), -0.1))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1"]
    proc = subprocess.run(
        [*cmd, "--config", f"suite={path}", f"out={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert f"{path}: experiments.ou.step_size: must be > 0, got -0.1" in text
    assert "Building DAG" not in text and "rule run" not in text and not (tmp_path / "out").exists(), text


def test_cli_validate_reports_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, changed((*METHODS, "variational"), {}))
    assert main(["validate", str(path)]) == 2
    assert f"{path}: experiments.ou.methods.variational: unknown method 'variational'" in capsys.readouterr().err


def test_list_says_which_methods_have_densities(capsys) -> None:
    """`wgfbench list`: every registered method with its functionals and whether (or when) it has a density."""
    from wgfbench.registry import methods

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(methods()) <= set(lines)
    assert lines["variational_jko"].endswith("density=with map=icnn")
    assert lines["jko_icnn_exact"].endswith("density=yes")
    assert lines["em_particles"].endswith("density=no")


def test_variational_jko_has_a_density_exactly_with_icnn_maps() -> None:
    from wgfbench.registry import make_method, make_problem

    problem = make_problem("ou", 2, 0)
    tiny = dict(n_particles=256, batch_size=64, iters_per_step=1, icnn_pretrain_iters=2)
    assert make_method("variational_jko", problem, 0.05, dict(tiny, map="icnn"), 0).has_density
    assert not make_method("variational_jko", problem, 0.05, tiny, 0).has_density


def test_an_evaluation_a_particle_method_cannot_supply_is_refused(tmp_path: Path) -> None:
    """Cross-field check: em_particles holds n_particles samples of P_k; an evaluation that asks it for more
    (here n_mc, its KDE points) is refused before any job, naming both numbers. (Its moment fits use the particles
    it holds, so eval.n_samples no longer asks it for anything: the paper suite's 100,000 against 50,000 runs.)"""
    doc = changed((*METHODS,), {"em_particles": {"params": {"n_particles": 5000}}})
    doc["eval"] = {"n_samples": 100_000, "n_w2": 100, "n_mc": 8192}
    msg = only_error(write(tmp_path, doc))
    assert "experiments.ou.methods.em_particles.params: method 'em_particles' holds 5000 particles" in msg
    assert "eval.n_mc asks for 8192 samples of P_k; allowed: eval.n_mc <= 5000, or more particles" in msg
    doc["eval"]["n_mc"] = 4096
    assert load_suite(write(tmp_path, doc)).runs


# --- per-dimension parameters and per-step schedules (issue 12 item 2) ------------------------------------------
ICNN = (*METHODS, "jko_icnn_exact")
ICNN_TINY = {"hidden_width": 8, "rank": 2, "batch_size": 64, "iters_per_step": 3, "pretrain_iters": 5}


def with_icnn(entry: dict) -> dict:
    """VALID (dims [2, 4]) with a jko_icnn_exact entry beside its methods."""
    return changed(ICNN, entry)


def test_a_parameter_by_dim_reaches_the_runs_of_that_dim_only(tmp_path: Path) -> None:
    entry = {"params": {**ICNN_TINY, "lr_schedule": [[0, 5.0e-3], [2, 2.0e-3]]},
             "params_by_dim": {4: {"hidden_width": 16, "iters_per_step": 7}}}  # fmt: skip
    runs = [r for r in load_suite(write(tmp_path, with_icnn(entry))).runs if r.method == "jko_icnn_exact"]
    by_dim = {r.dim: r.method_params for r in runs}
    assert {r.dim for r in runs} == {2, 4} and len(runs) == 4
    assert by_dim[2] == {**ICNN_TINY, "lr_schedule": [[0, 5.0e-3], [2, 2.0e-3]]}
    assert by_dim[4] == {**by_dim[2], "hidden_width": 16, "iters_per_step": 7}  # entry 4 over params, the rest kept
    # the merged parameters are the run's identity: d = 4 with d = 2's parameters is another run
    d4 = next(r for r in runs if r.dim == 4)
    assert run_hash(d4) != run_hash(dataclasses.replace(d4, method_params=by_dim[2]))
    # ... and adding an entry for d = 4 leaves the identity of every d = 2 run as it was
    plain = [r for r in load_suite(write(tmp_path, with_icnn({"params": entry["params"]}))).runs if r.dim == 2]
    assert {run_hash(r) for r in plain if r.method == "jko_icnn_exact"} == {run_hash(r) for r in runs if r.dim == 2}
    # the runs build: the merged parameters are valid parameters of the method
    from wgfbench.loop import build

    assert build(d4)[1].config.hidden_width == 16 and build(d4)[1].config.lr_of_step(2) == 2.0e-3


BY_DIM_CASES: list[tuple[str, dict, str, str]] = [
    ("dim-not-in-experiment", {"params_by_dim": {8: {"iters_per_step": 2}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.8", "not among the method's dims; allowed: one of [2, 4]"),
    ("dim-not-of-the-method", {"dims": [2], "params_by_dim": {4: {"iters_per_step": 2}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.4", "allowed: one of [2]"),
    ("dim-not-an-integer", {"params_by_dim": {"two": {"iters_per_step": 2}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.'two'", "must be a dim (an integer), got 'two'"),
    ("by-dim-not-a-mapping", {"params_by_dim": [2, 4]},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim", "must be a mapping of dims to parameter mappings"),
    ("entry-not-a-mapping", {"params_by_dim": {2: 256}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.2", "must be a mapping, got int 256"),
    ("unknown-param-by-dim", {"params_by_dim": {4: {"width": 16}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.4.width", "unknown parameter; allowed: ['activation'"),
    ("bad-type-by-dim", {"params_by_dim": {2: {"hidden_width": "wide"}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.2.hidden_width", "must be an integer, got 'wide'"),
    ("schedule-unsorted", {"params": {"lr_schedule": [[20, 5.0e-3], [0, 2.0e-3]]}},
     "experiments.ou.methods.jko_icnn_exact.params.lr_schedule", "must be strictly increasing, got 20 then 0"),
    ("schedule-repeated-step", {"params": {"lr_schedule": [[0, 5.0e-3], [0, 2.0e-3]]}},
     "experiments.ou.methods.jko_icnn_exact.params.lr_schedule", "each step once"),
    ("schedule-negative-step", {"params": {"lr_schedule": [[-1, 5.0e-3]]}},
     "experiments.ou.methods.jko_icnn_exact.params.lr_schedule", "[0] [0] must be >= 0, got -1"),
    ("schedule-zero-lr", {"params": {"lr_schedule": [[0, 0.0]]}},
     "experiments.ou.methods.jko_icnn_exact.params.lr_schedule", "[0] [1] must be > 0, got 0.0"),
    ("schedule-not-pairs", {"params": {"lr_schedule": [5.0e-3, 2.0e-3]}},
     "experiments.ou.methods.jko_icnn_exact.params.lr_schedule", "[0] must be a list, got 0.005"),
    ("schedule-unsorted-by-dim", {"params_by_dim": {4: {"lr_schedule": [[3, 1.0e-3], [1, 2.0e-3]]}}},
     "experiments.ou.methods.jko_icnn_exact.params_by_dim.4.lr_schedule", "strictly increasing, got 3 then 1"),
    ("variational-schedule-unsorted", {},  # (the variational JKO's two schedules: same rule)
     "experiments.ou.methods.variational_jko.params.lr_dual_schedule", "strictly increasing, got 5 then 5"),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "key", "allowed"), [c[1:] for c in BY_DIM_CASES], ids=[c[0] for c in BY_DIM_CASES])
def test_per_dim_parameters_and_schedules_one_line_per_mistake(
    tmp_path: Path, entry: dict, key: str, allowed: str
) -> None:
    if "variational_jko" in key:
        doc = changed((*METHODS, "variational_jko", "params", "lr_dual_schedule"), [[5, 1.0e-3], [5, 2.0e-4]])
    else:
        doc = with_icnn(
            {"params": {**ICNN_TINY, **entry.get("params", {})}, **{k: v for k, v in entry.items() if k != "params"}}
        )
    path = write(tmp_path, doc)
    msg = only_error(path)
    assert msg.startswith(f"{path}: {key}: "), msg
    assert allowed in msg, msg


def test_a_schedule_is_refused_by_the_python_api_too() -> None:
    from wgfbench.params import ParamError
    from wgfbench.registry import make_method, make_problem

    problem = make_problem("ou", 2, 0)
    with pytest.raises(ValueError, match="strictly increasing"):
        make_method("jko_icnn_exact", problem, 0.05, {**ICNN_TINY, "lr_schedule": [[2, 1e-3], [1, 1e-3]]}, 0)
    with pytest.raises(ParamError, match="must be >= 0"):
        make_method("variational_jko", problem, 0.05, {"lr_t_schedule": [[-1, 1e-3]]}, 0)


def test_sample_sizes_are_checked_with_each_dims_parameters(tmp_path: Path) -> None:
    """A particle count given per dim is checked per dim: the one dim that holds too few is named."""
    doc = changed((*METHODS,), {"em_particles": {"params": {"n_particles": 4096},
                                                 "params_by_dim": {4: {"n_particles": 1000}}}})  # fmt: skip
    doc["eval"] = {"n_samples": 100, "n_w2": 100, "n_mc": 2048}
    msg = only_error(write(tmp_path, doc))
    assert "experiments.ou.methods.em_particles.params_by_dim: dim [4]: method 'em_particles' holds 1000" in msg, msg
    assert "eval.n_mc asks for 2048 samples of P_k; allowed: eval.n_mc <= 1000" in msg, msg
    doc["experiments"]["ou"]["methods"]["em_particles"]["params_by_dim"][4]["n_particles"] = 2048
    assert load_suite(write(tmp_path, doc)).runs


def test_sliced_energy_samples_are_checked_on_a_stationary_target(tmp_path: Path) -> None:
    """Hertrich & Gruhlke's sliced energy distance draws ``sliced_energy_samples`` fresh samples of P_k on a
    stationary target: a particle method that holds fewer is refused there (and only there)."""
    gmm = {"problem": "gmm", "dims": [2], "seeds": 1, "step_size": 0.1, "n_steps": 2,
           "methods": {"em_particles": {"params": {"n_particles": 1000}}}}  # fmt: skip
    doc = {"name": "se", "eval": {"n_samples": 100, "n_w2": 100, "n_mc": 64, "sliced_energy_samples": 5000},
           "experiments": {"gmm": gmm}}  # fmt: skip
    msg = only_error(write(tmp_path, doc))
    assert "experiments.gmm.methods.em_particles.params: method 'em_particles' holds 1000 particles but " in msg
    assert "eval.sliced_energy_samples asks for 5000 samples of P_k" in msg, msg
    doc["experiments"]["gmm"]["problem"] = "ou"  # OU is transient: the sliced energy distance is not computed
    assert load_suite(write(tmp_path, doc)).runs


def test_the_paper_suite_refuses_an_em_evaluation_it_cannot_supply(tmp_path: Path) -> None:
    """suites/paper.yaml with Mokrov's EM column given fewer particles than its Monte-Carlo evaluation points
    (n_mc = 8192): refused before any job, in one line naming both numbers."""
    doc = yaml.safe_load((ROOT / "suites" / "paper.yaml").read_text())
    doc["experiments"]["ou_mokrov"]["methods"]["em_particles"]["params"]["n_particles"] = 5000
    msg = only_error(write(tmp_path, doc))
    assert "experiments.ou_mokrov.methods.em_particles.params: method 'em_particles' holds 5000 particles" in msg
    assert "eval.n_mc asks for 8192 samples of P_k; allowed: eval.n_mc <= 5000, or more particles" in msg


def test_the_old_paper_mismatch_now_evaluates_on_all_the_particles(tmp_path: Path) -> None:
    """The old suites/paper.yaml asked for 100,000 evaluation samples of an EM run that holds 50,000, and sample()
    raised. eval.n_samples no longer asks a particle method for anything: its moment fit uses every particle it
    holds (issue 12 item 1), so that configuration validates and runs (here scaled down 50 times)."""
    from wgfbench.records import read_record
    from wgfbench.runner import run
    from wgfbench.suites import suite_from_args

    small = {"n_samples": 2000, "n_w2": 100, "n_mc": 64, "sample_metrics": ["sw2"]}
    spec = suite_from_args("ou", "em_particles", 2, n_steps=1, method_params={"n_particles": 1000}, eval_params=small)
    out = tmp_path / "rec.parquet"
    run(spec, out)
    rec = read_record(out)
    assert set(rec["status"]) == {"ok"} and set(rec["n_moment"]) == {1000.0}


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.integers(-2, 9) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_PLANTED = [
    (*ICNN, "params_by_dim"),
    (*ICNN, "params_by_dim", 2),
    (*ICNN, "params_by_dim", 4, "lr_schedule"),
    (*ICNN, "params", "lr_schedule"),
    (*METHODS, "variational_jko", "params", "lr_t_schedule"),
    (*METHODS, "variational_jko", "params_by_dim"),
]


@settings(max_examples=50, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_PLANTED), value=_values)
def test_random_per_dim_parameters_and_schedules_are_refused_in_one_line_or_accepted(path, value) -> None:
    """Validation stays total with the new keys (as tests/test_adversarial.py checks for the others): any value
    there gives one-line messages, or a suite whose runs carry valid parameters of their method."""
    doc = with_icnn({"params": dict(ICNN_TINY), "params_by_dim": {2: {}, 4: {}}})
    node = doc
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    try:
        suite = parse_suite(doc, "<random>")
    except SuiteError as e:
        assert e.errors and all("\n" not in m and len(m) < 2000 for m in e.errors), e.errors
        return
    for r in suite.runs:
        cls = registry.method_class(r.method)
        cls.Config(**r.method_params)  # accepted parameters build
