"""Pitch accuracy (singing): F0 correlation and F0 RMSE in cents between the source, after the shift the
conversion applied, and the converted output, on the frames both call voiced.

F0 comes from this project's own extractors (modules/f0): FCPE by default (its weights ship in the torchfcpe
wheel), or RMVPE given its weights file. The shift is the engine's own (modules.pipeline.shift_source_f0),
so auto F0 adjust is measured against what the model was asked to sing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules.evaluation.common import ModelCard, package_version
from modules.f0 import load_f0_extractor
from modules.pipeline import shift_source_f0

VOICED_HZ = 1.0   # the engine's voicing rule: f0 > 1 Hz


class F0Metrics:
    name = "f0"

    def __init__(self, kind: str = "fcpe", weights: str | Path | None = None, device: torch.device | str = "cpu"):
        self.extractor = load_f0_extractor(kind, weights, device)   # at its default threshold, as the engine
        origin = "torchfcpe wheel fcpe_c_v001.pt" if kind == "fcpe" and weights is None else Path(str(weights)).name
        self.card = ModelCard("F0", f"{kind.upper()} F0 (this project's modules/f0), voiced in both, "
                                    "Pearson r on Hz, RMSE in cents",
                              f"{package_version('torchfcpe') if kind == 'fcpe' else 'rmvpe'}, {origin}")

    def f0(self, wave_16k: np.ndarray) -> np.ndarray:
        return self.extractor(np.asarray(wave_16k, dtype=np.float32))

    @staticmethod
    def compare(f0_source: np.ndarray, f0_converted: np.ndarray, f0_reference: np.ndarray | None = None,
                semitone_shift: float = 0.0, auto_f0_adjust: bool = False) -> dict[str, float]:
        """{'f0_corr', 'f0_rmse_cents', 'voiced_frames'}; the converted track is stretched onto the source's
        frames when their lengths differ (length adjust)."""
        reference = torch.from_numpy(np.asarray(f0_reference if f0_reference is not None else f0_source))[None]
        target = shift_source_f0(torch.from_numpy(np.asarray(f0_source, dtype=np.float64))[None], reference,
                                 auto_f0_adjust, semitone_shift)[0].numpy()
        target = np.where(np.asarray(f0_source) > VOICED_HZ, target, 0.0)    # unvoiced stays unvoiced
        converted = np.asarray(f0_converted, dtype=np.float64)
        if converted.size != target.size:
            index = np.round(np.linspace(0, converted.size - 1, target.size)).astype(int)
            converted = converted[index]
        both = (target > VOICED_HZ) & (converted > VOICED_HZ)
        n = int(both.sum())
        if n < 2:
            return {"f0_corr": float("nan"), "f0_rmse_cents": float("nan"), "voiced_frames": n}
        a, b = target[both], converted[both]
        cents = 1200.0 * np.log2(b / a)
        corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        return {"f0_corr": corr, "f0_rmse_cents": float(np.sqrt(np.mean(cents ** 2))), "voiced_frames": n}
