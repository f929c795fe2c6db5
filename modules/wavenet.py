"""The WaveNet output head of the 22.05 kHz speech preset (VITS-style gated, non-causal WN stack).

Key names (`in_layers.{i}.conv.conv.weight_g` ...) follow the official checkpoints, whose convs are wrapped
twice (padding wrapper -> norm wrapper -> weight-normed Conv1d).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.weight_norm import legacy_weight_norm


class _WeightNormConv(nn.Module):
    """Weight-normed Conv1d, reached as `.conv` (the official norm-wrapper level)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = legacy_weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ReflectPadConv1d(nn.Module):
    """Stride-1 'same' Conv1d with reflect padding (the extra right pad goes first for even kernels)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = _WeightNormConv(in_channels, out_channels, kernel_size, dilation)
        span = (kernel_size - 1) * dilation
        self.pad = (span - span // 2, span // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad != (0, 0):
            x = _reflect_pad(x, self.pad)
        return self.conv(x)


def _reflect_pad(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    # F.pad's reflect mode needs more samples than the pad; zero-extend very short inputs first, then drop it.
    extra = max(0, max(pad) - x.shape[-1] + 1)
    if extra:
        x = F.pad(x, (0, extra))
    x = F.pad(x, pad, mode="reflect")
    return x[..., : x.shape[-1] - extra] if extra else x


class WaveNet(nn.Module):
    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int, p_dropout: float = 0.0):
        super().__init__()
        assert kernel_size % 2 == 1, "WaveNet kernel size must be odd"
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        self.cond_layer = ReflectPadConv1d(gin_channels, 2 * hidden_channels * n_layers, 1)
        for i in range(n_layers):
            self.in_layers.append(ReflectPadConv1d(hidden_channels, 2 * hidden_channels, kernel_size,
                                                   dilation=dilation_rate ** i))
            # The last layer only feeds the skip sum, so it has half the outputs.
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(ReflectPadConv1d(hidden_channels, out, 1))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """x [B, H, T], x_mask [B, 1, T], g [B, gin, 1] global condition -> [B, H, T]."""
        h = self.hidden_channels
        g = self.cond_layer(g)                                   # [B, 2H*n_layers, 1]
        skip = torch.zeros_like(x)
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = in_layer(x) + g[:, 2 * h * i: 2 * h * (i + 1)]
            acts = self.drop(torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:]))  # gated activation
            res_skip = res_skip_layer(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :h]) * x_mask
                skip = skip + res_skip[:, h:]
            else:
                skip = skip + res_skip
        return skip * x_mask
