"""benchmarks/_models.py builds the full-size models the benchmarks time, through the project's own classes."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _models  # noqa: E402  (needs the path above)


def test_whisper_content_encoder_is_built_at_full_size():
    encoder = _models.content_encoder("whisper", "cpu")
    with torch.no_grad():
        features = encoder(torch.randn(8000) * 0.1)        # 0.5 s at 16 kHz: 25 frames + 1
    assert features.shape == (1, 26, 768) and torch.isfinite(features).all()
