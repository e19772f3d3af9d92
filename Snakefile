"""wgfbench pipeline: suite (YAML grid) -> one job per run -> records -> tables and figures.

    snakemake                                               # the default suite, local, all cores
    snakemake --config suite=suites/ou-baselines.yaml       # another suite
    snakemake --config suite=suites/paper.yaml gpu=1        # neural methods ask for a GPU resource

Outputs go to output/<suite name>/ (git-ignored; override with --config out=DIR, e.g. out=results/<suite> to
regenerate the committed reference results): runs/ (one parquet record per run), table.md / table.parquet /
summary.parquet, figures/ (PNG and PDF), logs/, floors/ (the simulated noise floors the runs share).
The suite file is validated before any job starts; a malformed one stops here with every mistake
listed. A run that diverges, times out or fails still writes its record (with that status), so the
tables are always built from every run.
"""

import os
import shlex
import sys

from snakemake.utils import min_version

from wgfbench.registry import method_class
from wgfbench.suites import SuiteError, load_suite
from wgfbench.workflow import config_value, prepare_records


min_version("9.0")

SUITE_FILE = config_value(config, "suite", "suites/default.yaml", str, "a suite YAML file")
try:
    SUITE = load_suite(SUITE_FILE)
except SuiteError as err:
    sys.stderr.write(f"{err}\n")
    raise SystemExit(2)
# a user's runs go to output/<suite>/ (ignored by git): the committed reference results under results/<suite>/ are
# only written when asked for (--config out=results/<suite>)
OUT = config_value(config, "out", f"output/{SUITE.name}", str, "an output folder")
USE_GPU = config_value(config, "gpu", 0, int, "an integer number of GPUs per neural-method run (0 or 1)")
RUNS = {r.job_id: r for r in SUITE.runs}
# the CLI of the Python running this workflow (works whether or not the venv's bin is on PATH)
# (quoted here: it is a command prefix; every path below is quoted where it is used, with Snakemake's `:q`)
WGFBENCH = f"{shlex.quote(sys.executable)} -m wgfbench.cli"


def record_path(r):
    return f"{OUT}/runs/{r.experiment}/{r.method}/d{r.dim}_s{r.seed}.parquet"


def run_of(wildcards):
    return RUNS[f"{wildcards.experiment}/{wildcards.method}/d{wildcards.dim}/s{wildcards.seed}"]


# records that are unreadable or belong to an earlier specification of their run are moved aside, so that exactly
# those runs are re-run (a suite edit re-runs the runs it changes, and no finished record is ever deleted)
prepare_records(SUITE.runs, record_path)
# the process that runs this workflow, passed to local jobs in their environment (not as a parameter: a parameter
# that changes every invocation would re-run every record): a job stops when it is gone, so no orphan runs on
# after a killed master
os.environ.update(WGFBENCH_MASTER_PID=str(os.getpid()))


def runtime_minutes(wildcards):
    budget = run_of(wildcards).time_budget_s
    return 60 if budget is None else int(budget * 1.5 / 60) + 10


# the reproducibility tolerance measured for this suite (scripts/fp_spread.py), stated in its tables
SPREAD = f"results/{SUITE.name}/fp_spread.json"


def spread_option(wildcards):
    return f"--spread {shlex.quote(SPREAD)}" if os.path.exists(SPREAD) else ""


def folder_of_table(wildcards, output):
    return os.path.dirname(output.md)


def gpus(wildcards):
    return USE_GPU if method_class(wildcards.method).accelerated else 0


wildcard_constraints:
    dim=r"\d+",
    seed=r"\d+",


localrules:
    all,
    table,
    figures,


rule all:
    default_target: True
    input:
        # every record is requested directly, so a missing one is re-run (and the tables rebuilt)
        # even when the tables are already there
        [record_path(r) for r in SUITE.runs],
        f"{OUT}/table.md",
        f"{OUT}/figures",


rule run:
    message:
        "run {wildcards.experiment}/{wildcards.method}/d{wildcards.dim}/s{wildcards.seed}"
    output:
        f"{OUT}/runs/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.parquet",
    log:
        f"{OUT}/logs/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.log",
    params:
        cli=WGFBENCH,
        suite=SUITE_FILE,
        checkpoint=f"{OUT}/checkpoints/{{experiment}}/{{method}}/d{{dim}}_s{{seed}}.pt",
        job="{experiment}/{method}/d{dim}/s{seed}",
        floors=f"{OUT}/floors",
    threads: 1
    conda:
        "envs/wgfbench.yaml"
    resources:
        runtime=runtime_minutes,
        mem_mb=4000,
        gpu=gpus,
    # every value from the user (suite path, output folder, names) reaches the shell quoted (`:q`), so a path with
    # spaces, `$(...)` or backticks is a path and nothing else; the runner creates the checkpoint's folder itself
    shell:
        "{params.cli} run --suite {params.suite:q} --job {params.job:q} "
        "--out {output:q} --checkpoint {params.checkpoint:q} --floor-cache {params.floors:q} --threads {threads} "
        "2> {log:q}"


rule table:
    message:
        "tables of suite {SUITE.name}"
    input:
        [record_path(r) for r in SUITE.runs],
    output:
        md=f"{OUT}/table.md",
        parquet=f"{OUT}/table.parquet",
        summary=f"{OUT}/summary.parquet",
    log:
        f"{OUT}/logs/table.log",
    params:
        cli=WGFBENCH,
        title=f"Suite {SUITE.name}",
        out=folder_of_table,
        spread=spread_option,
    conda:
        "envs/wgfbench.yaml"
    shell:
        "{params.cli} table {input:q} --out {params.out:q} --title {params.title:q} {params.spread} > {log:q} 2>&1"


rule figures:
    message:
        "figures of suite {SUITE.name}"
    input:
        f"{OUT}/table.parquet",
    output:
        directory(f"{OUT}/figures"),
    log:
        f"{OUT}/logs/figures.log",
    params:
        cli=WGFBENCH,
    conda:
        "envs/wgfbench.yaml"
    shell:
        "{params.cli} plot {input:q} --out {output:q} > {log:q} 2>&1"
