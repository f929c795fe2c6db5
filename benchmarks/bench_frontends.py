"""Time of each pretrained part on 10 s of audio at full size (random weights where the real ones cannot
be downloaded here; FCPE uses its bundled weights). Prints seconds per part, the real-time factor and, on
CUDA, the peak memory allocated by that part.

    python benchmarks/bench_frontends.py [--device cpu] [--seconds 10] [--fp16 true]

On CUDA and MPS the device is synchronised before each clock read.
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


def timed(fn, device: torch.device, repeats: int = 2) -> tuple[float, int | None]:
    """Mean seconds of fn() after one warm-up call (first-call allocations, kernel selection), and the peak
    bytes allocated on CUDA while it ran."""
    from modules.devices import peak_memory_bytes, synchronize
    fn()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats, peak_memory_bytes(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fp16", default="true", choices=("true", "false"), help="fp16 content encoders on CUDA")
    args = parser.parse_args()
    from modules.f0 import load_fcpe
    from modules.style_encoder import style_embedding

    torch.manual_seed(0)
    dev, s = torch.device(args.device), args.seconds
    fp16 = args.fp16 == "true"
    wave16 = torch.from_numpy((0.3 * np.sin(2 * np.pi * 200 * np.arange(int(16000 * s)) / 16000)).astype(np.float32))
    whisper = _models.content_encoder("whisper", args.device, fp16)
    xlsr = _models.content_encoder("xlsr", args.device, fp16)
    campplus = _models.campplus(args.device)
    rmvpe = _models.rmvpe(args.device)
    fcpe = load_fcpe(None, args.device)
    parts = [("content: whisper-small encoder", lambda: whisper(wave16)),
             ("content: xls-r-300m (12 layers)", lambda: xlsr(wave16)),
             ("style: CAM++ (fbank + model)", lambda: style_embedding(campplus, wave16)),
             ("F0: RMVPE", lambda: rmvpe(wave16)),
             ("F0: FCPE", lambda: fcpe(wave16))]
    rows = [(name, *timed(fn, dev)) for name, fn in parts]
    for rate in (22050, 44100):
        h = _models.bigvgan_config(rate)
        voc = _models.vocoder({"model_params": {"vocoder": {"type": "bigvgan"}}, "preprocess_params": {"sr": rate}},
                              args.device)
        mel = torch.randn(1, h["num_mels"], round(s * rate / h["hop_size"]), device=dev) * 0.5 - 4
        rows.append((f"vocoder: BigVGAN {rate // 1000}k", *timed(lambda v=voc, m=mel: v(m), dev, repeats=1)))
        del voc
    hift = _models.vocoder({"model_params": {"vocoder": {"type": "hifigan"}}}, args.device)
    mel = torch.randn(1, 80, round(s * 22050 / 256), device=dev) * 0.5 - 4
    rows.append(("vocoder: HiFT 22k", *timed(lambda: hift(mel, generator=torch.Generator(device=dev).manual_seed(0)), dev)))
    print(f"{s:g} s of audio, device {dev}, fp16 {args.fp16}, torch threads {torch.get_num_threads()}")
    print(f"{'part':34s} {'seconds':>8s} {'RTF':>6s} {'max alloc GiB':>14s}")
    for name, seconds, peak in rows:
        alloc = f"{peak / 2**30:14.2f}" if peak is not None else f"{'-':>14s}"
        print(f"{name:34s} {seconds:8.2f} {seconds / s:6.2f} {alloc}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
