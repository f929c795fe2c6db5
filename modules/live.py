"""Live voice conversion: input arrives block by block, each block gives the same duration of converted voice.

The engine behind the browser's Live tab (modules/live_ui.py) and realtime.py (local sound devices).

Per block of B samples (at the model's rate), with left context L, crossfade X, SOLA search S, right context R:

    input window   [ ... L ... | X + S | B | R ]          the newest block is the last B + R samples
    converted      VoiceConverter.convert_window: the whole window conditions the DiT after the reference
                   prompt (clipped to prompt_seconds), the span B + X + S ending R before the window's end is
                   vocoded and returned
    SOLA           the offset k in [0, S] where the new span best continues the previous block's held-back
                   tail (normalised cross-correlation); the span from k is crossfaded (cos^2, X samples) with
                   that tail, its next B samples are emitted, the X after them held back for the next block
    voice activity Silero VAD on the newest block; a block whose speech probability stays under the threshold
                   (after a short hangover) is not converted: silence is emitted, faded from the previous tail

Algorithmic latency = B + R + X + S: in the output stream the voice lags the input by R + X + S (SOLA may
shorten that by up to S), and a block is only converted once all of it has arrived (B). Compute time and the
sound devices' own buffers come on top. The first block fades in from silence; `finish()` returns the
held-back tail faded out.

Falling behind: `LiveSession` queues input for a real-time source. When more than `max_backlog_seconds` of
input (at least two blocks) wait unconverted, the oldest whole blocks are dropped unconverted - nothing is
emitted for them, so the player hears a gap - and the session reports it once (`notice()`); the backlog never
grows beyond that bound.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch

from modules.chunking import crossfade
from modules.pipeline import (
    ConversionError,
    ConversionSettings,
    ReferenceFeatures,
    VoiceConverter,
)
from modules.resample import resample
from modules.vad import SAMPLE_RATE as VAD_RATE
from modules.vad import SileroVAD, VoiceActivity

SOLA_SEARCH_SECONDS = 0.01      # how far SOLA may move a block to join it to the previous one
VAD_HANGOVER_SECONDS = 0.3      # keep converting this long after the last block with speech
CONTENT_FRAME_SECONDS = 0.02    # block and context sizes are whole content-encoder frames (50 per second)


@dataclass(frozen=True)
class LiveSettings:
    """What a live session can change between blocks. Defaults suit the XLS-R tiny + HiFT preset."""
    block_seconds: float = 0.18
    crossfade_seconds: float = 0.04
    left_context_seconds: float = 2.5
    right_context_seconds: float = 0.02
    diffusion_steps: int = 4
    inference_cfg_rate: float = 0.7
    vad_threshold: float = 0.5          # speech probability a block needs to be converted; 0 converts everything
    prompt_seconds: float = 3.0         # the reference prompt the DiT sees in front of every window

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"block_seconds": (0.04, 2.0), "crossfade_seconds": (0.01, 0.5), "left_context_seconds": (0.0, 10.0),
              "right_context_seconds": (0.0, 1.0), "diffusion_steps": (1, 100), "inference_cfg_rate": (0.0, 1.0),
              "vad_threshold": (0.0, 1.0), "prompt_seconds": (0.5, 25.0)}

    def validate(self) -> LiveSettings:
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ConversionError(f"live setting {name} = {value!r} is outside [{low}, {high}]")
        if int(self.diffusion_steps) != self.diffusion_steps:
            raise ConversionError(f"live setting diffusion_steps must be a whole number, got {self.diffusion_steps!r}")
        if self.crossfade_seconds >= self.block_seconds:
            raise ConversionError(f"live setting crossfade_seconds ({self.crossfade_seconds:g}) must be shorter "
                                  f"than block_seconds ({self.block_seconds:g})")
        return self

    def updated(self, changes: dict) -> LiveSettings:
        """A copy with `changes` (names as in this class) applied and checked; unknown names are refused."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConversionError(f"unknown live setting(s) {unknown}; known: {sorted(known)}")
        return replace(self, **changes).validate()

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def conversion(self) -> ConversionSettings:
        return ConversionSettings(diffusion_steps=int(self.diffusion_steps),
                                  inference_cfg_rate=float(self.inference_cfg_rate)).validate()


