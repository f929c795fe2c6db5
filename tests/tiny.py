"""Tiny offline models and test clips, all made by code here: nothing is read from the parity fixture folder.

`write_tiny_config(directory, kind)` writes a model YAML whose every asset key is a local path (this is how a
fully offline model is described); `AUDIO / "<name>.wav"` are synthesized clips (see synthetic_audio.py).
Everything is generated once and cached in `tests/.generated/<hash of this code>/` (git-ignored; override the
folder with SEEDVC_TEST_ASSETS). The sizes follow the parity fixture's small configs: DiT hidden 64, 4 heads,
depth 5, content 64; WaveNet hidden 64, 3 layers; length regulator 64 channels from 32-dim content; Whisper and
XLS-R with 32-dim features; BigVGAN with 64 initial channels. Weights are random, seeded, in the official
file formats.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

import synthetic_audio

ROOT = Path(__file__).resolve().parents[1]
BIGVGAN_CONFIGS = ROOT / "configs" / "bigvgan"
PRESET_OF = {"f0_44k": "config_dit_mel_seed_uvit_whisper_base_f0_44k",
             "wavenet_22k": "config_dit_mel_seed_uvit_whisper_small_wavenet",
             "xlsr_tiny": "config_dit_mel_seed_uvit_xlsr_tiny"}
BIGVGAN_OF = {"bigvgan_22k": "bigvgan_v2_22khz_80band_256x", "bigvgan_44k": "bigvgan_v2_44khz_128band_512x"}
# (model_params section, key) -> small value, as in the fixture's small configs.
SMALL_DIMS = {("DiT", "hidden_dim"): 64, ("DiT", "num_heads"): 4, ("DiT", "depth"): 5, ("DiT", "content_dim"): 64,
              ("wavenet", "hidden_dim"): 64, ("wavenet", "num_layers"): 3,
              ("length_regulator", "channels"): 64, ("length_regulator", "in_channels"): 32}
# What the official trainer writes into a training checkpoint besides the weights (fixture values).
CHECKPOINT_ITERS, CHECKPOINT_EPOCH = 1234, 5


def _cache_root() -> Path:
    sources = b"".join(Path(m.__file__).read_bytes() for m in (synthetic_audio,)) + Path(__file__).read_bytes()
    key = hashlib.sha256(sources + torch.__version__.encode()).hexdigest()[:12]
    return Path(os.environ.get("SEEDVC_TEST_ASSETS", ROOT / "tests" / ".generated")) / key


def _cached(name: str, build: Callable[[Path], None]) -> Path:
    """`<cache>/<name>`, built by `build(folder)` into a temporary folder and renamed into place (safe when
    several test processes start at once)."""
    final = _cache_root() / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        build(work)
        os.rename(work, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


AUDIO = _cached("audio", synthetic_audio.write_clips)


# ------------------------------------------------------------------------------------------ random weights

def perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter, in order, so nothing stays at its (often zero) initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def bigvgan_config(name: str, **overrides) -> dict:
    """A BigVGAN v2 config from configs/bigvgan/ (`name` without .json), with keys overridden."""
    return {**json.loads((BIGVGAN_CONFIGS / f"{name}.json").read_text()), **overrides}


def small_preset_text(preset: str) -> str:
    """The preset YAML with the SMALL_DIMS lines changed and every other line as it is."""
    out, section = [], None
    for line in (ROOT / "configs" / "presets" / f"{preset}.yml").read_text().splitlines(keepends=True):
        header = re.match(r"^  (\w+):\s*$", line)
        if header:
            section = header.group(1)
        entry = re.match(r"^    (\w+): ", line)
        if entry and (section, entry.group(1)) in SMALL_DIMS:
            line = f"    {entry.group(1)}: {SMALL_DIMS[section, entry.group(1)]}\n"
        out.append(line)
    return "".join(out)


def _write_dit(folder: Path, sub: str, seed: int) -> None:
    """config.yml plus the three official checkpoint layouts: training, DDP-prefixed and final."""
    from modules.config import load_config
    from modules.model import build_model
    from modules.training.trainer import BETAS, EPS, LR_GAMMA, WEIGHT_DECAY

    (folder / "config.yml").write_text(small_preset_text(PRESET_OF[sub]))
    torch.manual_seed(seed)
    model = build_model(load_config(folder / "config.yml"))
    parts = model.parts()
    perturb(torch.nn.ModuleList(parts.values()), seed)
    net = {part: module.state_dict() for part, module in parts.items()}
    # the original's optimizers: for-loop AdamW (no fused / foreach choice saved in the groups)
    optimizers = {part: torch.optim.AdamW(module.parameters(), lr=1e-5, betas=BETAS, eps=EPS,
                                          weight_decay=WEIGHT_DECAY) for part, module in parts.items()}
    schedulers = {part: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=LR_GAMMA) for part, opt in optimizers.items()}
    torch.save({"net": net, "optimizer": [(p, o.state_dict()) for p, o in optimizers.items()],
                "scheduler": [(p, s.state_dict()) for p, s in schedulers.items()],
                "iters": CHECKPOINT_ITERS, "epoch": CHECKPOINT_EPOCH}, folder / "checkpoint.pth")
    torch.save({"net": {part: {f"module.{k}": v for k, v in sd.items()} for part, sd in net.items()}},
               folder / "checkpoint_ddp.pth")
    torch.save({"net": net}, folder / "ft_model.pth")


def _write_whisper(folder: Path, seed: int) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
    torch.manual_seed(seed)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                           vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2,
                           suppress_tokens=None, begin_suppress_tokens=None)
    perturb(WhisperModel(config).eval(), seed).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def _write_xlsr(folder: Path, seed: int) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
                            num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, vocab_size=32)
    perturb(Wav2Vec2Model(config).eval(), seed).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)


def _write_bigvgan(folder: Path, name: str, seed: int) -> None:
    from modules.vocoders.bigvgan import BigVGAN
    h = bigvgan_config(name, upsample_initial_channel=64)
    (folder / "config.json").write_text(json.dumps(h, indent=1))
    torch.manual_seed(seed)
    torch.save({"generator": perturb(BigVGAN(h), seed).state_dict()}, folder / "bigvgan_generator.pt")


def _write_campplus(folder: Path, seed: int) -> None:
    """Random CAM++ in the released file's key layout (pooling and projection under `xvector.`)."""
    from modules.style_encoder import CAMPPlus
    torch.manual_seed(seed)
    state = perturb(CAMPPlus(), seed).state_dict()
    torch.save({(f"xvector.{k}" if k.startswith("dense.") else k): v for k, v in state.items()},
               folder / "campplus_cn_common.bin")


