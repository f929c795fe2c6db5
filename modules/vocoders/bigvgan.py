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

from modules.conv import Conv1d
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
    """Holds the 2x up-sampling low-pass (`filter`, a checkpoint buffer); applied by AntiAliasedActivation."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))


class LowPassFilter1d(nn.Module):
    """Holds the anti-aliasing low-pass before 2x down-sampling (`filter`, a checkpoint buffer)."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)


def snake(x: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x + sin^2(alpha x) * inv_beta (coefficients broadcast against x): four passes (mul, then sin, square and
    the fused multiply-add in place), one temporary. `inplace` overwrites x (not while autograd records)."""
    wave = (x * alpha).sin_().square_()
    return x.addcmul_(wave, inv_beta) if inplace else torch.addcmul(x, wave, inv_beta)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta, per channel (dim 1); alpha and beta stored as logs when `log_scale`."""

    def __init__(self, channels: int, log_scale: bool = True):
        super().__init__()
        self.log_scale = log_scale
        init = torch.zeros(channels) if log_scale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def coefficients(self, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, 1 / beta), shaped [1, C, 1, ...] to broadcast against a `dims`-dimensional [B, C, ...]."""
        shape = (1, -1) + (1,) * (dims - 2)
        alpha, beta = self.alpha.view(shape), self.beta.view(shape)
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        return alpha, 1.0 / (beta + 1e-9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, *self.coefficients(x.dim()))


def shifted_sum_(out: torch.Tensor, x: torch.Tensor, taps: list[float], accumulate: bool = False) -> None:
    """out (+)= sum_t taps[t] * x[..., t: t + L], L = out.shape[-1]: a FIR filter as one multiply-add pass per
    nonzero tap, written into `out` (any strides)."""
    length = out.shape[-1]
    for t, tap in enumerate(taps):
        if tap == 0.0:
            continue
        if accumulate:
            out.add_(x[..., t: t + length], alpha=tap)
        else:
            torch.mul(x[..., t: t + length], tap, out=out)
            accumulate = True


class AntiAliasedActivation(nn.Module):
    """Upsample 2x, apply the periodic activation, low-pass and downsample 2x (limits aliasing).

    Computed in phase-split form. With x [B, C, T], the 2x up-sampled signal u (length 2T) is held as its even
    and odd phases e[i] = u[2i], o[i] = u[2i+1], both 7-tap filters of the replicate-padded x. The activation
    is elementwise, so it runs on the phases. The stride-2 low-pass of the replicate-padded u,
    out[i] = sum_k g[k] u[clamp(2i + k - 5)], splits into a filter over e plus one over o. Replicate padding of
    u reads, per phase, u's first sample e[0] before the start and its last sample o[T-1] after the end; those
    few edge columns are written in place. Nothing is interleaved, cropped or re-padded.

    On the CPU the filters run as shifted multiply-adds over tiles of about TILE_ELEMENTS (channels x time,
    each with its 6-sample halo), so that a tile's phases stay in cache from the up filter through the
    activation to the down filter; this is several times faster than oneDNN's grouped convolutions for these
    shapes. Elsewhere, or when autograd records, they run as two grouped convolutions over the whole tensor.
    """

    PAD = 3  # edge columns per side of each phase: the phase filters below span offsets -3..+3
    HALO = 2 * PAD  # input samples each side that one output sample reads (up filter, then down filter)
    TILE_ELEMENTS = 1 << 19

    def __init__(self, act: SnakeBeta):
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(2, 12)
        self.downsample = DownSample1d(2, 12)

    def phase_weights(self, channels: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(up [2C, 1, 7], down [C, 2, 7]) grouped-conv weights, rebuilt per call (a few kB) so they always
        follow the `filter` buffers.

        Up (gain 2 included; exact, a power of two), as cross-correlations over x padded by 3:
          e[i] = sum_t 2 h[11 - 2t] x[i + t - 3] (t = 0..5),  o[i] = sum_t 2 h[12 - 2t] x[i + t - 3] (t = 1..6).
        Down, over the phases padded by 3:
          out[i] = sum_t g[2t - 1] e[i + t - 3] (t = 1..6) + sum_t g[2t] o[i + t - 3] (t = 0..5).
        """
        h, g = self.upsample.filter.view(-1), self.downsample.lowpass.filter.view(-1)
        if h.numel() != 12 or g.numel() != 12 or self.upsample.ratio != 2:
            raise ValueError("AntiAliasedActivation's phase form needs 12-tap filters and a ratio of 2")
        zero = h.new_zeros(1)
        up_even = torch.cat([2 * h[1::2].flip(0), zero])     # t = 0..5: 2 h[11], 2 h[9], ..., 2 h[1]
        up_odd = torch.cat([zero, 2 * h[0::2].flip(0)])      # t = 1..6: 2 h[10], ..., 2 h[0]
        down_even = torch.cat([zero, g[1::2]])                # t = 1..6: g[1], g[3], ..., g[11]
        down_odd = torch.cat([g[0::2], zero])                 # t = 0..5: g[0], g[2], ..., g[10]
        up = torch.stack([up_even, up_odd]).repeat(channels, 1)[:, None, :]          # [2C, 1, 7]
        down = torch.stack([down_even, down_odd])[None].expand(channels, -1, -1)     # [C, 2, 7]
        return up.to(dtype).contiguous(), down.to(dtype).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the tiled path writes into preallocated outputs, which autograd cannot follow
        if x.device.type == "cpu" and not torch.is_grad_enabled():
            return self.tiled(x)
        return self.grouped_conv(x)

    @staticmethod
    def replicate_edges_(phases: torch.Tensor, start: int, length: int) -> None:
        """phases [B, C, 2, n]: the columns start .. start + n - 1 of the phases padded by PAD (u has 2 * length
        samples). Columns before u's start become e[0] (column PAD), those after its end o[T-1] (column
        PAD + T - 1), in both phases."""
        pad, n = AntiAliasedActivation.PAD, phases.shape[-1]
        before = pad - start                     # local columns [0, before) lie before u's start
        if before > 0:
            phases[..., :before] = phases[:, :, :1, before: before + 1]
        after = start + n - (pad + length)       # the last `after` local columns lie past u's end
        if after > 0:
            phases[..., n - after:] = phases[:, :, 1:, n - after - 1: n - after]

    def grouped_conv(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        pad = self.PAD
        up, down = self.phase_weights(C, x.dtype)
        # x padded by 2 * pad, so the up conv also yields `pad` (overwritten) edge columns per side
        x = F.pad(x, (2 * pad, 2 * pad), mode="replicate")                   # [B, C, T + 12]
        phases = F.conv1d(x, up, groups=C).view(B, C, 2, T + 2 * pad)        # [B, C, (e, o), T + 6]
        self.replicate_edges_(phases, 0, T)
        phases = snake(phases, *self.act.coefficients(4), inplace=not torch.is_grad_enabled())
        return F.conv1d(phases.view(B, 2 * C, -1), down, groups=C)           # [B, C, T]

    def tiled(self, x: torch.Tensor, tile_elements: int | None = None) -> torch.Tensor:
        B, C, T = x.shape
        pad, tile = self.PAD, tile_elements or self.TILE_ELEMENTS
        up, down = self.phase_weights(C, x.dtype)
        up_even, up_odd, down_even, down_odd = up[0, 0].tolist(), up[1, 0].tolist(), *down[0].tolist()
        alpha, inv_beta = self.act.coefficients(4)
        out = x.new_empty(B, C, T)
        channels = max(1, min(C, tile // (B * T)))
        length = max(1, min(T, tile // (B * channels)))
        for c0 in range(0, C, channels):
            c1 = min(C, c0 + channels)
            for i0 in range(0, T, length):
                i1 = min(T, i0 + length)
                # output [i0, i1) needs phase columns [i0, i1 + 2 pad) of the phases padded by pad, and so
                # the samples [i0 - 2 pad, i1 + 2 pad) of x, replicate-padded where they pass its ends
                lo, hi = max(0, i0 - 2 * pad), min(T, i1 + 2 * pad)
                source = x[:, c0:c1, lo:hi]
                if hi - lo < i1 - i0 + 4 * pad:
                    source = F.pad(source, (lo - (i0 - 2 * pad), i1 + 2 * pad - hi), mode="replicate")
                phases = x.new_empty(B, c1 - c0, 2, i1 - i0 + 2 * pad)
                shifted_sum_(phases[:, :, 0], source, up_even)
                shifted_sum_(phases[:, :, 1], source, up_odd)
                self.replicate_edges_(phases, i0, T)
                snake(phases, alpha[:, c0:c1], inv_beta[:, c0:c1], inplace=True)
                target = out[:, c0:c1, i0:i1]
                shifted_sum_(target, phases[:, :, 0], down_even)
                shifted_sum_(target, phases[:, :, 1], down_odd, accumulate=True)
        return out


class PolyphaseConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d (same parameters and state-dict keys) computed, for kernel 2r, stride r and padding r/2
    (every BigVGAN up-sampling layer), as one ordinary conv with r phases of 2 taps, then interleaved.

    With n = q r + s and h = r / 2, the transposed conv is y[q r + s] = W[s + h] x[q] + W[s + h + r] x[q - 1]
    for s < h, and W[s - h] x[q + 1] + W[s - h + r] x[q] for s >= h (W[k]: the [Cin, Cout] tap k, x zero
    outside [0, L)). Both are z[j] = A x[j - 1] + B x[j] of a 2-tap conv over x zero-padded by one, read at
    j = q or q + 1. Same multiply-adds, summed in another order: equal up to float rounding.
    Other shapes fall back to torch's transposed conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, (k,), (p,) = self.stride[0], self.kernel_size, self.padding
        if (k, p) != (2 * r, r // 2) or r % 2 or self.output_padding[0] or self.groups != 1 or self.dilation[0] != 1:
            return super().forward(x)
        B, _, L = x.shape
        h = r // 2
        y = x.new_empty(B, self.out_channels, L, r)
        # One conv per phase: its [Cout, Cin, 2] weight is a small copy, where all phases at once would copy
        # the whole weight twice per call (150 MB for the first 44 kHz layer).
        for s in range(r):
            tap_b = (s + h) % r                                            # the tap that multiplies x[j]
            weight = self.weight[:, :, [tap_b + r, tap_b]].transpose(0, 1)  # [Cout, Cin, 2]: (A, B)
            z = F.conv1d(x, weight, self.bias, padding=1)                  # [B, Cout, L + 1]
            y[..., s] = z[..., :L] if s < h else z[..., 1:]
        return y.view(B, self.out_channels, L * r)


class AMPBlock(nn.Module):
    """Anti-aliased multi-periodicity residual block ("resblock 1"): per dilation, act-conv-act-conv + skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], log_scale: bool):
        super().__init__()
        conv = lambda d: legacy_weight_norm(Conv1d(channels, channels, kernel_size, dilation=d,
                                                   padding=(kernel_size * d - d) // 2))
        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedActivation(SnakeBeta(channels, log_scale))
                                         for _ in range(2 * len(dilations)))
        # How far (in samples, each side) an output sample reads: per dilation an activation, conv1, an
        # activation and conv2 (kernel k reaches (k - 1) d / 2).
        self.halo = sum((kernel_size - 1) * d // 2 + (kernel_size - 1) // 2 + 2 * AntiAliasedActivation.HALO
                        for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            # the residual added in place into the fresh conv output (same sum, one allocation less)
            x = c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x)))).add_(x)
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
            self.ups.append(nn.ModuleList([legacy_weight_norm(PolyphaseConvTranspose1d(
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
            x = self.fuse(blocks, x) if torch.is_grad_enabled() else self.fuse_in_chunks(blocks, x)
        x = self.conv_post(self.activation_post(x))
        if self.use_tanh_at_final:
            return torch.tanh(x)
        return x.clamp(-1.0, 1.0) if clamp else x

    # Without autograd a stage's blocks run over time chunks of about CHUNK_ELEMENTS (channels x samples, at
    # least MIN_CHUNK samples) so that a chunk's intermediates stay in cache and only the stage's input and
    # output are ever whole.
    CHUNK_ELEMENTS = 1 << 20
    MIN_CHUNK = 8192

    def fuse(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Multi-receptive-field fusion, x [B, C, T] -> [B, C, T]: the mean of the blocks' outputs, summed in
        place (the same additions in the same order as sum(), one [B, C, T] buffer less)."""
        first, *others = blocks
        fused = first(x)
        for block in others:
            fused.add_(block(x))
        return fused.div_(len(blocks))

    def fuse_in_chunks(self, blocks: nn.ModuleList, x: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """`fuse` over chunks of `length` samples. Each block reads its chunk widened by its halo (clipped at the
        ends of x, where its own padding applies as before), so every output sample sees the inputs it sees in
        `fuse`: the same sums, equal up to float rounding."""
        B, C, T = x.shape
        length = length or max(self.MIN_CHUNK, self.CHUNK_ELEMENTS // (B * C))
        if length >= T:
            return self.fuse(blocks, x)
        out = torch.empty_like(x)
        for a in range(0, T, length):
            b = min(T, a + length)
            target = out[..., a:b]
            for n, block in enumerate(blocks):
                lo, hi = max(0, a - block.halo), min(T, b + block.halo)
                y = block(x[..., lo:hi])[..., a - lo: b - lo]
                target.copy_(y) if n == 0 else target.add_(y)
            target.div_(len(blocks))
        return out


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
