"""Length regulator: continuous content features (50 Hz) -> per-mel-frame conditioning for the DiT.

Attribute names follow the official `InterpolateRegulator` state-dict keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.config import LengthRegulatorConfig
from modules.linear import Linear

# F0 quantisation range (Hz), mapped on the mel scale to bins 1..n_bins-1; bin 1 also means unvoiced.
F0_MIN_HZ, F0_MAX_HZ = 50.0, 1100.0
_F0_MEL_MIN = 1127.0 * math.log(1.0 + F0_MIN_HZ / 700.0)
_F0_MEL_MAX = 1127.0 * math.log(1.0 + F0_MAX_HZ / 700.0)


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """lengths [B] -> bool [B, max_length], True on valid frames."""
    max_length = int(lengths.max()) if max_length is None else max_length
    return torch.arange(max_length, device=lengths.device) < lengths[:, None]


def f0_to_coarse(f0: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Quantise F0 (Hz, any shape, computed in f0's dtype) to bins on the mel scale, like the original.

    Frames below ~55 Hz, unvoiced ones included, land in bin 1. The original clips the top end in the wrong
    order, so f0 above ~1104 Hz lands in bin 0 instead of n_bins - 1; checkpoints were trained with that, so
    it is kept on purpose.
    """
    scale = (n_bins - 2) / (_F0_MEL_MAX - _F0_MEL_MIN)
    offset = _F0_MEL_MIN * scale - 1.0
    f0_mel = 1127.0 * (1.0 + f0 / 700.0).log()
    f0_mel = torch.where(f0_mel > 0, f0_mel * scale - offset, f0_mel)
    coarse = torch.round(f0_mel).long().clamp(min=0)
    coarse = torch.where(coarse < 1, torch.ones_like(coarse), coarse)
    return torch.where(coarse < n_bins, coarse, torch.zeros_like(coarse))  # the >1104 Hz -> 0 quirk


class LengthRegulator(nn.Module):
    def __init__(self, channels: int, in_channels: int, n_conv_blocks: int = 4, codebook_size: int = 1024,
                 f0_condition: bool = False, n_f0_bins: int = 512):
        super().__init__()
        # n_conv_blocks x [Conv1d k3, GroupNorm(1), Mish] then a 1x1 conv; indices are part of the key names.
        blocks: list[nn.Module] = []
        for _ in range(n_conv_blocks):
            blocks += [nn.Conv1d(channels, channels, 3, 1, 1), nn.GroupNorm(1, channels), nn.Mish()]
        blocks.append(nn.Conv1d(channels, channels, 1, 1))
        self.model = nn.Sequential(*blocks)
        # Discrete-token embedding and mask token: unused for continuous content, kept for checkpoint keys.
        self.embedding = nn.Embedding(codebook_size, channels)
        self.mask_token = nn.Parameter(torch.zeros(1, channels))
        self.f0_condition = f0_condition
        self.n_f0_bins = n_f0_bins
        if f0_condition:
            self.f0_embedding = nn.Embedding(n_f0_bins, channels)
            self.f0_mask = nn.Parameter(torch.zeros(1, channels))  # added when no F0 is given
        self.content_in_proj = Linear(in_channels, channels)

    def forward(self, content: torch.Tensor, ylens: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """content [B, T_c, in_channels], ylens [B] target mel lengths, f0 [B, T_f0] Hz or None
        -> [B, max(ylens), channels], zero beyond each row's length.

        f0 may stay on the CPU in float64 (as it is computed; MPS has no float64): it is quantised where it
        is, and only the integer bins move to the embedding's device."""
        n_frames = int(ylens.max())
        x = self.content_in_proj(content).transpose(1, 2)           # [B, C, T_c]
        x = F.interpolate(x.contiguous(), size=n_frames, mode="nearest")  # [B, C, T]
        if self.f0_condition:
            if f0 is None:
                x = x + self.f0_mask.unsqueeze(-1)
            else:
                bins = f0_to_coarse(f0, self.n_f0_bins).to(self.f0_embedding.weight.device)
                f0_emb = self.f0_embedding(bins).transpose(1, 2)    # [B, C, T_f0]
                x = x + F.interpolate(f0_emb.contiguous(), size=n_frames, mode="nearest")
        out = self.model(x).transpose(1, 2)                         # [B, T, C]
        return out * sequence_mask(ylens, n_frames).unsqueeze(-1)

    @classmethod
    def from_config(cls, cfg: LengthRegulatorConfig) -> "LengthRegulator":
        return cls(channels=cfg.channels, in_channels=cfg.in_channels, n_conv_blocks=cfg.n_conv_blocks,
                   codebook_size=cfg.content_codebook_size, f0_condition=cfg.f0_condition, n_f0_bins=cfg.n_f0_bins)
