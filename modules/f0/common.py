"""What every F0 extractor shares: the output contract, input checking and strict weight loading.

Contract (F0Extractor): 16 kHz mono wave [N] -> f0 in Hz, float64 numpy [N // 160 + 1] (100 frames/s, frame i
centred on sample 160*i), 0 where the frame is unvoiced. This is the frame grid of the original RMVPE `infer_from_audio`.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from modules import weights
from modules.audio import FRONTEND_RATE

HOP_LENGTH = 160           # 10 ms frames
MIN_SAMPLES = 1024         # one full analysis window; shorter input cannot be reflect-padded


class F0WeightsError(weights.WeightsError):
    """A weights file cannot be read or does not fit the network; the message names the file and every bad key."""


class F0Extractor(nn.Module, ABC):
    """What RMVPE and FCPE share: 16 kHz mono wave [N] -> f0 in Hz, float64 numpy [N // 160 + 1], 0 where unvoiced.

    Both compute a log-mel, turn it into salience over 360 pitch bins and decode the peak; a frame is voiced when
    its peak salience is above `threshold`, which is fixed when the extractor is built (None: the tracker's own
    default). `with_threshold` gives the same network at another threshold.
    """

    name: str
    default_threshold: float

    def __init__(self, model: nn.Module, threshold: float | None = None):
        super().__init__()
        self.model = model.eval()
        self.threshold = self.default_threshold if threshold is None else float(threshold)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abstractmethod
    def mel(self, wave_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[N] -> log-mel [128, N // 160 + 1] on the extractor's device."""

    @abstractmethod
    def salience(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel [128, T] -> salience [T, 360]."""

    @abstractmethod
    def decode(self, salience: np.ndarray) -> np.ndarray:
        """Salience [T, 360] (float32 numpy) -> f0 in Hz, float64 [T], 0 where the peak is <= self.threshold."""

    @torch.no_grad()
    def forward(self, wave_16k: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.decode(self.salience(self.mel(wave_16k)).float().cpu().numpy())

    def with_threshold(self, threshold: float | None) -> "F0Extractor":
        """The same network (shared, not copied) at another voicing threshold."""
        other = copy.copy(self)
        other.threshold = self.default_threshold if threshold is None else float(threshold)
        return other


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
                         f"({MIN_SAMPLES / FRONTEND_RATE * 1000:.0f} ms at 16 kHz)")
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
