#!/usr/bin/env python
"""Seconds per JKO step at the papers' budgets, on one torch thread, for planning full-budget runs (issue 12).

    ./with-env python scripts/paper_budget_timing.py [--out timing.json] [--quick]

Measures, with the load average printed beside every block (the machine may be shared):

* ``jko_icnn_exact`` at Mokrov et al.'s OU protocol (MOKROV_OU_PARAMS: 500 iterations of batch 1024 per step,
  4000 pretraining iterations) on their legacy instances, d = 2, 4, 6, 8: training seconds per iteration with
  the analytic Hessian (ours) and the per-coordinate one (their code's), the regeneration of the step's 512,000
  training samples through k = 1 and k = 10 maps, and one Monte-Carlo SymKL on 8192 samples each way at k = 10
  (model samples with log-densities by change of variables, reference samples inverted through all 10 maps).
  The 10 maps are trained at a reduced budget (50 iterations per step) to make the inversion realistic.
* ``variational_jko`` at Fan et al.'s OU protocol (its Config defaults: 500 iterations of batch 1024, 512,000
  particles), d = 2, 16: training seconds per iteration and the regeneration through k = 1 and k = 10 maps.
* ``jko_icnn_am`` at AM_OU_PARAMS (OU, d = 2, 8) and AM_PME_PARAMS (porous medium, d = 3): two whole steps
  (a step's cost does not depend on k).

Training is timed on a fraction of a step's iterations (``ITERS``) and scaled to the full step, since every
iteration costs the same; whole-run extrapolations are printed with the formula used.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time

import torch
from wgfbench_baselines.jko_icnn import MOKROV_OU_PARAMS
from wgfbench_baselines.jko_icnn_am import AM_OU_PARAMS, AM_PME_PARAMS

from wgfbench.metrics import mc_symkl
from wgfbench.registry import make_method, make_problem

N_TRAIN = 512_000  # training samples per step: 500 x 1024 (Mokrov), the particle count (Fan)


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def warm_up(name: str, problem, params: dict) -> None:
    """One throwaway tiny step, so that first-call costs (kernel selection, allocations) stay out of the timings."""
    make_method(name, problem, 0.05, params, seed=99).step()


def mokrov(d: int, iters: int, pretrain_iters: int, hessians: tuple[str, ...]) -> dict:
    problem = make_problem("ou", d, 0, {"generator": "legacy_make_spd"})
    params = {**MOKROV_OU_PARAMS, "iters_per_step": iters, "n_particles": N_TRAIN, "pretrain_iters": pretrain_iters}
    for hess in hessians:
        warm_up("jko_icnn_exact", problem, {**params, "hessian": hess, "iters_per_step": 2, "n_particles": 2048,
                                            "pretrain_iters": 2})  # fmt: skip
    method = make_method("jko_icnn_exact", problem, 0.05, params, seed=0)
    out: dict = {"d": d, "load_before": load()}
    stats = method.step()  # pretraining + step 1 (train on `iters` iterations, regeneration through 1 map)
    out["pretrain_s_per_iter"] = stats.extra["pretrain_s"] / pretrain_iters
    out["train_s_per_iter"] = {"analytic": stats.train_s / iters}
    out["regen_s_k1"] = stats.regen_s
    for hess in hessians:
        if hess == "analytic":
            continue
        other = make_method("jko_icnn_exact", problem, 0.05, {**params, "hessian": hess, "pretrain_iters": 0}, 0)
        other.psi.load_state_dict(method.maps[0].state_dict())
        other.pretrained = True
        other.n_particles = iters * params["batch_size"]  # only training is timed here
        s = other.step()
        out["train_s_per_iter"][hess] = s.train_s / iters
    # nine more (cheaper) steps so that k = 10 maps exist, trained enough to make the inversion realistic
    method.n_particles = 50 * params["batch_size"]
    method.config = dataclasses.replace(method.config, iters_per_step=50)
    for _ in range(9):
        method.step()
    method.n_particles = N_TRAIN
    out["regen_s_k10"] = seconds(method._regenerate_particles)
    ref = problem.reference(0.5)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    x, lp = method.sample_with_log_density(8192, gen)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    value, _ = mc_symkl(ref, x.to(torch.float64), lp, method.log_density, gen)
    out["symkl_s_k10"] = {"model_samples_with_logp": t_model, "mc_symkl_incl_inversion": time.perf_counter() - t0}
    out["symkl_k10_value"] = value
    out["load_after"] = load()
    return out


def fan(d: int, iters: int) -> dict:
    problem = make_problem("ou", d, 0)
    warm_up("variational_jko", problem, {"iters_per_step": 2, "n_particles": 4096})
    method = make_method("variational_jko", problem, 0.05, {"iters_per_step": iters}, seed=0)
    out: dict = {"d": d, "load_before": load()}
    stats = method.step()
    out["train_s_per_iter"] = stats.train_s / iters
    out["regen_s_k1"] = stats.regen_s
    method.maps = [copy.deepcopy(method.maps[0]) for _ in range(10)]  # a push costs the same whatever the weights

    def regen() -> None:
        method._regenerate_particles()
        method.dual.diagnostics(method.particles)
        method.dual.refit(method.particles)

    out["regen_s_k10"] = seconds(regen)
    out["load_after"] = load()
    return out


def am(problem_name: str, d: int, params: dict, h: float, steps: int) -> dict:
    problem = make_problem(problem_name, d, 0)
    warm_up("jko_icnn_am", problem, {**params, "iters_per_step": 2})
    method = make_method("jko_icnn_am", problem, h, params, seed=0)
    out: dict = {"problem": problem_name, "d": d, "load_before": load(), "steps": []}
    for _ in range(steps):
        s = method.step()
        out["steps"].append({"train_s": s.train_s, "regen_s": s.regen_s})
    out["sample_10k_s"] = seconds(lambda: method.sample(10_000, torch.Generator().manual_seed(0)))
    out["load_after"] = load()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run of the script)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    iters, pre = (5, 20) if args.quick else (50, 200)
    res: dict = {"torch_threads": torch.get_num_threads(), "mokrov": [], "fan": [], "am": []}
    for d in (2, 4, 6, 8):
        r = mokrov(d, iters, pre, ("analytic", "per_coordinate"))
        print(json.dumps(r), flush=True)
        res["mokrov"].append(r)
    for d in (2, 16):
        r = fan(d, 20 if args.quick else 100)
        print(json.dumps(r), flush=True)
        res["fan"].append(r)
    quick_am = {"iters_per_step": 20} if args.quick else {}
    for name, d, params, h in (("ou", 2, AM_OU_PARAMS, 0.05), ("ou", 8, AM_OU_PARAMS, 0.05),
                               ("barenblatt", 3, AM_PME_PARAMS, 1e-3)):  # fmt: skip
        r = am(name, d, {**params, **quick_am}, h, 2)
        print(json.dumps(r), flush=True)
        res["am"].append(r)
    summarise(res, iters_full=500, pretrain_full=4000, am_iters_scale=(401 / 20 if args.quick else 1.0))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


def summarise(res: dict, iters_full: int, pretrain_full: int, am_iters_scale: float) -> None:
    """Per-step seconds at the full budget and whole-run extrapolations (formulas printed)."""
    print("\n# jko_icnn_exact, Mokrov OU protocol (one thread)")
    print("regen(k) = r1 + (k-1)(r10-r1)/9; step(k) = 500 t_it + regen(k); eval(k) = e10 k/10 per SymKL call")
    print("run to t=0.9 (18 steps, SymKL every 2 steps: 9 evaluations): P + sum_k step(k) + sum_j eval(2j)")
    for r in res["mokrov"]:
        r1, r10 = r["regen_s_k1"], r["regen_s_k10"]
        e10 = r["symkl_s_k10"]["model_samples_with_logp"] + r["symkl_s_k10"]["mc_symkl_incl_inversion"]
        pre = pretrain_full * r["pretrain_s_per_iter"]
        for hess, t_it in r["train_s_per_iter"].items():
            train = iters_full * t_it
            regen = [r1 + (k - 1) * (r10 - r1) / 9 for k in range(1, 19)]
            evals = [e10 * (2 * j) / 10 for j in range(1, 10)]
            total = pre + 18 * train + sum(regen) + sum(evals)
            print(
                f"d={r['d']} {hess:>14}: pretrain {pre:7.1f} s | step k=1 {train + r1:6.1f} s,"
                f" k=10 {train + r10:6.1f} s"
                f" (train {train:6.1f}, regen {r1:5.2f} / {r10:5.2f}) | SymKL k=10 {e10:6.1f} s"
                f" | run to t=0.9 {total / 60:6.1f} min [{r['load_before']}]"
            )
    print("\n# variational_jko, Fan OU protocol (one thread): step(k) = 500 t_it + regen(k); run = sum_{k=1..20}")
    for r in res["fan"]:
        train = iters_full * r["train_s_per_iter"]
        r1, r10 = r["regen_s_k1"], r["regen_s_k10"]
        total = sum(train + r1 + (k - 1) * (r10 - r1) / 9 for k in range(1, 21))
        print(
            f"d={r['d']}: step k=1 {train + r1:6.1f} s, k=10 {train + r10:6.1f} s (train {train:6.1f}, regen {r1:5.2f}"
            f" / {r10:5.2f}) | 20 steps {total / 60:6.1f} min [{r['load_before']}]"
        )
    print("\n# jko_icnn_am (one thread): constant per step")
    for r in res["am"]:
        steps = [am_iters_scale * s["train_s"] + s["regen_s"] for s in r["steps"]]
        print(
            f"{r['problem']} d={r['d']}: steps {', '.join(f'{s:.1f}' for s in steps)} s | 10k samples"
            f" {r['sample_10k_s']:.2f} s [{r['load_before']}]"
        )


if __name__ == "__main__":
    main()
