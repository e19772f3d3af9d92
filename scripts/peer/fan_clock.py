"""A PyTorch-Lightning callback that clocks each JKO step of Fan et al.'s official variational-WGF code.

Loaded *by the peer's own Python* (its virtual environment, outside this repository) through a Hydra override,
``+callbacks.peer_clock._target_=fan_clock.StepClock``, with this folder on PYTHONPATH: nothing of the peer's code
is copied or edited. One Lightning epoch of their code is one JKO step (``epochs_per_Pk = 1`` in their OU
configuration); its particle regeneration and evaluation run in ``on_train_epoch_end`` callbacks, so this callback,
listed after theirs, sees the whole step.

Per step it appends one JSON line to ``$PEER_CLOCK_OUT``: wall (``time.perf_counter``) and CPU
(``time.process_time``) seconds of the training loop (epoch start to the last batch's end) and of the whole step
(to the end of the epoch-end callbacks), the number of optimisation batches, and the moment fit (mean and
covariance, float64) of the regenerated particle set of P_{k+1} with the target's mean and covariance, from which
``scripts/peer_comparison.py`` computes errors against the exact OU marginal and the exact JKO iterate.
"""

from __future__ import annotations

import json
import os
import time

import torch
from pytorch_lightning import Callback


def _moments(x: torch.Tensor) -> tuple[list[float], list[list[float]]]:
    x = x.detach().to("cpu", torch.float64)
    mean = x.mean(0)
    xc = x - mean
    return mean.tolist(), (xc.T @ xc / (x.shape[0] - 1)).tolist()


class StepClock(Callback):
    """Wall and CPU seconds per JKO step (module docstring)."""

    def __init__(self) -> None:
        self.out = os.environ["PEER_CLOCK_OUT"]
        self.k = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batches = 0
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        self.w_train = self.c_train = float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        self.batches += 1
        self.w_train, self.c_train = time.perf_counter() - self.w0, time.process_time() - self.c0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        wall, cpu = time.perf_counter() - self.w0, time.process_time() - self.c0
        self.k += 1
        dm = trainer.datamodule
        mean, cov = _moments(dm.pk_data)
        target = dm.q_gmm
        row = {
            "k": self.k,
            "batches": self.batches,
            "train_wall_s": self.w_train,
            "train_cpu_s": self.c_train,
            "step_wall_s": wall,
            "step_cpu_s": cpu,
            "n_particles": int(dm.pk_data.shape[0]),
            "mean": mean,
            "cov": cov,
            "target_mean": target.mean.detach().double().flatten().tolist(),
            "target_cov": target.covariance_matrix.detach().double().tolist(),
            "torch_threads": torch.get_num_threads(),
        }
        with open(self.out, "a") as f:
            f.write(json.dumps(row) + "\n")