@dataclass(frozen=True)
class BlockStats:
    index: int                      # blocks processed so far in this session, this one included
    compute_seconds: float          # wall time spent on this block
    block_seconds: float
    latency_seconds: float          # algorithmic: block + right context + crossfade + SOLA search
    keeps_up: bool                  # compute_seconds < block_seconds
    voiced: bool                    # converted (else silence was emitted)
    speech_probability: float
    dropped_blocks: int = 0         # input blocks this session dropped unconverted so far (LiveSession)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BlockResult:
    audio: np.ndarray               # float32, exactly one block at the model's rate
    stats: BlockStats


@lru_cache(maxsize=1)
def shared_vad() -> SileroVAD:
    """One VAD network for every session (it holds no per-stream state)."""
    return SileroVAD.from_package()


def take_samples(pieces: deque[np.ndarray], n: int) -> tuple[np.ndarray, int]:
    """The first n samples of a FIFO of float32 pieces, removed from it, zero-padded when it runs short.
    Returns (samples [n], how many came from the FIFO)."""
    out, filled = np.zeros(n, np.float32), 0
    while filled < n and pieces:
        piece = pieces[0]
        used = min(piece.size, n - filled)
        out[filled: filled + used] = piece[:used]
        filled += used
        if used == piece.size:
            pieces.popleft()
        else:
            pieces[0] = piece[used:]
    return out, filled


def _frames(seconds: float, sample_rate: int) -> int:
    """Whole content frames, in samples."""
    frame = round(sample_rate * CONTENT_FRAME_SECONDS)
    return round(seconds / CONTENT_FRAME_SECONDS) * frame


