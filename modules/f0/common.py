"""What every F0 extractor shares: the output contract, input checking and strict weight loading.

Contract: 16 kHz mono wave [N] -> f0 in Hz, float64 numpy [N // 160 + 1] (100 frames/s, frame i centred on
sample 160*i), 0 where the frame is unvoiced. This is the frame grid of the original RMVPE `infer_from_audio`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
import torch
import torch.nn as nn

from modules import weights

SAMPLE_RATE = 16000
HOP_LENGTH = 160           # 10 ms frames
MIN_SAMPLES = 1024         # one full analysis window; shorter input cannot be reflect-padded


class F0WeightsError(weights.WeightsError):
    """A weights file cannot be read or does not fit the network; the message names the file and every bad key."""


class F0Extractor(Protocol):
    """Common interface of the pitch trackers in this package."""

    name: str
    default_threshold: float  # voicing threshold on the peak salience used when `threshold` is None
    device: torch.device

    def extract(self, wave_16k: np.ndarray | torch.Tensor, threshold: float | None = None) -> np.ndarray:
        """16 kHz mono wave [N] -> f0 in Hz, float64 [N // 160 + 1], 0 for unvoiced frames."""
        ...


def n_f0_frames(n_samples: int) -> int:
    return n_samples // HOP_LENGTH + 1


def as_wave(wave_16k: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Validate a 16 kHz mono wave and return it as float32 [N] on `device`."""
    wave = torch.as_tensor(wave_16k)
    if wave.dim() == 2 and 1 in wave.shape:
        wave = wave.reshape(-1)
    if wave.dim() != 1:
        raise ValueError(f"expected a mono wave [N] at 16 kHz, got shape {tuple(wave.shape)}")
    if wave.numel() < MIN_SAMPLES:
        raise ValueError(f"wave has {wave.numel()} samples; F0 extraction needs at least {MIN_SAMPLES} "
                         f"({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms at 16 kHz)")
    wave = wave.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(wave).all()):
        raise ValueError("wave contains NaN or infinite samples")
    return wave


def read_weights(path: str | Path) -> dict:
    """torch.load a weights file safely (tensors and plain containers only) onto the CPU."""
    return weights.read_weights(path, "weights", F0WeightsError)


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str) -> None:
    """Strict load that lists every missing, unexpected and mis-shaped key in one F0WeightsError."""
    weights.load_state_strict(model, state, what, source, F0WeightsError)
