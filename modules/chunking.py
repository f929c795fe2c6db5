"""Long-source chunking for the in-context DiT, and the cos^2 crossfade that joins the vocoded chunks.

The DiT sees at most `context_frames` frames (about 30 s) per call, reference prompt included. A longer
source is cut into windows of `context_frames - prompt_frames` frames; each next window starts
`overlap_frames` before the previous one ended, and those overlapping samples are crossfaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

CONTEXT_SECONDS = 30
OVERLAP_FRAMES = 16


@dataclass(frozen=True)
class ChunkPlan:
    sample_rate: int
    hop_length: int
    prompt_frames: int

    @property
    def context_frames(self) -> int:
        # Whole frames per second times 30, as the original computes it (2580 at both 44.1k/512 and 22.05k/256).
        return self.sample_rate // self.hop_length * CONTEXT_SECONDS

    @property
    def source_window(self) -> int:
        return self.context_frames - self.prompt_frames

    @property
    def overlap_samples(self) -> int:
        return OVERLAP_FRAMES * self.hop_length

    def windows(self, total_frames: int) -> Iterator[tuple[int, int, bool]]:
        """(start, end, is_last) of each source window over `total_frames` conditioning frames."""
        if self.source_window <= OVERLAP_FRAMES:
            raise ValueError(f"the reference prompt ({self.prompt_frames} frames) leaves no room in the "
                             f"{self.context_frames}-frame context; use a shorter reference")
        start = 0
        while start < total_frames:
            end = min(start + self.source_window, total_frames)
            is_last = start + self.source_window >= total_frames
            yield start, end, is_last
            if is_last:
                return
            start = end - OVERLAP_FRAMES


def crossfade(previous_tail: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """Blend `previous_tail` (the last overlap samples of the previous chunk) into the start of `chunk`.

    fade_out = cos^2 from 0 to pi/2, fade_in its mirror, computed in float64 and written back into a copy of
    `chunk` (float32). A chunk shorter than the overlap is blended over its own length.
    """
    n = len(previous_tail)
    fade_out = np.cos(np.linspace(0, np.pi / 2, n)) ** 2
    fade_in = np.cos(np.linspace(np.pi / 2, 0, n)) ** 2
    out = chunk.copy()
    m = min(n, len(out))
    out[:m] = out[:m] * fade_in[:m] + (previous_tail * fade_out)[:m]
    return out


class ChunkAssembler:
    """Turns vocoded chunks into output pieces whose concatenation is the whole result.

    Each piece can be played as soon as it is returned: a chunk's last `overlap` samples are held back
    until the next chunk arrives to be crossfaded with them.
    """

    def __init__(self, overlap_samples: int):
        self.overlap = overlap_samples
        self.tail: np.ndarray | None = None

    def push(self, wave: np.ndarray, is_last: bool) -> np.ndarray:
        body = wave if is_last else wave[: -self.overlap]
        if self.tail is not None:
            body = crossfade(self.tail, body)
        self.tail = None if is_last else wave[-self.overlap:]
        return body
