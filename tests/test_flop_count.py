"""The benchmarks' FLOP counts: torch's FlopCounterMode has no formula for some CPU kernels the models use
(the CPU flash attention, oneDNN's linear), so without ours it counts them as zero."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import modules.linear as linear_module
from modules.flop_count import FLOP_FORMULAS
from modules.linear import linear


def _counted(fn) -> tuple[int, int]:
    """(forward FLOPs, backward FLOPs) of fn() followed by a backward of its sum."""
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with counter:
        out = fn()
        forward = counter.get_total_flops()
        out.sum().backward()
    return forward, counter.get_total_flops() - forward


def test_cpu_attention_counts_as_its_products():
    B, H, T, S, D = 2, 3, 50, 40, 16
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, n, D, requires_grad=True) for n in (T, S, S))
    mask = torch.rand(B, 1, T, S) > 0.2
    mask[..., 0] = True
    for attn_mask in (None, mask):
        flash = _counted(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))
        scores = (q @ k.transpose(-1, -2) * D ** -0.5)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        math = _counted(lambda: torch.softmax(scores, -1) @ v)
        math = (math[0] + 2 * B * H * T * S * D, math[1])   # the score product `scores` was built outside
        # the flash backward recomputes the scores: one product more than the math path's backward
        assert flash == (math[0], math[1] + 2 * B * H * T * S * D) == (4 * B * H * T * S * D, 10 * B * H * T * S * D)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "blas"])
def test_linear_counts_on_every_route(onednn, monkeypatch):
    if onednn and linear_module.ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no working oneDNN linear kernel")
    monkeypatch.setattr(linear_module, "_USE_ONEDNN", onednn)
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with torch.no_grad(), counter:
        linear(torch.randn(4, 6, 64), torch.randn(32, 64))
    assert counter.get_total_flops() == 2 * 4 * 6 * 64 * 32
