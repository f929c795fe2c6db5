"""The tiny model the live path is tuned for: XLS-R tiny DiT + tiny XLS-R content encoder + HiFT vocoder.

tests/tiny.py has no XLS-R + HiFT preset, so this writes one: the fixture's xlsr_tiny DiT checkpoint and
XLS-R encoder, and a full-size HiFT (its config is fixed, configs/hifigan.yml) with seeded random weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from parity_kinds._common import PARITY_DIR

from modules.hub import HIFIGAN_CONFIG
from modules.vocoders import build_hift


def write_random_hift(path: Path, seed: int = 0) -> Path:
    """A hift.pt in CosyVoice's layout (legacy weight-norm names) with seeded random weights, scaled down so
    the random vocoder's output stays well inside [-1, 1] instead of clipping."""
    torch.manual_seed(seed)
    model = build_hift(HIFIGAN_CONFIG)
    with torch.no_grad():
        model.conv_post.weight_g.mul_(0.1)
    torch.save(model.state_dict(), path)
    return path


def write_tiny_live_config(directory: Path, vocoder: str = "hift") -> Path:
    """vocoder: "hift" (the preset's, full size, random) or "bigvgan" (the fixture's small 22 kHz BigVGAN,
    ten times cheaper on CPU: for tests that run the app or realtime.py in a separate process)."""
    directory = Path(directory)
    cfg = yaml.safe_load((PARITY_DIR / "xlsr_tiny" / "config.yml").read_text())
    cfg["pretrained_model"] = str(PARITY_DIR / "xlsr_tiny" / "checkpoint.pth")
    mp = cfg["model_params"]
    mp["speech_tokenizer"]["name"] = str(PARITY_DIR / "xlsr_content")
    if vocoder == "hift":
        mp["vocoder"] = {"type": "hifigan", "name": str(write_random_hift(directory / "hift.pt"))}
    else:
        mp["vocoder"] = {"type": "bigvgan", "name": str(PARITY_DIR / "bigvgan_22k")}
    mp["style_encoder"]["campplus_path"] = str(PARITY_DIR / "weights" / "campplus_cn_common.bin")
    path = directory / "tiny_live.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def small_hift():
    """A HiFT with a tenth of the channels, for in-process engine tests (the full one costs ~0.6 s a block on
    a loaded CPU): same code path, same 22.05 kHz / hop 256 framing."""
    from modules.vocoders import Vocoder
    from modules.vocoders.hift import ConvRNNF0Predictor, HiFTGenerator
    torch.manual_seed(0)
    return Vocoder(HiFTGenerator(base_channels=64, f0_predictor=ConvRNNF0Predictor(cond_channels=64))).eval()