def _write_models(root: Path) -> None:
    for i, sub in enumerate(PRESET_OF):
        (root / sub).mkdir()
        _write_dit(root / sub, sub, seed=i)
    for i, (sub, name) in enumerate(BIGVGAN_OF.items()):
        (root / sub).mkdir()
        _write_bigvgan(root / sub, name, seed=10 + i)
    _write_whisper(root / "whisper_tiny", seed=1000)
    _write_xlsr(root / "xlsr_content", seed=1001)
    (root / "campplus").mkdir()
    _write_campplus(root / "campplus", seed=2000)


def models() -> Path:
    """The folder of tiny model files (built on first use): f0_44k/, wavenet_22k/, xlsr_tiny/ (config.yml,
    checkpoint.pth, checkpoint_ddp.pth, ft_model.pth), bigvgan_22k/, bigvgan_44k/, whisper_tiny/,
    xlsr_content/, campplus/campplus_cn_common.bin."""
    return _cached("models", _write_models)


def dit_config(sub: str) -> Path:
    """config.yml of a small DiT: `f0_44k`, `wavenet_22k` or `xlsr_tiny`."""
    return models() / sub / "config.yml"


def dit_checkpoint(sub: str, layout: str = "checkpoint") -> Path:
    """`checkpoint` (training format with optimizer, iters 1234, epoch 5), `checkpoint_ddp` or `ft_model`."""
    return models() / sub / f"{layout}.pth"


def campplus_weights() -> Path:
    return models() / "campplus" / "campplus_cn_common.bin"


def write_tiny_config(directory: Path, kind: str = "speech", log_dir: Path | None = None) -> Path:
    """speech: 22.05 kHz WaveNet-head DiT + Whisper-tiny + BigVGAN-22k (small); singing: 44.1 kHz F0 model
    with FCPE (weights from the torchfcpe wheel) and BigVGAN-44k (small). Returns the YAML path."""
    sub, vocoder = {"speech": ("wavenet_22k", "bigvgan_22k"), "singing": ("f0_44k", "bigvgan_44k")}[kind]
    root = models()
    cfg = yaml.safe_load((root / sub / "config.yml").read_text())
    cfg["pretrained_model"] = str(root / sub / "checkpoint.pth")
    mp = cfg["model_params"]
    mp["speech_tokenizer"]["name"] = str(root / "whisper_tiny")
    mp["vocoder"]["name"] = str(root / vocoder)
    mp["style_encoder"]["campplus_path"] = str(campplus_weights())
    if kind == "singing":
        mp["f0_extractor"] = {"type": "fcpe"}
    if log_dir is not None:
        cfg["log_dir"] = str(log_dir)
    path = Path(directory) / f"tiny_{kind}.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
