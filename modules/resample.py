"""Band-limited resampling that reproduces torchaudio.functional.resample's defaults exactly
(Hann-windowed sinc, lowpass_filter_width 6, rolloff 0.99), without depending on torchaudio.

Every feature the models see (content, F0, style) is computed on audio resampled this way by the original,
so matching it bit for bit keeps those features equal to the original's.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, int]:
    """Polyphase kernel [new, 1, 2*width + orig] for reduced rates orig -> new, and the half-width."""
    base = min(orig, new) * ROLLOFF  # cutoff, in units of the reduced rates
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base)
    # Built in the wave's dtype, as torchaudio does: the rounding of the kernel is part of the output.
    taps = torch.arange(-width, width + orig, dtype=dtype, device=device)[None, None] / orig
    phases = -torch.arange(0, new, dtype=dtype, device=device)[:, None, None] / new
    t = ((phases + taps) * base).clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    scale = base / orig
    kernel = torch.where(t == 0, torch.tensor(1.0, dtype=dtype, device=device), t.sin() / t) * (window * scale)
    return kernel, width


def resample(wave: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """wave [..., N] at orig_sr -> [..., ceil(new * N / orig)] at new_sr (rates reduced by their gcd)."""
    if orig_sr == new_sr:
        return wave
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new, wave.dtype, wave.device)
    shape = wave.shape
    x = wave.reshape(-1, shape[-1])
    n = x.shape[-1]
    x = F.pad(x[:, None], (width, width + orig))
    y = F.conv1d(x, kernel, stride=orig)                  # [B, new, frames]: one row per output phase
    y = y.transpose(1, 2).reshape(x.shape[0], -1)         # interleave the phases
    y = y[:, : math.ceil(new * n / orig)]
    return y.reshape(*shape[:-1], y.shape[-1])
