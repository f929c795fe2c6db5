"""Objective evaluation of conversions, offline: speaker similarity, intelligibility, quality and pitch.

    python eval.py --source sources/ --reference refs/ --converted reconstructed/ --transcripts index.tsv
    python eval.py --source sources/ --reference ref.wav --convert --config my.yml --checkpoint my.pth \
        --diffusion-steps 4 10 25 --inference-cfg-rate 0.5 0.7          # "compare settings": a grid
    python eval.py ... --metrics secs,wer,dnsmos,f0 --semi-tone-shift 12  # singing: F0 accuracy too

Converted files are found by inference.py's output plan (plan_outputs), from the sources, references and settings given
(pass the settings the files were made with; several values per setting form a grid). Prints a table of
means with 95 % intervals and writes per_utterance.csv, summary.json and metrics.png into --output.
Metrics (README "Evaluation"): secs (Resemblyzer), wer (WER + CER, Whisper tiny.en), dnsmos (P.835 + P.808),
f0 (F0 correlation and RMSE in cents), secs_wavlm (hub model, needs the network or its cache).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inference import collect_sources, plan_outputs, write_wav
from modules.arguments import str2bool
from modules.errors import UserError
from modules.evaluation import (
    METRICS,
    EvaluationError,
    Evaluator,
    build_items,
    in_folder,
    parse_metrics,
    read_transcripts,
    settings_grid,
)
from modules.evaluation.conversion import convert_all
from modules.evaluation.report import write_outputs
from modules.pipeline import build_converter, default_preset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", nargs="+", required=True, help="source audio file(s) or folder(s) (recursive)")
    p.add_argument("--reference", nargs="+", required=True, help="reference audio file(s) or folder(s)")
    p.add_argument("--converted", default=None, help="folder of converted files (default: OUTPUT/converted)")
    p.add_argument("--transcripts", default=None, help="index.tsv: id<TAB>text per source (id = file name "
                   "without extension); without it WER/CER are measured against the ASR of the source")
    p.add_argument("--output", default="./eval_results", help="folder for the table, CSV, JSON and PNG")
    p.add_argument("--metrics", default="secs,wer,dnsmos", help=f"comma-separated, from {','.join(METRICS)}")
    p.add_argument("--convert", action="store_true", help="convert first (into --converted) with the model below")
    # The conversion settings, with inference.py's defaults; several values make a grid.
    p.add_argument("--diffusion-steps", type=int, nargs="+", default=[30])
    p.add_argument("--length-adjust", type=float, nargs="+", default=[1.0])
    p.add_argument("--inference-cfg-rate", type=float, nargs="+", default=[0.7])
    p.add_argument("--semi-tone-shift", type=int, nargs="+", default=[0])
    p.add_argument("--auto-f0-adjust", type=str2bool, default=False)
    p.add_argument("--seed", type=int, default=None)
    # The model, for --convert (as inference.py).
    p.add_argument("--config", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--run-name", default=None)
    p.add_argument("--f0-condition", type=str2bool, default=False)
    p.add_argument("--fp16", type=str2bool, default=True)
    p.add_argument("--max-duration", type=float, default=None, help="refuse sources longer than this (seconds)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    # Metric models.
    p.add_argument("--f0-extractor", default="fcpe", choices=("fcpe", "rmvpe"), help="F0 extractor of the f0 metric")
    p.add_argument("--f0-model", default=None, help="weights file of the F0 extractor (RMVPE: rmvpe.pt)")
    p.add_argument("--wavlm-model", default=None, help="secs_wavlm: hub id or local transformers directory "
                   "(default microsoft/wavlm-base-plus-sv)")
    p.add_argument("--no-baseline", action="store_true", help="skip the unconverted-source rows")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    output = Path(args.output)
    converted_dir = Path(args.converted) if args.converted else output / "converted"
    try:
        metrics = parse_metrics(args.metrics)
        grid = settings_grid(args.diffusion_steps, args.inference_cfg_rate, args.length_adjust, args.semi_tone_shift,
                             args.auto_f0_adjust, args.seed)
        names = {plan_outputs([Path("s.wav")], Path("r.wav"), s, Path("."))[0][0].output for s in grid.values()}
        if len(names) < len(grid):
            raise EvaluationError("settings that differ only in pitch shift or auto F0 give the same inference.py file "
                             "names; evaluate one pitch shift per --converted folder")
        transcripts = read_transcripts(args.transcripts) if args.transcripts else {}
        sources, references = collect_sources(args.source), collect_sources(args.reference)
        for role, files, spec in (("source", sources, args.source), ("reference", references, args.reference)):
            if not files:
                raise EvaluationError(f"no {role} audio files found in {' '.join(spec)}")
        if not args.convert and not converted_dir.is_dir():
            raise EvaluationError(f"converted folder {converted_dir} does not exist; pass --converted DIR or --convert")
        evaluator = Evaluator(metrics, device=args.device, f0_extractor=args.f0_extractor, f0_weights=args.f0_model,
                              wavlm_repo=args.wavlm_model)
        failures = []
        where = in_folder(converted_dir, plan_outputs, sources)   # inference.py's names, collisions resolved
        if args.convert:
            converter = build_converter(args.config or (None if args.run_name else default_preset(args.f0_condition)),
                                        checkpoint=args.checkpoint, run_name=args.run_name, device=args.device,
                                        fp16=args.fp16, max_source_seconds=args.max_duration)
            failures += convert_all(converter, sources, references, grid, where,
                                    lambda path, wave, rate: write_wav(path, wave, rate, overwrite=True))
        items = build_items(sources, references, grid, where, transcripts, baseline=not args.no_baseline)
        result = evaluator.evaluate(items)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.failures[:0] = failures
    if not result.rows:
        print("error: nothing could be scored:\n" + "\n".join(f"  {w}: {e}" for w, e in result.failures), file=sys.stderr)
        return 1
    outputs = write_outputs(output, result, {"settings": {k: vars(v) for k, v in grid.items()}})
    print(outputs["table"])
    print("\nmodels:")
    for card in result.cards:
        print(f"  {card['metric']}: {card['model']} [{card['version']}]")
    print(f"\nwrote {outputs['csv']}, {outputs['json']}, {outputs['png']}")
    notes = [row for row in result.rows if row.get("note")]
    if notes:
        print(f"\n{len(notes)} clip(s) without a value for some metric (left out of its mean; see the CSV's note):",
              file=sys.stderr)
        for row in notes:
            print(f"  {row['setting']}: {row['converted'] or row['source']}: {row['note']}", file=sys.stderr)
    if result.failures:
        print(f"\n{len(result.failures)} item(s) skipped:", file=sys.stderr)
        for what, why in result.failures:
            print(f"  {what}: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
