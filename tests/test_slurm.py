"""The pipeline on a real SLURM: scripts/slurm-local.sh installs Debian's slurmctld, slurmd and munge, starts a
private single-node cluster, runs a 4-run suite through `snakemake --executor slurm --workflow-profile
profiles/slurm --config gpu=1`, checks records and SLURM jobs, and stops the daemons it started.

Opt-in (it installs system packages and starts daemons as root): `WGFBENCH_SLURM=1 pytest -m slurm -rs`;
scripts/check does this. Where SLURM cannot be set up (not root, no apt-get, a daemon does not start), the
test is skipped with the script's reason and the daemons' log tails; it never passes without a cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
SKIP_STATUS = 77  # the script's "SLURM cannot be set up here"

pytestmark = pytest.mark.slurm


def test_suite_through_slurm() -> None:
    if os.environ.get("WGFBENCH_SLURM") != "1":
        pytest.skip(
            "opt-in: set WGFBENCH_SLURM=1 (installs slurmctld/slurmd/munge, starts daemons; scripts/check does)"
        )
    if os.geteuid() != 0:
        pytest.skip(f"needs root to install and start SLURM (running as uid {os.geteuid()})")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(SCRIPT), "test"], capture_output=True, text=True, env=env, timeout=900)
    output = proc.stdout + proc.stderr
    print(output)  # shown with -s / -rA: the job table is the evidence
    if proc.returncode == SKIP_STATUS:
        reason = next((line for line in output.splitlines() if "SKIP:" in line), "SLURM cannot start here")
        pytest.skip(f"{reason}\n{output[-3000:]}")
    assert proc.returncode == 0, output[-6000:]
    jobs = re.findall(r"^\s+(\d+) COMPLETED .* launched done\s+rule_run_wildcards_(\S+)$", proc.stdout, re.MULTILINE)
    assert len(jobs) >= 4, proc.stdout
    gpu_jobs = {w for _, w in jobs if "jko_icnn_exact" in w}
    assert len(gpu_jobs) == 2 and all(
        re.search(rf"gres:gpu:1 .*{re.escape(w)}$", proc.stdout, re.MULTILINE) for w in gpu_jobs
    ), proc.stdout
    cpu_jobs = [line for line in proc.stdout.splitlines() if "rule_run_wildcards_ou_exact_jko" in line]
    assert len(cpu_jobs) == 2 and not any("gpu" in line for line in cpu_jobs), proc.stdout
    assert "PASS" in output
