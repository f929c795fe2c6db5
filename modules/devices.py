"""Which device to run on, and the few things that differ between CPU, CUDA and Apple MPS.

    CUDA  fp16 autocast for the DiT (vocoders and F0 stay fp32), work is asynchronous: synchronise before
          reading a clock, and peak memory is torch.cuda.max_memory_allocated
    MPS   no float64: F0 (float64, as the original computes it) stays on the CPU; only its quantised bins
          go to the device
    CPU   fp32 throughout
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from modules.errors import UserError


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then MPS, then CPU, unless one is requested."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:0 are the same device when the index is left open."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read next measures it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak bytes allocated by tensors on a CUDA device since the last reset; None elsewhere."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The first processor's fields in Linux /proc/cpuinfo ({"vendor_id": "GenuineIntel", "flags": "...", ...});
    {} where there is no such file (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break   # the end of the first processor's block
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_route_from_environment(variable: str, routes: tuple[str, ...], advice: str) -> str:
    """The CPU kernel route `variable` asks for (its first value, `routes[0]`, when unset); any other value is
    refused by name, with `advice` on what to set instead."""
    route = os.environ.get(variable, routes[0]).strip().lower()
    if route not in routes:
        raise UserError(f"{variable}={os.environ[variable]!r} is not one of {', '.join(routes)}; {advice}")
    return route


def eager_fp32_cpu(*tensors: torch.Tensor | None) -> bool:
    """Whether all given tensors (None skipped) are fp32 on the CPU, outside autocast and torch.compile: where
    this project's own CPU kernel routes (modules/linear.py, modules/conv.py) may replace torch's."""
    return (not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors if t is not None))
