"""wgfbench pipeline: suite (YAML grid) -> one job per run -> records -> tables and figures -> HTML report.

    snakemake                                               # the default suite, local, all cores
    snakemake --config suite=suites/ou-baselines.yaml       # another suite
    snakemake --config suite=suites/paper.yaml gpu=1        # neural methods ask for a GPU resource
    snakemake --report output/default/report.html           # one self-contained HTML file of tables and figures
    snakemake output/default/runs/ou/exact_jko/d2_s0.parquet  # only the runs named (targets by record path)

The configuration is config/config.yaml (suite, out, gpu), validated against workflow/schemas/config.schema.yaml;
`--config KEY=VALUE` overrides a key. Outputs go to output/<suite name>/ (git-ignored; override with --config
out=DIR, e.g. out=results/<suite> to regenerate the committed reference results): runs/ (one parquet record per
run), table.md / table.html / table.parquet / summary.parquet, figures/ (PNG and PDF), logs/, floors/ (the
simulated noise floors the runs share). The suite file is validated before any job starts; a malformed one stops
here with every mistake listed. A run that diverges, times out or fails still writes its record (with that status),
so the tables are always built from every run.

This file only sets up (configuration, suite, records); the rules are in workflow/rules/: common.smk (the
functions rules call), run.smk (one job per run), tables.smk (tables), figures.smk (figures); workflow/report/
holds the HTML report's captions.
"""

import os
import shlex
import sys

from snakemake.utils import min_version

from wgfbench.suites import SuiteError, load_suite
from wgfbench.workflow import config_value, default_out, prepare_records, record_path, validate_config


min_version("9.0")


# the repository's configuration, whatever the working directory (-d): --config and --configfile override its keys
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate_config(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"))

SUITE_FILE = config_value(config, "suite", "suites/default.yaml", str, "a suite YAML file")
try:
    SUITE = load_suite(SUITE_FILE)
except SuiteError as err:
    sys.stderr.write(f"{err}\n")
    raise SystemExit(2)
# a user's runs go to output/<suite>/ (ignored by git): the committed reference results under results/<suite>/ are
# only written when asked for (--config out=results/<suite>)
OUT = config_value(config, "out", None, (str, type(None)), "an output folder") or default_out(SUITE.name)
USE_GPU = config_value(config, "gpu", 0, int, "an integer number of GPUs per neural-method run (0 or 1)")
RUNS = {r.job_id: r for r in SUITE.runs}
RECORDS = [record_path(OUT, r) for r in SUITE.runs]
# the CLI of the Python running this workflow (works whether or not the venv's bin is on PATH)
# (quoted here: it is a command prefix; every path below is quoted where it is used, with Snakemake's `:q`)
WGFBENCH = f"{shlex.quote(sys.executable)} -m wgfbench.cli"

# records that are unreadable or belong to an earlier specification of their run are moved aside, so that exactly
# those runs are re-run (a suite edit re-runs the runs it changes, and no finished record is ever deleted)
prepare_records(SUITE.runs, lambda r: record_path(OUT, r))
# the process that runs this workflow, passed to local jobs in their environment (not as a parameter: a parameter
# that changes every invocation would re-run every record): a job stops when it is gone, so no orphan runs on
# after a killed master
os.environ.update(WGFBENCH_MASTER_PID=str(os.getpid()))


# the front page of `snakemake --report`
report: "workflow/report/workflow.rst"


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
        RECORDS,
        f"{OUT}/table.md",
        f"{OUT}/figures",


include: "workflow/rules/common.smk"
include: "workflow/rules/run.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
