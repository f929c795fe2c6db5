"""Hugging Face ZeroGPU Spaces: the `spaces` package, the GPU time budget of a request, the default concurrency.

On ZeroGPU the app's main process has no GPU. Importing `spaces` makes CUDA look present there (tensors moved
to "cuda" are recorded and packed), and each call of a `spaces.GPU` function runs in a forked worker that
holds a real GPU for at most the duration it asked for. So `spaces` must be imported before anything builds
a model or touches CUDA (the apps import this module first), and a conversion asks for a duration derived
from its decoded length and diffusion steps. Elsewhere (no `spaces`, or not on ZeroGPU) `spaces.GPU` is not
applied and no budget is enforced.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable

try:  # first: `spaces` refuses to load once CUDA has been initialised
    import spaces  # type: ignore
except ImportError:  # not installed: a plain machine
    spaces = None

# The GPU time a conversion is given: start-up in a fresh GPU worker (the weights move to the GPU), plus the
# front-ends and vocoder per second of source, plus the DiT per second per diffusion step. Estimates for the
# ZeroGPU H200 slice with margin (see benchmarks/device_check.sh for measured stage times); the worker
# releases the GPU as soon as the call returns, so a generous budget costs visitors no quota.
SETUP_SECONDS = 15.0
SECONDS_PER_AUDIO_SECOND = 0.05
SECONDS_PER_AUDIO_SECOND_STEP = 0.004
# ZeroGPU refuses longer requests ("illegal duration"); the limit is not published and has been 300 s.
MAX_GPU_SECONDS = 300
# Conversions at once on a Space: each runs in its own GPU worker, so visitors need not wait for each other.
ZEROGPU_CONCURRENCY = 4


def on_zerogpu() -> bool:
    """True on a ZeroGPU Space (the `spaces` package is there and SPACES_ZERO_GPU is set)."""
    return spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def gpu_seconds(source_seconds: float, diffusion_steps: int) -> int:
    """GPU seconds to ask for: a source of `source_seconds` (decoded length) at `diffusion_steps` steps."""
    return math.ceil(SETUP_SECONDS + source_seconds * (SECONDS_PER_AUDIO_SECOND +
                                                       SECONDS_PER_AUDIO_SECOND_STEP * diffusion_steps))


def longest_source_seconds(diffusion_steps: int, max_gpu_seconds: float) -> float:
    """The longest source that fits `max_gpu_seconds` at `diffusion_steps` steps (inverse of gpu_seconds)."""
    per_second = SECONDS_PER_AUDIO_SECOND + SECONDS_PER_AUDIO_SECOND_STEP * diffusion_steps
    return max(0.0, (max_gpu_seconds - SETUP_SECONDS) / per_second)


def on_gpu(fn: Callable, duration: Callable[..., int]) -> Callable:
    """`spaces.GPU(duration=duration)(fn)` on ZeroGPU; fn itself elsewhere. `duration` takes fn's arguments."""
    if not on_zerogpu():
        return fn
    return spaces.GPU(duration=duration)(fn)
