"""Sample figures re-run a suite job: the re-run must be the recorded run (same loss), and the figure is written."""

from __future__ import annotations

import dataclasses

import torch

from wgfbench.evaluate import EvalSpec
from wgfbench.reports.samples import job_samples_figure, rerun
from wgfbench.runner import run
from wgfbench.suites import RunSpec

TINY_VJKO = dict(n_particles=500, batch_size=64, iters_per_step=4, ratio="smooth", t_final_prelu=True, device="cpu")


def spec(method: str, params: dict, dim: int = 2) -> RunSpec:
    return RunSpec(
        suite="test",
        experiment="gmm_fan",
        problem="gmm",
        problem_params={"generator": "fan"},
        method=method,
        method_params=params,
        dim=dim,
        seed=1,
        step_size=0.1,
        n_steps=3,
        eval=EvalSpec(n_samples=300, n_w2=100, n_mc=100, every=1, ksd_batch_size=100, ksd_batches=2),
    )


def test_rerun_reproduces_the_recorded_run() -> None:
    torch.set_num_threads(1)
    s = spec("variational_jko", TINY_VJKO)
    record = run(s, progress=False)  # evaluates after every step, the re-run does not: same training anyway
    assert (record["status"] == "ok").all()
    again = rerun(s, n=200, record=record)
    assert again.status == "ok" and again.steps_done == 3 and again.samples.shape == (200, 2)
    assert again.loss_matches_record is True
    other = rerun(dataclasses.replace(s, seed=2), n=10, record=record)
    assert other.loss_matches_record is False  # a different run is told apart


def test_rerun_records_a_failure_instead_of_raising() -> None:
    bad = rerun(spec("variational_jko", {**TINY_VJKO, "map": "no-such-map"}), n=10)
    assert bad.status == "failed" and bad.samples is None


def test_job_samples_figure_writes_png_and_pdf(tmp_path) -> None:
    torch.set_num_threads(1)
    runs = [spec("identity", {"device": "cpu"}), spec("em_particles", {"n_particles": 300, "device": "cpu"})]
    paths = job_samples_figure(runs, tmp_path, n=200, log=lambda m: None)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)
    runs3 = [dataclasses.replace(r, dim=3) for r in runs]  # d > 2: principal-axes projection
    assert all(p.exists() for p in job_samples_figure(runs3, tmp_path, n=200, log=lambda m: None))
