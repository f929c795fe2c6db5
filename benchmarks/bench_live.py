"""Live conversion benchmark: per-block compute and algorithmic latency of the live engine (modules/live.py)
for the XLS-R tiny + HiFT preset at full size with random weights (no downloads), on CPU by default.

    python benchmarks/bench_live.py [--blocks 0.18 0.3 0.5] [--steps 4 10] [--measure 4] [--device cpu]

For every block size and step count: one warm-up block, then --measure blocks of a synthetic voiced source
(VAD off, so every block is converted). Prints the mean and worst compute seconds per block split into content
encoder, vocoder and the rest (DiT), the algorithmic latency (block + right context + crossfade + SOLA search),
the end-to-end estimate (latency + mean compute) and whether the engine keeps up (worst compute < block).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PRESET = "config_dit_mel_seed_uvit_xlsr_tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=float, nargs="+", default=[0.18, 0.3, 0.5])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10])
    parser.add_argument("--measure", type=int, default=4, help="blocks timed per case, after one warm-up")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import numpy as np
    import torch
    from bench_e2e import _timed, build_random_converter

    from modules.live import LiveEngine, LiveSettings

    timings: dict[str, float] = {}
    converter, load_s = build_random_converter(PRESET, args.device, timings)
    converter.frontends.vocoder = _timed(converter.frontends.vocoder, timings, "vocoder")
    sr = converter.sample_rate
    t = np.arange(60 * sr) / sr
    source = (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t)))).astype(np.float32)
    reference = source[: 5 * sr] * 0.8
    print(f"# {PRESET} full size, random weights, {args.device}, torch threads {torch.get_num_threads()}, "
          f"built in {load_s:.1f} s")
    print("block_s steps latency_ms compute_mean_ms compute_max_ms content_ms vocoder_ms dit_ms e2e_ms keeps_up")
    for block_seconds in args.blocks:
        for steps in args.steps:
            settings = LiveSettings(block_seconds=block_seconds, diffusion_steps=steps, vad_threshold=0.0)
            engine = LiveEngine(converter, reference, settings)
            block, position, computes = engine.block_samples, 0, []
            timings.clear()
            for index in range(args.measure + 1):
                if index == 1:
                    timings.clear()                      # the warm-up block does not count
                started = time.perf_counter()
                engine.process(source[position: position + block])
                if index:
                    computes.append(time.perf_counter() - started)
                position += block
            n = len(computes)
            content, vocoder = 1000 * timings.get("content", 0) / n, 1000 * timings.get("vocoder", 0) / n
            mean, worst = 1000 * sum(computes) / n, 1000 * max(computes)
            latency = 1000 * engine.latency_seconds
            print(f"{block / sr:.2f} {steps:5d} {latency:10.0f} {mean:15.0f} {worst:14.0f} {content:10.0f} "
                  f"{vocoder:10.0f} {mean - content - vocoder:6.0f} {latency + mean:6.0f} "
                  f"{'yes' if worst < 1000 * block / sr else 'no'}", flush=True)


if __name__ == "__main__":
    main()
