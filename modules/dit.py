"""The DiT velocity estimator of Seed-VC v1: a gpt-fast style transformer with U-ViT skips.

Per frame, the input is [noisy mel | prompt mel | projected content | style]; time conditions every block
through AdaLN over RMSNorm (or rides along as a token). Module names follow the official state-dict keys.
Shapes: B batch, C mel bins (`in_channels`), T frames, D `hidden_dim`, S style dim (192).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.config import DiTConfig, WaveNetConfig
from modules.length_regulator import sequence_mask
from modules.linear import Linear
from modules.wavenet import WaveNet
from modules.weight_norm import legacy_weight_norm

ROPE_BASE = 10000.0
# Size of the persistent `input_pos` buffer in official checkpoints (arange of this length). It is kept for
# strict key compatibility only; nothing else is sized by it.
OFFICIAL_MAX_POSITIONS = 16384


def _find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # torch's fused kernel: the same bits as the expression below, in one pass instead of five
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        xf = x.float()  # normalise in fp32 even under fp16 autocast
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class AdaptiveRMSNorm(nn.Module):
    """w * RMSNorm(x) + b, with (w, b) projected from the condition; plain RMSNorm when there is none."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.project_layer = Linear(dim, 2 * dim)
        self.norm = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            return self.norm(x)
        weight, bias = self.project_layer(cond).chunk(2, dim=-1)
        return weight * self.norm(x) + bias


ROPE_TABLE_BLOCK = 4096   # RoPE tables grow in whole blocks of positions


@lru_cache(maxsize=16)
def _rope_block_table(n_blocks: int, head_dim: int, device: torch.device) -> torch.Tensor:
    """[n_blocks * ROPE_TABLE_BLOCK, head_dim // 2, 2] (cos, sin), built on the CPU, copied to `device` once.
    Row p depends only on p, so any prefix of a longer table is the table of that length."""
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(n_blocks * ROPE_TABLE_BLOCK), inv_freq)
    rotation = torch.polar(torch.ones_like(angles), angles)
    return torch.stack([rotation.real, rotation.imag], dim=-1).to(device)


