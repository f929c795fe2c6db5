"""The pretrained parts at their real sizes with random weights (no downloads), shared by the benchmarks.

Whisper-small's encoder, XLS-R-300m cut to 12 layers, RMVPE, CAM++ and both BigVGAN v2 generators are built
from their published hyperparameters; FCPE uses the weights bundled with torchfcpe; HiFT uses configs/hifigan.yml.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The architecture part of nvidia/bigvgan_v2_22khz_80band_256x and bigvgan_v2_44khz_128band_512x config.json.
_BIGVGAN_COMMON = {"resblock": "1", "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
                   "resblock_dilation_sizes": [[1, 3, 5]] * 3, "use_tanh_at_final": False, "use_bias_at_final": False,
                   "activation": "snakebeta", "snake_logscale": True}
BIGVGAN = {
    22050: {**_BIGVGAN_COMMON, "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
            "num_mels": 80, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "sampling_rate": 22050},
    44100: {**_BIGVGAN_COMMON, "upsample_rates": [8, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [16, 8, 4, 4, 4, 4],
            "num_mels": 128, "n_fft": 2048, "hop_size": 512, "win_size": 2048, "sampling_rate": 44100},
}


def content_encoder(kind: str, device: str, fp16: bool = True):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    from modules.content_encoder import ContentEncoder
    if kind == "whisper":  # whisper-small encoder dimensions
        whisper = WhisperModel(WhisperConfig(d_model=768, encoder_layers=12, encoder_attention_heads=12,
                                             decoder_layers=1, encoder_ffn_dim=3072, num_mel_bins=80))
        del whisper.decoder
        return ContentEncoder("whisper", whisper, WhisperFeatureExtractor(), device, fp16)
    xlsr = Wav2Vec2Model(Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096, feat_extract_norm="layer", conv_bias=True,
                                        do_stable_layer_norm=True))
    xlsr.encoder.layers = xlsr.encoder.layers[:12]
    return ContentEncoder("xlsr", xlsr, Wav2Vec2FeatureExtractor(return_attention_mask=True), device, fp16)


def bigvgan(sample_rate: int, device: str):
    from modules.vocoders import BigVGAN, Vocoder
    from modules.weight_norm import fold_weight_norm
    return Vocoder(fold_weight_norm(BigVGAN(BIGVGAN[sample_rate])).eval().to(device))


def hift(device: str):
    from modules.vocoders import Vocoder, build_hift
    from modules.weight_norm import fold_weight_norm
    return Vocoder(fold_weight_norm(build_hift(ROOT / "configs" / "hifigan.yml")).eval().to(device))


def rmvpe(device: str):
    from modules.f0.rmvpe import E2E, RMVPE
    return RMVPE(E2E(4, 1, (2, 2)).eval(), device)


def campplus(device: str):
    from modules.style_encoder import CAMPPlus
    return CAMPPlus().eval().to(device)


def vocoder_for(config: dict, device: str):
    """The vocoder a preset names, at full size."""
    mp = config["model_params"]
    if mp["vocoder"]["type"] == "bigvgan":
        return bigvgan(config["preprocess_params"]["sr"], device)
    return hift(device)


def generator(device: str, seed: int = 0) -> torch.Generator:
    """A seeded generator on `device` (HiFT draws its source noise on the mel's device)."""
    return torch.Generator(device=device).manual_seed(seed)
