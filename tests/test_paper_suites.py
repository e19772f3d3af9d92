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


# --- the protocols as published, per dimension (issue 12 item 2) ------------------------------------------------
def paper_runs(experiment: str, method: str) -> dict[int, dict]:
    """{dim: method_params} of the validated paper suite's runs of (experiment, method), one per dim (the seeds of
    a dim share their parameters)."""
    from wgfbench.suites import load_suite

    suite = load_suite(ROOT / "suites" / "paper.yaml")
    runs = [r for r in suite.runs if (r.experiment, r.method) == (experiment, method)]
    by_dim: dict[int, dict] = {}
    for r in runs:
        assert by_dim.setdefault(r.dim, r.method_params) == r.method_params, (experiment, method, r.dim)
    return by_dim


def test_mokrovs_mixture_icnns_are_their_presets_in_every_dim() -> None:
    """gmm_mokrov's JKO-ICNN runs build exactly MOKROV_GMM_PARAMS[d] (width and iterations growing with d, lr 5e-3
    for 20 steps then 2e-3), for the exact log-det and the CP-Flow-gradient variant alike."""
    from wgfbench_baselines.jko_icnn import MOKROV_GMM_PARAMS

    from wgfbench.registry import method_class

    for method in ("jko_icnn_exact", "jko_icnn_cpflow_grad"):
        cls = method_class(method)
        by_dim = paper_runs("gmm_mokrov", method)
        assert sorted(by_dim) == sorted(MOKROV_GMM_PARAMS)
        for d, params in by_dim.items():
            assert cls.Config(**params) == cls.Config(**MOKROV_GMM_PARAMS[d]), (method, d)
        widths = [cls.Config(**by_dim[d]).hidden_width for d in sorted(by_dim)]
        assert widths == sorted(widths) and widths[0] < widths[-1]


def test_fans_mixture_networks_grow_with_d_and_their_learning_rates_drop_after_twenty_steps() -> None:
    from wgfbench.registry import method_class

    cls = method_class("variational_jko")
    configs = {d: cls.Config(**p) for d, p in paper_runs("gmm_fan", "variational_jko").items()}
    assert sorted(configs) == [2, 4, 8, 17, 24, 32, 64, 128]
    assert (configs[2].t_width, configs[2].t_hidden, configs[2].dual_width, configs[2].dual_hidden) == (8, 2, 8, 2)
    assert (configs[128].t_width, configs[128].t_hidden, configs[128].dual_width) == (256, 4, 256)
    t_sizes = [(c.t_width, c.t_hidden) for _, c in sorted(configs.items())]
    assert t_sizes == sorted(t_sizes)
    for c in configs.values():
        assert c.learning_rates(19) == (1e-3, 1e-3) and c.learning_rates(20) == (4e-4, 4e-4)
        assert c.n_particles == 512_000 and c.iters_per_step == 1000 and c.batch_size == 512


def test_particle_methods_hold_what_the_paper_suite_evaluates() -> None:
    """Every em_particles entry holds at least the samples that evaluation draws from it (n_w2, n_mc); Mokrov's EM
    columns have 50,000 particles at dt = h / substeps = 1e-3."""
    suite = load("paper")
    ev = suite["eval"]
    for name, exp in suite["experiments"].items():
        em = exp["methods"].get("em_particles")
        if em is None:
            continue
        n = em["params"]["n_particles"]
        assert n == 50_000 and n >= max(ev["n_w2"], ev["n_mc"]), name
        assert abs(exp["step_size"] / em["params"]["substeps"] - 1e-3) < 1e-12, name
