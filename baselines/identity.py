"""Identity: P_k = P_0 for every k, the "useless" calibration row.

Any method scoring worse than this row has learned nothing (or diverged). Samples are fresh P_0 samples; the
density is P_0's. It runs every problem of the suite.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wgfbench.methods.base import JKOMethod, MethodConfig, StepStats


class Identity(JKOMethod):
    """P_k = P_0 (module docstring)."""

    name = "identity"
    role = "reference"
    color = "#949494"  # grey: the "useless" calibration row
    Config = MethodConfig
    functionals = frozenset({"kl", "generalised_entropy", "kl_interaction", "jsd"})
    has_density = True
    time_dependent_ok = True  # P_k = P_0 never looks at the target
    confinement_ok = True

    def _advance(self) -> StepStats:
        return StepStats(train_s=0.0, regen_s=0.0)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.problem.initial().sample(n, generator).to(self.dtype)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = self.problem.initial().sample(n, generator)
        return x.to(self.dtype), self.problem.initial().log_density(x)

    def log_density(self, x: Tensor) -> Tensor:
        return self.problem.initial().log_density(x)
