"""End-to-end conversion benchmark: a 10 s source and a 5 s reference through each official preset at full
size with random weights (no downloads), 10 steps, CFG 0.7, on CPU by default.

    python benchmarks/bench_e2e.py [--steps 10] [--cfg 0.7] [--device cpu] [--fp16 true] [--preset NAME]
                                   [--seconds 10] [--reference-seconds 5]

Prints seconds per stage (load, content, style, F0, DiT, vocoder), total RTF, time to the first streamed chunk,
peak RSS and, on CUDA, torch.cuda.max_memory_allocated. On CUDA and MPS the device is synchronised before every
clock read, so each stage is charged its own queued work, and one short conversion warms the device up first.
Whisper-small / XLS-R-300m / RMVPE are built at their real sizes with random weights (benchmarks/_models.py);
FCPE uses its bundled weights.
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
COLUMNS = ["load_s", "content_s", "style_s", "f0_s", "dit_s", "vocoder_s", "total_s", "rtf", "first_chunk_s",
           "peak_rss_gib", "max_alloc_gib"]


def _timed(fn, timings: dict, name: str, device=None):
    """fn, adding its seconds to timings[name]; with a device, synchronised before each clock read."""
    from modules.devices import synchronize

    def wrapper(*args, **kwargs):
        if device is not None:
            synchronize(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if device is not None:
            synchronize(device)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return out
    return wrapper


def build_random_converter(preset: str, device: str, timings: dict, fp16: bool = True):
    """A VoiceConverter for an official preset at full size with random weights; the front-ends add their
    seconds to `timings` (content, style, f0). Returns (converter, seconds to build). bench_live.py uses it."""
    import torch

    from modules.config import load_config, preset_path
    from modules.model import build_model
    from modules.pipeline import F0_THRESHOLD, CampplusStyle, Frontends, ThresholdedF0, VoiceConverter

    torch.manual_seed(0)
    t0 = time.perf_counter()
    config = load_config(preset_path(preset))
    mp = config["model_params"]
    f0 = ThresholdedF0(_models.rmvpe(device), F0_THRESHOLD) if mp["length_regulator"].get("f0_condition") else None
    frontends = Frontends(content=_models.content_encoder(mp["speech_tokenizer"]["type"], device, fp16),
                          style=CampplusStyle(_models.campplus(device)), vocoder=_models.vocoder(config, device),
                          f0=f0)
    # The engine moves the DiT to the device and checks every front-end is there; then the timers go on.
    engine = VoiceConverter(config, build_model(config), frontends, device=device, fp16=fp16)
    for role in ("content", "style", "f0"):
        if getattr(frontends, role) is not None:
            setattr(frontends, role, _timed(getattr(frontends, role), timings, role, engine.device))
    return engine, time.perf_counter() - t0


def run_one(preset: str, steps: int, cfg_rate: float, device: str, fp16: bool = True, seconds: float = 10.0,
            reference_seconds: float = 5.0) -> dict:
    import numpy as np
    import torch

    from modules.devices import peak_memory_bytes
    from modules.pipeline import ConversionSettings

    timings: dict[str, float] = {}
    engine, load_s = build_random_converter(preset, device, timings, fp16)
    dev = engine.device
    sr = engine.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    source = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))) +
              0.01 * rng.standard_normal(t.size)).astype(np.float32)
    reference = source[: int(reference_seconds * sr)] * 0.8
    if dev.type != "cpu":  # kernel selection and allocator growth, not counted
        # another reference, so the timed run analyses its own (the reference features are cached by content)
        engine.convert(source[: 2 * sr], reference[: 2 * sr] * 0.5, ConversionSettings(1, 1.0, cfg_rate, seed=0))
        timings.clear()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
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
    peak = peak_memory_bytes(dev)
    return {"preset": preset, "device": device, "fp16": engine.fp16, "load_s": load_s,
            "content_s": timings.get("content", 0.0), "style_s": timings.get("style", 0.0),
            "f0_s": timings.get("f0", 0.0), "dit_s": stage["dit"], "vocoder_s": stage["vocoder"], "total_s": total,
            "rtf": total / out_seconds, "first_chunk_s": first_chunk,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "max_alloc_gib": None if peak is None else peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=0.7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", default="true", choices=("true", "false"),
                        help="fp16 autocast for the DiT and fp16 content encoder on CUDA")
    parser.add_argument("--seconds", type=float, default=10.0, help="source length")
    parser.add_argument("--reference-seconds", type=float, default=5.0)
    parser.add_argument("--preset", choices=PRESETS, help="run one preset in this process")
    args = parser.parse_args()
    options = ["--steps", str(args.steps), "--cfg", str(args.cfg), "--device", args.device, "--fp16", args.fp16,
               "--seconds", str(args.seconds), "--reference-seconds", str(args.reference_seconds)]
    if args.preset:
        print(json.dumps(run_one(args.preset, args.steps, args.cfg, args.device, args.fp16 == "true", args.seconds,
                                 args.reference_seconds)))
        return
    print(f"{args.seconds:g} s source, {args.reference_seconds:g} s reference, {args.steps} steps, CFG {args.cfg}, "
          f"device {args.device}, fp16 {args.fp16}, random weights")
    print(f"{'preset':48s} " + " ".join(f"{c:>13s}" for c in COLUMNS))
    for preset in PRESETS:
        out = subprocess.run([sys.executable, __file__, "--preset", preset, *options], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{preset:48s} " + " ".join(f"{r[c]:13.2f}" if r[c] is not None else f"{'-':>13s}" for c in COLUMNS))


if __name__ == "__main__":
    main()