def _rope_table(n_positions: int, head_dim: int, device: torch.device) -> torch.Tensor:
    """[n_positions, head_dim // 2, 2] (cos, sin): a view of the cached table of the next whole block size, so
    every length up to that size reuses one table per device."""
    return _rope_block_table(-(-n_positions // ROPE_TABLE_BLOCK), head_dim, device)[:n_positions]


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... of x [B, T, H, Dh] by the angles in rope [T, Dh/2, 2]."""
    xp = x.float().reshape(*x.shape[:-1], -1, 2)
    if x.device.type != "mps":  # MPS lacks complex support in places
        # one complex multiply: the same products and sums as the pairs below (bit-equal on the CPU), 10x faster
        rotated = torch.view_as_complex(xp) * torch.view_as_complex(rope)[None, :, None, :]
        return torch.view_as_real(rotated).flatten(3).type_as(x)
    return rotate_pairs(xp, rope).type_as(x)


def rotate_pairs(xp: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """xp [B, T, H, Dh/2, 2] fp32 rotated pair by pair (real arithmetic) -> [B, T, H, Dh]."""
    cos, sin = rope[None, :, None, :, 0], rope[None, :, None, :, 1]
    out = torch.stack([xp[..., 0] * cos - xp[..., 1] * sin, xp[..., 1] * cos + xp[..., 0] * sin], dim=-1)
    return out.flatten(3)


def contiguous_heads(q: torch.Tensor) -> bool:
    """Whether to copy q, k, v into contiguous [B, H, T, Dh] before attention: on the CPU in bf16 or fp16, where
    torch's flash kernel reads the strided views of [B, T, H, Dh] 5-10 % slower (the same sums bit for bit); in
    fp32 the copies cost about what they save."""
    return q.device.type == "cpu" and q.element_size() < 4


class Attention(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.wqkv = Linear(dim, 3 * dim, bias=False)
        self.wo = Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, D], key_mask bool [B, 1, 1, T] (True = attend; None: all) -> [B, T, D]."""
        B, T, D = x.shape
        q, k, v = self.wqkv(x).split(D, dim=-1)
        q = apply_rope(q.view(B, T, self.n_heads, self.head_dim), rope)
        k = apply_rope(k.view(B, T, self.n_heads, self.head_dim), rope)
        v = v.view(B, T, self.n_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))        # [B, H, T, Dh]
        if contiguous_heads(q):
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.wo(y.transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = Linear(dim, hidden, bias=False)
        self.w3 = Linear(dim, hidden, bias=False)
        self.w2 = Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.w2(F.silu(self.w1(x)) * self.w3(x))
        # without autograd the gate is applied in place in w1's fresh output: two [B, T, hidden] buffers less
        return self.w2(F.silu(self.w1(x), inplace=True).mul_(self.w3(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, ffn_hidden: int, uvit_skip: bool):
        super().__init__()
        self.attention = Attention(dim, n_heads)
        self.feed_forward = FeedForward(dim, ffn_hidden)
        self.ffn_norm = AdaptiveRMSNorm(dim)
        self.attention_norm = AdaptiveRMSNorm(dim)
        if uvit_skip:
            # Every block carries this projection (official key layout); only the second half uses it.
            self.skip_in_linear = Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None, rope: torch.Tensor, key_mask: torch.Tensor | None,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = self.skip_in_linear(torch.cat([x, skip], dim=-1))  # replaces x, it is not a residual add
        h = x + self.attention(self.attention_norm(x, cond), rope, key_mask)
        return h + self.feed_forward(self.ffn_norm(h, cond))


class Transformer(nn.Module):
    def __init__(self, dim: int, n_heads: int, depth: int, uvit_skip: bool, time_as_token: bool):
        super().__init__()
        ffn_hidden = _find_multiple(int(2 * 4 * dim / 3), 256)
        self.layers = nn.ModuleList(TransformerBlock(dim, n_heads, ffn_hidden, uvit_skip) for _ in range(depth))
        self.norm = AdaptiveRMSNorm(dim)
        self.head_dim = dim // n_heads
        self.time_as_token = time_as_token
        # U-ViT: the first half pushes its outputs, the second half (after the middle block) pops them.
        self.emit_skip = {i for i in range(depth) if uvit_skip and i < depth // 2}
        self.receive_skip = {i for i in range(depth) if uvit_skip and i > depth // 2}

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, T', D], time_emb [B, 1, D], key_mask [B, 1, 1, T'] -> [B, T', D]."""
        rope = _rope_table(x.shape[1], self.head_dim, x.device)
        block_cond = None if self.time_as_token else time_emb  # time already rides along as a token
        skips: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x = layer(x, block_cond, rope, key_mask, skips.pop() if i in self.receive_skip else None)
            if i in self.emit_skip:
                skips.append(x)
        return self.norm(x, time_emb)


class TimestepEmbedder(nn.Module):
    """Scalar flow time t in [0, 1] -> [B, D]: sinusoids of 1000*t (cos first), then an MLP."""

    def __init__(self, dim: int, n_freq: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(Linear(n_freq, dim), nn.SiLU(), Linear(dim, dim))
        half = n_freq // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = 1000.0 * t[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class FinalLayer(nn.Module):
    """LayerNorm (no affine) modulated by time: x * (1 + scale) + shift, then a weight-normed Linear."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = legacy_weight_norm(Linear(dim, out_dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(time_emb).chunk(2, dim=1)
        return self.linear(self.norm_final(x) * (1 + scale[:, None]) + shift[:, None])


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig, style_dim: int, wavenet: WaveNetConfig | None = None):
        """`wavenet` is required when cfg.final_layer_type is "wavenet"."""
        super().__init__()
        D, C = cfg.hidden_dim, cfg.in_channels
        self.in_channels = C
        self.time_as_token = cfg.time_as_token
        self.style_as_token = cfg.style_as_token
        self.style_condition = cfg.style_condition
        self.long_skip_connection = cfg.long_skip_connection
        self.final_layer_type = cfg.final_layer_type
        self.class_dropout_prob = cfg.class_dropout_prob

        self.transformer = Transformer(D, cfg.num_heads, cfg.depth, cfg.uvit_skip_connection, self.time_as_token)
        # x_embedder, cond_embedder and content_mask_embedder are never used in v1 forward; they exist so
        # official checkpoints load strictly.
        self.x_embedder = legacy_weight_norm(Linear(C, D))
        self.cond_embedder = nn.Embedding(cfg.content_codebook_size, D)
        self.cond_projection = Linear(cfg.content_dim, D)
        self.t_embedder = TimestepEmbedder(D)
        self.register_buffer("input_pos", torch.arange(OFFICIAL_MAX_POSITIONS))
        if self.final_layer_type == "wavenet":
            H = wavenet.hidden_dim
            self.t_embedder2 = TimestepEmbedder(H)
            self.conv1 = Linear(D, H)
            self.conv2 = nn.Conv1d(H, C, 1)
            self.wavenet = WaveNet(H, wavenet.kernel_size, wavenet.dilation_rate, wavenet.num_layers, gin_channels=H,
                                   p_dropout=wavenet.p_dropout)
            self.final_layer = FinalLayer(H, H)
            self.res_projection = Linear(D, H)
        else:
            self.final_mlp = nn.Sequential(Linear(D, D), nn.SiLU(), Linear(D, C))
        self.content_mask_embedder = nn.Embedding(1, D)
        self.skip_linear = Linear(D + C, D)  # the long skip; present (unused) when it is off
        style_per_frame = style_dim if self.style_condition and not self.style_as_token else 0
        self.cond_x_merge_linear = Linear(D + 2 * C + style_per_frame, D)
        if self.style_as_token:
            self.style_in = Linear(style_dim, D)

    def forward(self, x: torch.Tensor, prompt_x: torch.Tensor, x_lens: torch.Tensor, t: torch.Tensor,
                style: torch.Tensor, cond: torch.Tensor, drop_condition: bool | None = None) -> torch.Tensor:
        """Predict the flow velocity.

        x, prompt_x [B, C, T] (prompt_x is the reference mel on the prompt frames, 0 elsewhere);
        x_lens [B] (or [1], broadcast); t [B]; style [B, S]; cond [B, T, content_dim] from the length regulator.
        drop_condition: drop prompt, content and style (classifier-free-guidance training). None draws it with
        probability `class_dropout_prob` in training mode and means False in eval mode.
        Returns [B, C, T]. Padded frames are computed too; only keys are masked.
        """
        if drop_condition is None:
            drop_condition = self.training and bool(torch.rand(1) < self.class_dropout_prob)
        B, C, T = x.shape
        time_emb = self.t_embedder(t)                                   # [B, D]
        x = x.transpose(1, 2)                                           # [B, T, C]
        parts = [x, prompt_x.transpose(1, 2), self.cond_projection(cond)]
        if self.style_condition and not self.style_as_token:
            parts.append(style[:, None, :].expand(B, T, style.shape[-1]))
        x_in = torch.cat(parts, dim=-1)
        if drop_condition:
            x_in = torch.cat([x_in[..., :C], torch.zeros_like(x_in[..., C:])], dim=-1)
        h = self.cond_x_merge_linear(x_in)                              # [B, T, D]

        n_tokens = 0
        if self.style_as_token:
            style_token = self.style_in(style)
            if drop_condition:
                style_token = torch.zeros_like(style_token)
            h = torch.cat([style_token[:, None], h], dim=1)
            n_tokens += 1
        if self.time_as_token:
            h = torch.cat([time_emb[:, None], h], dim=1)                # order: [time, style, frames]
            n_tokens += 1
        key_mask = sequence_mask(x_lens + n_tokens, h.shape[1])[:, None, None, :]  # [B|1, 1, 1, T']
        if key_mask.device.type == "cpu" and not torch.compiler.is_compiling() and bool(key_mask.all()):
            # every key is attended (one clip, or CFG's two equal halves): attention without a mask is the same
            # sum (bit-equal on the CPU), and torch's CPU flash kernel is ~10% faster without one. CPU only:
            # on a GPU the check would cost a device sync per step for no gain
            key_mask = None
        h = self.transformer(h, time_emb[:, None], key_mask)[:, n_tokens:]           # [B, T, D]

        if self.long_skip_connection:
            h = self.skip_linear(torch.cat([h, x], dim=-1))
        if self.final_layer_type == "wavenet":
            frame_mask = sequence_mask(x_lens, T)[:, None, :].to(h.dtype)          # [B|1, 1, T]
            y = self.conv1(h).transpose(1, 2)                                       # [B, H, T]
            y = self.wavenet(y, frame_mask, g=self.t_embedder2(t)[:, :, None]).transpose(1, 2)
            y = self.final_layer(y + self.res_projection(h), time_emb).transpose(1, 2)
            return self.conv2(y)
        return self.final_mlp(h).transpose(1, 2)
