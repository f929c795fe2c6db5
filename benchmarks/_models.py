"""Full-size models with random weights for the benchmarks (no downloads): one place that knows their sizes.

Whisper-small's encoder and XLS-R-300m (truncated to 12 layers, as the preset uses it) are built from their
published dimensions; BigVGAN from configs/bigvgan/; HiFT from configs/hifigan.yml; RMVPE and CAM++ from
their constructors. `speech_clips()` gives real speech from the fixture folder when it is there, else the
tests' synthesized clips. `write_full_size_model()` writes them all to files in the official formats.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "tests")) if p not in sys.path]

BIGVGAN_BY_RATE = {22050: "bigvgan_v2_22khz_80band_256x", 44100: "bigvgan_v2_44khz_128band_512x"}
WHISPER_SMALL = dict(d_model=768, encoder_layers=12, encoder_attention_heads=12, decoder_layers=1,
                     decoder_attention_heads=12, encoder_ffn_dim=3072, num_mel_bins=80)
XLSR_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True)


def whisper_small():
    """(WhisperModel with Whisper-small's encoder, its feature extractor)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    return WhisperModel(WhisperConfig(**WHISPER_SMALL)), WhisperFeatureExtractor()


def xlsr_300m():
    """(Wav2Vec2Model with XLS-R-300m's dimensions, its feature extractor)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    return Wav2Vec2Model(Wav2Vec2Config(**XLSR_300M)), Wav2Vec2FeatureExtractor(return_attention_mask=True)


def content_encoder(kind: str, device: str, fp16: bool = True):
    """The preset's content encoder at full size: `whisper` (small, encoder only) or `xlsr` (12 layers);
    fp16 on CUDA unless fp16=False."""
    from modules.content_encoder import ContentEncoder, WhisperEncoder
    if kind == "whisper":  # this project's encoder, as load_content_encoder builds it, with the random weights
        whisper, extractor = whisper_small()
        model = WhisperEncoder.from_config(whisper.config)
        model.load_state_dict(whisper.encoder.state_dict(), strict=True)
    else:
        model, extractor = xlsr_300m()
        model.encoder.layers = model.encoder.layers[:12]
    return ContentEncoder(kind, model, extractor, device, fp16)


def bigvgan_config(sample_rate: int) -> dict:
    return json.loads((ROOT / "configs" / "bigvgan" / f"{BIGVGAN_BY_RATE[sample_rate]}.json").read_text())


def vocoder(config: dict, device: str):
    """The config's vocoder (BigVGAN v2 at its rate, or HiFT), weight norm folded, fp32, eval."""
    from modules.vocoders import BigVGAN, Vocoder, build_hift
    from modules.weight_norm import fold_weight_norm
    if config["model_params"]["vocoder"]["type"] == "bigvgan":
        net = BigVGAN(bigvgan_config(config["preprocess_params"]["sr"]))
    else:
        net = build_hift(ROOT / "configs" / "hifigan.yml")
    return Vocoder(fold_weight_norm(net).eval().to(device))


def rmvpe(device: str):
    from modules.f0.rmvpe import E2E, RMVPE
    return RMVPE(E2E(4, 1, (2, 2)).to(device))


def campplus(device: str):
    from modules.style_encoder import CAMPPlus
    return CAMPPlus().eval().to(device)


def save_whisper_small(folder: Path) -> Path:
    model, extractor = whisper_small()
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


def save_campplus(path: Path) -> Path:
    torch.save(campplus("cpu").state_dict(), path)
    return path


def speech_clips() -> list[Path]:
    """Speech clips to cut benchmark data from: the fixture's real ones when present, else synthesized ones."""
    from parity_kinds._common import FIXTURE_PRESENT, PARITY_DIR
    if FIXTURE_PRESENT:
        return sorted((PARITY_DIR / "audio").glob("s*p*.wav"))
    from tiny import AUDIO
    return sorted(AUDIO.glob("s*p*.wav"))


def write_full_size_model(folder: Path, preset: str) -> Path:
    """The preset with every asset a local file of random full-size weights in the official format: a DiT
    checkpoint ({'net': ...}), a Whisper-small directory (its 12-layer decoder included, as the hub's file has
    it) or XLS-R-300m (all 24 layers, as the hub's), CAM++, RMVPE (F0 presets), and BigVGAN's directory
    (config.json + weight-normed bigvgan_generator.pt) or HiFT. Returns the written YAML, so the benchmarks
    load through exactly the code of a user's conversion (build_converter) or fine-tuning (train.py)."""
    import yaml
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    from modules.config import load_config, preset_path
    from modules.f0.rmvpe import E2E
    from modules.model import build_model
    from modules.vocoders import BigVGAN, build_hift

    folder.mkdir(parents=True, exist_ok=True)
    path = preset_path(preset)
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    mp = raw["model_params"]
    torch.manual_seed(0)
    torch.save({"net": {p: m.state_dict() for p, m in build_model(cfg).parts().items()}}, folder / "dit.pth")
    raw["pretrained_model"] = str(folder / "dit.pth")

    content_dir = folder / "content_encoder"
    if mp["speech_tokenizer"]["type"] == "whisper":
        WhisperModel(WhisperConfig(**{**WHISPER_SMALL, "decoder_layers": 12, "decoder_ffn_dim": 3072})
                     ).save_pretrained(content_dir)
        WhisperFeatureExtractor().save_pretrained(content_dir)
    else:
        model, extractor = xlsr_300m()
        model.save_pretrained(content_dir)
        extractor.save_pretrained(content_dir)
    mp["speech_tokenizer"]["name"] = str(content_dir)
    mp["style_encoder"]["campplus_path"] = str(save_campplus(folder / "campplus.bin"))
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
        torch.save(build_hift(ROOT / "configs" / "hifigan.yml").state_dict(), folder / "hift.pt")
        mp["vocoder"]["name"] = str(folder / "hift.pt")
    raw["log_dir"] = str(folder / "runs")
    out = folder / f"{preset}.yml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out
