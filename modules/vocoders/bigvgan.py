"""BigVGAN v2 generator, inference only: log-mel [B, n_mels, T] -> waveform [B, 1, T * hop].

Loads NVIDIA's released `bigvgan_generator.pt` ({'generator': state dict with weight-norm `weight_g`/`weight_v`})
with its `config.json`, strictly, then folds the weight norm. Attribute names follow that state dict.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.weight_norm import fold_weight_norm_state, legacy_weight_norm
from modules.weights import assign_state, build_empty, check_state_strict, read_weights


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass [1, 1, kernel_size] (cutoff and transition width as fractions of the rate)."""
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95  # Kaiser's formula, in dB
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = torch.arange(-half, half) + 0.5 if kernel_size % 2 == 0 else torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)  # unit DC gain


class UpSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))
        self._phase_weights: dict = {}

    def phase_weight(self, channels: int, dtype: torch.dtype) -> torch.Tensor:
        """[C * r, 1, taps] grouped-conv weight of the r polyphase filters, gain r included (exact: r is 2).
        Built once per (channels, dtype, device), not at every call."""
        key = (channels, dtype, self.filter.device)
        weight = self._phase_weights.get(key)
        if weight is None:
            r, taps = self.ratio, self.filter.shape[-1] // self.ratio
            phases = self.filter.view(taps, r).t().flip(-1)           # [r, taps]: phase p, tap order for conv1d
            weight = (r * phases).repeat(channels, 1)[:, None, :].to(dtype).contiguous()
            self._phase_weights = {key: weight}                       # one entry: the filter never changes
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, T] -> [B, C, ratio * T]: zero-stuffing followed by the low-pass, done in polyphase form.

        conv_transpose1d(x, h, stride=r) gives y[r*m + p] = sum_j h[p + r*j] * x[m - j]; computing the r phases
        with one grouped conv1d is the same sum, and avoids torch's very slow transposed-conv path on CPU.
        """
        B, C, _ = x.shape
        r, taps = self.ratio, self.filter.shape[-1] // self.ratio
        # replicate padding by `pad`, then zeros by taps - 1, in one padded copy
        x = F.pad(F.pad(x, (self.pad, self.pad), mode="replicate"), (taps - 1, taps - 1))
        y = F.conv1d(x, self.phase_weight(C, x.dtype), groups=C)                # [B, C * r, L]
        y = y.view(B, C, r, -1).transpose(2, 3).reshape(B, C, -1)            # interleave the phases
        return y[..., self.crop_left: -self.crop_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.pad = (kernel_size // 2 - int(kernel_size % 2 == 0), kernel_size // 2)
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[1]
        x = F.pad(x, self.pad, mode="replicate")
        return F.conv1d(x, self.filter.expand(C, -1, -1), stride=self.stride, groups=C)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta, per channel; alpha and beta stored as logs when `log_scale`."""

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__()
        self.log_scale = log_scale
        init = torch.zeros(channels) if log_scale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha[None, :, None], self.beta[None, :, None]
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        # x + sin(alpha x)^2 / beta in three passes over x (mul, sin, square in place, fused multiply-add)
        # instead of five, with one temporary instead of four.
        return torch.addcmul(x, torch.sin(x * alpha).square_(), 1.0 / (beta + 1e-9))


class AntiAliasedActivation(nn.Module):
    """Upsample 2x, apply the periodic activation, low-pass and downsample 2x (limits aliasing)."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(2, 12)
        self.downsample = DownSample1d(2, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock(nn.Module):
    """Anti-aliased multi-periodicity residual block ("resblock 1"): per dilation, act-conv-act-conv + skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], log_scale: bool):
        super().__init__()
        conv = lambda d: legacy_weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                                      padding=(kernel_size * d - d) // 2))
        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedActivation(SnakeBeta(channels, log_scale))
                                         for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGAN(nn.Module):
    def __init__(self, h: Mapping):
        super().__init__()
        if h.get("resblock", "1") != "1" or h.get("activation", "snakebeta") != "snakebeta":
            raise ValueError("only BigVGAN v2 generators (resblock '1', snakebeta) are supported; "
                             f"config has resblock={h.get('resblock')!r}, activation={h.get('activation')!r}")
        self.sampling_rate = h.get("sampling_rate")
        self.hop_length = math.prod(h["upsample_rates"])
        self.n_resblocks = len(h["resblock_kernel_sizes"])
        self.use_tanh_at_final = h.get("use_tanh_at_final", True)
        ch0 = h["upsample_initial_channel"]
        log_scale = h.get("snake_logscale", True)
        self.conv_pre = legacy_weight_norm(nn.Conv1d(h["num_mels"], ch0, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            # Stage i maps ch0 // 2**i channels to ch0 // 2**(i + 1) (floor division, as the released configs
            # are read; "twice the output" differs when ch0 is not divisible by 2**len(upsample_rates)).
            # A one-element list per stage: part of the released key names (`ups.{i}.0.*`).
            self.ups.append(nn.ModuleList([legacy_weight_norm(nn.ConvTranspose1d(
                ch0 // 2 ** i, ch0 // 2 ** (i + 1), kernel, rate, padding=(kernel - rate) // 2))]))
        for i in range(len(self.ups)):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(AMPBlock(ch, k, d, log_scale))
        self.activation_post = AntiAliasedActivation(SnakeBeta(ch, log_scale))
        self.conv_post = legacy_weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3, bias=h.get("use_bias_at_final", True)))

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None, clamp: bool = True) -> torch.Tensor:
        """mel [B, n_mels, T] -> [B, 1, T * hop] in [-1, 1] (clamp=False returns the conv_post output). BigVGAN
        draws no noise; `generator` is taken so every vocoder has HiFT's call signature."""
        x = self.conv_pre(mel)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * self.n_resblocks: (i + 1) * self.n_resblocks]
            x = sum(block(x) for block in blocks) / self.n_resblocks  # multi-receptive-field fusion
        x = self.conv_post(self.activation_post(x))
        if self.use_tanh_at_final:
            return torch.tanh(x)
        return x.clamp(-1.0, 1.0) if clamp else x


def load_bigvgan(model_dir: str | Path | None = None, *, config_path: str | Path | None = None,
                 weights_path: str | Path | None = None, device: torch.device | str = "cpu") -> BigVGAN:
    """Load `config.json` + `bigvgan_generator.pt` (from `model_dir`, or given one by one), strictly; fold the
    weight norm; eval mode on `device`."""
    config_path = Path(config_path or Path(model_dir) / "config.json")
    weights_path = Path(weights_path or Path(model_dir) / "bigvgan_generator.pt")
    with open(config_path, encoding="utf-8") as f:
        h = json.load(f)
    # Built on the meta device; the weight norm is folded in the loaded state dict pair by pair and the
    # model takes the folded tensors, so neither a second copy nor both weight forms are ever held.
    model = build_empty(lambda: BigVGAN(h))
    state = read_weights(weights_path, "BigVGAN generator", mmap=False)
    state = state.get("generator", state) if isinstance(state, Mapping) else state
    check_state_strict(model, state, "BigVGAN", str(weights_path))
    fold_weight_norm_state(model, state)
    assign_state(model, state)
    return model.to(device).eval()
