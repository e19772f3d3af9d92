"""Particle carry-forward of the variational JKO (``particles="carry"``): P_{k+1} = T_{k+1}(P_k) is, bit for bit,
the initial P_0 draw pushed through the whole chain, a restored run continues exactly, and each step pushes once."""

from __future__ import annotations

import copy

import torch

from wgfbench.registry import make_method, make_problem

torch.set_num_threads(1)

CARRY = dict(n_particles=3000, batch_size=128, iters_per_step=4, particles="carry", regen_chunk=1024)


def test_carried_particles_are_the_initial_draw_through_the_chain() -> None:
    problem = make_problem("ou", 3, 1)
    method = make_method("variational_jko", problem, 0.05, CARRY, 0)
    state0 = method.chain.particles_gen_state.clone()
    initial = method.particles.clone()
    for _ in range(3):
        method.step()
    assert torch.equal(method.chain.particles_gen_state, state0)  # never redrawn
    pushed = initial
    for t_map in method.chain.maps:
        pushed = t_map(pushed)
    torch.testing.assert_close(method.particles, pushed.detach())
    # and exactly what a redraw from the saved generator state through all maps (the restore) gives
    redrawn = method.chain.draw_particles(CARRY["n_particles"], torch.Generator(), state0)
    assert torch.equal(redrawn, method.particles)


def test_a_carried_run_restores_exactly() -> None:
    problem = make_problem("ou", 2, 0)
    a = make_method("variational_jko", problem, 0.05, CARRY, 0)
    a.step()
    a.step()
    state = copy.deepcopy(a.state_dict())
    losses_a = [a.step().loss for _ in range(2)]
    torch.manual_seed(4321)
    b = make_method("variational_jko", problem, 0.05, CARRY, 0)
    b.load_state_dict(state)
    losses_b = [b.step().loss for _ in range(2)]
    assert losses_b == losses_a
    assert torch.equal(b.particles, a.particles)


def test_carry_pushes_through_the_new_map_only() -> None:
    """Map calls of one regeneration after k steps: k per chunk when regenerating, 1 per chunk when carrying."""
    problem = make_problem("ou", 2, 0)
    calls: dict[str, list[int]] = {}
    for mode in ("regenerate", "carry"):
        method = make_method("variational_jko", problem, 0.05, {**CARRY, "particles": mode}, 0)
        calls[mode] = []
        for _ in range(3):
            method.step()
            probe = copy.deepcopy(method)
            seen: list[int] = []
            for t_map in probe.chain.maps:
                t_map.register_forward_hook(lambda module, args, out, seen=seen: seen.append(1))
            probe._next_particles()
            calls[mode].append(len(seen))
    chunks = 3  # 3000 particles in chunks of 1024
    assert calls["regenerate"] == [chunks * k for k in (1, 2, 3)]
    assert calls["carry"] == [chunks] * 3
