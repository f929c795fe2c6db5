"""Side by side with the original Seed-VC v1 code on the same work: its DiT sampler, its BigVGAN and its
Whisper call against ours, with the same random full-size weights and inputs (singing preset, 10 s source,
5 s reference, 10 steps, CFG 0.7, fp32 on the CPU).

    python benchmarks/bench_original.py --original PATH [--pairs 2] [--repeat 2] [--work DIR] [--precision bf16]

PATH is a checkout of Plachtaa/seed-vc (v1 layout: modules/commons.py, modules/bigvgan/). Its code is imported
from there at run time; nothing of it is part of this project. It needs `munch` and `einops`
(`pip install munch einops`); its `dac` import is only for a vector quantizer the singing preset does not use,
and is stubbed. torchaudio is not needed: only the models are timed, not the original's audio I/O.

The weights are drawn once for the original's modules and saved in the official formats
({'net': {'cfm', 'length_regulator'}} and {'generator'} with weight norm); ours load those files. Each side
runs in its own process, `--pairs` times alternately (original, ours, original, ...), `--repeat` conversions
per process; the script prints every run, min and median per stage, the ratios, and the largest difference
between the two sides' mel and waveform, which shows it is the same work.

Stages: "content" is Whisper-small's encoder (random weights, not the same draw on both sides) over one 30 s
window per clip (source and reference), as the original calls transformers' WhisperModel in fp16 (its default,
also on the CPU), and as ours runs its content encoder in fp32; the DiT runs in fp32 on both sides (the
original's `--fp16 False`, so that both give the same mel); "dit" is the CFM sampler over prompt + source (1292 frames);
"vocoder" is BigVGAN 44 kHz on the 861 source frames. F0 and style (about 1 s in all here) are not compared.

`--precision bf16` runs our content encoder and DiT under bf16 autocast, as `inference.py --precision bf16` does
(the vocoder stays fp32); the original side is unchanged, so the printed difference is then bf16's error.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRESET = "config_dit_mel_seed_uvit_whisper_base_f0_44k"
STAGES = ("content", "dit", "vocoder")
STEPS, CFG = 10, 0.7
SOURCE_FRAMES, PROMPT_FRAMES = 861, 431          # 10 s and 5 s at 44.1 kHz, hop 512


def check_original(original: Path) -> None:
    """Exit with a message naming what is missing: the checkout, or a package its code imports."""
    if not (original / "modules" / "commons.py").is_file() or not (original / "modules" / "bigvgan").is_dir():
        sys.exit(f"--original {original}: not a Seed-VC v1 checkout (no modules/commons.py or modules/bigvgan/); "
                 "clone https://github.com/Plachtaa/seed-vc and pass its folder")
    for name in ("munch", "einops"):
        try:
            __import__(name)
        except ImportError:
            sys.exit(f"the original code imports `{name}`, which is not installed: pip install munch einops")


def _import_original(original: Path) -> None:
    stub = {name: types.ModuleType(name) for name in ("dac", "dac.nn", "dac.nn.quantize")}
    stub["dac.nn.quantize"].VectorQuantize = object
    sys.modules.update(stub)
    sys.path.insert(0, str(original))
    os.chdir(original)


def _original_models(original: Path, bigvgan_config: dict):
    _import_original(original)
    import yaml

    from modules.bigvgan import bigvgan
    from modules.commons import build_model, recursive_munch
    cfg = yaml.safe_load((original / "configs" / "presets" / f"{PRESET}.yml").read_text())
    model = build_model(recursive_munch(cfg["model_params"]), stage="DiT")
    vocoder = bigvgan.BigVGAN(bigvgan.AttrDict(bigvgan_config), use_cuda_kernel=False)
    return model, vocoder


def prepare(original: Path, work: Path) -> None:
    """Random weights for the original's modules, saved in the official formats, and the inputs."""
    (work / "bigvgan").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "configs" / "bigvgan" / "bigvgan_v2_44khz_128band_512x.json", work / "bigvgan" / "config.json")
    torch.manual_seed(0)
    model, vocoder = _original_models(original, json.loads((work / "bigvgan" / "config.json").read_text()))
    with torch.no_grad():
        for module in (model.cfm, model.length_regulator, vocoder):
            for p in module.parameters():
                p.normal_(0.0, 0.02 if p.dim() > 1 else 0.1)
    torch.save({"net": {"cfm": model.cfm.state_dict(), "length_regulator": model.length_regulator.state_dict()}},
               work / "dit.pth")
    torch.save({"generator": vocoder.state_dict()}, work / "bigvgan" / "bigvgan_generator.pt")
    torch.manual_seed(1)
    frames = SOURCE_FRAMES + PROMPT_FRAMES
    torch.save({"mu": torch.randn(1, frames, 768), "prompt": torch.randn(1, 128, PROMPT_FRAMES),
                "style": torch.randn(1, 192), "audio_16k": [torch.randn(160000) * 0.1, torch.randn(80000) * 0.1],
                "features": torch.randn(1, 80, 3000)}, work / "inputs.pt")


