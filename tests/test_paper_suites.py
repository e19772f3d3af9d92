"""The paper suite and its CPU reduction describe the same experiments; only budgets, seeds and dims are cut.

(Both are validated with every other shipped suite in tests/test_suite_validation.py.)
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_KEYS = ("problem", "problem_params", "step_size", "n_steps", "report_t")
# (experiment, method) of the paper suite that the CPU suite leaves out, each for a reason stated in its description
LEFT_OUT_ON_CPU = {("porous", "jko_icnn_exact"), ("porous_hi", "jko_icnn_exact")}


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "suites" / f"{name}.yaml").read_text())


def seeds(exp: dict) -> list[int]:
    s = exp["seeds"]
    return list(range(s)) if isinstance(s, int) else list(s)


def test_cpu_suite_has_every_experiment_and_protocol_of_the_paper_suite() -> None:
    paper, cpu = load("paper"), load("paper-cpu")
    assert set(paper["experiments"]) == set(cpu["experiments"])
    assert {"ou_fan", "ou_mokrov", "porous", "gmm_fan", "gmm_mokrov"} <= set(paper["experiments"])
    for name, exp in paper["experiments"].items():
        small = cpu["experiments"][name]
        for key in PROTOCOL_KEYS:
            assert exp.get(key) == small.get(key), (name, key)
        assert set(small["dims"]) <= set(exp["dims"]), name
        assert len(seeds(small)) >= 2, f"{name}: a confidence interval needs at least 2 seeds"
        missing = {(name, m) for m in exp["methods"]} - {(name, m) for m in small["methods"]}
        assert missing <= LEFT_OUT_ON_CPU, missing
        assert set(small["methods"]) <= set(exp["methods"]), name


def test_every_run_has_a_time_budget() -> None:
    for suite in (load("paper"), load("paper-cpu")):
        default = (suite.get("defaults") or {}).get("time_budget_s")
        for name, exp in suite["experiments"].items():
            for method, entry in exp["methods"].items():
                budget = (entry or {}).get("time_budget_s", exp.get("time_budget_s", default))
                assert budget is not None and budget > 0, (suite["name"], name, method)


def test_paper_suite_follows_the_papers_grids() -> None:
    exps = load("paper")["experiments"]
    assert exps["ou_fan"]["dims"] == [2, 6, 12, 16, 32, 64] and exps["ou_fan"]["seeds"] == 15
    assert exps["ou_fan"]["n_steps"] * exps["ou_fan"]["step_size"] == 1.0 and exps["ou_fan"]["report_t"] == 0.9
    assert exps["ou_mokrov"]["dims"] == list(range(1, 13)) and exps["ou_mokrov"]["seeds"] == 15
    assert exps["ou_mokrov"]["problem_params"] == {"generator": "legacy_make_spd"}
    porous_dims = {d for e in exps.values() if e["problem"] == "barenblatt" for d in e["dims"]}
    assert {3, 6, 10} <= porous_dims
    for name in ("gmm_fan", "gmm_mokrov"):
        assert exps[name]["n_steps"] * exps[name]["step_size"] == 4.0
    assert exps["gmm_fan"]["problem_params"]["generator"] == "fan"
    assert exps["gmm_mokrov"]["problem_params"]["generator"] == "mokrov"
