#!/usr/bin/env python
r"""Our variational JKO against Fan et al.'s official code (github sbyebss/variational_wgf), side by side: seconds
per JKO step (training and whole step, wall and CPU) and the error, at Fan's OU budget on this machine.

The peer's code is *not* part of this repository: it is installed beside it for the measurement only (README of
``results/timing/peer/``: where, which versions, how) and run by its own Python, unmodified, through its Hydra entry
point; a small callback of ours (``scripts/peer/fan_clock.py``, passed as a Hydra override) records each step's
clocks and the moment fit of its regenerated particles. Our method runs in a fresh process of this environment too.

Protocol: OU, h = 0.05, ``--steps`` JKO steps, Fan et al.'s OU budget on both sides (512,000 particles, batch
1024, 500 iterations of 3 dual steps and 1 map step, lr 5e-3, residual MLP 2 x 64 with dropout 0.02, ratio network
1 x 64; their ``gaussian_density`` experiment with ``model/T_net=gauss_map_nonlinear``, ours its Config defaults),
one torch thread each, rounds alternating the order (ours, peer / peer, ours). Beside Fan's protocol exactly, our
speed options run at the same cap and particle count (``--ours-variants``; default the adaptive budget with
particle carry-forward, ``budget=plateau,particles=carry``). Instances: the same family
(target N(b, Σ), b ~ N(0, I), eigenvalues of the drift A = Σ^{-1} in [1, 2], P_0 = N(0, I)) drawn by each code's
own generator. Errors, from the moment fit of each side's own regenerated particle set of P_k (Fan's OU metric):
SymKL to the exact OU marginal at t = k h, and to the exact JKO iterate of the same instance (both closed form,
:mod:`wgfbench.problems.ou`). Step 1 is warm-up: per-step statistics (min, median) are over steps 2..K and rounds.

    python scripts/peer_comparison.py --peer-python /work/peer/venv/bin/python --peer-repo /work/peer/variational_wgf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


# --- our side (a child process) ---------------------------------------------------------------------------------
def variant_params(variant: str) -> dict:
    """``key=value,key=value`` config overrides of our method (values read as YAML scalars); "" for none."""
    import yaml

    return {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in variant.split(",") if item)}


def run_ours(dim: int, steps: int, seed: int, out: Path, method_name: str, variant: str = "") -> None:
    """Our method at its Config defaults (the peer's OU protocol) with the variant's overrides; one JSON line per
    step into ``out``. The variational JKO runs on our OU instance of ``seed``; JKO-ICNN on Mokrov et al.'s own
    instance (the ``legacy_make_spd`` generator reproduces their target for experiment number ``seed``)."""
    torch.set_num_threads(1)
    from wgfbench.loop import advance
    from wgfbench.registry import make_method, make_problem, method_class

    cls = method_class(method_name)
    defaults = cls.Config()
    params = {key: getattr(defaults, key) for key in cls.timing_params} | {"device": "cpu"} | variant_params(variant)
    problem_params = {"generator": "legacy_make_spd"} if method_name != "variational_jko" else {}
    problem = make_problem("ou", dim, seed, problem_params)
    method = make_method(method_name, problem, 0.05, params, seed)
    clock = {}
    train = method._train_step

    def timed_train() -> float:  # training-only clocks (StepStats carries wall seconds only)
        w0, c0 = time.perf_counter(), time.process_time()
        loss = train()
        clock.update(train_wall_s=time.perf_counter() - w0, train_cpu_s=time.process_time() - c0)
        return loss

    method._train_step = timed_train
    problem = method.problem
    with out.open("w") as f:
        for k in range(1, steps + 1):
            w0, c0 = time.perf_counter(), time.process_time()
            advance(method, k)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            x = method.particles.to(torch.float64)
            mean = x.mean(0)
            cov = (x - mean).T @ (x - mean) / (x.shape[0] - 1)
            row = {
                "k": k,
                "batches": method.inner_iters,
                "pretrain_wall_s": getattr(method, "pretrain_s", 0.0) if method_name == "variational_jko" else math.nan,
                **clock,
                "step_wall_s": wall,
                "step_cpu_s": cpu,
                "n_particles": int(x.shape[0]),
                "mean": mean.tolist(),
                "cov": cov.tolist(),
                "target_mean": problem.b.tolist(),
                "target_cov": torch.linalg.inv(problem.A).tolist(),
                "torch_threads": torch.get_num_threads(),
            }
            f.write(json.dumps(row) + "\n")


# --- the peer (a child process of its own Python) -----------------------------------------------------------------
def peer_command(python: str, repo: Path, dim: int, steps: int, seed: int, run_dir: Path) -> list[str]:
    """Fan et al.'s OU experiment as their reproduce script runs it, on the CPU, with our clock callback."""
    return [
        python,
        "run.py",
        "experiment=gaussian_density",
        "model/T_net=gauss_map_nonlinear",
        f"datamodule.input_dim={dim}",
        f"trainer.max_epochs={steps}",
        "trainer.gpus=0",
        f"seed={seed}",
        "name=wgfbench_peer",
        f"hydra.run.dir={run_dir}",
        "~callbacks.rich_progress_bar",  # a terminal progress bar: no part of the method
        "~callbacks.model_checkpoint",  # monitors a metric the OU experiment does not log
        "+logger.csv._target_=pytorch_lightning.loggers.CSVLogger",  # their wandb logger needs an account
        f"+logger.csv.save_dir={run_dir}",
        "+callbacks.peer_clock._target_=fan_clock.StepClock",
    ]


def run_peer(python: str, repo: Path, dim: int, steps: int, seed: int, out: Path, log) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PEER_CLOCK_OUT": str(out), "PYTHONPATH": str(ROOT / "scripts" / "peer")}
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
        cmd = peer_command(python, repo, dim, steps, seed, Path(tmp))
        res = subprocess.run(cmd, cwd=repo / "toy", env=env, capture_output=True, text=True)
        if res.returncode != 0 or not out.exists():
            log(res.stdout[-3000:] + res.stderr[-3000:])
            raise RuntimeError(f"the peer's run failed (exit {res.returncode})")


# --- errors ---------------------------------------------------------------------------------------------------------
def run_mokrov(python: str, repo: Path, dim: int, steps: int, out: Path, log) -> None:
    """Mokrov et al.'s OU experiment through our driver (``scripts/peer/mokrov_driver.py``), in their checkout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [python, str(ROOT / "scripts" / "peer" / "mokrov_driver.py"), str(dim), str(steps), str(out)]
    res = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if res.returncode != 0 or not out.exists():
        log(res.stdout[-3000:] + res.stderr[-3000:])
        raise RuntimeError(f"Mokrov et al.'s run failed (exit {res.returncode})")


def errors(row: dict, h: float) -> dict:
    """SymKL of the particles' moment fit to the exact OU marginal at t = k h and to the exact JKO iterate (NaN for
    a step whose moments were not recorded)."""
    if "mean" not in row:
        return {"symkl_pde": math.nan, "symkl_jko": math.nan, "disc_error": math.nan}
    from wgfbench.metrics import gaussian_symkl
    from wgfbench.problems.gaussian import GaussianLaw
    from wgfbench.problems.ou import OUProblem

    d = len(row["mean"])
    sigma = torch.tensor(row["target_cov"], dtype=torch.float64)
    problem = OUProblem(
        A=torch.linalg.inv(sigma),
        b=torch.tensor(row["target_mean"], dtype=torch.float64),
        m0=torch.zeros(d, dtype=torch.float64),
        S0=torch.eye(d, dtype=torch.float64),
    )
    fit = GaussianLaw(torch.tensor(row["mean"]), torch.tensor(row["cov"]))
    k = row["k"]
    return {
        "symkl_pde": gaussian_symkl(fit, problem.reference(k * h)),
        "symkl_jko": gaussian_symkl(fit, problem.jko_reference(k, h)),
        "disc_error": gaussian_symkl(problem.jko_reference(k, h), problem.reference(k * h)),
    }


def summarise(df):
    """Per (impl, d): min and median per-step seconds over steps 2..K and rounds; errors at the last step."""
    import pandas as pd

    rows = []
    last_k = int(df.k.max())
    for (impl, dim), g in df.groupby(["impl", "dim"]):
        timed = g[g.k >= 2]
        last = g[g.k == last_k]
        row = {"impl": impl, "dim": dim, "steps_timed": len(timed)}
        for col in ("train_wall_s", "train_cpu_s", "step_wall_s", "step_cpu_s"):
            row[f"{col}_min"] = float(timed[col].min())
            row[f"{col}_median"] = float(timed[col].median())
        for col in ("symkl_pde", "symkl_jko"):
            row[f"{col}_median"] = float(last[col].median())
            row[f"{col}_max"] = float(last[col].max())
        row["disc_error"] = float(last.disc_error.median())
        row["iters_per_step"] = float(g.batches.median())
        rows.append(row)
    return pd.DataFrame(rows)


PEERS = {
    "fan": ("fan_official", "Our variational JKO vs Fan et al.'s official code (ICML 2022)"),
    "mokrov": ("mokrov_official", "Our JKO-ICNN (jko_icnn_exact) vs Mokrov et al.'s official code (NeurIPS 2021)"),
}


def markdown(df, summ, prov: dict, versions: dict, args, load: tuple[float, float], wall: float) -> str:
    official, title = PEERS[args.peer]
    lines = [
        f"# {title}, same budget, same machine",
        "",
        f"Measured by `scripts/peer_comparison.py` (`{' '.join(sys.argv[1:])}`), {args.rounds} alternating rounds, "
        f"{args.steps} JKO steps per run, one torch thread per process, runs of a round alternating in order, "
        f"load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after ({wall:.0f} s wall in all). Per-step statistics over steps 2..{args.steps} of every "
        "round (step 1 is warm-up); errors at the last step, median (max) over rounds.",
        "",
        "**Ours:** " + ", ".join(f"{k}={v}" for k, v in prov.items()),
        "",
        "**Peer:** " + ", ".join(f"{k}={v}" for k, v in versions.items()),
        "",
        "| code | d | iters / step | train s / step, wall min (median) | train CPU s min (median) |"
        " step s, wall min (median) | step CPU s min (median) | SymKL to P_t | SymKL to exact JKO iterate |"
        " disc. error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summ.itertuples():
        lines.append(
            f"| {r.impl} | {r.dim} | {r.iters_per_step:.0f} | {r.train_wall_s_min:.2f} ({r.train_wall_s_median:.2f}) | "
            f"{r.train_cpu_s_min:.2f} ({r.train_cpu_s_median:.2f}) | {r.step_wall_s_min:.2f} "
            f"({r.step_wall_s_median:.2f}) | {r.step_cpu_s_min:.2f} ({r.step_cpu_s_median:.2f}) | "
            f"{r.symkl_pde_median:.3g} ({r.symkl_pde_max:.3g}) | {r.symkl_jko_median:.3g} ({r.symkl_jko_max:.3g}) | "
            f"{r.disc_error:.3g} |"
        )
    lines += ["", "## Ratio peer / ours (per JKO step)", ""]
    for (dim, impl), g in summ[summ.impl != official].groupby(["dim", "impl"]):
        ours, peer = g.iloc[0], summ[(summ.dim == dim) & (summ.impl == official)].iloc[0]
        parts = [
            f"{label} {peer[f'{col}_min'] / ours[f'{col}_min']:.2f}x (median {peer[f'{col}_median'] / ours[f'{col}_median']:.2f}x)"  # noqa: E501
            for label, col in (
                ("training wall", "train_wall_s"),
                ("training CPU", "train_cpu_s"),
                ("whole step wall", "step_wall_s"),
                ("whole step CPU", "step_cpu_s"),
            )
        ]
        err = (
            f"errors at k = {args.steps}: SymKL to the exact JKO iterate {ours.symkl_jko_median:.3g} (ours) vs "
            f"{peer.symkl_jko_median:.3g} (peer), to P_t {ours.symkl_pde_median:.3g} vs {peer.symkl_pde_median:.3g}"
        )
        lines.append(f"- **d = {dim}, {impl}**: " + "; ".join(parts) + f"; {err}.")
    lines += [
        "",
        "## Per step",
        "",
        "| code | d | round | k | train wall s | train CPU s | step wall s | step CPU s | SymKL to P_t |"
        " SymKL to JKO iterate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in df.sort_values(["dim", "impl", "round", "k"]).itertuples():
        lines.append(
            f"| {r.impl} | {r.dim} | {r.round} | {r.k} | {r.train_wall_s:.2f} | {r.train_cpu_s:.2f} | "
            f"{r.step_wall_s:.2f} | {r.step_cpu_s:.2f} | {r.symkl_pde:.3g} | {r.symkl_jko:.3g} |"
        )
    lines.append("")
    return "\n".join(lines)


def peer_versions(peer: str, python: str, repo: Path) -> dict:
    packages = {
        "fan": ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "jammy", "numpy"),
        "mokrov": ("torch", "numpy", "scipy", "scikit-learn", "multipledispatch", "numba"),
    }[peer]
    code = (
        "import importlib.metadata as m, platform, json; "
        f"print(json.dumps({{p: m.version(p) for p in {packages!r}}} | {{'python': platform.python_version()}}))"
    )
    out = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    if (repo / "COMMIT").exists():  # an exported tree (git archive) records its commit there
        commit = (repo / "COMMIT").read_text()
    else:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    name = {
        "fan": "sbyebss/variational_wgf",
        "mokrov": "PetrMokrov/Large-Scale-Wasserstein-Gradient-Flows",
    }
    return {"repo": f"github {name[peer]}", "commit": commit.strip()} | out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", choices=sorted(PEERS), default="fan")
    ap.add_argument("--peer-python", default=None, help="default: /work/peer/venv (fan), /work/peer/venv-mokrov")
    ap.add_argument(
        "--peer-repo", type=Path, default=None, help="default: /work/peer/variational_wgf, /work/peer/mokrov"
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 12])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "timing" / "peer")
    ap.add_argument(
        "--ours-variants",
        nargs="+",
        default=["", "budget=plateau,particles=carry"],
        help="our method's config overrides to run beside the peer ('' = Fan's protocol exactly)",
    )
    ap.add_argument("--child-ours", nargs=6, help=argparse.SUPPRESS)  # DIM STEPS SEED OUT METHOD VARIANT
    args = ap.parse_args(argv)
    if args.child_ours:
        dim, steps, seed, out, method_name, variant = args.child_ours
        run_ours(int(dim), int(steps), int(seed), Path(out), method_name, variant)
        return 0
    default_python = {"fan": "/work/peer/venv/bin/python", "mokrov": "/work/peer/venv-mokrov/bin/python"}
    default_repo = {"fan": "/work/peer/variational_wgf", "mokrov": "/work/peer/mokrov"}
    args.peer_python = args.peer_python or default_python[args.peer]
    args.peer_repo = args.peer_repo or Path(default_repo[args.peer])
    official = PEERS[args.peer][0]
    ours_method = "variational_jko" if args.peer == "fan" else "jko_icnn_exact"
    if args.peer == "mokrov" and args.ours_variants == ["", "budget=plateau,particles=carry"]:
        args.ours_variants = ["", "hessian=per_coordinate"]  # ours as it is, and with their Hessian's cost

    import pandas as pd

    from wgfbench.timing import provenance

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for dim in args.dims:
                impls = [f"ours {v}".strip() for v in args.ours_variants] + [official]
                order = impls if rnd % 2 == 0 else impls[::-1]
                for impl in order:
                    out = Path(tmp) / f"{impl.replace(' ', '_').replace(',', '_')}_{dim}_{rnd}.jsonl"
                    seed = 1 + rnd if args.peer == "fan" else 0  # Fan's code seeds nothing for 0; Mokrov's: instance 0
                    before = os.getloadavg()[0]
                    if impl.startswith("ours"):
                        variant = impl.removeprefix("ours").strip()
                        cmd = [sys.executable, __file__, "--child-ours", str(dim), str(args.steps), str(seed), str(out)]
                        env = {**os.environ, "OMP_NUM_THREADS": "1"}
                        subprocess.run([*cmd, ours_method, variant], check=True, env=env)
                    elif args.peer == "fan":
                        run_peer(args.peer_python, args.peer_repo, dim, args.steps, seed, out, log)
                    else:
                        run_mokrov(args.peer_python, args.peer_repo, dim, args.steps, out, log)
                    for line in out.read_text().splitlines():
                        r = json.loads(line)
                        rows.append(
                            {
                                "impl": impl,
                                "dim": dim,
                                "round": rnd,
                                "seed": seed,
                                **{k: v for k, v in r.items() if not isinstance(v, list)},
                                **errors(r, 0.05),
                                "load_before": before,
                            }
                        )
                    last = rows[-1]
                    log(
                        f"{impl:12s} d={dim:3d} round {rnd}: last step {last['step_wall_s']:.2f} s wall, "
                        f"{last['step_cpu_s']:.2f} s CPU, SymKL to JKO {last['symkl_jko']:.3g}, load {before:.2f}"
                    )
    df = pd.DataFrame(rows)
    prov = provenance("cpu")
    versions = peer_versions(args.peer, args.peer_python, args.peer_repo)
    for key, value in prov.items():
        df[key] = value
    prefix = "" if args.peer == "fan" else f"{args.peer}_"
    df.to_parquet(args.out / f"{prefix}steps.parquet", index=False)
    summ = summarise(df)
    summ.to_parquet(args.out / f"{prefix}summary.parquet", index=False)
    wall = time.perf_counter() - t0
    text = markdown(df, summ, prov, versions, args, (load0, os.getloadavg()[0]), wall)
    (args.out / f"{prefix}table.md").write_text(text)
    log(f"wrote {args.out}/{prefix}table.md, {prefix}steps.parquet, {prefix}summary.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
