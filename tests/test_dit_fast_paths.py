"""The DiT's fast CPU paths give the same bits as the formulas they replace (modules/dit.py)."""
from __future__ import annotations

import torch

from modules.dit import RMSNorm, _rope_table, apply_rope, rotate_pairs


def test_complex_rope_equals_pairwise_rotation_forward_and_backward():
    torch.manual_seed(0)
    B, T, H, Dh = 2, 301, 4, 16
    qkv = (torch.randn(B, T, 3 * H * Dh) * 5).requires_grad_()
    rope = _rope_table(T, Dh, torch.device("cpu"))
    for i in range(3):   # q, k and v as the attention slices them: strided views of one product
        view = qkv[..., i * H * Dh: (i + 1) * H * Dh].view(B, T, H, Dh)
        fast, reference = apply_rope(view, rope), rotate_pairs(view.reshape(B, T, H, Dh // 2, 2), rope)
        assert torch.equal(fast, reference)
        (g_fast,) = torch.autograd.grad(fast.pow(2).sum(), qkv)
        (g_reference,) = torch.autograd.grad(reference.pow(2).sum(), qkv)
        assert torch.equal(g_fast, g_reference)
    half = qkv.detach()[..., : H * Dh].view(B, T, H, Dh).bfloat16()
    assert apply_rope(half, rope).dtype == torch.bfloat16
    assert torch.equal(apply_rope(half, rope), rotate_pairs(half.float().reshape(B, T, H, Dh // 2, 2), rope).bfloat16())


def test_fused_rms_norm_equals_the_expression():
    torch.manual_seed(0)
    norm = RMSNorm(96)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = (torch.randn(3, 50, 96) * 3).requires_grad_()
    expression = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    fused = norm(x)
    assert torch.equal(fused, expression)
    upstream = torch.randn_like(fused)
    assert torch.equal(*(torch.autograd.grad(y, x, upstream)[0] for y in (fused, expression)))
    half = x.detach().bfloat16()   # other dtypes keep the fp32 normalisation of the expression
    assert torch.equal(norm(half), (half.float() * torch.rsqrt(half.float().pow(2).mean(-1, keepdim=True) + norm.eps))
                       .bfloat16() * norm.weight)
