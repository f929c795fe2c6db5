"""CPU time of each pretrained part on 10 s of audio at full size (random weights where the real ones cannot
be downloaded here; CAM++ and FCPE use their real weights). Prints seconds per part and the real-time factor.

    python benchmarks/bench_frontends.py [--device cpu] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MANIFESTS = ROOT.parent / "shared" / "fixtures" / "parity" / "manifests"


def timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up (first-call allocations, kernel selection)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WhisperConfig, \
        WhisperFeatureExtractor, WhisperModel

    from modules.content_encoder import ContentEncoder
    from modules.f0 import load_fcpe
    from modules.f0.rmvpe import E2E, RMVPE
    from modules.style_encoder import CAMPPlus, style_embedding
    from modules.vocoders import BigVGAN, Vocoder, build_hift
    from modules.weight_norm import fold_weight_norm

    torch.manual_seed(0)
    dev, s = args.device, args.seconds
    wave16 = torch.from_numpy((0.3 * np.sin(2 * np.pi * 200 * np.arange(int(16000 * s)) / 16000)).astype(np.float32))
    whisper = WhisperModel(WhisperConfig(d_model=768, encoder_layers=12, encoder_attention_heads=12, decoder_layers=1,
                                         encoder_ffn_dim=3072, num_mel_bins=80))
    del whisper.decoder
    xlsr = Wav2Vec2Model(Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096, feat_extract_norm="layer", conv_bias=True,
                                        do_stable_layer_norm=True))
    xlsr.encoder.layers = xlsr.encoder.layers[:12]
    parts = {
        "content: whisper-small encoder": ContentEncoder("whisper", whisper, WhisperFeatureExtractor(), dev),
        "content: xls-r-300m (12 layers)": ContentEncoder("xlsr", xlsr, Wav2Vec2FeatureExtractor(), dev),
    }
    campplus = CAMPPlus().eval().to(dev)
    rmvpe = RMVPE(E2E(4, 1, (2, 2)).eval(), dev)
    fcpe = load_fcpe(None, dev)
    rows = [(name, timed(lambda e=enc: e(wave16))) for name, enc in parts.items()]
    rows.append(("style: CAM++ (fbank + model)", timed(lambda: style_embedding(campplus, wave16))))
    rows.append(("F0: RMVPE", timed(lambda: rmvpe.extract(wave16))))
    rows.append(("F0: FCPE", timed(lambda: fcpe.extract(wave16))))
    for name, manifest in (("vocoder: BigVGAN 22k", "bigvgan_22k_full.json"), ("vocoder: BigVGAN 44k", "bigvgan_44k_full.json")):
        h = json.loads((MANIFESTS / manifest).read_text())["config"]
        voc = Vocoder(fold_weight_norm(BigVGAN(h)).eval().to(dev))
        mel = torch.randn(1, h["num_mels"], round(s * h["sampling_rate"] / h["hop_size"]), device=dev) * 0.5 - 4
        rows.append((name, timed(lambda: voc(mel), repeats=1)))
    hift = Vocoder(fold_weight_norm(build_hift(ROOT / "configs" / "hifigan.yml")).eval().to(dev))
    mel = torch.randn(1, 80, round(s * 22050 / 256), device=dev) * 0.5 - 4
    rows.append(("vocoder: HiFT 22k", timed(lambda: hift(mel, generator=torch.Generator().manual_seed(0)))))
    print(f"{s:g} s of audio, device {dev}, torch threads {torch.get_num_threads()}")
    print(f"{'part':34s} {'seconds':>8s} {'RTF':>6s}")
    for name, seconds in rows:
        print(f"{name:34s} {seconds:8.2f} {seconds / s:6.2f}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
