r"""Continuous normalizing flows for JKO steps: the augmented ODE, its solvers, frozen flows and stacks of them.

A velocity field v(x, t), t in [0, 1], moves a sample x of P_k along dz/dt = v(z, t), z(0) = x, to T(x) = z(1).
Along the way two scalars are integrated with it (Chen et al., NeurIPS 2018; Grathwohl et al., ICLR 2019;
Hertrich & Gruhlke, ICML 2025, Eq. 6):

    dw/dt = |v(z, t)|^2          w(1) = ∫_0^1 |v|^2 dt, the kinetic energy, >= |T(x) - x|^2 (Benamou-Brenier)
    dl/dt = div_x v(z, t)        l(1) = log |det DT(x)|  (Liouville), so log p_{k+1}(T x) = log p_k(x) - l(1).

The divergence is exact (``n_probes = 0``: the trace of the Jacobian, :mod:`wgfbench.nets.velocity`) or a
Hutchinson estimate with ``n_probes`` Rademacher probes. Two ways of drawing the probes:

* ``fresh_probes=False`` (training, FFJORD's rule): one set of probes per solve, fixed along the trajectory;
  the solution is then a smooth ODE (an adaptive solver needs that);
* ``fresh_probes=True`` (frozen flows, Hertrich & Gruhlke's evaluation): new probes at every evaluation of v.
  The estimate of l(1) stays unbiased and its variance is computable: with the RK4 weights b_e dt of the
  evaluations e and the sample variance s_e^2 of the P probe values at each,
  Var[l(1)] = sum_e (b_e dt)^2 s_e^2 / P (the evaluations' probes are independent). It needs P >= 2.

Solvers: :func:`rk4_integrate`, the classical fixed-step Runge-Kutta method on (z, w, l) (w and l do not feed
back into z, so they are quadratures along the RK4 path), differentiated by direct backpropagation; and
:func:`adjoint_integrate`, the adaptive Dormand-Prince method of torchdiffeq (Chen et al. 2018) with the adjoint
method for the gradient, an optional dependency (``pip install 'wgfbench[cnf]'``).

A trained step is frozen as a :class:`FrozenFlow`: RK4 with a fixed number of steps, forwards (sampling, the
density at model samples) and backwards from t = 1 to t = 0 (the density at arbitrary points: x = T^{-1}(y) and
log |det DT(x)| = -∫_1^0 div v dt along the reverse path). The reverse RK4 map inverts the forward one only up to
the RK4 error O(dt^4), so log-densities at a model sample computed both ways agree to that order.

A model is a stack of layers, each a frozen CNF step (:class:`CNFLayer`) or another kind of step (the rejection
steps of the importance-corrected sampler), with the interface of :class:`StackLayer`; :func:`sample_stack`
draws from it and :func:`log_density_stack` evaluates its log-density at arbitrary points.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from wgfbench.nets.velocity import VelocityMLP, divergence_from_jvp, rademacher

RK4_WEIGHTS = (1.0 / 6.0, 2.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0)


def torchdiffeq_available() -> bool:
    """Whether the optional dependency torchdiffeq can be imported."""
    return importlib.util.find_spec("torchdiffeq") is not None


@dataclass
class FlowIntegral:
    """End point z(t1) and the integrals ∫_{t0}^{t1} |v|^2 dt and ∫_{t0}^{t1} div v dt per sample (signed: negative
    for t1 < t0); ``div_var`` is the variance of the divergence integral's estimate (0 when exact; for Hutchinson
    with fresh probes and P >= 2, module docstring; None where it is not computed)."""

    z: Tensor
    transport: Tensor
    div: Tensor
    div_var: Tensor | None = None


def _probes(n: int, d: int, n_probes: int, generator: torch.Generator | None, like: Tensor) -> Tensor | None:
    if n_probes == 0:
        return None
    if generator is None:
        raise ValueError("Hutchinson probes need a generator")
    return rademacher((n, n_probes, d), generator, like.dtype, like.device)


def rk4_integrate(
    velocity: VelocityMLP,
    x: Tensor,
    n_steps: int,
    n_probes: int | None = 0,
    generator: torch.Generator | None = None,
    fresh_probes: bool = False,
    t0: float = 0.0,
    t1: float = 1.0,
) -> FlowIntegral:
    """RK4 with ``n_steps`` equal steps from t0 to t1 (t1 < t0 integrates backwards) on (z, w, l).

    ``n_probes``: 0 = exact divergence, P > 0 = Hutchinson with P probes, None = no divergence (sampling only;
    ``div`` is then zeros). Differentiable in the velocity's parameters (direct backpropagation).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    n, d = x.shape
    dt = (t1 - t0) / n_steps
    with_div = n_probes is not None
    fixed = None if (not with_div or fresh_probes) else _probes(n, d, n_probes, generator, x)
    zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
    transport, div = zeros, zeros
    # the estimate's variance: 0 when exact; accumulated over evaluations for fresh probes (needs P >= 2)
    track_var = with_div and fresh_probes and n_probes >= 2
    div_var = zeros if (with_div and n_probes == 0) or track_var else None
    z = x
    for i in range(n_steps):
        t = t0 + i * dt
        stages = ((0.0, None), (0.5, 0), (0.5, 1), (1.0, 2))
        vs: list[Tensor] = []
        for (c, prev), b in zip(stages, RK4_WEIGHTS, strict=True):
            zs = z if prev is None else z + (c * dt) * vs[prev]
            ts = t + c * dt
            if not with_div:
                v = velocity(zs, ts)
            else:
                e = _probes(n, d, n_probes, generator, x) if fresh_probes else fixed
                v, jv = velocity.forward_with_jvp(zs, ts, e)
                per_probe = divergence_from_jvp(jv, e)
                div = div + (b * dt) * per_probe.mean(-1)
                if track_var:
                    div_var = div_var + (b * dt) ** 2 * per_probe.var(-1) / per_probe.shape[-1]
            transport = transport + (b * dt) * (v**2).sum(-1)
            vs.append(v)
        z = z + (dt / 6.0) * (vs[0] + 2.0 * vs[1] + 2.0 * vs[2] + vs[3])
    return FlowIntegral(z, transport, div, div_var)


