"""FCPE pitch tracker with the weights that ship inside the `torchfcpe` wheel (`torchfcpe/assets/fcpe_c_v001.pt`,
MIT), so F0 extraction works offline. Our own network code: the `torchfcpe` package itself is never imported
(it imports torchaudio, which does not work beside this torch), only its weights file is read.

    wave_16k [N] -> log-mel [128, N // 160 + 1] (Slaney, 0..8000 Hz, n_fft 1024, hop 160, the HiFi-GAN framing)
      -> input convs -> 6 conformer convolution blocks (this checkpoint is conv-only: no attention)
      -> LayerNorm -> weight-normed Linear 512 -> 360 -> sigmoid = salience [T, 360] over a log-spaced cents table
      -> decode: weighted mean of the cents around the peak bin, 0 Hz where the peak is <= threshold.

Attribute names follow the checkpoint's `model` state dict, so it loads strictly.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from modules.audio import FRONTEND_RATE, mel_spectrogram
from modules.config import MelParams
from modules.f0.common import HOP_LENGTH, F0Extractor, F0WeightsError, as_wave, load_strict, n_f0_frames, read_weights
from modules.linear import Linear
from modules.weight_norm import fold_weight_norm, legacy_weight_norm

BUNDLED_FILE = "assets/fcpe_c_v001.pt"  # inside the installed torchfcpe package
DEFAULT_THRESHOLD = 0.006               # torchfcpe's own inference default
MEL = MelParams(sampling_rate=FRONTEND_RATE, n_fft=1024, win_length=1024, hop_length=HOP_LENGTH,
                n_mels=128, fmin=0.0, fmax=8000.0)


def bundled_fcpe_path() -> Path:
    """Path of the weights file in the installed torchfcpe wheel, found without importing the package."""
    spec = importlib.util.find_spec("torchfcpe")
    if spec is None or not spec.submodule_search_locations:
        raise F0WeightsError("the FCPE weights ship in the torchfcpe wheel, which is not installed; install it with "
                             "`pip install --no-deps torchfcpe==0.0.4` (it must not pull in torchaudio)")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise F0WeightsError(f"{path}: not found in the installed torchfcpe package")
    return path


class Transpose(nn.Module):
    """Swap two axes (lets the conformer conv module stay one Sequential, as the checkpoint's indices expect)."""

    def __init__(self, dim0: int, dim1: int):
        super().__init__()
        self.dims = (dim0, dim1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(*self.dims)


class DepthwiseConv1d(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConformerConv(nn.Module):
    """LayerNorm -> pointwise conv to 2x(2*dim) -> GLU -> depthwise conv (k=31) -> SiLU -> pointwise conv to dim.
    [B, T, dim] -> [B, T, dim]."""

    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 31):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            Transpose(1, 2),                 # to [B, C, T] for the convolutions
            nn.Conv1d(dim, 2 * inner, 1),
            nn.GLU(dim=1),
            DepthwiseConv1d(inner, kernel_size),
            nn.SiLU(),
            nn.Conv1d(inner, dim, 1),
            Transpose(1, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvOnlyConformerLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conformer = ConformerConv(dim)
        # Pre-attention norm of the attention variant; stored in the checkpoint but unused without attention.
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conformer(x)


class ConformerStack(nn.Module):
    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        self.encoder_layers = nn.ModuleList([ConvOnlyConformerLayer(dim) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder_layers:
            x = layer(x)
        return x


class FCPENet(nn.Module):
    """Log-mel [B, 128, T] -> salience [B, T, 360] in (0, 1); `cent_table` [360] gives each bin's cents."""

    def __init__(self, n_mels: int = 128, n_bins: int = 360, dim: int = 512, n_layers: int = 6,
                 f0_min: float = 32.70, f0_max: float = 1975.5):
        super().__init__()
        self.input_stack = nn.Sequential(
            nn.Conv1d(n_mels, dim, 3, padding=1),
            nn.GroupNorm(4, dim),
            nn.LeakyReLU(),
            nn.Conv1d(dim, dim, 3, padding=1),
        )
        self.net = ConformerStack(dim, n_layers)
        self.norm = nn.LayerNorm(dim)
        self.output_proj = legacy_weight_norm(Linear(dim, n_bins))
        # Both buffers come with the checkpoint; the defaults here are what it stores (cents above 10 Hz).
        cents = lambda hz: 1200.0 * float(np.log2(hz / 10.0))  # noqa: E731
        self.register_buffer("cent_table", torch.linspace(cents(f0_min), cents(f0_max), n_bins))
        self.register_buffer("gaussian_blurred_cent_mask", torch.tensor(cents(f0_max)))  # training-only

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.input_stack(mel).transpose(1, 2)  # [B, T, dim]
        x = self.norm(self.net(x))
        return torch.sigmoid(self.output_proj(x))


def salience_to_f0(salience: np.ndarray, cent_table: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Salience [T, 360] -> f0 in Hz [T] (float64), 0 where the frame's peak is <= threshold.

    Salience-weighted mean of the cents of the 9 bins around the peak; near the edges the window is clamped
    to the table (edge bins repeat), as torchfcpe's local-argmax decoder does.
    """
    salience = salience.astype(np.float64)
    peak = np.argmax(salience, axis=1)
    window = np.clip(peak[:, None] + np.arange(-4, 5), 0, salience.shape[1] - 1)  # [T, 9]
    weights = np.take_along_axis(salience, window, axis=1)
    weight_total = weights.sum(axis=1)
    voiced = (salience.max(axis=1) > threshold) & (weight_total > 0)
    cents = np.divide((weights * cent_table[window]).sum(axis=1), weight_total,
                      out=np.zeros(len(salience)), where=voiced)
    return np.where(voiced, 10.0 * 2.0 ** (cents / 1200.0), 0.0)


class FCPE(F0Extractor):
    """FCPE network + its log-mel front end + decoding (see F0Extractor)."""

    name = "fcpe"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, model: FCPENet, threshold: float | None = None):
        super().__init__(model, threshold)
        self.cent_table = model.cent_table.detach().cpu().double().numpy()  # float64 decoding, on the CPU

    @torch.no_grad()
    def mel(self, wave_16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        wave = as_wave(wave_16k, self.device)
        mel = mel_spectrogram(wave[None], MEL)[0]  # [128, N // 160]: the uncentred framing is one frame short
        n_frames = n_f0_frames(wave.numel())
        return torch.cat([mel, mel[:, -1:].expand(-1, n_frames - mel.shape[1])], dim=1)

    @torch.no_grad()
    def salience(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model(mel.to(self.device, torch.float32)[None])[0]

    def decode(self, salience: np.ndarray) -> np.ndarray:
        return salience_to_f0(salience, self.cent_table, self.threshold)


def load_fcpe(weights: str | Path | Mapping | None = None, device: torch.device | str = "cpu",
              threshold: float | None = None) -> FCPE:
    """FCPE from the torchfcpe checkpoint ({'model': state dict, 'config_dict': ...}) or a bare state dict;
    None means the file bundled in the installed torchfcpe wheel. Strict: raises F0WeightsError on any mismatch."""
    if weights is None:
        weights = bundled_fcpe_path()
    checkpoint = weights if isinstance(weights, Mapping) else read_weights(weights)
    source = "<state dict>" if isinstance(weights, Mapping) else str(weights)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    config = checkpoint.get("config_dict", {}).get("model", {}) if isinstance(checkpoint, Mapping) else {}
    if config and (config.get("type") != "CFNaiveMelPE" or not config.get("conv_only", False)):
        raise F0WeightsError(f"{source}: only the conv-only CFNaiveMelPE FCPE model is supported, "
                             f"got type={config.get('type')!r}, conv_only={config.get('conv_only')!r}")
    model = FCPENet()
    load_strict(model, state, "FCPE (conv-only CFNaiveMelPE, 512 x 6)", source)
    return FCPE(fold_weight_norm(model).to(device), threshold)
