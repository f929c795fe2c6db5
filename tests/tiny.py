"""Tiny offline model configs for tests: the fixture's small DiT checkpoints plus local front-end files.

A config of this kind is how a fully offline model is described: every asset key is a local path.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from parity_kinds._common import PARITY_DIR

AUDIO = PARITY_DIR / "audio"


def write_tiny_config(directory: Path, kind: str = "speech", log_dir: Path | None = None) -> Path:
    """speech: 22.05 kHz WaveNet-head DiT + Whisper-tiny + BigVGAN-22k (small); singing: 44.1 kHz F0 model
    with FCPE (weights from the torchfcpe wheel) and BigVGAN-44k (small). Returns the YAML path."""
    sub, vocoder = {"speech": ("wavenet_22k", "bigvgan_22k"), "singing": ("f0_44k", "bigvgan_44k")}[kind]
    cfg = yaml.safe_load((PARITY_DIR / sub / "config.yml").read_text())
    cfg["pretrained_model"] = str(PARITY_DIR / sub / "checkpoint.pth")
    mp = cfg["model_params"]
    mp["speech_tokenizer"]["name"] = str(PARITY_DIR / "whisper_tiny")
    mp["vocoder"]["name"] = str(PARITY_DIR / vocoder)
    mp["style_encoder"]["campplus_path"] = str(PARITY_DIR / "weights" / "campplus_cn_common.bin")
    if kind == "singing":
        mp["f0_extractor"] = {"type": "fcpe"}
    if log_dir is not None:
        cfg["log_dir"] = str(log_dir)
    path = Path(directory) / f"tiny_{kind}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
