"""The web apps' "Evaluate" tab and its /evaluate endpoint: compare settings on a few sources with one reference.

    /evaluate  [sources], reference, model, steps grid, length adjust, CFG grid,
               (singing: auto F0 adjust, pitch shift,) seed, transcripts, metrics
               -> (table of means ± 95 % intervals, PNG plot, per-utterance CSV, JSON summary)

Grids are comma-separated values ("4, 10, 25"). Transcripts: one `name<TAB>text` (or `name|text`) line per
source, name = the file name without extension; without one, WER/CER are against the ASR of the source. Work
per call is bounded: at most MAX_CONVERSIONS conversions (sources x grid points) of at most MAX_STEPS steps.
The metric models load on the first call and stay loaded.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from modules.errors import UserError
from modules.evaluation.pairing import build_items, parse_transcripts, settings_grid
from modules.evaluation.report import HEADERS, table_rows, write_outputs
from modules.evaluation.runner import Evaluator, parse_metrics
from modules.pipeline import ConversionError

MAX_CONVERSIONS = 12
MAX_STEPS = 50
MAX_SOURCES = 6


def parse_grid(text: Any, name: str, cast: type) -> list:
    """"4, 10, 25" (or a single number) -> [4, 10, 25]; an error names the field."""
    items = [text] if isinstance(text, (int, float)) else str(text or "").replace(";", ",").split(",")
    try:
        values = [cast(float(v)) if cast is int else cast(v) for v in items if str(v).strip()]
    except ValueError:
        raise ConversionError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConversionError(f"{name}: give at least one value")
    if cast is int and any(float(v) != int(float(v)) for v in items if str(v).strip()):
        raise ConversionError(f"{name}: expected whole numbers, got {text!r}")
    return values


class EvaluationService:
    """Conversions through the app's engine, then scoring; one Evaluator (models loaded once) per server."""

    def __init__(self, engine, kind):
        self.engine, self.kind = engine, kind
        self._evaluator: Evaluator | None = None
        self._lock = threading.Lock()

    def evaluator(self, metrics: list[str]) -> Evaluator:
        with self._lock:
            if self._evaluator is None:
                # On a ZeroGPU Space the GPU exists only inside spaces.GPU calls: score on the CPU there.
                self._evaluator = Evaluator(metrics, device="cpu" if self.engine.in_space else None)
            return self._evaluator.with_metrics(metrics)

    def run(self, sources, reference, model, steps_grid, length_adjust, cfg_grid, auto_f0, shift, seed,
            transcripts, metrics, progress=None) -> dict:
        sources = [sources] if isinstance(sources, str) else [s for s in (sources or []) if s]
        if not sources:
            raise ConversionError("no source files: upload one or more clips to evaluate")
        if len(sources) > MAX_SOURCES:
            raise ConversionError(f"{len(sources)} sources: at most {MAX_SOURCES} per evaluation")
        if not reference:
            raise ConversionError("no reference audio: upload a clip of the target voice (1-25 s)")
        metrics = parse_metrics(metrics or ["secs", "wer", "dnsmos"])
        steps = parse_grid(steps_grid, "diffusion steps", int)
        if max(steps) > MAX_STEPS:
            raise ConversionError(f"diffusion steps {max(steps)}: at most {MAX_STEPS} in an evaluation")
        if isinstance(length_adjust, bool) or not isinstance(length_adjust, (int, float)):
            raise ConversionError(f"length adjust must be a number, got {length_adjust!r}")
        grid = settings_grid(steps, parse_grid(cfg_grid, "CFG rates", float), [float(length_adjust)],
                             [int(shift or 0)], bool(auto_f0), None if seed is None or seed < 0 else int(seed))
        if len(grid) * len(sources) > MAX_CONVERSIONS:
            raise ConversionError(f"{len(sources)} source(s) x {len(grid)} setting(s) = {len(grid) * len(sources)} "
                                  f"conversions: at most {MAX_CONVERSIONS} per evaluation")
        texts = parse_transcripts(transcripts or "", "transcripts", "\t|")
        report = progress or (lambda fraction, text: None)
        converted, failures = {}, []
        jobs = [(label, settings, Path(s)) for label, settings in grid.items() for s in sources]
        for index, (label, settings, source) in enumerate(jobs):
            report(0.6 * index / len(jobs), f"converting {index + 1}/{len(jobs)}: {source.name} ({label})")
            try:
                rate, stream = self.engine.stream(str(source), reference, model, None, settings)
                converted[(label, source)] = (np.concatenate(list(stream)), rate)
            except UserError as e:
                if index == 0 and not converted:
                    raise   # the first conversion failing is a problem with the request itself
                failures.append((f"{label}: {source.name}", str(e)))
        items = [item for item in build_items([Path(s) for s in sources], [Path(reference)], grid,
                                              lambda s, r, label, st: converted.get((label, s), False), texts)
                 if item.converted is not False]
        result = self.evaluator(metrics).evaluate(
            items, progress=lambda f, text: report(0.6 + 0.4 * f, text), show_bar=False)
        result.failures[:0] = failures
        folder = self.engine.new_folder("evaluation")
        outputs = write_outputs(folder, result, {"settings": {k: vars(v) for k, v in grid.items()}})
        headers = ["setting", "n"] + [HEADERS[c][0] for c in result.columns]
        return {"headers": headers, "rows": table_rows(outputs["summary"], result.columns), "png": str(outputs["png"]),
                "csv": str(outputs["csv"]), "json": str(outputs["json"]), "failures": result.failures,
                "cards": result.cards}


