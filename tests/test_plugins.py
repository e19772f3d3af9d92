"""Methods and problems from outside the repository: a throwaway distribution on the path (its package and its
``*.dist-info`` with entry points, as ``pip install`` would leave them) adds a method and a problem that
``wgfbench list``, ``wgfbench validate`` and ``wgfbench run`` use with no edit to wgfbench. Also: the layout
(every package is installed) and the registry's name checks."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A researcher's own method and problem, outside wgfbench."""
import dataclasses

import torch

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats
from wgfbench.problems.base import problem_factory
from wgfbench.problems.ou import make_ou


@dataclasses.dataclass(frozen=True)
class HalfwayConfig(MethodConfig):
    shrink: float = 0.5


class Halfway(JKOMethod):
    """P_k: P_0 samples shrunk towards the origin by shrink^k (a deliberately poor method)."""

    name = "halfway"
    Config = HalfwayConfig
    has_density = False
    tiny_params = {}

    def _advance(self):
        return StepStats()

    def sample(self, n, generator):
        return self.problem.initial().sample(n, generator).to(self.dtype) * self.config.shrink**self.k


@problem_factory("wide_ou")
def make_wide_ou(dim: int, seed: int, scale: float = 3.0):
    """OU started from N(0, scale^2 I)."""
    return make_ou(dim, seed, init_scale=scale)
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "my_wgf_plugin.py").write_text(PLUGIN)
    info = site / "my_wgf_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-wgf-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[wgfbench.methods]\nhalfway = my_wgf_plugin:Halfway\n\n"
        "[wgfbench.problems]\nwide_ou = my_wgf_plugin:make_wide_ou\n"
    )
    return site


def wgfbench(site: Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "wgfbench.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_a_method_and_a_problem_from_outside_run_through_the_cli(plugin_path: Path, tmp_path: Path) -> None:
    listing = wgfbench(plugin_path, "list")
    assert listing.returncode == 0, listing.stderr
    assert "  halfway " in listing.stdout and "  wide_ou " in listing.stdout
    out = tmp_path / "r.parquet"
    args = ["run", "--problem", "wide_ou", "--method", "halfway", "--dim", "2", "--n-steps", "2"]
    args += ["--problem-param", "scale=2.0", "--param", "shrink=0.9", "--eval", "n_samples=500"]
    args += ["--eval", "n_w2=100", "--eval", "n_mc=100", "--out", str(out), "--strict", "--no-progress"]
    proc = wgfbench(plugin_path, *args)
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    df = pd.read_parquet(out)
    assert list(df["k"]) == [0, 1, 2] and (df["status"] == "ok").all()
    assert (df["method"] == "halfway").all() and (df["problem"] == "wide_ou").all()
    # the plugin's method is a poor one: its error to the exact solution grows as it shrinks the samples
    assert df["symkl_moment"].iloc[2] > df["symkl_moment"].iloc[1]
    # its parameters are validated from its own annotations, with the suite's messages
    bad = wgfbench(plugin_path, *[a if a != "shrink=0.9" else "shrink=much" for a in args])
    assert bad.returncode == 2
    assert "experiments.wide_ou.methods.halfway.params.shrink: must be a number, got 'much'" in bad.stderr


def test_a_suite_can_name_them(plugin_path: Path, tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: plugin\nexperiments:\n  wide:\n    problem: wide_ou\n    dims: [2]\n    seeds: 2\n"
        "    step_size: 0.1\n    n_steps: 2\n    methods: {halfway: {}, exact_jko: {}}\n"
    )
    proc = wgfbench(plugin_path, "validate", str(suite), "--jobs")
    assert proc.returncode == 0, proc.stderr
    assert "wide/halfway/d2/s1" in proc.stdout and "wide/exact_jko/d2/s0" in proc.stdout


def test_an_entry_point_must_match_its_name(plugin_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "my_wgf_plugin.py").write_text(PLUGIN)
    info = bad / "wrong-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wrong\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wgfbench.methods]\nsomething_else = my_wgf_plugin:Halfway\n")
    proc = wgfbench(bad, "list")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "entry point 'something_else' (my_wgf_plugin:Halfway) names a method called 'halfway'" in proc.stderr


def test_every_package_is_installed() -> None:
    """pyproject.toml lists the packages by hand (the baselines' folder differs from their import name): every
    folder with an __init__.py must be in the list, or a non-editable install would miss it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "wgfbench").rglob("__init__.py")}
    found |= {"wgfbench_baselines"} if (ROOT / "baselines" / "__init__.py").exists() else set()
    assert found == listed
    assert config["package-dir"] == {"wgfbench_baselines": "baselines"}
