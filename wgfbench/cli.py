"""Command line: ``wgfbench {list,validate,run,run-suite,forget,table,plot,plot-samples,plot-profiles}``.

``wgfbench run`` is the code path of every Snakemake job, so a run from the command line and a
run in a suite are the same computation. ``run-suite`` runs a suite, or the runs ``--only`` selects, through the
same workflow (Snakemake with the repository's Snakefile, the selected records as targets), so records, resume and
re-runs behave exactly as under ``snakemake``. ``table`` and ``plot`` take any set of records (files or
folders of parquet files), so that the records of a user's own method can be compared with the
committed ones; runs of the same specification found under two of the paths given are kept apart (the later
path's rows are labelled ``METHOD @ PATH``), never merged into one cell.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

import yaml

from wgfbench import __version__, registry


def _parse_value(text: str):
    """A --param value: a YAML scalar read as suite files are (so 1e-3 is a float, true a boolean)."""
    from wgfbench.suites import load_yaml

    return load_yaml(text)


def _kv(items: list[str] | None, flag: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"{flag} expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = _parse_value(v)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    print("problems:")
    for name, factory in registry.problems().items():
        print(f"  {name:24s} {factory.__module__}.{factory.__qualname__}")
    print("methods:")
    for name, cls in registry.methods().items():
        density = "yes" if cls.has_density else f"with {cls.density_when}" if cls.density_when else "no"
        info = f"{cls.role:12s} functionals={sorted(cls.functionals)} density={density}"
        if cls.max_dim:
            info += f" max_dim={cls.max_dim}"
        print(f"  {name:24s} {info}")
    print("suites:")
    for p in sorted(Path(args.suites_dir).glob("*.yaml")):
        try:
            desc = (yaml.safe_load(p.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            desc = "(invalid YAML)"
        print(f"  {p!s:32s} {str(desc).strip().splitlines()[0] if desc else ''}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from wgfbench.suites import SuiteError, load_suite

    try:
        suite = load_suite(args.suite)
    except SuiteError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{args.suite}: valid suite {suite.name!r} with {len(suite.runs)} runs")
    if args.jobs:
        for r in suite.runs:
            print(r.job_id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from wgfbench.runner import InfrastructureError, Interrupted, run, watch_parent
    from wgfbench.suites import SuiteError, load_suite, suite_from_args

    torch.set_num_threads(args.threads)
    if args.suite:
        if not args.job:
            raise SystemExit("--suite needs --job EXPERIMENT/METHOD/dD/sS (see `wgfbench validate SUITE --jobs`)")
        try:
            spec = load_suite(args.suite).job(args.job)
        except (SuiteError, KeyError) as e:
            print(e, file=sys.stderr)
            return 2
    else:
        missing = [f for f in ("problem", "method", "dim") if getattr(args, f) is None]
        if missing:
            raise SystemExit(f"without --suite, give --{' --'.join(missing)}")
        try:  # validated exactly as a suite's run: the same one-line messages, exit status 2
            spec = suite_from_args(
                args.problem,
                args.method,
                args.dim,
                seed=args.seed,
                step_size=args.step_size,
                n_steps=args.n_steps,
                problem_params=_kv(args.problem_param, "--problem-param"),
                method_params=_kv(args.param, "--param"),
                eval_params=_kv(args.eval, "--eval"),
                time_budget_s=args.time_budget,
                experiment=args.experiment,
                suite=args.suite_name,
            )
        except SuiteError as e:
            print("\n".join(e.errors), file=sys.stderr)
            return 2
    progress = not args.no_progress
    watch = args.watch_pid or int(os.environ.get("WGFBENCH_MASTER_PID", "0") or 0)
    if watch:
        watch_parent(watch)

    def on_term(signum, frame):
        raise Interrupted(f"stopped by signal {signum}" + (" (the workflow that started it is gone)" if watch else ""))

    signal.signal(signal.SIGTERM, on_term)
    # a process started in the background of a non-interactive shell inherits SIGINT as ignored, and Python then
    # installs no KeyboardInterrupt handler: without this line such a run would ignore SIGINT and run to its end
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        df = run(spec, out=args.out, checkpoint=args.checkpoint, progress=progress, floor_cache=args.floor_cache)
    except (Interrupted, KeyboardInterrupt) as e:
        why = str(e) or "interrupted"
        print(f"{spec.job_id}: {why}; no record written, the run resumes from its last checkpoint", file=sys.stderr)
        return 130
    except InfrastructureError as e:
        print(f"{spec.job_id}: infrastructure error, not a property of the method ({e}); nothing recorded, "
              "re-run to resume from the last checkpoint", file=sys.stderr)  # fmt: skip
        return 75
    status = df["status"].iloc[0]
    print(
        f"{spec.job_id}: status {status}, {int(df['last_good_step'].iloc[0])} steps"
        + (f", record {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    if args.out is None:
        cols = [
            c for c in ("k", "t", "symkl_moment", "symkl_moment_vs_jko", "w2", "w2_floor", "time_step_s") if c in df
        ]
        print(df[cols].to_string(index=False))
    return 0 if status == "ok" or not args.strict else 1


def read_sources(paths: list[str]):
    """The records under every path given (record files, folders of them, or a table.parquet), as one frame with
    a column ``origin`` (the path that holds each row).

    Runs from two sources are different runs even when their specifications are the same (a user's re-run of a
    suite beside its committed records): where an (experiment, method) of a source has a run (experiment, problem,
    method, dim, seed) that an earlier source has too, that source's rows of the (experiment, method) are labelled
    ``METHOD @ PATH`` in the ``method`` column, so that tables give them a row and figures a line of their own
    instead of taking one run for the other. A file named twice is read once.
    """
    import pandas as pd

    from wgfbench.records import RUN_KEYS, read_records, record_files

    seen: set[Path] = set()
    frames = []
    for p in paths:
        files = [f for f in record_files(p) if f.resolve() not in seen]
        seen |= {f.resolve() for f in files}
        if files:
            frames.append(read_records(files).assign(origin=str(p)))
        elif not Path(p).exists():
            read_records([p])  # the one-line error of a missing path
    if not frames:
        return read_records(paths)  # the one-line error of no records
    earlier: set[tuple] = set()
    for df in frames:
        keys = [k for k in RUN_KEYS if k in df]
        runs = set(map(tuple, df[keys].drop_duplicates().to_numpy().tolist()))
        clash = {(r[keys.index("experiment")], r[keys.index("method")]) for r in runs & earlier}
        earlier |= runs
        if clash:
            hit = [(e, m) in clash for e, m in zip(df["experiment"], df["method"], strict=True)]
            df.loc[hit, "method"] = df.loc[hit, "method"] + " @ " + df.loc[hit, "origin"]
    return pd.concat(frames, ignore_index=True)


def cmd_table(args: argparse.Namespace) -> int:
    from wgfbench.records import write_text_atomic
    from wgfbench.reports.html import markdown_to_html
    from wgfbench.reports.tables import write_tables

    df = read_sources(args.records)
    out = Path(args.out)
    spread = json.loads(Path(args.spread).read_text()) if args.spread else None
    md, *parquets = write_tables(df, out, title=args.title, spread=spread)
    write_text_atomic(markdown_to_html(md.read_text(), title=args.title or "wgfbench tables"), out / "table.html")
    written = f"{md} (and .html), " + ", ".join(str(p) for p in parquets)
    print(f"wrote {written} ({len(df)} rows)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from wgfbench.reports.figures import suite_figures

    df = read_sources(args.records)
    written = suite_figures(df, args.out)
    for p in written:
        print(p)
    if not written:
        print(
            f"no figures written to {args.out}: a figure compares at least two methods with runs that finished with "
            "status ok, and no experiment has them",
            file=sys.stderr,
        )
    return 0


def snakefile() -> Path:
    """The repository's Snakefile (the workflow ``run-suite`` drives); the package must run from its checkout."""
    return Path(__file__).resolve().parents[1] / "Snakefile"