def evaluate_tab(engine, kind, gpu: dict):
    """Add the "Evaluate" tab to the Blocks being built. Returns `bind(model)`, which wires /evaluate once the
    page's model dropdown exists (it is laid out below the tabs)."""
    import gradio as gr
    import pandas as pd

    service = EvaluationService(engine, kind)
    progress_bar = gr.Progress()

    def evaluate(sources, reference, model, steps_grid, length_adjust, cfg_grid, seed, transcripts, metrics,
                 auto_f0_adjust=False, semitone_shift=0, progress=progress_bar):
        try:
            out = service.run(sources, reference, model, steps_grid, length_adjust, cfg_grid, auto_f0_adjust,
                              semitone_shift, seed, transcripts, metrics, lambda f, text: progress(f, desc=text))
        except UserError as e:   # anything else is a bug: named_endpoint logs it and shows a generic message
            raise gr.Error(str(e), title="Cannot evaluate") from None
        return pd.DataFrame(out["rows"], columns=out["headers"]), out["png"], out["csv"], out["json"]

    # The API names every argument (modules.ui.named_endpoint), in the order of the page's inputs.
    input_names = ("sources", "reference", "model", "steps_grid", "length_adjust", "cfg_grid",
                   *(("auto_f0_adjust", "semitone_shift") if kind.f0 else ()), "seed", "transcripts", "metrics")

    with gr.Tab("Evaluate"):
        gr.Markdown("Compare settings objectively: every source is converted with every combination of the "
                    "values below, then scored (SECS: Resemblyzer; WER/CER: Whisper tiny.en; DNSMOS; F0 for "
                    f"singing). At most {MAX_CONVERSIONS} conversions per run. The first run loads the metric models.")
        with gr.Row():
            sources = gr.File(file_count="multiple", type="filepath", label="Source clips")
            reference = gr.Audio(type="filepath", label="Reference audio")
        with gr.Row():
            steps_grid = gr.Textbox(value="4, 10", label="Diffusion steps (comma-separated)")
            length_adjust = gr.Number(value=1.0, label="Length adjust")
            cfg_grid = gr.Textbox(value="0.7", label="CFG rates (comma-separated)")
        extra = []
        if kind.f0:
            with gr.Row():
                extra = [gr.Checkbox(value=kind.auto_f0_default, label="Auto F0 adjust"),
                         gr.Number(value=0, precision=0, label="Pitch shift (semitones)")]
        seed = gr.Number(value=0, precision=0, label="Seed", info="negative: random")
        transcripts = gr.Textbox(lines=3, label="Transcripts (optional)",
                                 placeholder="one line per source: name<TAB>text or name|text")
        metrics = gr.CheckboxGroup(["secs", "wer", "dnsmos", "f0", "secs_wavlm"], label="Metrics",
                                   value=["secs", "wer", "dnsmos"] + (["f0"] if kind.f0 else []))
        go = gr.Button("Evaluate", variant="primary")
        table = gr.Dataframe(label="Means ± 95 % interval", interactive=False)
        plot = gr.Image(type="filepath", label="Distributions per metric and setting")
        with gr.Row():
            csv_file = gr.File(label="Per-utterance CSV")
            json_file = gr.File(label="Summary JSON")

    def bind(model) -> None:
        from modules.ui import named_endpoint  # the app module that is building this page

        go.click(named_endpoint(evaluate, input_names, progress_bar), [sources, reference, model, steps_grid, length_adjust, cfg_grid, *extra, seed, transcripts,
                            metrics], [table, plot, csv_file, json_file], api_name="evaluate", **gpu)
    return bind