class LiveEngine:
    """One live stream's state over a shared VoiceConverter; `process` one block at a time.

    `update(settings=..., reference=...)` may be called at any time (from any thread); it takes effect at the
    start of the next block. The reference's features come from the converter's cache (computed once per
    reference). `lock` serialises model use when several engines share one converter.
    """

    def __init__(self, converter: VoiceConverter, reference: np.ndarray, settings: LiveSettings = LiveSettings(), *,
                 vad: SileroVAD | None = None, lock: threading.Lock | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.converter = converter
        self.sample_rate = converter.sample_rate
        self.lock = lock or threading.Lock()
        self.clock = clock
        self.vad = VoiceActivity(vad or shared_vad())
        self.settings = settings.validate()
        self.reference_wave = self._checked_reference(reference)
        self.reference: ReferenceFeatures = self._features()
        self._pending: dict = {}
        self._pending_lock = threading.Lock()
        self.blocks_done = 0
        self.voiced_until = -1
        self._resize(np.zeros(0, np.float32))
        self.tail = np.zeros(self.crossfade_samples, np.float32)   # held back for the next join; zeros: fade in

    # ------------------------------------------------------------------ sizes (samples at the model's rate)
    @property
    def block_samples(self) -> int:
        return max(_frames(self.settings.block_seconds, self.sample_rate), round(self.sample_rate * CONTENT_FRAME_SECONDS))

    @property
    def crossfade_samples(self) -> int:
        return max(1, round(self.settings.crossfade_seconds * self.sample_rate))

    @property
    def search_samples(self) -> int:
        return round(SOLA_SEARCH_SECONDS * self.sample_rate)

    @property
    def right_samples(self) -> int:
        return _frames(self.settings.right_context_seconds, self.sample_rate)

    @property
    def latency_seconds(self) -> float:
        return (self.block_samples + self.right_samples + self.crossfade_samples + self.search_samples) / self.sample_rate

    def _window_samples(self) -> int:
        return (_frames(self.settings.left_context_seconds, self.sample_rate) + self.crossfade_samples
                + self.search_samples + self.block_samples + self.right_samples)

    def _resize(self, old: np.ndarray) -> None:
        """A window of the current size holding the newest samples of `old` (zeros in front if it grew)."""
        size = self._window_samples()
        self.window = np.zeros(size, np.float32)
        keep = min(size, old.size)
        if keep:
            self.window[size - keep:] = old[old.size - keep:]

    # ------------------------------------------------------------------ changes
    def _checked_reference(self, wave: np.ndarray) -> np.ndarray:
        return self.converter._wave(wave, "reference")

    def _features(self) -> ReferenceFeatures:
        with self.lock:
            return self.converter.live_reference(self.reference_wave, self.settings.prompt_seconds)

    def update(self, settings: LiveSettings | None = None, reference: np.ndarray | None = None) -> None:
        """Queue a change for the next block. Bad values raise here, before anything changes."""
        change = {}
        if settings is not None:
            change["settings"] = settings.validate()
        if reference is not None:
            change["reference"] = self._checked_reference(reference)
        with self._pending_lock:
            self._pending.update(change)

    def apply_changes(self) -> None:
        """Apply what update() queued (process() does this first; LiveSession before cutting a block)."""
        with self._pending_lock:
            change, self._pending = self._pending, {}
        if not change:
            return
        old = self.settings
        self.settings = change.get("settings", old)
        if "reference" in change:
            self.reference_wave = change["reference"]
        if "reference" in change or self.settings.prompt_seconds != old.prompt_seconds:
            self.reference = self._features()
        if self._window_samples() != self.window.size:
            self._resize(self.window)
        if self.crossfade_samples != self.tail.size:   # stretch the held-back tail to the new crossfade length
            self.tail = np.interp(np.linspace(0, 1, self.crossfade_samples), np.linspace(0, 1, self.tail.size),
                                  self.tail).astype(np.float32)

    # ------------------------------------------------------------------ blocks
    def _speech_probability(self, block: np.ndarray) -> float:
        block_16k = resample(torch.from_numpy(block), self.sample_rate, VAD_RATE).numpy()
        return self.vad.push(block_16k)

    def _join(self, span: np.ndarray) -> np.ndarray:
        """SOLA: align `span` (B + X + S samples) to the held-back tail, crossfade, emit B, hold back X."""
        n_fade, n_block = self.crossfade_samples, self.block_samples
        offset = 0
        if np.any(self.tail) and np.any(span):
            # Normalised cross-correlation of the tail with every candidate start in [0, S].
            candidates = np.lib.stride_tricks.sliding_window_view(span[: n_fade + self.search_samples], n_fade)
            score = candidates @ self.tail / np.sqrt(np.sum(candidates.astype(np.float64) ** 2, axis=1) + 1e-8)
            offset = int(np.argmax(score))
        span = span[offset:]
        joined = crossfade(self.tail, span[:n_block])
        self.tail = span[n_block: n_block + n_fade].copy()
        return joined.astype(np.float32)

    def process(self, block: np.ndarray) -> BlockResult:
        """Convert one block of `block_samples` float32 samples; returns the same number of samples."""
        started = self.clock()
        self.apply_changes()
        return self._process(block, started)

    def _process(self, block: np.ndarray, started: float) -> BlockResult:
        block = np.asarray(block, np.float32).reshape(-1)
        if block.size != self.block_samples:
            raise ValueError(f"a block must hold {self.block_samples} samples, got {block.size}")
        self.window[: -block.size] = self.window[block.size:]
        self.window[-block.size:] = block
        probability = self._speech_probability(block)
        hangover = math.ceil(VAD_HANGOVER_SECONDS / self.settings.block_seconds)
        if probability >= self.settings.vad_threshold:
            self.voiced_until = self.blocks_done + hangover
        voiced = self.blocks_done <= self.voiced_until
        span_samples = self.block_samples + self.crossfade_samples + self.search_samples
        if voiced:
            with self.lock:
                span = self.converter.convert_window(self.window, self.reference, self.settings.conversion,
                                                     keep_samples=span_samples, tail_samples=self.right_samples)
        else:
            span = np.zeros(span_samples, np.float32)
        audio = self._join(span)
        self.blocks_done += 1
        compute = self.clock() - started
        block_seconds = self.block_samples / self.sample_rate
        stats = BlockStats(index=self.blocks_done, compute_seconds=compute, block_seconds=block_seconds,
                           latency_seconds=self.latency_seconds, keeps_up=compute < block_seconds, voiced=voiced,
                           speech_probability=probability)
        return BlockResult(audio, stats)

    def finish(self) -> np.ndarray:
        """The held-back tail, faded out: what follows the last block when the stream stops."""
        tail = crossfade(self.tail, np.zeros_like(self.tail)).astype(np.float32)
        self.tail = np.zeros_like(self.tail)
        return tail


class LiveSession:
    """A LiveEngine fed by a real-time source: input of any size is queued and cut into blocks; at most
    `max_backlog_seconds` (and at least two blocks) wait unconverted, older blocks are dropped (see the
    module docstring). push() may be called from a capture thread while another thread calls step()."""

    def __init__(self, engine: LiveEngine, max_backlog_seconds: float = 1.0):
        self.engine = engine
        self.max_backlog_seconds = max_backlog_seconds
        self._pieces: deque[np.ndarray] = deque()
        self._queued = 0
        self._ready = threading.Condition()
        self.dropped_blocks = 0
        self._notice: str | None = None
        self._noticed = False
        self.closed = False

    def _max_queued(self) -> int:
        block = self.engine.block_samples
        return max(2 * block, math.floor(self.max_backlog_seconds * self.engine.sample_rate / block) * block)

    def push(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, np.float32).reshape(-1)
        with self._ready:
            self._pieces.append(samples)
            self._queued += samples.size
            limit, block = self._max_queued(), self.engine.block_samples
            if self._queued > limit:
                drop = math.ceil((self._queued - limit) / block) * block
                self._take(drop)
                self.dropped_blocks += drop // block
                if not self._noticed:
                    self._noticed = True
                    self._notice = (f"falling behind: conversion is slower than real time, so {drop // block} "
                                    f"block(s) of input were dropped unconverted (a gap in the output). Use "
                                    f"fewer diffusion steps, longer blocks or less left context.")
            self._ready.notify_all()

    def _take(self, n: int) -> np.ndarray:
        out, filled = take_samples(self._pieces, n)
        self._queued -= filled
        return out

    def queued_seconds(self) -> float:
        with self._ready:
            return self._queued / self.engine.sample_rate

    def notice(self) -> str | None:
        """The falling-behind message, once per session (None otherwise)."""
        with self._ready:
            message, self._notice = self._notice, None
            return message

    def next_block(self, timeout: float | None = None) -> np.ndarray | None:
        """The next whole block of input, waiting up to `timeout` seconds; None if there is none (or closed).
        Changes queued with engine.update() are applied first, so the block has the size it is converted at."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while True:
                self.engine.apply_changes()
                size = self.engine.block_samples
                if self._queued >= size:
                    return self._take(size)
                remaining = None if deadline is None else deadline - time.monotonic()
                if self.closed or (remaining is not None and remaining <= 0):
                    return None
                self._ready.wait(remaining)

    def step(self, timeout: float | None = None) -> BlockResult | None:
        """Convert the next queued block (None if none arrived in time)."""
        block = self.next_block(timeout)
        if block is None:
            return None
        result = self.engine._process(block, self.engine.clock())
        result.stats = replace(result.stats, dropped_blocks=self.dropped_blocks)
        return result

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()