def cmd_run_suite(args: argparse.Namespace) -> int:
    """Run a suite, or the runs ``--only`` selects, through the workflow (module docstring)."""
    import shlex
    import subprocess

    from wgfbench.suites import SuiteError, load_suite
    from wgfbench.workflow import SelectionError, default_out, record_path, select_runs

    try:
        suite = load_suite(args.suite)
        runs = select_runs(suite.runs, args.only or [])
    except SuiteError as e:
        print(e, file=sys.stderr)
        return 2
    except SelectionError as e:
        print("\n".join(e.errors), file=sys.stderr)
        return 2
    workflow = snakefile()
    if not workflow.is_file():
        print(f"run-suite: no Snakefile at {workflow} (run it from a checkout of the repository)", file=sys.stderr)
        return 2
    out = args.out or default_out(suite.name)
    config = [f"suite={args.suite}", f"gpu={args.gpu}"] + ([f"out={args.out}"] if args.out else [])
    # a selection: its records are the targets (tables and figures of the whole suite need every run); targets go
    # before --config, which takes every word after it
    targets = [record_path(out, r) for r in runs] if args.only else []
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(workflow)]
    cmd += [*(["--cores", str(args.jobs)] if args.jobs else []), *(["--dry-run"] if args.dry_run else [])]
    cmd += ["--config", *config]
    print(f"run-suite: {len(runs)} of {len(suite.runs)} runs of {args.suite}: {shlex.join(cmd)}", file=sys.stderr)
    rc = subprocess.run(cmd).returncode
    if rc != 0 or args.dry_run or not args.only:
        return rc
    table = argparse.Namespace(records=targets, out=str(Path(out) / "selection"), title=f"Suite {suite.name}, "
                               f"runs selected by --only {' --only '.join(args.only)}", spread=None)  # fmt: skip
    return cmd_table(table)


