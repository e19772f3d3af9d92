"""The suite's Adam (wgfbench.nets.adam): fused where torch has the kernel, the same update as the default loop."""

from __future__ import annotations

import torch
from torch import nn

from wgfbench.nets.adam import adam


def test_fused_on_the_cpu_and_the_same_steps_as_the_default_loop() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.PReLU(), nn.Linear(16, 1))
    twin = nn.Sequential(nn.Linear(5, 16), nn.PReLU(), nn.Linear(16, 1))
    twin.load_state_dict(net.state_dict())
    ours = adam(net.parameters(), lr=1e-2, weight_decay=1e-3)
    loop = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=1e-3, foreach=False)
    assert ours.param_groups[0]["fused"] is True
    x = torch.randn(64, 5)
    for _ in range(20):
        for model, opt in ((net, ours), (twin, loop)):
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(net[0].weight, nn.Linear(5, 16).weight)  # it moved


def test_float64_is_fused_too_and_an_empty_list_is_refused() -> None:
    import pytest

    net = nn.Linear(3, 1).double()
    assert adam(net.parameters(), lr=1e-3).param_groups[0]["fused"] is True
    with pytest.raises(ValueError, match="empty parameter list"):
        adam([], lr=1e-3)
