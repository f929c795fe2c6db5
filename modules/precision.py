"""Opt-in speed modes: the arithmetic precision of the DiT and the content encoder, and torch.compile.

    dtype = autocast_dtype("bf16", device)      # None means fp32; raises PrecisionError where unsupported
    module = compile_module(module)             # torch.compile, for GPU users (tested on CPU)

fp16 is the CUDA default (as in the original); bf16 needs a GPU that supports it or a CPU with native bf16
arithmetic (AVX512-BF16 or AMX), where it is faster than fp32; elsewhere bf16 would be emulated, so it is
refused. The vocoders always run in fp32. Reduced precision trades accuracy for speed: the benchmark
(benchmarks/bench_e2e.py --precision) reports the error against fp32.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from modules.devices import cpu_info
from modules.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionError(UserError, ValueError):
    """The requested precision cannot run (well) on this device."""


def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU flags of native bf16 arithmetic this machine has (Linux /proc/cpuinfo), e.g. ('avx512_bf16',)."""
    flags = set(cpu_info().get("flags", "").split())
    return tuple(f for f in BF16_CPU_FLAGS if f in flags)


def autocast_dtype(precision: str | None, device: torch.device | str, fp16: bool = True) -> torch.dtype | None:
    """The autocast dtype for the DiT and content encoder, or None for fp32.

    precision None keeps the default: fp16 on CUDA when `fp16` (the original's --fp16), fp32 elsewhere.
    """
    device = torch.device(device)
    if precision is None:
        return torch.float16 if fp16 and device.type == "cuda" else None
    if precision not in PRECISIONS:
        raise PrecisionError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise PrecisionError(f"--precision fp16 needs a CUDA device (this run uses {device}); "
                                 f"use fp32{' or bf16' if cpu_bf16_flags() and device.type == 'cpu' else ''}")
        return torch.float16
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise PrecisionError("--precision bf16: this GPU has no bf16 support; use fp16 or fp32")
        return torch.bfloat16
    if device.type == "cpu":
        if not cpu_bf16_flags():
            raise PrecisionError("--precision bf16 needs a CPU with native bf16 arithmetic (AVX512-BF16 or AMX; "
                                 "/proc/cpuinfo lists neither avx512_bf16 nor amx_bf16), where it would be slower "
                                 "than fp32; use fp32")
        return torch.bfloat16
    raise PrecisionError(f"--precision bf16 is not supported on {device}; use fp32")


def reduced_precision(dtype: torch.dtype | None, device: torch.device | str) -> torch.autocast:
    """Autocast to `dtype` (from `autocast_dtype`) on `device`; a disabled one for None (fp32)."""
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None)


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile with dynamic shapes (every chunk has its own length), keeping the module's attributes
    (hop_length, ...) reachable. Compilation happens on the first call and needs a C++ compiler on CPU.
    tests/test_speed_modes.py checks that the compiled DiT and vocoder give the eager output."""
    return torch.compile(module, dynamic=True)
