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
from wgfbench_baselines.identity import Identity

from wgfbench import registry
from wgfbench.cli import main
from wgfbench.methods.base import MethodConfig
from wgfbench.suites import SuiteError, load_suite

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
     "experiments.ou.methods.exact_jko.param", "allowed: ['dims', 'params', 'time_budget_s']"),
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
