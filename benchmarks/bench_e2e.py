"""End-to-end conversion benchmark: a 10 s source and a 5 s reference through each official preset at full
size with random weights (no downloads), 10 steps, CFG 0.7, on CPU by default.

    python benchmarks/bench_e2e.py [--steps 10] [--cfg 0.7] [--device cpu] [--preset NAME] [--repeat 3]
                                   [--precision fp32 bf16] [--compile]
                                   [--seconds 10] [--reference-seconds 5]

The models are written to files in the official formats first (benchmarks/_models.py) and loaded by
modules.pipeline.build_converter, exactly as inference.py loads them. Each (preset, variant) runs in its own
process, which converts `--repeat` times and prints, per stage, the min and median seconds (content, style,
F0, DiT, vocoder, total), the RTF, the time to the first streamed chunk, RSS after loading and the peak RSS,
the weights each model holds (MiB), the machine's measured fp32 (and bf16) GEMM throughput, and the DiT's
FLOPs, so its fraction of that limit is visible. Variants other than fp32 also print their error against
the fp32 output of the same process (mel max error on the first chunk, waveform SNR in dB).
On CUDA and MPS the device is synchronised before every clock read, so each stage is charged its own queued
work, one short conversion warms the device up first, and on CUDA torch.cuda.max_memory_allocated is printed.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import _models  # noqa: E402  (needs the paths above)

PRESETS = ["config_dit_mel_seed_uvit_whisper_base_f0_44k", "config_dit_mel_seed_uvit_whisper_small_wavenet",
           "config_dit_mel_seed_uvit_xlsr_tiny"]
STAGES = ("content", "style", "f0", "dit", "vocoder")


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2 ** 20
    return float("nan")


def gemm_gflops(dtype_name: str, n: int = 2048, repeat: int = 5, route: str = "blas") -> float:
    """Best-of-`repeat` n x n x n matrix multiply throughput in GFLOP/s: torch's own `a @ b` ("blas"), or the
    linear layers' route ("linear", modules.linear: oneDNN for fp32 on the CPU)."""
    import torch
    try:
        from modules.linear import linear
    except ImportError:  # an older checkout, for before/after figures
        linear = torch.nn.functional.linear
    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    product = (lambda: a @ b) if route == "blas" else (lambda: linear(a, b))
    product()
    best = min(_seconds(product) for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed(fn, timings: dict, name: str, device=None):
    """fn, adding its seconds to timings[name]; with a device, synchronised before each clock read. A module
    stays itself (timed by forward hooks), so the engine still sees its weights."""
    import torch.nn as nn

    from modules.devices import synchronize

    if isinstance(fn, nn.Module):
        started = []

        def before(module, args):
            if device is not None:
                synchronize(device)
            started.append(time.perf_counter())

        def after(module, args, output):
            if device is not None:
                synchronize(device)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - started.pop()

        fn.register_forward_pre_hook(before)
        fn.register_forward_hook(after)
        return fn

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

    from modules.config import ModelConfig, load_config, preset_path
    from modules.frontends import Frontends
    from modules.model import build_model
    from modules.pipeline import VoiceConverter
    from modules.style_encoder import StyleEncoder

    torch.manual_seed(0)
    t0 = time.perf_counter()
    config = load_config(preset_path(preset))
    mp = config["model_params"]
    f0 = _models.rmvpe(device) if ModelConfig.from_config(config).f0_condition else None
    frontends = Frontends(content=_models.content_encoder(mp["speech_tokenizer"]["type"], device, fp16),
                          style=StyleEncoder(_models.campplus(device)), vocoder=_models.vocoder(config, device),
                          f0=f0)
    # The engine moves the DiT to the device and checks every front-end is there; then the timers go on.
    engine = VoiceConverter(config, build_model(config), frontends, device=device, fp16=fp16)
    for role in ("content", "style", "f0"):
        if getattr(frontends, role) is not None:
            setattr(frontends, role, _timed(getattr(frontends, role), timings, role, engine.device))
    return engine, time.perf_counter() - t0


def run_one(config: Path, steps: int, cfg_rate: float, device: str, precision: str, compile: bool,
            repeat: int, output: Path, seconds: float = 10.0, reference_seconds: float = 5.0) -> dict:
    """One process: load, convert `repeat` times; the last output wave and first-chunk mel go to `output`."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from modules.pipeline import ConversionSettings, build_converter
    try:
        from modules.flop_count import FLOP_FORMULAS
    except ImportError:  # an older checkout, for before/after figures
        try:
            from modules.linear import FLOP_FORMULAS  # linear layers only: attention counted as zero
        except ImportError:
            FLOP_FORMULAS = {}
    try:
        from modules.weights import weights_nbytes
    except ImportError:  # an older checkout, for before/after figures
        weights_nbytes = lambda m: sum(t.nbytes for t in list(m.parameters()) + list(m.buffers()))

    t0 = time.perf_counter()
    # fp32 is asked for as fp16=False, which an older checkout understands too (on CUDA fp16 is the default)
    modes = {"fp16": False} if precision == "fp32" and not compile else {"precision": precision, "compile": compile}
    engine = build_converter(config, device=device, **modes)
    load_s = time.perf_counter() - t0
    rss_after_load = rss_gib()
    fe = engine.frontends
    held = {"dit": weights_nbytes(engine.model)}
    modules_by_role = fe.modules() if hasattr(fe, "modules") else {"content": fe.content, "vocoder": fe.vocoder}
    held.update({role: weights_nbytes(module) for role, module in modules_by_role.items()})

    dev = engine.device
    timings: dict[str, float] = {}
    fe.content = _timed(fe.content, timings, "content", dev)
    fe.style = _timed(fe.style, timings, "style", dev)
    if fe.f0 is not None:
        fe.f0 = _timed(fe.f0, timings, "f0", dev)
    calls: dict[str, list] = {}   # estimator input shapes -> [number of calls, the first call's inputs]

    def record(module, inputs, output):
        key = json.dumps([tuple(a.shape) if torch.is_tensor(a) else repr(a) for a in inputs])
        calls.setdefault(key, [0, [a.clone() if torch.is_tensor(a) else a for a in inputs]])[0] += 1

    hook = engine.model.cfm.estimator.register_forward_hook(record)
    first_mels = []
    vocoder = fe.vocoder
    fe.vocoder = lambda mel, generator=None: (first_mels.append(mel.clone()), vocoder(mel, generator=generator))[1]

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
        calls.clear()
        first_mels.clear()
    settings = ConversionSettings(steps, 1.0, cfg_rate, seed=0)
    runs = []
    wave = None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(repeat):
        timings.clear()
        engine._reference_cache.clear()   # every repetition does the whole work
        stage: dict[str, float] = {}
        start = time.perf_counter()
        first_chunk, pieces = None, []
        for piece in engine.convert_stream(source, reference, settings, timings=stage):
            first_chunk = first_chunk or time.perf_counter() - start
            pieces.append(piece)
        total = time.perf_counter() - start
        wave = np.concatenate(pieces)
        runs.append({**{k: timings.get(k, 0.0) for k in ("content", "style", "f0")}, "dit": stage["dit"],
                     "vocoder": stage["vocoder"], "total": total, "first_chunk": first_chunk,
                     "rtf": total / (len(wave) / sr)})
    hook.remove()

    # DiT FLOPs of one conversion: each distinct estimator input shape counted once, times its calls.
    dit_flops = attention_flops = 0
    estimator = getattr(engine.model.cfm.estimator, "_orig_mod", engine.model.cfm.estimator)
    with torch.no_grad():
        for n_calls, inputs in calls.values():
            counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
            with counter:
                estimator(*inputs)
            dit_flops += counter.get_total_flops() * n_calls / repeat
            attention_flops += sum(n for op, n in counter.get_flop_counts()["Global"].items()
                                   if "scaled_dot_product" in str(op)) * n_calls / repeat
    np.savez(output, wave=wave, mel=first_mels[0].float().cpu().numpy())
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"load_s": load_s, "rss_after_load_gib": rss_after_load,
            "max_alloc_gib": None if peak is None else peak / 2 ** 30,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "held_mib": {k: v / 2 ** 20 for k, v in held.items()}, "runs": runs, "dit_gflop": dit_flops / 1e9,
            "dit_attention_gflop": attention_flops / 1e9,
            "gemm_gflops": {"fp32": gemm_gflops("float32"), "fp32_linear": gemm_gflops("float32", route="linear"),
                            "bf16": gemm_gflops("bfloat16")}}


def summarize(r: dict, precision: str = "fp32") -> str:
    runs = r["runs"]
    stat = lambda key: f"{min(x[key] for x in runs):.2f}/{statistics.median(x[key] for x in runs):.2f}"
    dit_min = min(x["dit"] for x in runs)
    dit_rate = r["dit_gflop"] / dit_min
    held = " ".join(f"{k} {v:.0f}" for k, v in r["held_mib"].items())
    limit, limit_name = ((r["gemm_gflops"]["bf16"], "the bf16 GEMM") if precision == "bf16"
                         else (r["gemm_gflops"]["fp32_linear"], "the linear layers' fp32"))
    return (f"  seconds min/median over {len(runs)}: " + " ".join(f"{k} {stat(k)}" for k in
            ("content", "style", "f0", "dit", "vocoder", "total", "first_chunk")) + f"  RTF {stat('rtf')}\n"
            f"  load {r['load_s']:.1f} s; RSS after load {r['rss_after_load_gib']:.2f} GiB, peak "
            f"{r['peak_rss_gib']:.2f} GiB; weights held (MiB): {held} = {sum(r['held_mib'].values()) / 1024:.2f} GiB"
            + (f"; CUDA max_memory_allocated {r['max_alloc_gib']:.2f} GiB" if r.get("max_alloc_gib") else "") + "\n"
            f"  GEMM fp32 {r['gemm_gflops']['fp32']:.0f} GFLOP/s (torch's BLAS), {r['gemm_gflops']['fp32_linear']:.0f} "
            f"(the linear layers' route), bf16 {r['gemm_gflops']['bf16']:.0f} GFLOP/s; "
            f"DiT {r['dit_gflop']:.0f} GFLOP per conversion ({r.get('dit_attention_gflop', 0):.0f} of them in "
            f"attention) at {dit_rate:.0f} GFLOP/s = {dit_rate / limit:.0%} of {limit_name} rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=0.7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", choices=PRESETS, action="append", help="presets to run (default: all)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true", help="also run each precision with --compile")
    parser.add_argument("--seconds", type=float, default=10.0, help="source length")
    parser.add_argument("--reference-seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3, help="conversions per process (min and median)")
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "PRECISION", "COMPILE", "OUTPUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, precision, compile, output = args.child
        print(json.dumps(run_one(Path(config), args.steps, args.cfg, args.device, precision, compile == "1",
                                 args.repeat, Path(output), args.seconds, args.reference_seconds)))
        return
    print(f"{args.seconds:g} s source, {args.reference_seconds:g} s reference, {args.steps} steps, CFG {args.cfg}, device {args.device}, random weights, "
          f"{args.repeat} conversions per process")
    variants = [(p, c) for p in args.precision for c in ((False, True) if args.compile else (False,))]
    if ("fp32", False) not in variants and len(variants) > 0:
        variants.insert(0, ("fp32", False))   # the reference for the error figures
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or PRESETS:
            config = _models.write_full_size_model(Path(tmp) / preset, preset)
            for precision, compile in variants:
                output = Path(tmp) / f"{preset}_{precision}_{int(compile)}.npz"
                out = subprocess.run([sys.executable, __file__, "--child", str(config), precision, str(int(compile)),
                                      str(output), "--steps", str(args.steps), "--cfg", str(args.cfg), "--device",
                                      args.device, "--repeat", str(args.repeat),
                                      "--seconds", str(args.seconds), "--reference-seconds", str(args.reference_seconds)], check=True, capture_output=True,
                                     text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(f"{preset} precision {precision}{' compiled' if compile else ''}")
                print(summarize(r, precision))
                if (precision, compile) != ("fp32", False):
                    import numpy as np
                    a, b = np.load(Path(tmp) / f"{preset}_fp32_0.npz"), np.load(output)
                    noise = np.sum((a["wave"] - b["wave"]) ** 2)
                    snr = 10 * np.log10(np.sum(a["wave"] ** 2) / max(noise, 1e-30))
                    print(f"  vs fp32: DiT mel max |error| {np.abs(a['mel'] - b['mel']).max():.3g} (first chunk), "
                          f"waveform SNR {snr:.1f} dB")

if __name__ == "__main__":
    main()
