"""`eval.py --convert`: run every source x reference x setting through the engine first, into files named the
way inference.py names them, so a later run without --convert scores the same files."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from modules.audio import AudioError
from modules.pipeline import ConversionError, ConversionSettings, VoiceConverter

WriteWave = Callable[[Path, np.ndarray, int], None]


def convert_all(converter: VoiceConverter, sources: Sequence[Path], references: Sequence[Path],
                grid: dict[str, ConversionSettings], output_for: Callable[[Path, Path, str, ConversionSettings], Path],
                write: WriteWave) -> list[tuple[str, str]]:
    """Convert everything to `output_for(source, reference, label, settings)`; returns (what, why) for each
    conversion that failed (the rest go on)."""
    jobs = [(label, settings, s, r) for label, settings in grid.items() for s in sources for r in references]
    failures = []
    for label, settings, source, reference in tqdm(jobs, desc="converting", unit="file", disable=len(jobs) < 2):
        out = output_for(source, reference, label, settings)
        try:
            result = converter.convert(source, reference, settings)
            write(out, result.wave, result.sample_rate)
        except (AudioError, ConversionError, OSError, RuntimeError) as e:
            failures.append((f"{label}: convert {source} with {reference}", str(e)))
            tqdm.write(f"FAILED {source} -> {reference} ({label}): {e}")
    return failures
