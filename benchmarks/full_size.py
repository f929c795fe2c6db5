"""Full-size models with random weights, written to files in the official formats, for the benchmarks.

    config_path = write_full_size_model(folder, "config_dit_mel_seed_uvit_whisper_base_f0_44k")

Writes a DiT checkpoint ({'net': ...}), a Whisper-small (decoder included, as the hub's) or XLS-R-300m model
directory, CAM++ weights, RMVPE weights (F0 presets), the BigVGAN directory (config.json + a weight-normed
bigvgan_generator.pt) and a copy of the preset naming them all, so the benchmarks load through exactly the
code a user's conversion or fine-tuning runs (modules.pipeline.build_converter, train.py). No downloads.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MANIFESTS = ROOT.parent / "shared" / "fixtures" / "parity" / "manifests"


def bigvgan_config(sample_rate: int) -> dict:
    """The released BigVGAN v2 generator config for the preset's rate (44.1 kHz 512x or 22.05 kHz 256x)."""
    name = "bigvgan_44k_full.json" if sample_rate == 44100 else "bigvgan_22k_full.json"
    return json.loads((MANIFESTS / name).read_text())["config"]


def write_full_size_model(folder: Path, preset: str) -> Path:
    import yaml
    from transformers import (Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WhisperConfig,
                              WhisperFeatureExtractor, WhisperModel)

    from modules.config import load_config, preset_path
    from modules.f0.rmvpe import E2E
    from modules.model import build_model
    from modules.style_encoder import CAMPPlus
    from modules.vocoders import BigVGAN

    folder.mkdir(parents=True, exist_ok=True)
    path = preset_path(preset)
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    mp = raw["model_params"]
    torch.manual_seed(0)
    torch.save({"net": {p: m.state_dict() for p, m in build_model(cfg).parts().items()}}, folder / "dit.pth")
    raw["pretrained_model"] = str(folder / "dit.pth")

    content_dir = folder / "content_encoder"
    if mp["speech_tokenizer"]["type"] == "whisper":   # whisper-small
        WhisperModel(WhisperConfig(d_model=768, encoder_layers=12, encoder_attention_heads=12, decoder_layers=12,
                                   decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                                   num_mel_bins=80)).save_pretrained(content_dir)
        WhisperFeatureExtractor().save_pretrained(content_dir)
    else:                                             # xls-r-300m
        Wav2Vec2Model(Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                     intermediate_size=4096, feat_extract_norm="layer", conv_bias=True,
                                     do_stable_layer_norm=True)).save_pretrained(content_dir)
        Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(content_dir)
    mp["speech_tokenizer"]["name"] = str(content_dir)

    torch.save(CAMPPlus().state_dict(), folder / "campplus.bin")
    mp["style_encoder"]["campplus_path"] = str(folder / "campplus.bin")
    if mp["length_regulator"].get("f0_condition"):
        torch.save(E2E(4, 1, (2, 2)).state_dict(), folder / "rmvpe.pt")
        mp["f0_extractor"] = {"type": "rmvpe", "path": str(folder / "rmvpe.pt")}
    if mp["vocoder"]["type"] == "bigvgan":
        h = bigvgan_config(raw["preprocess_params"]["sr"])
        vocoder_dir = folder / "bigvgan"
        vocoder_dir.mkdir(exist_ok=True)
        (vocoder_dir / "config.json").write_text(json.dumps(h))
        torch.save({"generator": BigVGAN(h).state_dict()}, vocoder_dir / "bigvgan_generator.pt")
        mp["vocoder"]["name"] = str(vocoder_dir)
    else:
        from modules.vocoders import build_hift
        torch.save(build_hift(ROOT / "configs" / "hifigan.yml").state_dict(), folder / "hift.pt")
        mp["vocoder"]["name"] = str(folder / "hift.pt")
    raw["log_dir"] = str(folder / "runs")
    out = folder / f"{preset}.yml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
