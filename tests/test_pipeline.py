"""The Snakefile end to end on a tiny suite in a temporary folder: records, table, figures, re-runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_SUITE = """
name: tiny
description: pipeline test
eval: {n_samples: 2000, n_w2: 200, n_mc: 256, every: 1}
experiments:
  ou:
    problem: ou
    dims: [2]
    seeds: [0, 1]
    step_size: 0.1
    n_steps: 3
    methods:
      variational_jko: {params: {n_particles: 1024, batch_size: 128, iters_per_step: 3}}
      exact_jko: {}
"""


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    cmd += ["--config", f"suite={workdir / 'tiny.yaml'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def finished_suite(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pipeline")
    (work / "tiny.yaml").write_text(TINY_SUITE)
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_records_table_and_figures(finished_suite: Path) -> None:
    out = finished_suite / "output" / "tiny"
    table = pd.read_parquet(out / "table.parquet")
    # 2 methods x 2 seeds x (k = 0..3)
    assert len(table) == 16
    assert set(table["method"]) == {"variational_jko", "exact_jko"}
    assert (table["status"] == "ok").all()
    assert all(sorted(ks) == [0, 1, 2, 3] for _, ks in table.groupby(["method", "seed"])["k"])
    for col in (
        "symkl_moment",
        "symkl_moment_floor",
        "symkl_moment_vs_jko",
        "symkl_moment_jko_pde",
        "w2",
        "w2_floor",
        "sw2",
        "time_train_s",
        "time_regen_s",
        "peak_mem_mb",
        "git_commit",
        "torch_version",
        "device_name",
    ):
        assert col in table, col
    steps = table[table["k"] > 0]
    assert steps["symkl_moment"].notna().all() and (steps["time_train_s"] > 0).all()
    md = (out / "table.md").read_text()
    assert "variational_jko" in md and "exact_jko" in md and "log10 SymKL" in md and "Provenance" in md
    assert (out / "figures" / "ou_error_vs_time.png").stat().st_size > 10_000
    assert (out / "figures" / "ou_error_vs_time.pdf").exists()


def test_rerun_redoes_only_what_is_missing(finished_suite: Path) -> None:
    proc = snakemake(finished_suite, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    victim = finished_suite / "output" / "tiny" / "runs" / "ou" / "exact_jko" / "d2_s1.parquet"
    victim.unlink()
    proc = snakemake(finished_suite, "--dry-run")
    text = proc.stdout + proc.stderr
    counts = dict(re.findall(r"^(run|table|figures)\s+(\d+)\s*$", text, flags=re.MULTILINE))
    assert counts.get("run") == "1", text[-2000:]
    assert "Missing output files: output/tiny/runs/ou/exact_jko/d2_s1.parquet" in text


def test_dry_run_and_lint_of_default_suite() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    base = [sys.executable, "-m", "snakemake", "--cores", "1"]
    dry = subprocess.run([*base, "--dry-run"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert dry.returncode == 0, dry.stderr[-2000:]
    lint = subprocess.run([*base, "--lint"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    # the one lint accepted: rules declare no conda environment (conda-forge cannot be reached where the project
    # runs; the rules run in the environment snakemake runs in, ./with-env: README "Running suites")
    found = {line.strip() for line in (lint.stdout + lint.stderr).splitlines() if line.startswith("    * ")}
    accepted = {"* Specify a conda environment or container for each rule.:"}
    assert found <= accepted, lint.stdout[-3000:] + lint.stderr[-2000:]
    assert lint.returncode == 0 or found, lint.stdout[-3000:] + lint.stderr[-2000:]
    assert "Traceback" not in lint.stderr, lint.stderr[-2000:]


def test_provenance_is_one_row_per_commit_and_versions_with_run_counts() -> None:
    import pandas as pd

    from wgfbench.reports.tables import provenance_markdown

    rows = []
    for seed, commit, date in ((0, "aaa", "2026-01-01"), (1, "aaa", "2026-01-03"), (2, "bbb", "2026-01-02")):
        for k in range(3):  # several steps per run: counted once
            rows.append(
                dict(
                    experiment="ou",
                    problem="ou",
                    method="m",
                    dim=2,
                    seed=seed,
                    k=k,
                    git_commit=commit,
                    device_name="cpu",
                    torch_version="2",
                    pot_version="0.9",
                    run_date=date,
                )
            )
    text = provenance_markdown(pd.DataFrame(rows))
    table = [line for line in text.splitlines() if line.startswith("| aaa") or line.startswith("| bbb")]
    assert table == [
        "| aaa | cpu | 2 | 0.9 | 2 | 2026-01-01 | 2026-01-03 |",
        "| bbb | cpu | 2 | 0.9 | 1 | 2026-01-02 | 2026-01-02 |",
    ]
    assert "no provenance" in provenance_markdown(pd.DataFrame({"k": [0]}))


def test_tables_list_methods_centrepiece_first_whatever_the_record_order() -> None:
    import pandas as pd

    from wgfbench.reports.tables import markdown, ordered_methods

    assert ordered_methods(["zz_new", "identity", "exact_jko", "variational_jko", "aa_new"]) == [
        "variational_jko",
        "exact_jko",
        "identity",
        "aa_new",
        "zz_new",
    ]
    rows = [
        dict(
            experiment="ou",
            problem="ou",
            method=m,
            dim=2,
            seed=s,
            k=1,
            t=0.5,
            report_t=0.5,
            status="ok",
            symkl_moment=0.01 * (i + 1),
            time_step_s=0.1,
            peak_mem_mb=1.0,
        )
        for i, m in enumerate(["identity", "exact_jko", "variational_jko"])
        for s in (0, 1)
    ]
    text = markdown(pd.DataFrame(rows))
    order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "d=" not in line]
    assert order[:3] == ["variational_jko", "exact_jko", "identity"], text


def test_the_readmes_asv_command_works_on_first_use(tmp_path: Path) -> None:
    """The README's asv command on a machine where asv never ran (a HOME without ~/.asv-machine.json): it sets the
    machine up itself, then runs (here restricted to one quick benchmark, not saved: --quick --dry-run --bench)."""
    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("./with-env asv") and "asv run" in line)
    command = line.split("  #", 1)[0].strip()
    assert command.startswith("./with-env asv machine --yes && ./with-env asv run "), command
    env = dict(os.environ, HOME=str(tmp_path), WGFBENCH_ASV_SMALL="1", OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    assert not (tmp_path / ".asv-machine.json").exists()
    only = " --quick --dry-run --bench 'GaussianMetrics.time_symkl_moment'"
    proc = subprocess.run(
        ["bash", "-c", command + only], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / ".asv-machine.json").is_file()
    assert "time_symkl_moment" in proc.stdout + proc.stderr
    # without the set-up step the same run is refused on a new machine (what the README's first step is for)
    (tmp_path / "new").mkdir()
    bare = subprocess.run(
        ["bash", "-c", command.split(" && ", 1)[1] + only], cwd=ROOT, env=dict(env, HOME=str(tmp_path / "new")),
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert bare.returncode != 0 and "time_symkl_moment" not in bare.stdout


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("suit=suites/default.yaml", "--config suit: unknown key (known: gpu, out, suite)"),
        ("gpu=3", "--config gpu=3: must be an integer number of GPUs per neural-method run (0 or 1)"),
    ],
)
def test_the_config_schema_refuses_unknown_keys_and_values_out_of_range_in_one_line(config: str, expected: str) -> None:
    """config/config.yaml's schema (workflow/schemas/config.schema.yaml) through snakemake.utils.validate."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "1", "-n", "--config", config]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert expected in proc.stderr.splitlines() and "Traceback" not in proc.stderr, proc.stderr[-2000:]