class _AugmentedDynamics(nn.Module):
    """(z, w, l) -> (v, |v|^2, div v) for torchdiffeq, probes fixed for the solve; counts evaluations."""

    def __init__(self, velocity: VelocityMLP, probes: Tensor | None):
        super().__init__()
        self.velocity = velocity
        self.probes = probes
        self.nfe = 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        self.nfe += 1
        v, jv = self.velocity.forward_with_jvp(state[0], t, self.probes)
        return v, (v**2).sum(-1), divergence_from_jvp(jv, self.probes).mean(-1)


def adjoint_integrate(
    velocity: VelocityMLP,
    x: Tensor,
    n_probes: int,
    generator: torch.Generator | None,
    atol: float = 1e-3,
    rtol: float = 1e-3,
) -> tuple[FlowIntegral, int]:
    """Adaptive dopri5 from t = 0 to 1 with the adjoint gradient (torchdiffeq); returns the integral and the number
    of function evaluations of the forward solve (Hertrich & Gruhlke's training solver, atol = rtol = 1e-3)."""
    if not torchdiffeq_available():
        raise ImportError("the adjoint solver needs torchdiffeq: pip install 'wgfbench[cnf]' (or torchdiffeq)")
    from torchdiffeq import odeint_adjoint

    dyn = _AugmentedDynamics(velocity, _probes(x.shape[0], x.shape[1], n_probes, generator, x))
    zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    times = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
    z, w, lg = odeint_adjoint(
        dyn,
        (x, zeros, zeros),
        times,
        method="dopri5",
        atol=atol,
        rtol=rtol,
        adjoint_params=tuple(velocity.parameters()),
    )
    return FlowIntegral(z[-1], w[-1], lg[-1]), dyn.nfe


