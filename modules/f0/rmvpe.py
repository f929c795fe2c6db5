"""RMVPE pitch tracker (the F0 model Seed-VC v1 uses), loading `rmvpe.pt` from lj1995/VoiceConversionWebUI.

    wave_16k [N] -> log-mel [128, T] (HTK, 30..8000 Hz, n_fft 1024, hop 160, centred), T = N // 160 + 1
      -> E2E: a deep residual U-Net over (time, mel), a 3-channel conv, a bidirectional GRU, Linear 512 -> 360,
         sigmoid = salience [T, 360] over 20-cent bins
      -> decode: weighted mean of the cents around the peak bin, 0 Hz where the peak is <= threshold.

Attribute names follow the checkpoint (`E2E(4, 1, (2, 2))`), so it loads strictly.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.audio import FRONTEND_RATE, mel_filters
from modules.f0.common import HOP_LENGTH, F0Extractor, as_wave, load_strict, read_weights
from modules.linear import Linear

N_MELS = 128
N_FFT = 1024
MEL_FMIN, MEL_FMAX = 30.0, 8000.0
LOG_CLAMP = 1e-5
N_BINS = 360                       # salience classes, 20 cents apart
CENTS_OF_BIN0 = 1997.3794084376191  # cents above 10 Hz of bin 0 (about 31.7 Hz)
TIME_MULTIPLE = 32                 # five 2x poolings over time: the U-Net needs T % 32 == 0
DEFAULT_THRESHOLD = 0.03           # what Seed-VC passes as `thred`

# -----------------------------------------------------------------------------
# Front end


@lru_cache(maxsize=4)
def _htk_mel_basis(device: torch.device) -> torch.Tensor:
    basis = mel_filters(FRONTEND_RATE, N_FFT, N_MELS, MEL_FMIN, MEL_FMAX, htk=True)
    return torch.from_numpy(basis).float().to(device)  # [128, 513]


def rmvpe_mel(wave: torch.Tensor) -> torch.Tensor:
    """Natural-log HTK mel magnitude: wave [B, N] or [N] -> [B, 128, N // 160 + 1] (or [128, T])."""
    squeeze = wave.dim() == 1
    wave = wave[None] if squeeze else wave
    window = torch.hann_window(N_FFT, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window,
                      center=True, pad_mode="reflect", return_complex=True)
    magnitude = spec.abs()  # [B, 513, T]
    mel = torch.log(torch.clamp(_htk_mel_basis(wave.device) @ magnitude, min=LOG_CLAMP))
    return mel[0] if squeeze else mel


# -----------------------------------------------------------------------------
# Network


class ResidualConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers plus a skip (a 1x1 conv when the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.01),
            nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class ResidualStage(nn.Module):
    """n_blocks residual blocks at one resolution (encoder and bottleneck stages)."""

    def __init__(self, in_channels: int, out_channels: int, n_blocks: int):
        super().__init__()
        self.conv = nn.ModuleList([ResidualConvBlock(in_channels, out_channels)] +
                                  [ResidualConvBlock(out_channels, out_channels) for _ in range(n_blocks - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.conv:
            x = block(x)
        return x


class Encoder(nn.Module):
    """Input BatchNorm, then stages of doubling width, each followed by 2x2 average pooling."""

    def __init__(self, n_stages: int, n_blocks: int, pool: tuple[int, int], base_channels: int = 16):
        super().__init__()
        self.bn = nn.BatchNorm2d(1, momentum=0.01)
        widths = [1] + [base_channels * 2 ** i for i in range(n_stages)]
        self.layers = nn.ModuleList([ResidualStage(widths[i], widths[i + 1], n_blocks) for i in range(n_stages)])
        self.pool = nn.AvgPool2d(pool)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        x = self.bn(x)
        for stage in self.layers:
            x = stage(x)
            skips.append(x)  # full-resolution features for the matching decoder stage
            x = self.pool(x)
        return x, skips


class Bottleneck(nn.Module):
    """Stages at the lowest resolution; the first doubles the width."""

    def __init__(self, in_channels: int, n_stages: int, n_blocks: int):
        super().__init__()
        out_channels = 2 * in_channels
        self.layers = nn.ModuleList([ResidualStage(in_channels, out_channels, n_blocks)] +
                                    [ResidualStage(out_channels, out_channels, n_blocks) for _ in range(n_stages - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.layers:
            x = stage(x)
        return x


class DecoderStage(nn.Module):
    """Transposed conv (2x upsampling, half the width), concatenate the encoder skip, residual blocks."""

    def __init__(self, in_channels: int, n_blocks: int, stride: tuple[int, int]):
        super().__init__()
        out_channels = in_channels // 2
        # output_padding restores the exact 2x size lost to padding=1 on the strided axes
        output_padding = tuple(s - 1 for s in stride)
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=stride, padding=1,
                               output_padding=output_padding, bias=False),
            nn.BatchNorm2d(out_channels, momentum=0.01),
            nn.ReLU(),
        )
        self.conv2 = nn.ModuleList([ResidualConvBlock(2 * out_channels, out_channels)] +
                                   [ResidualConvBlock(out_channels, out_channels) for _ in range(n_blocks - 1)])

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.conv1(x), skip], dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class Decoder(nn.Module):
    def __init__(self, in_channels: int, n_stages: int, n_blocks: int, stride: tuple[int, int]):
        super().__init__()
        self.layers = nn.ModuleList([DecoderStage(in_channels // 2 ** i, n_blocks, stride) for i in range(n_stages)])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for stage, skip in zip(self.layers, reversed(skips)):
            x = stage(x, skip)
        return x


class DeepUnet(nn.Module):
    def __init__(self, n_blocks: int, pool: tuple[int, int], n_stages: int = 5, n_bottleneck: int = 4):
        super().__init__()
        self.encoder = Encoder(n_stages, n_blocks, pool)
        self.intermediate = Bottleneck(self.encoder.out_channels, n_bottleneck, n_blocks)
        self.decoder = Decoder(2 * self.encoder.out_channels, n_stages, n_blocks, pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class BiGRU(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class E2E(nn.Module):
    """Log-mel [B, 128, T] (T a multiple of 32) -> pitch salience [B, T, 360] in (0, 1)."""

    def __init__(self, n_blocks: int = 4, n_gru: int = 1, kernel_size: tuple[int, int] = (2, 2)):
        super().__init__()
        self.unet = DeepUnet(n_blocks, kernel_size)
        self.cnn = nn.Conv2d(16, 3, 3, padding=1)
        # Index 2 would be the (inactive at inference) dropout of the training code; it has no weights.
        self.fc = nn.Sequential(BiGRU(3 * N_MELS, 256, n_gru), Linear(512, N_BINS), nn.Sigmoid())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.transpose(1, 2)[:, None]         # [B, 1, T, 128]: time is the image height
        x = self.cnn(self.unet(x))               # [B, 3, T, 128]
        x = x.transpose(1, 2).flatten(2)         # [B, T, 384]
        return self.fc(x)


# -----------------------------------------------------------------------------
# Decoding (numpy, float64 like the original)

_CENTS = np.pad(20.0 * np.arange(N_BINS) + CENTS_OF_BIN0, (4, 4))  # [368], zero cents in the padding


def salience_to_cents(salience: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Salience [T, 360] -> cents above 10 Hz [T] (float64), 0 where the frame's peak is <= threshold.

    The estimate is the salience-weighted mean of the cents of the 9 bins around the peak. The salience is
    zero-padded by 4 bins on each side, so a peak at the edge averages over fewer real bins.
    """
    peak = np.argmax(salience, axis=1)
    padded = np.pad(salience, ((0, 0), (4, 4)))
    window = peak[:, None] + np.arange(9)                 # [T, 9] indices into the padded axis
    weights = np.take_along_axis(padded, window, axis=1)   # same dtype as the salience (float32 from the model)
    weighted_sum = np.sum(weights * _CENTS[window], axis=1)  # float64
    weight_total = np.sum(weights, axis=1)
    voiced = (np.max(salience, axis=1) > threshold) & (weight_total > 0)
    return np.divide(weighted_sum, weight_total, out=np.zeros(len(salience)), where=voiced)


def salience_to_f0(salience: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Salience [T, 360] -> f0 in Hz [T] (float64), 0 for unvoiced frames."""
    cents = salience_to_cents(salience, threshold)
    return np.where(cents > 0, 10.0 * 2.0 ** (cents / 1200.0), 0.0)


# -----------------------------------------------------------------------------
# Extractor


class RMVPE(F0Extractor):
    """RMVPE network + its log-mel front end + decoding (see F0Extractor)."""

    name = "rmvpe"
    default_threshold = DEFAULT_THRESHOLD

    @torch.no_grad()
    def mel(self, wave_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        return rmvpe_mel(as_wave(wave_16k, self.device))

    @torch.no_grad()
    def salience(self, mel: torch.Tensor) -> torch.Tensor:
        """The mel is zero-padded on the right to a multiple of 32 frames, and the padding's frames dropped."""
        n_frames = mel.shape[-1]
        n_pad = -n_frames % TIME_MULTIPLE
        mel = F.pad(mel.to(self.device, torch.float32), (0, n_pad))
        return self.model(mel[None])[0, :n_frames]

    def decode(self, salience: np.ndarray) -> np.ndarray:
        return salience_to_f0(salience, self.threshold)


def load_rmvpe(weights: str | Path | Mapping[str, torch.Tensor], device: torch.device | str = "cpu",
               threshold: float | None = None) -> RMVPE:
    """RMVPE from `rmvpe.pt` (or a state dict of the same layout); strict, raises F0WeightsError on any mismatch."""
    state = weights if isinstance(weights, Mapping) else read_weights(weights)
    source = "<state dict>" if isinstance(weights, Mapping) else str(weights)
    model = E2E(4, 1, (2, 2))
    load_strict(model, state, "RMVPE E2E(4, 1, (2, 2))", source)
    return RMVPE(model.to(device), threshold)
