"""Convert voices from the command line: one file, several, or a whole folder against one reference.

    python inference.py --source song.wav --target singer.wav --f0-condition true --diffusion-steps 30
    python inference.py --source folder/ --target ref.wav --run-name my_run --seed 0

Flags keep the original inference.py's names, meanings and defaults, except that --source and --target are
required (the original's defaults name example files this project does not ship); --run-name, --device, --seed,
--f0-extractor, --max-duration and --overwrite are additions. Outputs are named vc_{source}_{reference}_
{length_adjust}_{steps}_{cfg}.wav and written atomically, so a failed conversion leaves no partial file. Sources whose names
would collide get their whole stem (then a number), and the renaming is reported. An existing file is never
replaced unless --overwrite is given.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from modules.arguments import add_model_arguments, str2bool
from modules.atomic_io import atomic_write, ensure_writable_folder, removed_if_left_empty
from modules.audio import AUDIO_EXTENSIONS
from modules.config import ConfigError
from modules.errors import UserError
from modules.pipeline import ConversionSettings, build_converter, default_preset
from modules.precision import PRECISIONS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", nargs="+", required=True,
                   help="source audio file(s) or folder(s); folders are searched recursively")
    p.add_argument("--target", required=True, help="reference (target voice) audio; only its first 25 s are used")
    p.add_argument("--output", default="./reconstructed", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace results that already exist in --output")
    p.add_argument("--diffusion-steps", type=int, default=30)
    p.add_argument("--length-adjust", type=float, default=1.0)
    p.add_argument("--inference-cfg-rate", type=float, default=0.7)
    p.add_argument("--f0-condition", type=str2bool, default=False,
                   help="use the singing (F0-conditioned, 44.1 kHz) model when no --config is given")
    p.add_argument("--auto-f0-adjust", type=str2bool, default=False)
    p.add_argument("--semi-tone-shift", type=int, default=0)
    p.add_argument("--seed", type=int, default=None, help="seed for the sampler noise (reproducible output; negative or absent: random)")
    add_model_arguments(p, config_help="model config (.yml)", max_duration=None)
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="DiT and content-encoder precision (default: fp16 on CUDA with --fp16, else fp32); "
                        "bf16 needs CUDA or a CPU with AVX512-BF16/AMX; trades accuracy for speed")
    p.add_argument("--compile", action="store_true", help="torch.compile the DiT and the vocoder (first call slow)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


def collect_sources(specs: list[str]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            files.append(path)  # a missing file is reported as a failed conversion, not silently dropped
    return files


def plan_outputs(sources: list[Path], reference: Path, settings: ConversionSettings,
                 output_dir: Path) -> tuple[list[Job], list[str]]:
    """One distinct output path per source, and a note for each name changed to avoid a collision.

    The original's name uses the source name up to its first dot; sources sharing that (a/clip.wav and
    b/clip.wav, or song.wav and song.v2.wav) use their whole stem instead, and any still equal get _2, _3, ..."""
    tail = (f"_{reference.name.split('.')[0]}_{settings.length_adjust}_{settings.diffusion_steps}_"
            f"{settings.inference_cfg_rate}.wav")
    short = Counter(src.name.split(".")[0] for src in sources)
    jobs, notes, taken = [], [], set()
    for src in sources:
        stem = src.name.split(".")[0]
        if short[stem] > 1:
            stem = src.stem
        out, n = output_dir / f"vc_{stem}{tail}", 1
        while out in taken:
            n += 1
            out = output_dir / f"vc_{stem}_{n}{tail}"
        if out.name != f"vc_{src.name.split('.')[0]}{tail}" or n > 1:
            notes.append(f"{src}: written as {out.name}, since other sources share its name")
        taken.add(out)
        jobs.append(Job(src, out))
    return jobs, notes


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    """Refuse, before any work, to replace a source, or an existing result without --overwrite."""
    sources = {job.source.resolve() for job in jobs}
    for job in jobs:
        if job.output.resolve() in sources:
            raise ConfigError(f"the result for {job.source} would replace the source file {job.output}: "
                              f"choose another --output")
    existing = [job.output for job in jobs if job.output.exists()]
    if existing and not overwrite:
        listed = "\n  ".join(map(str, existing[:10])) + ("\n  ..." if len(existing) > 10 else "")
        raise ConfigError(f"{len(existing)} result(s) already exist:\n  {listed}\npass --overwrite to replace "
                          f"them, or choose another --output")


def write_wav(path: Path, wave, sample_rate: int, overwrite: bool) -> None:
    atomic_write(path, lambda f: sf.write(f, wave, sample_rate, format="WAV", subtype="FLOAT"), replace=overwrite)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    with removed_if_left_empty(args.output):   # a run that writes nothing leaves no new folder behind
        return convert_files(args)


def convert_files(args: argparse.Namespace) -> int:
    reference = Path(args.target)
    try:
        # The same parse and ranges as the apps' (modules/pipeline.py: ConversionSettings).
        settings = ConversionSettings.parse(
            diffusion_steps=args.diffusion_steps, length_adjust=args.length_adjust,
            inference_cfg_rate=args.inference_cfg_rate, auto_f0_adjust=args.auto_f0_adjust,
            semitone_shift=args.semi_tone_shift, seed=args.seed)
        if args.checkpoint and not args.config:
            raise ConfigError("--checkpoint needs the --config it was trained with")
        sources = collect_sources(args.source)
        if not sources:
            raise ConfigError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {' '.join(args.source)}")
        output_dir = ensure_writable_folder(args.output, "--output")
        jobs, notes = plan_outputs(sources, reference, settings, output_dir)
        check_outputs(jobs, args.overwrite)
        converter = build_converter(args.config or (None if args.run_name else default_preset(args.f0_condition)),
                                    checkpoint=args.checkpoint, run_name=args.run_name, device=args.device,
                                    fp16=args.fp16, f0_extractor=args.f0_extractor,
                                    max_source_seconds=args.max_duration, require_f0=args.f0_condition or None,
                                    precision=args.precision, compile=args.compile)
        reference_wave = converter.load(reference, "reference")   # decoded once for the whole batch
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    failures: list[tuple[Path, str]] = []
    for job in tqdm(jobs, desc="converting", unit="file", disable=len(jobs) == 1):
        try:
            result = converter.convert(job.source, reference_wave, settings)
            write_wav(job.output, result.wave, result.sample_rate, args.overwrite)
        except UserError as e:
            failures.append((job.source, str(e)))
        except FileExistsError:   # appeared while this run was converting
            failures.append((job.source, f"{job.output} appeared meanwhile; pass --overwrite to replace it"))
        except OSError as e:       # the disk filled up, the folder went away, ...
            failures.append((job.source, f"cannot write {job.output}: {e.strerror or e}"))
        else:
            tqdm.write(f"{job.output}  ({len(result.wave) / result.sample_rate:.2f} s audio, RTF {result.rtf:.3f})")
            continue
        tqdm.write(f"FAILED {job.source}: {failures[-1][1]}")
    if failures:
        print(f"\n{len(failures)} of {len(jobs)} file(s) failed:", file=sys.stderr)
        for source, reason in failures:
            print(f"  {source}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