def rk4_steps_from_nfe(nfe: float) -> int:
    """Fixed RK4 steps to re-integrate a flow trained with an adaptive solver: ceil(nfe/4 + 1) (four evaluations
    per RK4 step; Hertrich & Gruhlke's rule, nfe the running mean of the training solves' evaluations)."""
    return int(-(-(0.25 * nfe + 1.0) // 1))


# --- frozen flows -----------------------------------------------------------------------------------------------
class FrozenFlow:
    """A trained step T(x) = z(1) by ``n_steps`` of RK4, parameters frozen; float64 copy cached for densities."""

    def __init__(self, velocity: VelocityMLP, n_steps: int, chunk: int = 16_384):
        self.velocity = velocity.eval().requires_grad_(False)
        self.n_steps = int(n_steps)
        self.chunk = int(chunk)
        self._copies: dict[torch.dtype, VelocityMLP] = {next(velocity.parameters()).dtype: self.velocity}

    def net(self, dtype: torch.dtype) -> VelocityMLP:
        if dtype not in self._copies:
            self._copies[dtype] = copy.deepcopy(self.velocity).to(dtype)
        return self._copies[dtype]

    @torch.no_grad()
    def _chunks(self, x: Tensor, fn: Callable[[Tensor], FlowIntegral]) -> FlowIntegral:
        parts = [fn(c) for c in torch.split(x, self.chunk)]
        var = None if parts[0].div_var is None else torch.cat([p.div_var for p in parts])
        return FlowIntegral(*(torch.cat([getattr(p, f) for p in parts]) for f in ("z", "transport", "div")), var)

    def forward(self, x: Tensor) -> Tensor:
        """T(x), no divergence."""
        net = self.net(x.dtype)
        return self._chunks(x, lambda c: rk4_integrate(net, c, self.n_steps, None)).z

    def forward_with_logdet(
        self, x: Tensor, n_probes: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(T(x), log |det DT(x)| (exact or Hutchinson with fresh probes), variance of that estimate)."""
        net = self.net(x.dtype)
        out = self._chunks(x, lambda c: rk4_integrate(net, c, self.n_steps, n_probes, generator, fresh_probes=True))
        return out.z, out.div, out.div_var

    def inverse_with_logdet(self, y: Tensor, n_probes: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(x = T^{-1}(y), log |det DT(x)|) by RK4 from t = 1 back to t = 0 (module docstring)."""
        net = self.net(y.dtype)
        out = self._chunks(
            y, lambda c: rk4_integrate(net, c, self.n_steps, n_probes, generator, fresh_probes=True, t0=1.0, t1=0.0)
        )
        return out.z, -out.div


# --- stacks of layers -------------------------------------------------------------------------------------------
Draw = Callable[[int], tuple[Tensor, Tensor | None]]


class StackLayer(Protocol):
    """One step of a model P_j = S_j(P_{j-1}).

    ``sample(n, draw_prev, generator, with_log_density)``: n samples of P_j (and log p_j at them), given a function
    drawing m samples of P_{j-1} (and log p_{j-1}); ``pull(y, generator)``: the point x of P_{j-1} that y came from
    and what ``log_density_after`` needs; ``log_density_after(y, log_p_prev, aux)``: log p_j(y) from log p_{j-1}(x).
    """

    kind: str

    def sample(
        self, n: int, draw_prev: Draw, generator: torch.Generator, with_log_density: bool
    ) -> tuple[Tensor, Tensor | None]: ...

    def pull(self, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]: ...

    def log_density_after(self, y: Tensor, log_p_prev: Tensor, aux: Tensor | None) -> Tensor: ...


class CNFLayer:
    """A frozen CNF step as a stack layer; log-densities with ``n_probes`` (0 = exact divergence)."""

    kind = "cnf"

    def __init__(self, flow: FrozenFlow, n_probes: int):
        self.flow = flow
        self.n_probes = int(n_probes)

    def sample(
        self, n: int, draw_prev: Draw, generator: torch.Generator, with_log_density: bool
    ) -> tuple[Tensor, Tensor | None]:
        x, lp = draw_prev(n)
        if not with_log_density:
            return self.flow.forward(x), None
        y, logdet, _ = self.flow.forward_with_logdet(x, self.n_probes, generator)
        return y, lp - logdet

    def pull(self, y: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.flow.inverse_with_logdet(y, self.n_probes, generator)

    def log_density_after(self, y: Tensor, log_p_prev: Tensor, aux: Tensor | None) -> Tensor:
        return log_p_prev - aux


def sample_stack(
    layers: Sequence[StackLayer],
    p0,
    n: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    with_log_density: bool,
) -> tuple[Tensor, Tensor | None]:
    """n samples of the model (and its log-density at them): P_0 draws from ``generator`` pushed through the layers."""

    def draw(j: int, m: int) -> tuple[Tensor, Tensor | None]:
        if j == 0:
            x0 = p0.sample(m, generator, dtype=dtype)
            lp = p0.log_density(x0).to(device, dtype) if with_log_density else None
            return x0.to(device), lp
        return layers[j - 1].sample(m, lambda mm: draw(j - 1, mm), generator, with_log_density)

    with torch.no_grad():
        return draw(len(layers), n)


def log_density_stack(
    layers: Sequence[StackLayer], p0, y: Tensor, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """log p of the model at arbitrary points y: pull y back through every layer to P_0, then accumulate forwards."""
    with torch.no_grad():
        points, auxs = [y.to(dtype)], []
        for layer in reversed(layers):
            x, aux = layer.pull(points[-1], generator)
            points.append(x)
            auxs.append(aux)
        points.reverse()
        auxs.reverse()
        lp = p0.log_density(points[0]).to(y.device, dtype)
        for j, layer in enumerate(layers):
            lp = layer.log_density_after(points[j + 1], lp, auxs[j])
        return lp
