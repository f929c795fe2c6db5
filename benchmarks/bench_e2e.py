"""End-to-end conversion benchmark: a 10 s source and a 5 s reference through each official preset at full
size with random weights (no downloads), 10 steps, CFG 0.7, on CPU by default.

    python benchmarks/bench_e2e.py [--steps 10] [--cfg 0.7] [--device cpu] [--preset NAME]

Prints seconds per stage (load, content, style, F0, DiT, vocoder), total RTF, time to the first streamed chunk
and peak RSS. Whisper-small / XLS-R-300m / RMVPE are built at their real sizes from their configs with random
weights; FCPE uses its bundled weights.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _models  # noqa: E402  (needs the path above)

PRESETS = ["config_dit_mel_seed_uvit_whisper_base_f0_44k", "config_dit_mel_seed_uvit_whisper_small_wavenet",
           "config_dit_mel_seed_uvit_xlsr_tiny"]


def _timed(fn, timings: dict, name: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return out
    return wrapper


def build_random_converter(preset: str, device: str, timings: dict):
    """A VoiceConverter for an official preset at full size with random weights; the front-ends add their
    seconds to `timings` (content, style, f0). Returns (converter, seconds to build). bench_live.py uses it."""
    import torch

    from modules.config import load_config, preset_path
    from modules.model import build_model
    from modules.pipeline import Frontends, VoiceConverter
    from modules.style_encoder import style_embedding

    torch.manual_seed(0)
    t0 = time.perf_counter()
    config = load_config(preset_path(preset))
    mp = config["model_params"]
    model = build_model(config).eval()
    content = _models.content_encoder(mp["speech_tokenizer"]["type"], device)
    campplus = _models.campplus(device)
    vocoder = _models.vocoder(config, device)
    f0 = None
    if mp["length_regulator"].get("f0_condition"):
        rmvpe = _models.rmvpe(device)
        f0 = _timed(lambda w: rmvpe.extract(w, threshold=0.03), timings, "f0")
    frontends = Frontends(content=_timed(content, timings, "content"),
                          style=_timed(lambda w: style_embedding(campplus, w), timings, "style"),
                          vocoder=vocoder, f0=f0)
    return VoiceConverter(config, model, frontends, device=device), time.perf_counter() - t0


def run_one(preset: str, steps: int, cfg_rate: float, device: str) -> dict:
    import numpy as np

    from modules.pipeline import ConversionSettings

    timings: dict[str, float] = {}
    engine, load_s = build_random_converter(preset, device, timings)
    sr = engine.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(10 * sr) / sr
    source = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))) +
              0.01 * rng.standard_normal(t.size)).astype(np.float32)
    reference = source[: 5 * sr] * 0.8
    settings = ConversionSettings(steps, 1.0, cfg_rate, seed=0)
    stage: dict[str, float] = {}
    start = time.perf_counter()
    first_chunk = None
    pieces = []
    for piece in engine.convert_stream(source, reference, settings, timings=stage):
        first_chunk = first_chunk or time.perf_counter() - start
        pieces.append(piece)
    total = time.perf_counter() - start
    out_seconds = sum(map(len, pieces)) / sr
    return {"preset": preset, "load_s": load_s, "content_s": timings.get("content", 0.0),
            "style_s": timings.get("style", 0.0), "f0_s": timings.get("f0", 0.0), "dit_s": stage["dit"],
            "vocoder_s": stage["vocoder"], "total_s": total, "rtf": total / out_seconds,
            "first_chunk_s": first_chunk, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=0.7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", choices=PRESETS, help="run one preset in this process")
    args = parser.parse_args()
    if args.preset:
        print(json.dumps(run_one(args.preset, args.steps, args.cfg, args.device)))
        return
    print(f"10 s source, 5 s reference, {args.steps} steps, CFG {args.cfg}, device {args.device}, random weights")
    cols = ["load_s", "content_s", "style_s", "f0_s", "dit_s", "vocoder_s", "total_s", "rtf", "first_chunk_s", "peak_rss_gib"]
    print(f"{'preset':48s} " + " ".join(f"{c:>13s}" for c in cols))
    for preset in PRESETS:
        out = subprocess.run([sys.executable, __file__, "--preset", preset, "--steps", str(args.steps),
                              "--cfg", str(args.cfg), "--device", args.device], check=True, capture_output=True,
                             text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{preset:48s} " + " ".join(f"{r[c]:13.2f}" for c in cols))


if __name__ == "__main__":
    main()
