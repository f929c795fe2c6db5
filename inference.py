"""Convert voices from the command line: one file, several, or a whole folder against one reference.

    python inference.py --source song.wav --target singer.wav --f0-condition true --diffusion-steps 30
    python inference.py --source folder/ --target ref.wav --run-name my_run --seed 0

Flags keep the original inference.py's names, meanings and defaults; --run-name, --device, --seed,
--f0-extractor and --max-duration are additions. Outputs are named vc_{source}_{reference}_{length_adjust}_
{steps}_{cfg}.wav and written atomically, so a failed conversion leaves no partial file.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from modules.atomic_io import atomic_write
from modules.audio import AUDIO_EXTENSIONS, AudioError
from modules.checkpoint import CheckpointError
from modules.config import ConfigError
from modules.hub import AssetUnavailableError
from modules.pipeline import ConversionError, ConversionSettings, build_converter, default_preset
from modules.precision import PRECISIONS


def str2bool(value: str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", nargs="+", default=["./examples/source/source_s1.wav"],
                   help="source audio file(s) or folder(s); folders are searched recursively")
    p.add_argument("--target", default="./examples/reference/s1p1.wav", help="reference (target voice) audio")
    p.add_argument("--output", default="./reconstructed", help="output folder")
    p.add_argument("--diffusion-steps", type=int, default=30)
    p.add_argument("--length-adjust", type=float, default=1.0)
    p.add_argument("--inference-cfg-rate", type=float, default=0.7)
    p.add_argument("--f0-condition", type=str2bool, default=False,
                   help="use the singing (F0-conditioned, 44.1 kHz) model when no --config is given")
    p.add_argument("--auto-f0-adjust", type=str2bool, default=False)
    p.add_argument("--semi-tone-shift", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="DiT checkpoint (.pth); needs the matching --config")
    p.add_argument("--config", default=None, help="model config (.yml)")
    p.add_argument("--fp16", type=str2bool, default=True, help="fp16 autocast for the DiT on CUDA")
    p.add_argument("--run-name", default=None, help="use runs/<name>/ft_model.pth, else its newest checkpoint")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--seed", type=int, default=None, help="seed for the sampler noise (reproducible output)")
    p.add_argument("--f0-extractor", default=None, choices=("rmvpe", "fcpe"),
                   help="F0 extractor for F0 models (default: the config's, else rmvpe)")
    p.add_argument("--max-duration", type=float, default=None, help="refuse sources longer than this (seconds)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="DiT and content-encoder precision (default: fp16 on CUDA with --fp16, else fp32); "
                        "bf16 needs CUDA or a CPU with AVX512-BF16/AMX; trades accuracy for speed")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT and the vocoder (first call slow)")
    return p.parse_args(argv)


def collect_sources(specs: list[str]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            files.append(path)  # a missing file is reported as a failed conversion, not silently dropped
    return files


def output_name(source: Path, reference: Path, settings: ConversionSettings) -> str:
    # The original's naming: the name up to the first dot, then the three main settings.
    return (f"vc_{source.name.split('.')[0]}_{reference.name.split('.')[0]}_{settings.length_adjust}_"
            f"{settings.diffusion_steps}_{settings.inference_cfg_rate}.wav")


def write_wav_atomically(path: Path, wave, sample_rate: int) -> None:
    atomic_write(path, lambda f: sf.write(f, wave, sample_rate, format="WAV", subtype="FLOAT"))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    settings = ConversionSettings(diffusion_steps=args.diffusion_steps, length_adjust=args.length_adjust,
                                  inference_cfg_rate=args.inference_cfg_rate, auto_f0_adjust=args.auto_f0_adjust,
                                  semitone_shift=args.semi_tone_shift, seed=args.seed)
    try:
        settings.validate()
        if args.checkpoint and not args.config:
            raise ConfigError("--checkpoint needs the --config it was trained with")
        converter = build_converter(args.config or (None if args.run_name else default_preset(args.f0_condition)),
                                    checkpoint=args.checkpoint, run_name=args.run_name, device=args.device,
                                    fp16=args.fp16, f0_extractor=args.f0_extractor,
                                    max_source_seconds=args.max_duration, require_f0=args.f0_condition or None,
                                    precision=args.precision, compile=args.compile)
    except (ConversionError, ConfigError, CheckpointError, AssetUnavailableError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    reference = Path(args.target)
    sources = collect_sources(args.source)
    if not sources:
        print(f"error: no audio files found in {' '.join(args.source)}", file=sys.stderr)
        return 2
    failures: list[tuple[Path, str]] = []
    for source in tqdm(sources, desc="converting", unit="file", disable=len(sources) == 1):
        try:
            result = converter.convert(source, reference, settings)
            out = Path(args.output) / output_name(source, reference, settings)
            write_wav_atomically(out, result.wave, result.sample_rate)
        except (AudioError, ConversionError, OSError, RuntimeError) as e:
            failures.append((source, str(e)))
            tqdm.write(f"FAILED {source}: {e}")
            continue
        tqdm.write(f"{out}  ({len(result.wave) / result.sample_rate:.2f} s audio, RTF {result.rtf:.3f})")
    if failures:
        print(f"\n{len(failures)} of {len(sources)} file(s) failed:", file=sys.stderr)
        for source, reason in failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