def _whisper_small_original():
    """Whisper-small's encoder in fp16, as the original loads it (`torch_dtype=torch.float16`, decoder dropped)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _models  # `modules` is already the original's here; _models imports none of ours at load
    torch.manual_seed(2)
    model, _ = _models.whisper_small()
    del model.decoder
    return model.to(torch.float16).eval()


def run_side(side: str, original: Path, work: Path, repeat: int, precision: str = "fp32") -> dict:
    """One process's runs of one side: {stage: [seconds, ...]}, and its last mel and waveform saved.
    `precision` applies to our side only (the original's is fixed, see the module text)."""
    x = torch.load(work / "inputs.pt", weights_only=True)
    lens = torch.tensor([x["mu"].shape[1]])
    if side == "original":
        model, vocoder = _original_models(original, json.loads((work / "bigvgan" / "config.json").read_text()))
        model.cfm.load_state_dict(torch.load(work / "dit.pth", weights_only=True)["net"]["cfm"])
        vocoder.load_state_dict(torch.load(work / "bigvgan" / "bigvgan_generator.pt", weights_only=True)["generator"])
        vocoder.remove_weight_norm()
        vocoder.eval(), model.cfm.eval()
        model.cfm.estimator.setup_caches(max_batch_size=1, max_seq_length=8192)
        whisper = _whisper_small_original()

        def content():
            for _ in x["audio_16k"]:      # one 30 s window per clip, fp16, as the original's semantic_fn
                whisper.encoder(x["features"].to(torch.float16), head_mask=None, output_attentions=False,
                                output_hidden_states=False, return_dict=True)

        def dit():
            return model.cfm.inference(x["mu"], lens, x["prompt"], x["style"], None, STEPS, inference_cfg_rate=CFG)
    else:
        sys.path.insert(0, str(ROOT))
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import _models
        from modules.checkpoint import load_model_weights
        from modules.config import load_config, preset_path
        from modules.host_memory import keep_freed_host_memory
        from modules.model import build_model
        from modules.precision import autocast_dtype, reduced_precision
        from modules.vocoders.bigvgan import load_bigvgan
        # autocast_dtype refuses bf16 on a CPU without it; fp32 gives a disabled autocast
        reduced = reduced_precision(autocast_dtype(precision, "cpu"), "cpu")
        keep_freed_host_memory()
        model = build_model(load_config(preset_path(PRESET))).eval()
        load_model_weights(model, work / "dit.pth")
        vocoder = load_bigvgan(work / "bigvgan")
        encoder = _models.content_encoder("whisper", "cpu")

        def content():
            with reduced:
                for audio in x["audio_16k"]:
                    encoder(audio[None])

        def dit():
            with reduced:
                return model.cfm.inference(x["mu"], lens, x["prompt"], x["style"], STEPS, inference_cfg_rate=CFG)
    times = {stage: [] for stage in STAGES}
    with torch.inference_mode():
        for _ in range(repeat):
            start = time.perf_counter()
            content()
            t_content = time.perf_counter()
            torch.manual_seed(3)                    # the sampler's starting noise, the same draw on both sides
            mel = dit()[:, :, PROMPT_FRAMES:].float()
            t_dit = time.perf_counter()
            wave = vocoder(mel)
            end = time.perf_counter()
            for stage, seconds in zip(STAGES, (t_content - start, t_dit - t_content, end - t_dit)):
                times[stage].append(seconds)
    torch.save({"mel": mel, "wave": wave.float()}, work / f"out_{side}.pt")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", type=Path, required=True, help="a checkout of the original Seed-VC v1")
    parser.add_argument("--pairs", type=int, default=2, help="alternating (original, ours) process pairs")
    parser.add_argument("--repeat", type=int, default=2, help="conversions per process")
    parser.add_argument("--work", type=Path, help="folder for the weights and outputs (default: a temporary one)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="our content encoder's and DiT's precision (the original's stays as described)")
    # child processes: one writes the weights and inputs, the others time one side each
    parser.add_argument("--side", choices=("prepare", "original", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    original = args.original.resolve()
    check_original(original)
    if args.side == "prepare":
        prepare(original, args.work)
        return
    if args.side:
        print(json.dumps(run_side(args.side, original, args.work, args.repeat, args.precision)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        subprocess.run([sys.executable, __file__, "--original", str(original), "--work", str(work),
                        "--side", "prepare"], check=True)
        runs = {"original": {s: [] for s in STAGES}, "ours": {s: [] for s in STAGES}}
        for pair in range(args.pairs):
            for side in ("original", "ours"):
                done = subprocess.run([sys.executable, __file__, "--original", str(original), "--work", str(work),
                                       "--repeat", str(args.repeat), "--side", side,
                                       "--precision", args.precision],
                                      check=True, capture_output=True, text=True)
                times = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"pair {pair + 1} {side:8s} " + "  ".join(
                    f"{s} {' '.join(f'{t:.2f}' for t in times[s])}" for s in STAGES), flush=True)
                for s in STAGES:
                    runs[side][s] += times[s]
        print(f"\nseconds, min / median of {args.pairs * args.repeat} conversions per side; ours in {args.precision}")
        for s in STAGES + ("total",):
            pick = (lambda side: [sum(v) for v in zip(*(runs[side][t] for t in STAGES))]) if s == "total" \
                else (lambda side: runs[side][s])
            o, u = pick("original"), pick("ours")
            print(f"  {s:8s} original {min(o):7.2f} / {statistics.median(o):7.2f}   ours {min(u):7.2f} / "
                  f"{statistics.median(u):7.2f}   {min(o) / min(u):.2f}x / {statistics.median(o) / statistics.median(u):.2f}x")
        a, b = (torch.load(work / f"out_{side}.pt", weights_only=True) for side in ("original", "ours"))
        for key in ("mel", "wave"):
            print(f"  {key}: max |original - ours| {(a[key] - b[key]).abs().max().item():.3g} "
                  f"(max |original| {a[key].abs().max().item():.3g})")


if __name__ == "__main__":
    main()
