"""Operator and FLOP census (wgfbench.bench.census): counts that can be worked out by hand."""

from __future__ import annotations

import torch

from wgfbench.bench.census import gemm_rate, op_census


def test_census_counts_a_product_and_its_backward() -> None:
    a = torch.randn(8, 5, requires_grad=True)
    b = torch.randn(5, 3)
    forward = op_census(lambda: a @ b)
    assert forward.flops == 2 * 8 * 5 * 3
    assert forward.op_calls >= 1
    both = op_census(lambda: (a @ b).sum().backward())
    # backward adds grad_a = grad_out @ b^T (8 x 3 by 3 x 5); b needs no gradient
    assert both.flops == 2 * (2 * 8 * 5 * 3)
    assert both.op_calls > forward.op_calls
    assert op_census(lambda: a + 1).flops == 0  # elementwise work is not counted


def test_gemm_rate_is_a_positive_finite_rate() -> None:
    rate = gemm_rate("cpu", n=128)
    assert 1e6 < rate < 1e15
