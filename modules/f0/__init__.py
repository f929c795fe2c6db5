"""F0 (pitch) extraction for the F0-conditioned models.

    extractor = load_f0_extractor("rmvpe", "checkpoints/rmvpe.pt", device)   # what Seed-VC v1 uses
    extractor = load_f0_extractor("fcpe")        # weights from the torchfcpe wheel: works offline
    f0 = extractor(wave_16k)                     # float64 [N // 160 + 1] Hz, 0 = unvoiced

Both give the same frame grid (100 frames/s on 16 kHz input).
"""
from __future__ import annotations

from pathlib import Path

import torch

from modules.f0.common import F0Extractor, F0WeightsError, n_f0_frames
from modules.f0.fcpe import FCPE, load_fcpe
from modules.f0.rmvpe import RMVPE, load_rmvpe

F0_KINDS = ("rmvpe", "fcpe")

__all__ = ["F0_KINDS", "F0Extractor", "F0WeightsError", "FCPE", "RMVPE", "load_f0_extractor", "load_fcpe",
           "load_rmvpe", "n_f0_frames"]


def load_f0_extractor(kind: str, weights_path: str | Path | None = None, device: torch.device | str = "cpu",
                      threshold: float | None = None) -> F0Extractor:
    """An F0 extractor by name. "rmvpe" needs the local path of `rmvpe.pt`; "fcpe" defaults to the weights
    bundled in the installed torchfcpe wheel. `threshold` is the voicing threshold (None: the tracker's own default,
    which for RMVPE is the 0.03 Seed-VC uses). Unknown kinds raise ValueError naming the allowed ones."""
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind == "rmvpe":
        if weights_path is None:
            raise ValueError("the RMVPE extractor needs weights_path, the local path of rmvpe.pt "
                             "(lj1995/VoiceConversionWebUI on the Hugging Face hub)")
        return load_rmvpe(weights_path, device, threshold)
    if kind == "fcpe":
        return load_fcpe(weights_path, device, threshold)
    raise ValueError(f"unknown F0 extractor {kind!r}; choose one of {', '.join(F0_KINDS)}")
