"""Speaker style encoder: CAM++ (3D-Speaker / FunASR) on an 80-bin Kaldi fbank, giving one 192-d vector per clip.

Seed-VC conditions the DiT on this vector. The pipeline is
    wave_16k [N] -> kaldi_fbank [T, 80] -> subtract the mean over time -> CAMPPlus -> [192].
CAMPPlus = a small 2-D conv front end over (frequency, time) ("FCM"), a TDNN, three densely connected TDNN blocks with
context-aware masking (CAM), mean+std pooling over time and a linear projection. Attribute names follow the
`campplus_cn_common.bin` checkpoint, so it loads strictly.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.audio import FRONTEND_RATE
from modules.weights import load_state_strict, read_weights

N_MELS = 80
EMBEDDING_DIM = 192

# -----------------------------------------------------------------------------
# Kaldi-compatible log-mel filterbank (torchaudio.compliance.kaldi.fbank with its defaults and dither 0)

PREEMPHASIS = 0.97
LOW_FREQ_HZ = 20.0


def _kaldi_mel(freq: float) -> float:
    # Kaldi's mel scale: 1127 * ln(1 + f / 700).
    return 1127.0 * math.log(1.0 + freq / 700.0)


@lru_cache(maxsize=16)
def _kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: int, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale from 20 Hz to Nyquist: [n_mels, n_fft // 2 + 1], built
    in float32 and cached per device and dtype.

    Kaldi builds the triangles in mel space (not Hz) and gives the Nyquist bin no weight. The arithmetic is
    float32 in torchaudio's order, which makes the fbank bit-identical to it (float64 filters move near-silent
    bins by up to 2e-3)."""
    mel_low, mel_high = _kaldi_mel(LOW_FREQ_HZ), _kaldi_mel(sample_rate / 2)
    step = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float32)[:, None]  # one row per filter
    left, centre, right = mel_low + index * step, mel_low + (index + 1.0) * step, mel_low + (index + 2.0) * step
    bin_hz = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    bin_mel = (1127.0 * (1.0 + bin_hz / 700.0).log())[None]  # [1, n_fft // 2]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.minimum(rising, falling).clamp_min(0.0)
    return F.pad(banks, (0, 1)).to(device=device, dtype=dtype)


def _povey_window(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Kaldi's default window: a symmetric Hann window raised to 0.85, [length].
    return torch.hann_window(length, periodic=False, device=device, dtype=dtype).pow(0.85)


def kaldi_fbank(wave: torch.Tensor, sample_rate: int = FRONTEND_RATE, n_mels: int = N_MELS) -> torch.Tensor:
    """Log mel filterbank energies, numerically like torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=n_mels,
    dither=0, sample_frequency=sample_rate) with every other option at its default.

    wave [N] or [1, N], float in about [-1, 1] (no 16-bit scaling) -> [T, n_mels], T = 1 + (N - 25 ms) // 10 ms
    (frames that would run past the end are dropped, Kaldi's snip_edges). Not mean-normalised.
    """
    if wave.dim() == 2:
        if wave.shape[0] != 1:
            raise ValueError(f"kaldi_fbank expects one channel, got shape {tuple(wave.shape)}")
        wave = wave[0]
    if wave.dim() != 1:
        raise ValueError(f"kaldi_fbank expects [N] or [1, N], got shape {tuple(wave.shape)}")
    if not wave.is_floating_point():
        wave = wave.float()
    frame_length, frame_shift = int(sample_rate * 0.025), int(sample_rate * 0.010)
    n_fft = 1 << (frame_length - 1).bit_length()  # next power of two: 400 -> 512
    if wave.numel() < frame_length:
        return wave.new_zeros(0, n_mels)

    frames = wave.unfold(0, frame_length, frame_shift)          # [T, frame_length], a view
    frames = frames - frames.mean(dim=1, keepdim=True)          # remove each frame's DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # the first sample is its own predecessor
    frames = frames - PREEMPHASIS * previous
    frames = frames * _povey_window(frame_length, wave.device, wave.dtype)
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2)       # [T, n_fft // 2 + 1], zero-padded to n_fft
    banks = _kaldi_mel_banks(n_mels, n_fft, sample_rate, wave.device, wave.dtype)
    # Floor at the dtype's epsilon before the log: float32 gives log(FLT_EPSILON) = -15.94 in silent bins.
    return (power @ banks.T).clamp_min(torch.finfo(wave.dtype).eps).log()  # [T, n_mels]


