"""The DiT's fast CPU paths give the same bits as the formulas they replace (modules/dit.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import modules.dit as dit
from modules.checkpoint import load_model_weights
from modules.config import load_config
from modules.dit import RMSNorm, _rope_table, apply_rope, rotate_pairs
from modules.model import build_model
from tiny import dit_checkpoint, dit_config


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


def _tiny_estimator_and_inputs(T: int):
    """The tiny f0_44k DiT estimator (eval) and seeded inputs for a batch of 2: x, prompt [2, C, T],
    mu [2, T, D], style [2, 192], t [2]."""
    model = build_model(load_config(dit_config("f0_44k")))
    load_model_weights(model, dit_checkpoint("f0_44k"))
    g = torch.Generator().manual_seed(0)
    C, D = model.cfm.in_channels, model.length_regulator.content_in_proj.out_features
    x, prompt, mu = torch.randn(2, C, T, generator=g), torch.randn(2, C, T, generator=g), torch.randn(2, T, D, generator=g)
    style, t = torch.randn(2, 192, generator=g), torch.rand(2, generator=g)
    return model.cfm.eval().estimator, (x, prompt, mu, style, t)


def test_attention_without_a_mask_when_every_key_is_attended(monkeypatch):
    """CFG's two equal halves attend to every key: the DiT then gives SDPA no mask, and that is the same sum."""
    masks, sdpa = [], F.scaled_dot_product_attention

    def checked_sdpa(q, k, v, attn_mask=None):
        out = sdpa(q, k, v, attn_mask=attn_mask)
        masks.append(attn_mask)
        if attn_mask is None:   # the all-True mask it stands for gives the same bits
            full = torch.ones(q.shape[0], 1, 1, k.shape[2], dtype=torch.bool)
            assert torch.equal(out, sdpa(q, k, v, attn_mask=full))
        return out

    monkeypatch.setattr(dit.F, "scaled_dot_product_attention", checked_sdpa)
    T = 30
    estimator, (x, prompt, mu, style, t) = _tiny_estimator_and_inputs(T)
    with torch.no_grad():
        equal = estimator(x, prompt, torch.tensor([T, T]), t, style, mu)
        assert masks and all(m is None for m in masks)
        masks.clear()
        padded = estimator(x, prompt, torch.tensor([T, T - 7]), t, style, mu)
        assert masks and all(m is not None and not bool(m.all()) for m in masks)
    torch.testing.assert_close(padded[0], equal[0], rtol=0, atol=0)   # the full-length clip is unchanged


def test_reduced_precision_cpu_attention_reads_contiguous_heads_with_the_same_bits(monkeypatch):
    """In bf16 on the CPU the DiT copies q, k, v into contiguous [B, H, T, Dh] (faster in torch's flash kernel);
    the estimator's output is the strided call's, bit for bit. fp32 keeps the views."""
    layouts, sdpa = [], F.scaled_dot_product_attention

    def recording_sdpa(q, k, v, attn_mask=None):
        layouts.append((q.dtype, all(t.is_contiguous() for t in (q, k, v))))
        return sdpa(q, k, v, attn_mask=attn_mask)

    monkeypatch.setattr(dit.F, "scaled_dot_product_attention", recording_sdpa)
    T = 40
    estimator, (x, prompt, mu, style, t) = _tiny_estimator_and_inputs(T)
    lens = torch.tensor([T, T - 9])
    with torch.no_grad():
        estimator(x, prompt, lens, t, style, mu)
        assert layouts and all(dtype == torch.float32 and not contiguous for dtype, contiguous in layouts)
        layouts.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = estimator(x, prompt, lens, t, style, mu)
            assert layouts and all(dtype == torch.bfloat16 and contiguous for dtype, contiguous in layouts)
            monkeypatch.setattr(dit, "contiguous_heads", lambda q: False)
            strided = estimator(x, prompt, lens, t, style, mu)
    assert torch.equal(fast, strided)
