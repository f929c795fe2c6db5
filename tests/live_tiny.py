"""The tiny model the live path is tuned for: the XLS-R tiny DiT with the tiny XLS-R content encoder.

tests/tiny.py has no XLS-R preset config; this writes one from its tiny model files, with its small 22 kHz
BigVGAN (HiFT's config is fixed at full size, configs/hifigan.yml, which costs ~0.6 s a block on a loaded CPU),
and `small_hift()` gives a HiFT with a tenth of the channels for in-process engine tests.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from tiny import campplus_weights, models


def write_tiny_live_config(directory: Path) -> Path:
    root = models()
    cfg = yaml.safe_load((root / "xlsr_tiny" / "config.yml").read_text())
    cfg["pretrained_model"] = str(root / "xlsr_tiny" / "checkpoint.pth")
    mp = cfg["model_params"]
    mp["speech_tokenizer"]["name"] = str(root / "xlsr_content")
    mp["vocoder"] = {"type": "bigvgan", "name": str(root / "bigvgan_22k")}
    mp["style_encoder"]["campplus_path"] = str(campplus_weights())
    path = Path(directory) / "tiny_live.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def small_hift():
    """The preset's vocoder kind (HiFT: neural source filter + iSTFT, 22.05 kHz, hop 256) with 64 base channels
    instead of 512 and seeded random weights."""
    from modules.vocoders import Vocoder
    from modules.vocoders.hift import ConvRNNF0Predictor, HiFTGenerator
    torch.manual_seed(0)
    return Vocoder(HiFTGenerator(base_channels=64, f0_predictor=ConvRNNF0Predictor(cond_channels=64))).eval()
