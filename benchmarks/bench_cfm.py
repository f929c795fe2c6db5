"""Time one CFM inference per official preset at full size (random weights, CPU by default).

    python benchmarks/bench_cfm.py [--steps 10] [--cfg 0.7] [--seconds 10] [--device cpu] [--fp16 true]

Each preset runs in its own process so that the peak RSS printed is that preset's alone. On CUDA the device is
synchronised around the timed call and torch.cuda.max_memory_allocated is printed too.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = ["config_dit_mel_seed_uvit_whisper_base_f0_44k", "config_dit_mel_seed_uvit_whisper_small_wavenet",
           "config_dit_mel_seed_uvit_xlsr_tiny"]


def run_one(preset: str, steps: int, cfg_rate: float, seconds: float, device: str, fp16: bool = True) -> dict:
    import torch

    from modules.config import MelParams, load_config, preset_path
    from modules.devices import peak_memory_bytes, synchronize
    from modules.model import build_model

    torch.manual_seed(0)
    config = load_config(preset_path(preset))
    mel = MelParams.from_config(config)
    model = build_model(config, device).eval()
    T = round(seconds * mel.frame_rate)          # prompt + source frames
    P = T // 3                                   # a third of the context is the reference prompt
    D = config["model_params"]["length_regulator"]["channels"]
    mu = torch.randn(1, T, D, device=device)
    prompt = torch.randn(1, mel.n_mels, P, device=device)
    style = torch.randn(1, 192, device=device)
    lens = torch.tensor([T], device=device)
    dev = torch.device(device)
    autocast = torch.autocast(dev.type, dtype=torch.float16, enabled=fp16 and dev.type == "cuda")
    with autocast:
        model.cfm.inference(mu, lens, prompt, style, n_timesteps=1, inference_cfg_rate=cfg_rate)  # warm-up
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        synchronize(dev)
        start = time.perf_counter()
        model.cfm.inference(mu, lens, prompt, style, n_timesteps=steps, inference_cfg_rate=cfg_rate)
        synchronize(dev)
        elapsed = time.perf_counter() - start
    peak = peak_memory_bytes(dev)
    n_params = sum(p.numel() for p in model.parameters())
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"preset": preset, "frames": T, "params_M": n_params / 1e6, "steps": steps, "cfg": cfg_rate,
            "total_s": elapsed, "s_per_step": elapsed / steps, "rtf": elapsed / seconds, "peak_rss_gib": peak_gib,
            "max_alloc_gib": None if peak is None else peak / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=0.7)
    parser.add_argument("--seconds", type=float, default=10.0, help="context length (prompt + source)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", default="true", choices=("true", "false"), help="fp16 autocast on CUDA")
    parser.add_argument("--preset", choices=PRESETS, help="run one preset in this process")
    args = parser.parse_args()
    if args.preset:
        print(json.dumps(run_one(args.preset, args.steps, args.cfg, args.seconds, args.device, args.fp16 == "true")))
        return
    print(f"CFM inference, {args.steps} steps, CFG {args.cfg}, {args.seconds:g} s context, device {args.device}, "
          f"fp16 {args.fp16}")
    print(f"{'preset':50s} {'frames':>6s} {'params':>8s} {'s/step':>7s} {'total s':>8s} {'RTF':>6s} {'peak RSS':>9s} "
          f"{'max alloc':>10s}")
    for preset in PRESETS:
        out = subprocess.run([sys.executable, __file__, "--preset", preset, "--steps", str(args.steps),
                              "--cfg", str(args.cfg), "--seconds", str(args.seconds), "--device", args.device,
                              "--fp16", args.fp16], check=True, stdout=subprocess.PIPE, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        alloc = f"{r['max_alloc_gib']:7.2f}GiB" if r["max_alloc_gib"] is not None else f"{'-':>10s}"
        print(f"{preset:50s} {r['frames']:6d} {r['params_M']:7.1f}M {r['s_per_step']:7.3f} {r['total_s']:8.2f} "
              f"{r['rtf']:6.2f} {r['peak_rss_gib']:7.2f}GiB {alloc}")


if __name__ == "__main__":
    main()