# -----------------------------------------------------------------------------
# CAM++ building blocks


class NormAct(nn.Module):
    """BatchNorm1d, optionally followed by ReLU; stored as `<name>.batchnorm.*` like the checkpoint."""

    def __init__(self, channels: int, relu: bool = True, affine: bool = True):
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu(x) if self.relu else x


class ResBlock2d(nn.Module):
    """ResNet basic block that downsamples only the frequency axis (stride (s, 1))."""

    def __init__(self, in_channels: int, channels: int, freq_stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(freq_stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()  # identity, unless the shape changes
        if freq_stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(freq_stride, 1), bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class FrequencyConvHead(nn.Module):
    """2-D conv front end ("FCM"): [B, F, T] -> [B, channels * F / 8, T]; frequency shrinks 8x, time is kept."""

    def __init__(self, n_mels: int = N_MELS, channels: int = 32, blocks_per_stage: tuple[int, int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        # Each stage halves frequency in its first block.
        self.layer1 = nn.Sequential(*[ResBlock2d(channels, channels, 2 if i == 0 else 1)
                                      for i in range(blocks_per_stage[0])])
        self.layer2 = nn.Sequential(*[ResBlock2d(channels, channels, 2 if i == 0 else 1)
                                      for i in range(blocks_per_stage[1])])
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * math.ceil(math.ceil(math.ceil(n_mels / 2) / 2) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x[:, None])))  # [B, C, F, T]
        x = self.layer2(self.layer1(x))               # [B, C, F/4, T]
        x = F.relu(self.bn2(self.conv2(x)))           # [B, C, F/8, T]
        return x.flatten(1, 2)                        # [B, C * F/8, T], channel-major


class TDNNLayer(nn.Module):
    """Conv1d ("same" padding for odd kernels) then BatchNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation, bias=False)
        self.nonlinear = NormAct(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class ContextAwareMask(nn.Module):
    """The CAM layer: a local conv whose output is gated by a sigmoid mask computed from utterance-level
    context (global mean) plus segment-level context (mean over 100-frame segments)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 reduction: int = 2, segment_frames: int = 100):
        super().__init__()
        self.segment_frames = segment_frames
        self.linear_local = nn.Conv1d(in_channels, out_channels, kernel_size,
                                      padding=(kernel_size - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(in_channels, in_channels // reduction, 1)
        self.linear2 = nn.Conv1d(in_channels // reduction, out_channels, 1)

    def segment_mean(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, T] -> mean of each 100-frame segment (the last one may be shorter), broadcast back to [B, C, T].
        seg = F.avg_pool1d(x, self.segment_frames, self.segment_frames, ceil_mode=True)
        return seg.repeat_interleave(self.segment_frames, dim=-1)[..., :x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(dim=-1, keepdim=True) + self.segment_mean(x)  # [B, C, T]
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * mask


class DenseTDNNLayer(nn.Module):
    """Bottleneck (BN-ReLU, 1x1 conv to bn_channels, BN-ReLU) then a CAM layer producing `growth` new channels."""

    def __init__(self, in_channels: int, growth: int, bn_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.nonlinear1 = NormAct(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = NormAct(bn_channels)
        self.cam_layer = ContextAwareMask(bn_channels, growth, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class DenseTDNNBlock(nn.Module):
    """DenseNet-style stack: each layer sees every earlier output; [B, C, T] -> [B, C + n_layers * growth, T]."""

    def __init__(self, n_layers: int, in_channels: int, growth: int, bn_channels: int, kernel_size: int,
                 dilation: int):
        super().__init__()
        for i in range(n_layers):
            self.add_module(f"tdnnd{i + 1}", DenseTDNNLayer(in_channels + i * growth, growth, bn_channels,
                                                            kernel_size, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 conv that shrinks the channels between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = NormAct(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class EmbeddingLayer(nn.Module):
    """Pooled statistics [B, C] -> embedding [B, D]: a 1x1 conv, then BatchNorm without scale/shift."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = NormAct(out_channels, relu=False, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x[..., None])[..., 0])


def mean_std_pool(x: torch.Tensor) -> torch.Tensor:
    # [B, C, T] -> [B, 2C]: mean and unbiased std over time.
    return torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1)


# -----------------------------------------------------------------------------
# The model


class CAMPPlus(nn.Module):
    """CAM++ speaker encoder: mean-normalised fbank [B, T, n_mels] -> embedding [B, embedding_dim]."""

    def __init__(self, n_mels: int = N_MELS, embedding_dim: int = EMBEDDING_DIM, growth: int = 32,
                 bottleneck_factor: int = 4, init_channels: int = 128):
        super().__init__()
        self.head = FrequencyConvHead(n_mels)
        stages = OrderedDict(tdnn=TDNNLayer(self.head.out_channels, init_channels, 5, stride=2))  # halves time
        channels = init_channels
        for i, (n_layers, dilation) in enumerate(zip((12, 24, 16), (1, 2, 2)), start=1):
            stages[f"block{i}"] = DenseTDNNBlock(n_layers, channels, growth, bottleneck_factor * growth, 3, dilation)
            channels += n_layers * growth
            stages[f"transit{i}"] = TransitLayer(channels, channels // 2)
            channels //= 2
        stages["out_nonlinear"] = NormAct(channels)
        self.xvector = nn.Sequential(stages)
        self.dense = EmbeddingLayer(2 * channels, embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.head(feats.transpose(1, 2))  # [B, 320, T]
        x = self.xvector(x)                   # [B, 512, T/2]
        return self.dense(mean_std_pool(x))   # [B, embedding_dim]


# -----------------------------------------------------------------------------
# Loading and use

# The released file predates moving pooling and projection out of `xvector`.
_LEGACY_PREFIXES = {"xvector.stats": "stats", "xvector.dense": "dense"}


def _remap_legacy_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for old, new in _LEGACY_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def load_campplus(weights: str | Path | Mapping[str, torch.Tensor],
                  device: torch.device | str = "cpu") -> CAMPPlus:
    """CAMPPlus(80, 192) with weights from a file (e.g. campplus_cn_common.bin) or a state dict, in eval mode.

    The load is strict: any missing, unexpected or mis-shaped key raises a WeightsError that lists them.
    """
    state = weights if isinstance(weights, Mapping) else read_weights(weights, "CAM++ weights")
    # The released file has old key names (xvector.stats*, xvector.dense*) and was saved from CUDA tensors.
    state = _remap_legacy_keys(state)
    model = CAMPPlus()
    source = "<state dict>" if isinstance(weights, Mapping) else str(weights)
    load_state_strict(model, state, "CAMPPlus(80, 192)", source)
    return model.to(device).eval()


class StyleEncoder(nn.Module):
    """The style front-end: 16 kHz clip [N] -> CAM++ speaker style [1, 192] (see style_embedding)."""

    def __init__(self, model: CAMPPlus):
        super().__init__()
        self.model = model.eval()

    def forward(self, wave_16k: torch.Tensor) -> torch.Tensor:
        return style_embedding(self.model, wave_16k)


@torch.no_grad()
def style_embedding(model: CAMPPlus, wave_16k: torch.Tensor) -> torch.Tensor:
    """Speaker style vector of one 16 kHz clip: wave [N] or [1, N] -> [1, 192] (on the model's device)."""
    device = next(model.parameters()).device
    feats = kaldi_fbank(wave_16k.to(device=device, dtype=torch.float32))  # [T, 80]
    feats = feats - feats.mean(dim=0, keepdim=True)  # per-utterance mean normalisation, as in training
    return model(feats[None])
