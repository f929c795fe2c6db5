"""1-D convolutions whose large fp32 CPU products run in the DFT domain, with fewer multiply-adds.

A stride-1 conv with kernel K does K multiply-adds per input channel, output channel and output sample. Cut
the (zero-padded) input into overlapping blocks of N samples, each giving M = N - K + 1 outputs; per block the
conv is a cyclic convolution of length N, which the real DFT turns into one product per frequency bin: a real
one at 0 and N/2 and a complex one at the N/2 - 1 others, done as three real products (Gauss's trick). That is
P = 3N/2 - 1 channel-mixing matrix products per block instead of K * M: for N = 32, 47 instead of 242 (K = 11)
or 182 (K = 7), so 3.9-5x fewer multiply-adds. The transforms themselves are small matrices (the DFT written
out, N x P and P x M) applied to the blocks, so every step is an ordinary fp32 matrix product:

    X[p] = segments @ Fx[:, p]   W[p] = sum_k Fw[k, p] w[:, :, k]   Y[p] = W[p] @ X[p]   y = sum_p G[p] Y[p]

Same arithmetic, summed in another order: |error| against float64 of the same order as torch's direct conv
(~3e-7 relative, tests/test_conv.py). A dilated conv (dilation d) is d undilated convs over the d phases of
its input, so it costs the same as an undilated one.

It pays only for wide layers, long inputs and kernels of 7 or more (BigVGAN's full-size stages); `Conv1d`
(nn.Conv1d with the same parameters and keys) takes the route only there, for fp32 CPU tensors without autograd,
autocast or torch.compile, and only for zero-padded stride-1 ungrouped convs. The choice depends on the shapes
alone, never on timing. Set SEEDVC_CPU_CONV=direct for torch's convolution everywhere.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.devices import cpu_route_from_environment, eager_fp32_cpu

ROUTE_ENV = "SEEDVC_CPU_CONV"
ROUTES = ("dft", "direct")

BLOCK = 32              # DFT length N (outputs per block: N - K + 1)
MIN_KERNEL = 7          # K = 3 and 5 save too little for the transforms' cost
MIN_KERNEL_CHANNELS = 2048   # K * C_in at least this: K 11 from 187 channels, K 7 from 293
MIN_OUTPUTS = 2048      # fewer output samples do not amortise the weight transform
WORKSPACE = 1 << 23     # floats of transformed weights held at once (32 MiB)


ROUTE = cpu_route_from_environment(ROUTE_ENV, ROUTES,
                                   "unset it for the DFT route, or set it to direct for torch's convolution")


@functools.lru_cache(maxsize=None)
def transforms(block: int, kernel: int, dtype: torch.dtype = torch.float32
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DFT-domain correlation of a `kernel`-tap filter over `block`-sample segments, as three matrices:
    Fx [N, P] (segment -> planes), Fw [K, P] (filter -> planes), G [P, M] (planes -> the M valid outputs).

    Correlation y[m] = sum_k w[k] s[m + k] is the cyclic convolution of s with h[j] = w[K - 1 - j], read at
    m + K - 1 (no wrap-around there). Per bin b: S = Sr + i Si and H likewise; the three real planes are
    (Sr, Hr), (Si, Hi) and (Sr + Si, Hr + Hi), with products P1, P2, P3, so that Re(SH) = P1 - P2 and
    Im(SH) = P3 - P1 - P2; the inverse real DFT's coefficients of Re and Im fold into G. Built in float64.
    """
    n, k, f64 = block, kernel, torch.float64
    j, taps = torch.arange(n, dtype=f64), torch.arange(k, dtype=f64)
    rows = torch.arange(k - 1, n, dtype=f64)
    fx, fw, g = [], [], []
    for b in range(n // 2 + 1):
        phase = 2 * math.pi * b / n
        cos_x, sin_x = torch.cos(phase * j), -torch.sin(phase * j)            # S_b = sum_j s_j e^{-i phase j}
        cos_w, sin_w = torch.cos(phase * (k - 1 - taps)), -torch.sin(phase * (k - 1 - taps))
        real_bin = b == 0 or 2 * b == n
        re = (1.0 if real_bin else 2.0) / n * torch.cos(phase * rows)       # inverse DFT: y gets re*Re + im*Im
        im = -2.0 / n * torch.sin(phase * rows)
        if real_bin:
            fx.append(cos_x), fw.append(cos_w), g.append(re)
        else:
            fx += [cos_x, sin_x, cos_x + sin_x]
            fw += [cos_w, sin_w, cos_w + sin_w]
            g += [re - im, -re - im, im]
    return (torch.stack(fx, 1).to(dtype), torch.stack(fw, 1).to(dtype), torch.stack(g, 0).to(dtype))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _mm_in_row_chunks(a: torch.Tensor, b: torch.Tensor, rows: int = 1 << 14) -> torch.Tensor:
    # One [huge, small] x [small, small] product is memory-bound and slow in MKL; row chunks that stay in
    # cache run about 4x faster.
    out = a.new_empty(a.shape[0], b.shape[1])
    for start in range(0, a.shape[0], rows):
        torch.mm(a[start:start + rows], b, out=out[start:start + rows])
    return out


def _mm_in_column_chunks(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, cols: int = 1 << 14) -> None:
    for start in range(0, b.shape[1], cols):
        torch.mm(a, b[:, start:start + cols], out=out[:, start:start + cols])


def dft_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
               dilation: int = 1, block: int = BLOCK) -> torch.Tensor:
    """F.conv1d(x, weight, bias, padding=padding, dilation=dilation) for stride 1 and groups 1, computed in the
    DFT domain. x [B, C, T], weight [Cout, C, K] -> [B, Cout, T + 2 padding - dilation (K - 1)]."""
    B, C, T = x.shape
    Cout, _, K = weight.shape
    d = dilation
    block = max(block, 2 * (K - 1))             # a block must give at least K - 1 outputs (see S below)
    fx, fw, g = transforms(block, K, x.dtype)
    P, M = fw.shape[1], block - K + 1
    t_out = T + 2 * padding - d * (K - 1)
    if t_out <= 0:
        raise ValueError(f"input of {T} samples is shorter than the kernel's reach {d * (K - 1) + 1}")
    blocks = _ceil_div(_ceil_div(t_out, d), M)   # per phase
    # Each phase sequence gets (blocks + 1) * M samples, so that consecutive phases' blocks sit at one fixed
    # stride (one spare block per phase, discarded) and every real block reads only its own phase.
    S = (blocks + 1) * M
    n = B * d * (blocks + 1)                     # blocks of all batch items and phases
    padded = F.pad(x, (padding, S * d - T - padding))                       # [B, C, S d]
    series = x.new_empty(B * d * S + block, C)                              # phases, channels last
    series[B * d * S:].zero_()
    series[:B * d * S].view(B, d, S, C).copy_(padded.view(B, C, S, d).permute(0, 3, 2, 1))
    del padded
    segments = series.as_strided((n, block, C), (M * C, C, 1))              # [n, N, C], overlapping
    planes_x = torch.matmul(fx.t(), segments)                               # [n, P, C]
    del series, segments
    # The filter's planes, a group at a time so that at most WORKSPACE floats of them are held.
    taps_first = weight.permute(2, 0, 1).reshape(K, Cout * C)               # [K, Cout C]
    planes_y = x.new_empty(P, Cout, n)
    group = max(1, WORKSPACE // (Cout * C))
    planes_w = x.new_empty(min(group, P), Cout * C)
    for p0 in range(0, P, group):
        p1 = min(P, p0 + group)
        _mm_in_column_chunks(fw[:, p0:p1].t(), taps_first, planes_w[:p1 - p0])
        for p in range(p0, p1):                                             # [Cout, C] x [C, n] -> [Cout, n]
            torch.mm(planes_w[p - p0].view(Cout, C), planes_x[:, p, :].t(), out=planes_y[p])
    del planes_x, planes_w, taps_first
    outputs = _mm_in_row_chunks(planes_y.view(P, Cout * n).t(), g)          # [Cout n, M]
    del planes_y
    # [Cout, B, d, blocks + 1, M] -> [B, Cout, (block, sample, phase)]: output t = phase + d (block M + m)
    per_phase = outputs.view(Cout, B, d, blocks + 1, M)[:, :, :, :blocks].permute(1, 0, 3, 4, 2)
    y = x.new_empty(B, Cout, t_out)
    y.copy_(per_phase.reshape(B, Cout, blocks * M * d)[..., :t_out])
    if bias is not None:
        y.add_(bias[:, None])
    return y


def uses_dft(conv: nn.Conv1d, x: torch.Tensor) -> bool:
    """Whether `conv(x)` takes the DFT route: see the module docstring for when."""
    return (ROUTE == "dft" and conv.kernel_size[0] >= MIN_KERNEL
            and conv.kernel_size[0] * conv.in_channels >= MIN_KERNEL_CHANNELS
            and conv.stride == (1,) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and x.dim() == 3
            and x.shape[-1] + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) >= MIN_OUTPUTS
            and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
            and eager_fp32_cpu(x, conv.weight, conv.bias))


class Conv1d(nn.Conv1d):
    """nn.Conv1d (same parameters and state-dict keys) whose large fp32 CPU inference products take the DFT
    route (`dft_conv1d`); everything else, every GPU included, is torch's conv unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if uses_dft(self, x):
            return dft_conv1d(x, self.weight, self.bias, self.padding[0], self.dilation[0])
        return super().forward(x)
