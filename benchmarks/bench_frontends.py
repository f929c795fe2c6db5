"""CPU time of each pretrained part on 10 s of audio at full size (random weights where the real ones cannot
be downloaded here; FCPE uses its bundled weights). Prints seconds per part and the real-time factor.

    python benchmarks/bench_frontends.py [--device cpu] [--seconds 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _models  # noqa: E402  (needs the path above)


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
    from modules.f0 import load_fcpe
    from modules.style_encoder import style_embedding

    torch.manual_seed(0)
    dev, s = args.device, args.seconds
    wave16 = torch.from_numpy((0.3 * np.sin(2 * np.pi * 200 * np.arange(int(16000 * s)) / 16000)).astype(np.float32))
    parts = {
        "content: whisper-small encoder": _models.content_encoder("whisper", dev),
        "content: xls-r-300m (12 layers)": _models.content_encoder("xlsr", dev),
    }
    campplus = _models.campplus(dev)
    rmvpe = _models.rmvpe(dev)
    fcpe = load_fcpe(None, dev)
    rows = [(name, timed(lambda e=enc: e(wave16))) for name, enc in parts.items()]
    rows.append(("style: CAM++ (fbank + model)", timed(lambda: style_embedding(campplus, wave16))))
    rows.append(("F0: RMVPE", timed(lambda: rmvpe.extract(wave16))))
    rows.append(("F0: FCPE", timed(lambda: fcpe.extract(wave16))))
    for name, rate in (("vocoder: BigVGAN 22k", 22050), ("vocoder: BigVGAN 44k", 44100)):
        h = _models.bigvgan_config(rate)
        voc = _models.vocoder({"model_params": {"vocoder": {"type": "bigvgan"}}, "preprocess_params": {"sr": rate}}, dev)
        mel = torch.randn(1, h["num_mels"], round(s * h["sampling_rate"] / h["hop_size"]), device=dev) * 0.5 - 4
        rows.append((name, timed(lambda: voc(mel), repeats=1)))
    hift = _models.vocoder({"model_params": {"vocoder": {"type": "hifigan"}}}, dev)
    mel = torch.randn(1, 80, round(s * 22050 / 256), device=dev) * 0.5 - 4
    rows.append(("vocoder: HiFT 22k", timed(lambda: hift(mel, generator=torch.Generator().manual_seed(0)))))
    print(f"{s:g} s of audio, device {dev}, torch threads {torch.get_num_threads()}")
    print(f"{'part':34s} {'seconds':>8s} {'RTF':>6s}")
    for name, seconds in rows:
        print(f"{name:34s} {seconds:8.2f} {seconds / s:6.2f}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