def cmd_plot_samples(args: argparse.Namespace) -> int:
    import torch

    from wgfbench.records import read_records
    from wgfbench.reports.samples import job_samples_figure
    from wgfbench.suites import SuiteError, load_suite

    torch.set_num_threads(args.threads)
    try:
        suite = load_suite(args.suite)
    except SuiteError as e:
        print(e, file=sys.stderr)
        return 2
    runs = [
        r
        for r in suite.runs
        if r.experiment == args.experiment
        and r.dim == args.dim
        and r.seed == args.seed
        and (not args.methods or r.method in args.methods)
    ]
    if not runs:
        print(f"no job of {args.suite} matches {args.experiment}/*/d{args.dim}/s{args.seed}", file=sys.stderr)
        return 2
    records = read_records(args.records) if args.records else None
    for p in job_samples_figure(runs, args.out, n=args.n, records=records, log=lambda m: print(m, file=sys.stderr)):
        print(p)
    return 0


def cmd_plot_profiles(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from wgfbench.reports.profiles import radial_profile_figure, snapshot_job
    from wgfbench.suites import SuiteError, load_suite

    torch.set_num_threads(args.threads)
    try:
        suite = load_suite(args.suite)
        specs = [suite.job(job) for job in args.job]
    except (SuiteError, KeyError) as e:
        print(e, file=sys.stderr)
        return 2
    panels = []
    for spec in specs:
        problem, radii, cpu_s = snapshot_job(spec, args.steps, args.n_samples)
        print(
            f"{spec.job_id}: CPU seconds per JKO step (torch threads {torch.get_num_threads()}): "
            f"mean {np.mean(cpu_s):.3f}, first {cpu_s[0]:.3f}, last {cpu_s[-1]:.3f}",
            file=sys.stderr,
        )
        title = f"{spec.experiment}: n = {spec.dim}, m = {problem.m:g}, {spec.method} (seed {spec.seed})"
        panels.append((problem, radii, spec.step_size, title))
    for path in radial_profile_figure(panels, args.out):
        print(path)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Delete the records of runs with the given statuses, so that the next `snakemake` re-runs exactly those."""
    from wgfbench.records import RecordError, read_record, record_files

    statuses = set(args.status)
    root = Path(args.results)
    files = record_files(root) if root.is_dir() else []
    records = [f for f in files if "runs" in f.relative_to(root).parts]
    forgotten = 0
    for f in records:
        try:
            status = read_record(f, columns=["status"])["status"].iloc[0]
        except RecordError as e:  # a truncated or foreign file: its run is re-run anyway (moved aside)
            print(f"{e}: skipped (the workflow moves it aside and re-runs its run)", file=sys.stderr)
            continue
        if status in statuses:
            print(f"{f} ({status})")
            if not args.dry_run:
                f.unlink()
                done = root / "checkpoints" / f.relative_to(root / "runs").with_suffix(".pt.done.parquet")
                done.unlink(missing_ok=True)  # the finished copy a re-run would otherwise take
            forgotten += 1
    verb = "would forget" if args.dry_run else "forgot"
    print(f"{verb} {forgotten} of {len(records)} records with status in {sorted(statuses)}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wgfbench",
        description="Benchmark suite for neural Wasserstein gradient flows (JKO schemes). "
        "Run a whole suite with `snakemake` (see README); use these commands for single runs and reports.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"wgfbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("list", help="list problems, methods and suites")
    q.add_argument("--suites-dir", default="suites", help="folder of suite files (default: suites)")
    q.set_defaults(fn=cmd_list)

    q = sub.add_parser("validate", help="check a suite file; print its errors or its number of runs")
    q.add_argument("suite", help="suite YAML file")
    q.add_argument("--jobs", action="store_true", help="also print every job id")
    q.set_defaults(fn=cmd_validate)

    q = sub.add_parser(
        "run",
        help="one run, from a suite job or from flags",
        description="Either --suite FILE --job ID (as Snakemake does), or --problem/--method/--dim/... flags.",
    )
    q.add_argument("--suite", help="suite YAML file")
    q.add_argument("--job", help="job id EXPERIMENT/METHOD/dD/sS within the suite")
    q.add_argument("--problem", help="problem name (see `wgfbench list`)")
    q.add_argument("--method", help="method name (see `wgfbench list`)")
    q.add_argument("--dim", type=int)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--step-size", type=float, default=0.05, help="JKO step h (default 0.05)")
    q.add_argument("--n-steps", type=int, default=20, help="number of JKO steps K (default 20)")
    q.add_argument("--param", action="append", metavar="NAME=VALUE", help="method hyper-parameter (repeatable)")
    q.add_argument("--problem-param", action="append", metavar="NAME=VALUE", help="problem parameter (repeatable)")
    q.add_argument("--eval", action="append", metavar="NAME=VALUE", help="evaluation setting, e.g. n_samples=5000")
    q.add_argument("--time-budget", type=float, help="seconds; past it the run stops with status timeout")
    q.add_argument("--experiment", help="experiment label stored in the record (default: the problem name)")
    q.add_argument("--suite-name", default="adhoc", help="suite label stored in the record (default: adhoc)")
    q.add_argument("--out", help="write the record (parquet) here, atomically")
    q.add_argument("--checkpoint", help="checkpoint file: saved after each step, resumed from if present")
    q.add_argument("--floor-cache", help="folder of simulated noise floors shared by a suite's runs (numbers, JSON)")
    q.add_argument(
        "--watch-pid", type=int, help="stop (resumably) when this process is gone (default: $WGFBENCH_MASTER_PID)"
    )
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--strict", action="store_true", help="exit 1 unless the run's status is ok")
    q.set_defaults(fn=cmd_run)

    q = sub.add_parser(
        "run-suite",
        help="run a suite, or the runs --only selects, through the workflow (snakemake)",
        description="Runs the suite's jobs through the repository's Snakefile, exactly as `snakemake --config "
        "suite=SUITE` does (records, resume, re-runs of changed runs). With --only, only the selected runs are run "
        "(their records are the targets) and their tables are written to OUT/selection/; without it, the whole "
        "suite with its tables and figures. The pure Snakemake equivalent of a selection is `snakemake "
        "OUT/runs/EXPERIMENT/METHOD/dD_sS.parquet ... --config suite=SUITE` (this command prints the one it runs).",
    )
    q.add_argument("suite", help="suite YAML file")
    q.add_argument(
        "--only",
        action="append",
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="runs with every KEY=VALUE (keys: experiment, problem, method, dim, seed; a key twice: either value); "
        "repeat --only for the union of several selections",
    )
    q.add_argument("--jobs", "-j", type=int, help="runs at once (snakemake --cores; default: all cores)")
    q.add_argument("--out", help="output folder (default: output/<suite name>)")
    q.add_argument("--gpu", type=int, default=0, choices=[0, 1], help="GPUs per neural-method run (default 0)")
    q.add_argument("--dry-run", "-n", action="store_true", help="only show what would run")
    q.set_defaults(fn=cmd_run_suite)

    q = sub.add_parser(
        "forget",
        help="delete records of failed/diverged/timed-out runs so that snakemake re-runs them",
        description="Records of runs that did not finish ok are results and are kept; snakemake does not re-run "
        "them. Forget them to retry exactly those runs on the next `snakemake`.",
    )
    q.add_argument("results", help="a suite's results folder, e.g. results/default")
    q.add_argument(
        "--status",
        nargs="+",
        default=["failed"],
        choices=["failed", "diverged", "timeout", "ok"],
        help="statuses to forget (default: failed)",
    )
    q.add_argument("--dry-run", action="store_true", help="only list what would be forgotten")
    q.set_defaults(fn=cmd_forget)

    q = sub.add_parser("table", help="aggregate records into table.md / table.parquet / summary.parquet")
    q.add_argument("records", nargs="+", help="record files or folders of them")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--title", default=None)
    q.add_argument("--spread", help="fp_spread.json of scripts/fp_spread.py: the tolerance the tables state")
    q.set_defaults(fn=cmd_table)

    q = sub.add_parser("plot", help="draw the standard figures (PNG and PDF) from records")
    q.add_argument("records", nargs="+", help="record files or folders of them")
    q.add_argument("--out", required=True, help="output folder")
    q.set_defaults(fn=cmd_plot)

    q = sub.add_parser(
        "plot-samples",
        help="re-run a suite's jobs at one (experiment, dim, seed) and draw their final samples vs the reference",
        description="Records keep metrics, not samples: the jobs' training is re-run (same code, seeds and budget "
        "as the runner) and the last P_K is drawn against exact reference samples (d = 2: over the reference's "
        "log-density contours; d > 2: on the reference's two principal axes). With --records, each re-run's last "
        "loss is compared with the recorded one.",
    )
    q.add_argument("--suite", required=True, help="suite YAML file")
    q.add_argument("--experiment", required=True)
    q.add_argument("--dim", type=int, required=True)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--methods", nargs="+", help="only these methods (default: all of the experiment at this dim)")
    q.add_argument("--records", nargs="+", help="record files or folders, to check the re-runs against")
    q.add_argument("--n", type=int, default=3000, help="samples per method (default 3000)")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the Snakefile's jobs)")
    q.set_defaults(fn=cmd_plot_samples)

    q = sub.add_parser(
        "plot-profiles",
        help="porous medium: re-run suite jobs and draw the radial law of their samples against the exact one",
        description="Records keep metrics, not samples: each job is re-run through the same loop as its record "
        "(same spec, seeds and budget) and |x| of its samples is drawn at the given steps over the exact radial "
        "density of the Barenblatt solution.",
    )
    q.add_argument("--suite", required=True, help="suite YAML file")
    q.add_argument("--job", action="append", required=True, help="EXPERIMENT/METHOD/dD/sS (repeatable)")
    q.add_argument("--steps", type=int, nargs="+", default=[0, 10, 25, 50], help="JKO steps to draw")
    q.add_argument("--n-samples", type=int, default=20_000)
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    q.add_argument("--out", required=True, help="output path without extension (PNG and PDF are written)")
    q.set_defaults(fn=cmd_plot_profiles)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from wgfbench.records import RecordError

    try:
        return args.fn(args)
    except (registry.RegistryError, RecordError) as e:  # a name claimed twice, a bad entry point, a broken record
        print(f"wgfbench: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
