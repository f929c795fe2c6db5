"""HiFT (CosyVoice's HiFTNet) vocoder for the 22.05 kHz real-time preset: neural source filter + iSTFT.

mel [B, 80, T] -> predicted F0 -> harmonic sine source at the audio rate -> its STFT is injected at every
upsampling stage -> the last conv predicts an (n_fft/2 + 1)-bin magnitude and phase -> iSTFT -> [B, T * 256].
Attribute names follow CosyVoice's `hift.pt`. The source's random phases and noise take a torch.Generator,
so the output is reproducible.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from modules.conv import Conv1d
from modules.linear import Linear
from modules.weight_norm import fold_weight_norm, legacy_weight_norm
from modules.weights import load_state_strict, read_weights


@lru_cache(maxsize=8)
def _stft_window(n_fft: int, device: torch.device) -> torch.Tensor:
    """scipy's periodic Hann ("fftbins"), as CosyVoice uses, [n_fft] float32; built once per device."""
    return torch.from_numpy(np.hanning(n_fft + 1)[:-1].astype(np.float32)).to(device)


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, per channel (linear-scale alpha)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        conv = lambda d: legacy_weight_norm(Conv1d(channels, channels, kernel_size, dilation=d,
                                                   padding=(kernel_size * d - d) // 2))
        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2):
            x = x + c2(a2(c1(a1(x))))
        return x


class HarmonicSource(nn.Module):
    """F0 [B, 1, N] at the audio rate -> one merged excitation [B, 1, N]: sines of f0 * (1..H+1) with random
    start phases (the fundamental's is 0) plus noise, voiced where f0 > threshold, mixed by a learned linear."""

    def __init__(self, sampling_rate: int, n_harmonics: int, sine_amp: float, noise_std: float,
                 voiced_threshold: float):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.n_harmonics = n_harmonics
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.voiced_threshold = voiced_threshold
        self.l_linear = Linear(n_harmonics + 1, 1)

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        B, _, N = f0.shape
        with torch.no_grad():
            harmonics = torch.arange(1, self.n_harmonics + 2, device=f0.device, dtype=f0.dtype)[None, :, None]
            cycles = torch.cumsum(f0 * harmonics / self.sampling_rate, dim=-1) % 1     # [B, H+1, N]
            phase = (torch.rand(B, self.n_harmonics + 1, 1, generator=generator, device=f0.device) * 2 - 1) * math.pi
            phase[:, 0] = 0
            sines = self.sine_amp * torch.sin(2 * np.pi * cycles + phase)
            voiced = (f0 > self.voiced_threshold).float()
            noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
            noise = noise_amp * torch.randn(sines.shape, generator=generator, device=f0.device)
            sines = sines * voiced + noise
        return torch.tanh(self.l_linear(sines.transpose(1, 2))).transpose(1, 2)


class ConvRNNF0Predictor(nn.Module):
    """mel [B, 80, T] -> F0 [B, T] (Hz): five weight-normed conv+ELU layers, then a linear head and |.|."""

    def __init__(self, num_class: int = 1, in_channels: int = 80, cond_channels: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [legacy_weight_norm(nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3,
                                                    padding=1)), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


class HiFTGenerator(nn.Module):
    def __init__(self, in_channels: int = 80, base_channels: int = 512, nb_harmonics: int = 8,
                 sampling_rate: int = 22050, nsf_alpha: float = 0.1, nsf_sigma: float = 0.003,
                 nsf_voiced_threshold: float = 10, upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                 istft_params: Mapping = {"n_fft": 16, "hop_len": 4}, resblock_kernel_sizes=(3, 7, 11),
                 resblock_dilation_sizes=((1, 3, 5),) * 3, source_resblock_kernel_sizes=(7, 11),
                 source_resblock_dilation_sizes=((1, 3, 5),) * 2, lrelu_slope: float = 0.1,
                 audio_limit: float = 0.99, f0_predictor: nn.Module | None = None):
        super().__init__()
        self.n_fft, self.istft_hop = istft_params["n_fft"], istft_params["hop_len"]
        self.sampling_rate = sampling_rate
        self.hop_length = int(np.prod(upsample_rates)) * self.istft_hop
        self.lrelu_slope = lrelu_slope
        self.audio_limit = audio_limit
        self.n_resblocks = len(resblock_kernel_sizes)
        self.m_source = HarmonicSource(sampling_rate, nb_harmonics, nsf_alpha, nsf_sigma, nsf_voiced_threshold)
        self.conv_pre = legacy_weight_norm(nn.Conv1d(in_channels, base_channels, 7, 1, padding=3))
        self.ups = nn.ModuleList(
            legacy_weight_norm(nn.ConvTranspose1d(base_channels // 2 ** i, base_channels // 2 ** (i + 1), k, u,
                                                  padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)))
        # The source STFT (n_fft + 2 channels at the final frame rate) is strided down to each stage's rate.
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        stage_strides = np.cumprod([1] + list(upsample_rates)[::-1][:-1])[::-1]
        for i, (stride, k, d) in enumerate(zip(stage_strides, source_resblock_kernel_sizes,
                                               source_resblock_dilation_sizes)):
            ch = base_channels // 2 ** (i + 1)
            stride = int(stride)
            self.source_downs.append(nn.Conv1d(self.n_fft + 2, ch, 1, 1) if stride == 1 else
                                     nn.Conv1d(self.n_fft + 2, ch, stride * 2, stride, padding=stride // 2))
            self.source_resblocks.append(ResBlock(ch, k, list(d)))
        self.resblocks = nn.ModuleList(ResBlock(base_channels // 2 ** (i + 1), k, list(d))
                                       for i in range(len(self.ups))
                                       for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes))
        self.conv_post = legacy_weight_norm(nn.Conv1d(base_channels // 2 ** len(self.ups), self.n_fft + 2, 7, 1,
                                                      padding=3))
        self.f0_predictor = f0_predictor if f0_predictor is not None else ConvRNNF0Predictor()

    def _source_stft(self, f0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        f0_audio = F.interpolate(f0[:, None], scale_factor=float(self.hop_length), mode="nearest")  # [B, 1, N]
        source = self.m_source(f0_audio, generator)[:, 0]                                            # [B, N]
        window = _stft_window(self.n_fft, source.device)
        spec = torch.view_as_real(torch.stft(source, self.n_fft, self.istft_hop, self.n_fft, window=window,
                                             return_complex=True))
        return torch.cat([spec[..., 0], spec[..., 1]], dim=1)                # [B, n_fft + 2, frames]

    def forward(self, mel: torch.Tensor, f0: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """mel [B, 80, T] -> wave [B, 1, T * hop]; f0 [B, T] Hz defaults to the built-in predictor's; `generator`
        draws the harmonic source's noise and phases."""
        with torch.autocast(mel.device.type, enabled=False):
            mel = mel.float()
            if f0 is None:
                f0 = self.f0_predictor(mel)
            source = self._source_stft(f0, generator)
            x = self.conv_pre(mel)
            for i, up in enumerate(self.ups):
                x = up(F.leaky_relu(x, self.lrelu_slope))
                if i == len(self.ups) - 1:
                    x = F.pad(x, (1, 0), mode="reflect")
                x = x + self.source_resblocks[i](self.source_downs[i](source))
                blocks = self.resblocks[i * self.n_resblocks: (i + 1) * self.n_resblocks]
                x = sum(block(x) for block in blocks) / self.n_resblocks
            x = self.conv_post(F.leaky_relu(x))
            half = self.n_fft // 2 + 1
            magnitude = torch.exp(x[:, :half]).clamp(max=1e2)
            phase = torch.sin(x[:, half:])
            spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
            wave = torch.istft(spec, self.n_fft, self.istft_hop, self.n_fft, window=_stft_window(self.n_fft, mel.device))
            return wave.clamp(-self.audio_limit, self.audio_limit)[:, None]


def build_hift(config_path: str | Path) -> HiFTGenerator:
    with open(config_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    return HiFTGenerator(**cfg["hift"], f0_predictor=ConvRNNF0Predictor(**cfg["f0_predictor"]))


def load_hift(config_path: str | Path, weights_path: str | Path, device: torch.device | str = "cpu") -> HiFTGenerator:
    """configs/hifigan.yml + CosyVoice `hift.pt`, strictly; weight norm folded; eval mode on `device`."""
    model = build_hift(config_path)
    load_state_strict(model, read_weights(weights_path, "HiFT"), "HiFTGenerator", str(weights_path))
    return fold_weight_norm(model).to(device).eval()
