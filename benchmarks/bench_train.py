"""Training throughput: steps/s of the real train.py, on 5 s clips, batch 2, with peak memory.

    python benchmarks/bench_train.py [--steps 8] [--device cpu] [--batch-size 2] [--mixed-precision bf16] [--full-size-only]

Two models: the tests' tiny speech config (random small DiT, Whisper-tiny) and the official 22.05 kHz speech preset
(config_dit_mel_seed_uvit_whisper_small_wavenet) at full size, with random weights for the DiT and a
Whisper-small-sized encoder (no downloads). The clips are speech cut to 5 s (the fixture's real clips when
../shared/fixtures/parity is there, else the tests' synthesized ones). Steps/s is measured from
metrics.jsonl over every step after the first (warm-up); the first epoch (which fills the frozen-feature cache)
is also reported on its own, with the steps/s of the later epochs; peak RSS is the train.py process's own.
Each model's FLOPs per step (forward and backward of the same batch shape, counted by torch's FlopCounterMode)
and the machine's GEMM rate (fp32 on the linear layers' route; bf16 with --mixed-precision bf16), measured in
the same run, give the steps/s it would reach if every multiply-add ran at that rate: the ceiling column, and
the fraction of it reached.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench_e2e import gemm_gflops  # noqa: E402  (needs the paths above)

import _models  # noqa: E402  (needs the paths above)


def make_dataset(folder: Path, seconds: float = 5.0) -> None:
    import soundfile as sf
    folder.mkdir(parents=True)
    for path in _models.speech_clips():
        wave, sr = sf.read(path)
        for i in range(int(len(wave) / sr // seconds)):
            sf.write(folder / f"{path.stem}_{i}.wav", wave[int(i * seconds * sr): int((i + 1) * seconds * sr)], sr)


def full_size_22k_config(folder: Path) -> Path:
    """The official speech preset with local files: a random DiT checkpoint and a random Whisper-small."""
    import torch
    import yaml

    from modules.config import load_config, preset_path
    from modules.model import build_model

    preset = preset_path("config_dit_mel_seed_uvit_whisper_small_wavenet.yml")
    cfg = load_config(preset)
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.save({"net": {p: m.state_dict() for p, m in model.parts().items()}}, folder / "dit_random.pth")
    whisper = _models.save_whisper_small(folder / "whisper_small_random")
    raw = yaml.safe_load(preset.read_text())
    raw["pretrained_model"] = str(folder / "dit_random.pth")
    raw["model_params"]["speech_tokenizer"]["name"] = str(whisper)
    raw["model_params"]["style_encoder"]["campplus_path"] = str(_models.save_campplus(folder / "campplus_random.bin"))
    raw["log_dir"] = str(folder / "runs")
    path = folder / "full_22k.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def step_gflop(config: Path, batch_size: int, seconds: float = 5.0, content_rate: float = 50.0) -> float:
    """GFLOP of one training step (the loss's forward and backward) on `batch_size` clips of `seconds`, with
    random weights and features of the shapes train.py feeds (content at `content_rate` frames/s)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from modules.config import MelParams, load_config
    from modules.flop_count import FLOP_FORMULAS
    from modules.model import build_model
    from modules.training.objective import FlowMatchingLoss, FrozenFeatures

    cfg = load_config(config)
    model = build_model(cfg)
    frames = round(seconds * MelParams.from_config(cfg).frame_rate)
    content = [torch.randn(1, round(seconds * content_rate), model.length_regulator.content_in_proj.in_features)
               for _ in range(batch_size)]
    features = FrozenFeatures(content=content, prompt_content=content, f0=[None] * batch_size,
                              style=torch.randn(batch_size, 192))
    lengths = torch.full((batch_size,), frames)
    loss = FlowMatchingLoss(model.cfm, model.length_regulator).train()
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with counter:
        loss(torch.randn(batch_size, model.cfm.in_channels, frames), lengths, lengths // 3, features).backward()
    return counter.get_total_flops() / 1e9


def run(config: Path, data: Path, steps: int, batch_size: int, device: str, name: str,
        mixed_precision: str = "no") -> dict:
    command = [sys.executable, str(ROOT / "train.py"), "--config", str(config), "--dataset-dir", str(data),
               "--run-name", name, "--max-steps", str(steps), "--save-every", str(10 ** 6), "--batch-size",
               str(batch_size), "--seed", "0", "--device", device, "--mixed-precision", mixed_precision, "--no-progress"]
    # The caller's PYTHONPATH stays behind ROOT: under tests/fake_device.py it carries the simulated device.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=path, HF_HUB_OFFLINE="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{name} failed:\n{stderr[-3000:]}")
    records = [json.loads(line) for line in (config.parent / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    seconds = records[-1]["seconds"] - records[0]["seconds"]
    # The first epoch computes and caches the frozen features; later epochs read them back.
    first = [r for r in records if r["epoch"] == records[0]["epoch"]]
    later = [r for r in records if r["epoch"] > records[0]["epoch"]]
    later_rate = (len(later) / (later[-1]["seconds"] - first[-1]["seconds"])) if later else float("nan")
    return {"model": name, "steps_per_s": (len(records) - 1) / seconds, "s_per_step": seconds / (len(records) - 1),
            "first_step_s": records[0]["seconds"], "first_epoch_s": first[-1]["seconds"],
            "later_steps_per_s": later_rate, "peak_rss_gib": usage.ru_maxrss / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                        help="train.py's --mixed-precision (bf16 trades accuracy for speed)")
    parser.add_argument("--full-size-only", action="store_true", help="skip the tiny model")
    args = parser.parse_args()
    from tiny import write_tiny_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "data")
        tiny = write_tiny_config(tmp, "speech", log_dir=tmp / "runs")
        full = full_size_22k_config(tmp)
        print(f"train.py, batch {args.batch_size}, 5 s clips, {args.steps} steps, device {args.device}, "
              f"mixed precision {args.mixed_precision}, {os.cpu_count()} CPU cores")
        print(f"{'model':34s} {'steps/s':>8s} {'s/step':>8s} {'1st step s':>10s} {'1st epoch s':>11s} "
              f"{'later steps/s':>13s} {'peak RSS GiB':>13s} {'GFLOP/step':>10s} {'ceiling':>8s} {'reached':>7s}")
        models = ((tiny, "tiny_speech"), (full, "whisper_small_wavenet_22k_full"))
        # the ceiling's rate, at the precision of the run's products
        bf16 = args.mixed_precision == "bf16"
        route = "the bf16 GEMM rate" if bf16 else "the linear layers' fp32 GEMM rate"
        for config, name in models[1:] if args.full_size_only else models:
            r = run(config, tmp / "data", args.steps, args.batch_size, args.device, name, args.mixed_precision)
            gflop = step_gflop(config, args.batch_size)
            roofline = f"{gflop:10.1f} {'-':>8s} {'-':>7s}"
            if args.device == "cpu":
                # measured after each run: the machine drifts
                rate = gemm_gflops("bfloat16") if bf16 else gemm_gflops("float32", route="linear")
                ceiling = rate / gflop
                roofline = f"{gflop:10.1f} {ceiling:8.3f} {r['later_steps_per_s'] / ceiling:7.0%}"
            print(f"{r['model']:34s} {r['steps_per_s']:8.3f} {r['s_per_step']:8.2f} {r['first_step_s']:10.2f} "
                  f"{r['first_epoch_s']:11.2f} {r['later_steps_per_s']:13.3f} {r['peak_rss_gib']:13.2f} {roofline}")
        if args.device == "cpu":
            print(f"ceiling: steps/s if every FLOP ran at {route}, {rate:.0f} GFLOP/s after the last run "
                  f"(the CPU attention runs slower than that)")


if __name__ == "__main__":
    main()
