"""Runs Mokrov et al.'s JKO-ICNN Ornstein-Uhlenbeck experiment (github PetrMokrov/Large-Scale-Wasserstein-Gradient-
Flows, ``src/experiments/_ou.py``) for one dimension and a few JKO steps, clocking every step.

Run *by the peer's own Python* with the peer's checkout as the working directory; nothing of the peer's code is
copied or edited. Their experiment function is called as their ``script.py`` would call it, with their OU
configuration (``configs/ornstein_uhlenbeck_vary_dim.yml``, method ``ICNN_jko``) except: one dimension, one
repetition (experiment number 0), ``t_fin`` = steps x dt and an evaluation after every JKO step
(``dt_estimation`` = dt), so that every call of their ``train_diffusion_model`` is one JKO step. Wrappers placed in
their module's namespace (not in their files) record wall (``time.perf_counter``) and CPU (``time.process_time``)
seconds of the identity pretraining and of each step, skip their Monte-Carlo evaluation before the last step (it
is not part of a step's cost and takes longer than the training), and keep the trained diffusion object, from
whose samples the moment fit of P_K is computed at the end. One shim for Python >= 3.10: their ``from collections
import Iterable`` needs ``collections.Iterable`` (moved to ``collections.abc`` in Python 3.3, removed in 3.10).

    python mokrov_driver.py DIM STEPS OUT.jsonl      (cwd: the peer's checkout)
"""

from __future__ import annotations

import collections
import collections.abc
import json
import math
import sys
import time

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
    setattr(collections, _name, getattr(collections.abc, _name))

import torch  # noqa: E402
import yaml  # noqa: E402

torch.set_num_threads(1)


class Collector:
    """Stands in for their experiment file manager: keeps the results instead of writing JSON files."""

    def __init__(self) -> None:
        self.results: dict = {}

    def save(self, exp_results, exp_number) -> None:
        self.results = {k: list(v) for k, v in exp_results.items()}


def main(dim: int, steps: int, out: str) -> None:
    sys.path.insert(0, ".")
    from src.experiments import _ou as ou

    with open("configs/ornstein_uhlenbeck_vary_dim.yml") as f:
        cfg = yaml.safe_load(f)
    dt = cfg["method"]["ICNN_jko"]["dt"]
    collector = Collector()
    config = {k: v for k, v in cfg.items() if k != "method"} | cfg["method"]["ICNN_jko"]
    config |= {"dim": dim, "exp_numbers": [0], "t_fin": steps * dt, "dt_estimation": dt, "verbose": False,
               "device": "cpu", "file_manager": collector}  # fmt: skip
    rows: list[dict] = []
    state: dict = {"k": 0}

    def clocked(name, fn):
        def wrapper(*args, **kwargs):
            w0, c0 = time.perf_counter(), time.process_time()
            res = fn(*args, **kwargs)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if name == "pretrain":
                state["pretrain"] = (wall, cpu)
            else:
                state["k"] += 1
                state["diff"] = res[0] if isinstance(res, tuple) else res
                rows.append({"k": state["k"], "batches": config["n_step_iterations"], "train_wall_s": wall,
                             "train_cpu_s": cpu, "step_wall_s": wall, "step_cpu_s": cpu})  # fmt: skip
            return res

        return wrapper

    def only_last(fn, n_outputs: int):
        def wrapper(*args, **kwargs):
            if state["k"] < steps:
                nan = torch.tensor(math.nan)
                return (nan, None) if n_outputs == 2 else nan
            return fn(*args, **kwargs)

        return wrapper

    def capture_target(fn):
        def wrapper(*args, **kwargs):
            res = fn(*args, **kwargs)
            state["target"] = res
            return res

        return wrapper

    energy = ou.energy_based_distance
    ou.id_pretrain_model = clocked("pretrain", ou.id_pretrain_model)
    ou.train_diffusion_model = clocked("step", ou.train_diffusion_model)
    ou.KL_train_distrib = only_last(ou.KL_train_distrib, 2)
    ou.KL_targ_distrib = only_last(ou.KL_targ_distrib, 2)
    ou.energy_based_distance = lambda x, y, **kw: torch.tensor(math.nan) if x is None else energy(x, y, **kw)
    ou.generate_target = capture_target(ou.generate_target)
    ou.ou_icnn_jko_fixed_dimension_experiment(config)

    x = state["diff"].sample(262_144).detach().to(torch.float64)  # their push needs autograd: no no_grad here
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / (x.shape[0] - 1)
    _, target_mean, target_var = state["target"]
    kl_train, kl_target = collector.results["kl_train"][-1][1], collector.results["kl_target"][-1][1]
    with open(out, "w") as f:
        for row in rows:
            last = row["k"] == steps
            row |= {"pretrain_wall_s": state["pretrain"][0], "pretrain_cpu_s": state["pretrain"][1]}
            row |= {"own_mc_symkl": kl_train + kl_target if last else math.nan, "n_particles": int(x.shape[0])}
            if last:
                row |= {"mean": mean.tolist(), "cov": cov.tolist(), "target_mean": [float(v) for v in target_mean],
                        "target_cov": [[float(v) for v in r] for r in target_var]}  # fmt: skip
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
