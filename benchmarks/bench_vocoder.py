"""The vocoders at full size with random weights: BigVGAN v2 22 and 44 kHz (configs/bigvgan/) and HiFT, on an
N-second mel. Prints the seconds of every run, min and median over --repeat, the real-time factor (seconds per
second of audio) and, with --profile, the share of the time per op group from one extra profiled run.

    python benchmarks/bench_vocoder.py [--seconds 10] [--repeat 3] [--only bigvgan44] [--profile] [--device cpu]

Needs no downloads and no ../shared. Vocoders always run in fp32. On the CPU freed memory is kept for reuse as
the conversion engine keeps it (modules/host_memory.py); SEEDVC_RELEASE_FREED_MEMORY=1 measures glibc's default. On CUDA and MPS the device is synchronised
before each clock read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _models  # noqa: E402  (needs the path above)

VOCODERS = {"bigvgan22": ("bigvgan", 22050), "bigvgan44": ("bigvgan", 44100), "hift": ("hifigan", 22050)}


def build(name: str, device: str, seconds: float):
    """(Vocoder with random full-size weights, a log-mel-like input of `seconds`)."""
    kind, rate = VOCODERS[name]
    torch.manual_seed(0)
    vocoder = _models.vocoder({"model_params": {"vocoder": {"type": kind}}, "preprocess_params": {"sr": rate}}, device)
    if kind == "bigvgan":
        h = _models.bigvgan_config(rate)
        n_mels, hop = h["num_mels"], h["hop_size"]
    else:
        n_mels, hop = 80, vocoder.hop_length
    mel = torch.randn(1, n_mels, round(seconds * rate / hop), device=device) * 0.5 - 4
    return vocoder, mel


def run_once(vocoder, mel: torch.Tensor) -> float:
    from modules.devices import synchronize
    generator = torch.Generator(device=mel.device).manual_seed(0)  # HiFT's source noise; BigVGAN ignores it
    synchronize(mel.device)
    start = time.perf_counter()
    vocoder(mel, generator=generator)
    synchronize(mel.device)
    return time.perf_counter() - start


def module_group(module: nn.Module) -> str | None:
    """The op group a module's time is booked to (None: its children are booked instead)."""
    from modules.vocoders.bigvgan import AntiAliasedActivation
    if isinstance(module, AntiAliasedActivation):
        return "anti-aliased activation (up, snake, down)"
    if isinstance(module, nn.ConvTranspose1d):
        return "transposed conv (up-sampling layers)"
    if isinstance(module, nn.Conv1d):
        return "conv1d"
    return None


def profile_shares(vocoder, mel: torch.Tensor) -> tuple[dict[str, float], str]:
    """(seconds per module group of one run, the profiler's table of the top ops by self time).
    Every grouped module is wrapped in a record_function range through forward hooks."""
    from torch.profiler import ProfilerActivity, profile, record_function
    open_ranges: list = []

    def enter(module, _inputs):
        open_ranges.append(record_function(f"group: {module_group(module)}"))
        open_ranges[-1].__enter__()

    def leave(module, _inputs, _output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for module in vocoder.modules():
        if module_group(module) is not None:
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            total = run_once(vocoder, mel)
    finally:
        for handle in handles:
            handle.remove()
    shares: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("group: "):
            shares[event.key[len("group: "):]] += event.cpu_time_total / 1e6
    shares["other (residual adds, fusion, tanh/clamp)"] = total - sum(shares.values())
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return {"total": total, **shares}, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length the mel stands for")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per vocoder, after one warm-up run")
    parser.add_argument("--only", nargs="+", choices=sorted(VOCODERS), default=list(VOCODERS))
    parser.add_argument("--profile", action="store_true", help="one more run under torch.profiler: time shares")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from modules.host_memory import keep_freed_host_memory
    kept = args.device == "cpu" and keep_freed_host_memory()
    print(f"{args.seconds:g} s of audio, device {args.device}, torch threads {torch.get_num_threads()}, fp32, "
          f"freed host memory {'kept for reuse (as the engine does)' if kept else 'released (allocator default)'}")
    for name in args.only:
        vocoder, mel = build(name, args.device, args.seconds)
        run_once(vocoder, mel[..., : max(1, mel.shape[-1] // 10)])  # warm-up: allocations, kernel choice
        runs = [run_once(vocoder, mel) for _ in range(args.repeat)]
        best, median = min(runs), statistics.median(runs)
        print(f"{name:10s} runs " + " ".join(f"{t:.2f}" for t in runs)
              + f" s | min {best:.2f} median {median:.2f} s | RTF min {best / args.seconds:.3f}"
              + f" median {median / args.seconds:.3f}")
        if args.profile:
            shares, table = profile_shares(vocoder, mel)
            total = shares.pop("total")
            print(f"  profiled run {total:.2f} s (profiler overhead included)")
            for group, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
                print(f"  {group:45s} {seconds:8.2f} s {100 * seconds / total:5.1f} %")
            print(table)
        del vocoder


if __name__ == "__main__":
    with torch.no_grad():
        main()
