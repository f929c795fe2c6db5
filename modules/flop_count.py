"""FLOP formulas for the CPU kernels torch.utils.flop_counter.FlopCounterMode does not know, which it would
count as zero: oneDNN's linear (modules.linear's fp32 route) and torch's CPU flash attention, forward and
backward. The attention ones are torch's own formulas for its GPU attention kernels (the backward includes
recomputing the scores).

    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter: ...
"""
from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

from modules.linear import ONEDNN_LINEAR


def _linear_flops(x_shape, weight_shape, *args, **kwargs) -> int:
    """x [..., in] times weight [out, in]^T."""
    return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * weight_shape[0]


def _attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention_backward_flops,
    **({torch.ops.mkldnn._linear_pointwise: _linear_flops} if ONEDNN_LINEAR is not None else {}),
}
