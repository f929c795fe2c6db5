"""Tiny models for the simulated-accelerator tests, one per kind of model the project serves.

    speech         22.05 kHz WaveNet-head DiT, Whisper, BigVGAN        (tiny.py's speech config)
    singing_fcpe   44.1 kHz F0 DiT, Whisper, FCPE, BigVGAN             (tiny.py's singing config)
    singing_rmvpe  the same with RMVPE (random weights at its real size: it has no small variant)
    xlsr_hift      the XLS-R + HiFT real-time preset: tiny.py's small DiT and XLS-R, a random full-size HiFT

RMVPE weights are too large to write for every test run (90 M parameters), so `rmvpe_from_random_weights`
replaces only the weights file reader; the extractor class, its device handling and the pipeline are real.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from tiny import (
    AUDIO,
    campplus_weights,
    dit_checkpoint,
    dit_config,
    models,
    write_tiny_config,
)

KINDS = ("speech", "singing_fcpe", "singing_rmvpe", "xlsr_hift")


def _save_yaml(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _xlsr_hift_config(directory: Path) -> Path:
    """tiny.py's small XLS-R DiT and XLS-R, with a random full-size HiFT (hift.pt) written here."""
    from modules.hub import HIFIGAN_CONFIG
    from modules.vocoders import build_hift

    cfg = yaml.safe_load(dit_config("xlsr_tiny").read_text())
    cfg["pretrained_model"] = str(dit_checkpoint("xlsr_tiny"))
    mp = cfg["model_params"]
    mp["speech_tokenizer"]["name"] = str(models() / "xlsr_content")
    mp["style_encoder"]["campplus_path"] = str(campplus_weights())
    torch.manual_seed(0)
    torch.save(build_hift(HIFIGAN_CONFIG).state_dict(), directory / "hift.pt")
    mp["vocoder"]["name"] = str(directory / "hift.pt")
    return _save_yaml(cfg, directory / "tiny_xlsr_hift.yml")


def write_device_configs(directory: Path) -> dict[str, Path]:
    """One offline YAML per kind in KINDS."""
    directory = Path(directory)
    singing = write_tiny_config(directory, "singing")
    cfg = yaml.safe_load(singing.read_text())
    (directory / "rmvpe.pt").write_bytes(b"")   # a placeholder: see rmvpe_from_random_weights
    cfg["model_params"]["f0_extractor"] = {"type": "rmvpe", "path": str(directory / "rmvpe.pt")}
    return {"speech": write_tiny_config(directory, "speech"), "singing_fcpe": singing,
            "singing_rmvpe": _save_yaml(cfg, directory / "tiny_singing_rmvpe.yml"),
            "xlsr_hift": _xlsr_hift_config(directory)}


def rmvpe_from_random_weights(monkeypatch) -> None:
    """Make every RMVPE load in this test build E2E with seeded random weights instead of reading rmvpe.pt."""
    from modules.f0 import rmvpe
    monkeypatch.setattr(rmvpe, "read_weights", lambda path: _random_rmvpe_state())


def _random_rmvpe_state() -> dict:
    from modules.f0.rmvpe import E2E
    torch.manual_seed(0)
    return E2E(4, 1, (2, 2)).state_dict()


def short_clip(directory: Path, name: str, seconds: float, offset: float = 0.0) -> Path:
    """`seconds` of a test clip (from `offset`), written as a WAV in `directory`."""
    wave, rate = sf.read(AUDIO / name, dtype="float32", always_2d=True)
    start = int(offset * rate)
    path = Path(directory) / f"{Path(name).stem}_{seconds:g}s.wav"
    sf.write(path, np.ascontiguousarray(wave[start: start + int(seconds * rate)]), rate)
    return path
