# Functions the rules call: a run's spec from its wildcards, its resources, the tables' options.
from wgfbench.registry import method_class

# the reproducibility tolerance measured for this suite (scripts/fp_spread.py), stated in its tables
SPREAD = os.path.join(workflow.basedir, "results", SUITE.name, "fp_spread.json")


def run_of(wildcards):
    return RUNS[f"{wildcards.experiment}/{wildcards.method}/d{wildcards.dim}/s{wildcards.seed}"]


def runtime_minutes(wildcards):
    """SLURM's wall-time limit of a run: its time budget x 1.5 + 10 min (the runner itself stops at the budget)."""
    budget = run_of(wildcards).time_budget_s
    return 60 if budget is None else int(budget * 1.5 / 60) + 10


def gpus(wildcards):
    """GPUs a run asks for: `gpu` of the configuration for neural methods, none for the others."""
    return USE_GPU if method_class(wildcards.method).accelerated else 0


def spread_option(wildcards):
    return f"--spread {shlex.quote(SPREAD)}" if os.path.exists(SPREAD) else ""


def folder_of_table(wildcards, output):
    return os.path.dirname(output.md)
