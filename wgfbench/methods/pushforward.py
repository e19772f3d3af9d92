r"""The chain of maps of a pushforward method: P_k = (T_k o ... o T_1) # P_0.

Every method that represents P_k by the maps it learned (the variational JKO, the JKO-ICNN baselines) holds one
:class:`MapChain`: the frozen maps, the pushes of fresh P_0 samples through them (in chunks, without gradients,
on the method's device), the particle set of P_k with the generator state it was drawn from (so that a restored
run redraws the very same set), and, when every map is the gradient of a strongly convex potential (an ICNN),
the log-densities of P_k by change of variables and by map inversion (:mod:`wgfbench.densities`), in float64
copies of the maps whatever the training dtype, so that Newton inversions reach their float64 tolerance and the
log-determinants carry no float32 round-off.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from wgfbench.problems.base import Law


class GradientOfPotential(nn.Module):
    """T = grad psi as a module; differentiable in psi's parameters while training with grad enabled."""

    def __init__(self, potential: nn.Module):
        super().__init__()
        self.potential = potential

    def forward(self, x: Tensor) -> Tensor:
        return self.potential.gradient(x, create_graph=self.training and torch.is_grad_enabled())


class MapChain:
    """Frozen maps T_1..T_k pushing P_0 forward (module docstring).

    ``p0_dtype``: the dtype P_0 samples are drawn in (the method's own dtype where it can: float32 normals are
    cheaper to draw than float64 ones; float64 where a method's random stream was defined that way).
    """

    def __init__(self, initial: Law, device: torch.device, dtype: torch.dtype, chunk: int, p0_dtype: torch.dtype):
        self.initial = initial
        self.device, self.dtype, self.chunk, self.p0_dtype = device, dtype, int(chunk), p0_dtype
        self.maps: list[nn.Module] = []
        self._maps64: list = []
        self.particles_gen_state: Tensor | None = None

    def __len__(self) -> int:
        return len(self.maps)

    def append(self, t_map: nn.Module) -> None:
        """Freeze a copy of ``t_map`` (eval mode, no gradients) as T_{k+1}."""
        self.maps.append(copy.deepcopy(t_map).eval().requires_grad_(False))

    # --- samples ------------------------------------------------------------------------------------------------
    def sample_p0(self, n: int, generator: torch.Generator) -> Tensor:
        """n samples of P_0 on the CPU in ``p0_dtype``."""
        return self.initial.sample(n, generator, dtype=self.p0_dtype)

    @torch.no_grad()
    def push(self, x0: Tensor) -> Tensor:
        """Push P_0 samples (CPU) through the frozen maps, in chunks, on the device, in the method's dtype."""
        out = []
        for chunk in torch.split(x0, self.chunk):
            x = chunk.to(self.device, self.dtype)
            for t_map in self.maps:
                x = t_map(x)
            out.append(x)
        return torch.cat(out)

    @torch.no_grad()
    def push_last(self, x: Tensor) -> Tensor:
        """Push particles of P_{k-1} (on the device) through T_k only, in the chunks :meth:`push` uses: the result
        equals pushing their P_0 draws through T_1..T_k with :meth:`push`, bit for bit (same rows, same chunks, same
        operations), so a carried particle set is redrawn exactly from its generator state."""
        return torch.cat([self.maps[-1](chunk) for chunk in torch.split(x, self.chunk)])

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n fresh samples of P_k, on the CPU."""
        return self.push(self.sample_p0(n, generator)).cpu()

    def draw_particles(self, n: int, generator: torch.Generator, state: Tensor | None = None) -> Tensor:
        """n particles of P_k (on the device) from fresh P_0 draws of ``generator``.

        The generator's state before the draw is kept (``particles_gen_state``, saved in checkpoints). With
        ``state`` the set is redrawn from that state and the generator is left where it was (a restore).
        """
        after = generator.get_state()
        if state is not None:
            generator.set_state(state)
        self.particles_gen_state = generator.get_state()
        particles = self.push(self.sample_p0(n, generator))
        if state is not None:
            generator.set_state(after)
        return particles

    # --- densities (gradient maps only) --------------------------------------------------------------------
    def gradient_maps(self, dtype: torch.dtype = torch.float64) -> list:
        """The maps as :class:`~wgfbench.densities.GradientMap` of their potentials: float64 copies (cached per
        map) by default, the training maps themselves in another dtype."""
        from wgfbench.densities import GradientMap

        if dtype != torch.float64:
            return [GradientMap(m.potential) for m in self.maps]
        while len(self._maps64) < len(self.maps):
            potential = self.maps[len(self._maps64)].potential
            self._maps64.append(GradientMap(copy.deepcopy(potential).to(torch.float64).requires_grad_(False)))
        return self._maps64[: len(self.maps)]

    def push_with_log_density(self, x0: Tensor, log_p0: Tensor, dtype: torch.dtype = torch.float64):
        """(T(x0), log p_k(T(x0))) by change of variables, on the device, in ``dtype``."""
        from wgfbench.densities import push_with_log_density

        maps = self.gradient_maps(dtype)
        return push_with_log_density(maps, x0.to(self.device, dtype), log_p0.to(self.device, dtype), chunk=self.chunk)

    def sample_with_log_density(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n samples of P_k and log p_k at them: log p_0(x_0) - sum_i log det Hess psi_i (change of variables)."""
        x0 = self.sample_p0(n, generator)
        y, log_p = self.push_with_log_density(x0, self.initial.log_density(x0))
        return y.to(self.dtype).cpu(), log_p.cpu()

    def log_density(self, x: Tensor, tol: float | None = None, max_iter: int = 100) -> Tensor:
        """log p_k at arbitrary points by inverting T_k, ..., T_1 (NaN where an inversion misses ``tol``)."""
        from wgfbench.densities import log_density_by_inversion

        log_p0: Callable[[Tensor], Tensor] = self.initial.log_density
        result = log_density_by_inversion(
            self.gradient_maps(), x.to(self.device, torch.float64), log_p0, tol=tol, max_iter=max_iter, chunk=self.chunk
        )
        return result.log_density.cpu()

    # --- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> list[dict]:
        return [m.state_dict() for m in self.maps]

    def load_state_dict(self, states: list[dict], make_map: Callable[[], nn.Module]) -> None:
        """Rebuild the frozen maps from their state dicts; ``make_map()`` returns a map of the right shape."""
        self.maps, self._maps64 = [], []
        for sd in states:
            m = make_map()
            m.load_state_dict(sd)
            self.append(m)
