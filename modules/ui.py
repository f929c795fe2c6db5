"""The Gradio web app shared by app_svc.py (singing) and app_vc.py (speech): page, API and queue.

Public endpoints (stable names, every setting an argument, no hidden UI state):
  /convert         source, reference, model, settings...      -> the whole result as a WAV file
  /convert_stream  same arguments                              -> a generator of (player stream, chunk WAV, None),
                                                                  then (None, None, full WAV) once done
  /batch_convert   [sources], reference, model, settings...    -> [WAV per source], per-file status table
  /model_info      (nothing)                                   -> JSON: loaded model, sample rate, device, choices
The singing app adds auto F0 adjust, pitch shift and F0 extractor after the CFG rate; both end with the seed.
Models are picked by label among those the server was started with or found in its run directories; no
endpoint takes a filesystem path. Every GPU event shares one worker pool (concurrency_id="gpu"). On a ZeroGPU
Space each conversion runs inside `spaces.GPU` (modules/zerogpu.py) with a budget from its decoded length.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from modules import zerogpu
from modules.audio import AudioError
from modules.checkpoint import FINAL_CHECKPOINT_NAME, CheckpointError, training_checkpoints
from modules.config import ConfigError, load_config
from modules.hub import AssetUnavailableError
from modules.pipeline import (
    DEFAULT_LOG_DIR,
    ConversionError,
    ConversionSettings,
    VoiceConverter,
    build_converter,
    default_preset,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"           # label of the model given on the command line
F0_CHOICES = ("default", "rmvpe", "fcpe")
OUTPUT_MAX_AGE_S = 3600.0          # results are kept this long in --output-dir
USER_ERRORS = (AudioError, ConversionError, CheckpointError, ConfigError, AssetUnavailableError)


@dataclass(frozen=True)
class AppKind:
    title: str
    f0: bool                        # singing app: F0 model and F0 controls
    auto_f0_default: bool = True


SINGING = AppKind("Seed-VC singing voice conversion (44.1 kHz, F0-conditioned)", f0=True)
SPEECH = AppKind("Seed-VC voice conversion (speech)", f0=False)


# ---------------------------------------------------------------------------------------------- models

class ModelRegistry:
    """Labels -> how to build a converter; built lazily, the last `keep` kept in memory.

    "default" is the model from the command line; "run:<name>" is every run directory under the config's
    log_dir (default ./runs) holding ft_model.pth or a training checkpoint, found at start-up.
    """

    def __init__(self, args: argparse.Namespace, kind: AppKind, keep: int = 2):
        config = args.config or (None if args.run_name else str(default_preset(kind.f0)))
        common = {"device": args.device, "fp16": args.fp16, "max_source_seconds": args.max_duration}
        self.recipes: dict[str, dict[str, Any]] = {
            DEFAULT_MODEL: {"config": config, "checkpoint": args.checkpoint, "run_name": args.run_name, **common}}
        log_dir = Path(DEFAULT_LOG_DIR)
        if config:
            log_dir = Path(load_config(config).get("log_dir") or DEFAULT_LOG_DIR)
        if log_dir.is_dir():
            for run in sorted(p for p in log_dir.iterdir() if p.is_dir()):
                if (run / FINAL_CHECKPOINT_NAME).exists() or training_checkpoints(run):
                    self.recipes[f"run:{run.name}"] = {"run_dir": str(run), **common}
        self.f0_extractor = args.f0_extractor
        self.keep = keep
        self._loaded: OrderedDict[tuple[str, str | None], VoiceConverter] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self.recipes)

    def get(self, label: str | None, f0_extractor: str | None = None) -> VoiceConverter:
        label = label or DEFAULT_MODEL
        if label not in self.recipes:
            raise ConversionError(f"unknown model {label!r}; choose one of {self.labels}")
        f0_extractor = None if f0_extractor in (None, "", "default") else f0_extractor
        if f0_extractor is not None and f0_extractor not in F0_CHOICES:
            raise ConversionError(f"unknown F0 extractor {f0_extractor!r}; choose one of {list(F0_CHOICES)}")
        key = (label, f0_extractor or self.f0_extractor)
        with self._lock:  # one build at a time; concurrent callers of the same model wait for it
            if key not in self._loaded:
                self._loaded[key] = build_converter(**self.recipes[label], f0_extractor=key[1])
                while len(self._loaded) > self.keep:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def info(self) -> dict:
        converter = self.get(DEFAULT_MODEL)
        # File names only: the panel is public, the server's directory layout is not.
        names = {key: Path(converter.description[key]).name for key in ("config", "checkpoint")
                 if converter.description.get(key)}
        return {**converter.description, **names, "f0_condition": converter.f0_condition,
                "max_source_seconds": converter.max_source_seconds, "models": self.labels,
                "loaded": [f"{label} ({f0 or 'config F0 extractor'})" for label, f0 in self._loaded]}


# ---------------------------------------------------------------------------------------------- GPU work

class Engine:
    """What the endpoints call: checks -> converter -> its sample rate, then float32 pieces."""

    def __init__(self, registry: ModelRegistry, output_dir: Path, max_gpu_seconds: float = zerogpu.MAX_GPU_SECONDS):
        self.registry = registry
        self.output_dir = output_dir
        self.max_gpu_seconds = max_gpu_seconds
        output_dir.mkdir(parents=True, exist_ok=True)

        def run(model: str | None, f0_extractor: str | None, source: np.ndarray, reference: np.ndarray,
                settings: ConversionSettings, progress: Callable | None = None) -> Iterator[np.ndarray]:
            # Only plain values cross into a ZeroGPU worker; the converter is looked up on its side.
            yield from registry.get(model, f0_extractor).convert_stream(source, reference, settings, progress=progress)

        def duration(model: str | None, f0_extractor: str | None, source: np.ndarray, reference: np.ndarray,
                     settings: ConversionSettings, progress: Callable | None = None) -> int:
            seconds = source.size / registry.get(model, f0_extractor).sample_rate
            return zerogpu.gpu_seconds(seconds, settings.diffusion_steps)

        self._run = zerogpu.on_gpu(run, duration)
        # On a ZeroGPU Space a callback cannot cross into the GPU worker, so progress is per chunk there.
        self.in_space = self._run is not run

    def check(self, source: str | None, reference: str | None, model: str | None, f0_extractor: str | None,
              settings: ConversionSettings) -> VoiceConverter:
        """Everything that can be refused before any GPU time is spent; returns the converter."""
        if not source:
            raise ConversionError("no source audio: upload the voice or song to convert")
        if not reference:
            raise ConversionError("no reference audio: upload a clip of the target voice (1-25 s)")
        settings.validate()
        return self.registry.get(model, f0_extractor)

    def check_gpu_budget(self, source_seconds: float, settings: ConversionSettings) -> None:
        """On a Space, refuse a request whose GPU budget exceeds the largest one allowed, before asking for it."""
        steps = int(settings.diffusion_steps)
        needed = zerogpu.gpu_seconds(source_seconds, steps)
        if needed > self.max_gpu_seconds:
            longest = zerogpu.longest_source_seconds(steps, self.max_gpu_seconds)
            raise ConversionError(
                f"this conversion needs about {needed} s of GPU time ({source_seconds:.0f} s of source at {steps} "
                f"diffusion steps), more than the {self.max_gpu_seconds:g} s a request may use here. Use a source "
                f"of at most {longest:.0f} s at {steps} steps, or fewer diffusion steps.")

    def stream(self, source: str | None, reference: str | None, model: str | None, f0_extractor: str | None,
               settings: ConversionSettings, progress: Callable | None = None) -> Iterator:
        """Yields the sample rate, then the pieces of the result."""
        converter = self.check(source, reference, model, f0_extractor, settings)
        # Decoded here, outside any GPU slot: the budget is set from the decoded length, and decoding needs no GPU.
        source_wave, reference_wave = converter.load(source, "source"), converter.load(reference, "reference")
        if self.in_space:
            self.check_gpu_budget(source_wave.size / converter.sample_rate, settings)
        yield converter.sample_rate
        yield from self._run(model, f0_extractor, source_wave, reference_wave, settings,
                             None if self.in_space else progress)

    def write(self, wave: np.ndarray, sample_rate: int, stem: str) -> str:
        self.prune()
        fd, path = tempfile.mkstemp(prefix=f"{stem}_", suffix=".wav", dir=self.output_dir)
        os.close(fd)
        sf.write(path, wave, sample_rate, subtype="PCM_16")
        return path

    def prune(self, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
        """Drop results older than max_age_s: Gradio has copied them into its own cache by then."""
        cutoff = time.time() - max_age_s
        for old in self.output_dir.glob("*.wav"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:   # another worker removed it first
                pass


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- page

def build_demo(registry: ModelRegistry, kind: AppKind, output_dir: Path, concurrency: int = 1,
               max_gpu_seconds: float = zerogpu.MAX_GPU_SECONDS):
    import gradio as gr

    engine = Engine(registry, output_dir, max_gpu_seconds)
    progress_bar = gr.Progress()   # Gradio injects the per-event tracker into a parameter with this default

    def user_error(error: Exception) -> gr.Error:
        return gr.Error(str(error), title="Cannot convert")

    def settings_from(steps, length_adjust, cfg_rate, extra) -> tuple[ConversionSettings, str | None]:
        """extra: (auto_f0, semitones, f0_extractor, seed) in the singing app, (seed,) in the speech app."""
        if kind.f0:
            auto_f0, semitones, f0_extractor, seed = extra
        else:
            (seed,), auto_f0, semitones, f0_extractor = extra, False, 0, None
        for name, value in (("diffusion steps", steps), ("length adjust", length_adjust), ("CFG rate", cfg_rate),
                            ("pitch shift", semitones)):
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConversionError(f"{name} must be a number, got {value!r}")
        if seed is not None and (not isinstance(seed, (int, float)) or not np.isfinite(seed) or abs(seed) > 2 ** 63):
            raise ConversionError(f"seed must be a whole number (negative for random), got {seed!r}")
        settings = ConversionSettings(
            diffusion_steps=int(steps) if float(steps).is_integer() else steps, length_adjust=float(length_adjust),
            inference_cfg_rate=float(cfg_rate), auto_f0_adjust=bool(auto_f0),
            semitone_shift=int(semitones) if float(semitones).is_integer() else semitones,
            seed=None if seed is None or seed < 0 else int(seed))
        return settings, f0_extractor

    def pieces(source, reference, model, steps, length_adjust, cfg_rate, extra, progress) -> Iterator:
        settings, f0_extractor = settings_from(steps, length_adjust, cfg_rate, extra)
        report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
        return engine.stream(source, reference, model, f0_extractor, settings, report)

    def convert(source, reference, model, steps, length_adjust, cfg_rate, *extra, progress=progress_bar):
        try:
            stream = pieces(source, reference, model, steps, length_adjust, cfg_rate, extra, progress)
            sample_rate = next(stream)
            wave = np.concatenate(list(stream))
        except USER_ERRORS as e:
            raise user_error(e) from None
        return engine.write(wave, sample_rate, "converted")

    def convert_stream(source, reference, model, steps, length_adjust, cfg_rate, *extra, progress=progress_bar):
        try:
            stream = pieces(source, reference, model, steps, length_adjust, cfg_rate, extra, progress)
            sample_rate = next(stream)
            done = []
            for piece in stream:
                done.append(piece)
                if piece.size:
                    # The player gets bytes (Gradio re-encodes them for the browser, which API callers cannot
                    # play); API callers get each piece as its own WAV.
                    yield wav_bytes(piece, sample_rate), engine.write(piece, sample_rate, "chunk"), None
        except USER_ERRORS as e:
            raise user_error(e) from None
        yield None, None, engine.write(np.concatenate(done), sample_rate, "converted")

    def batch_convert(sources, reference, model, steps, length_adjust, cfg_rate, *extra, progress=progress_bar):
        sources = [sources] if isinstance(sources, str) else list(sources or [])
        try:
            if not sources:
                raise ConversionError("no source files: upload one or more files to convert")
            settings, f0_extractor = settings_from(steps, length_adjust, cfg_rate, extra)
            engine.check(sources[0], reference, model, f0_extractor, settings)  # whole-batch problems stop it
            registry.get(model, f0_extractor).load(reference, "reference")      # so does a bad reference, once
        except USER_ERRORS as e:
            raise user_error(e) from None
        outputs, rows = [], []
        for index, source in enumerate(sources):
            name = Path(source).name
            progress(index / len(sources), desc=f"{index + 1}/{len(sources)}: {name}")
            try:
                stream = engine.stream(source, reference, model, f0_extractor, settings)
                sample_rate = next(stream)
                outputs.append(engine.write(np.concatenate(list(stream)), sample_rate, f"vc_{Path(name).stem}"))
                rows.append([name, "ok", Path(outputs[-1]).name])
            except USER_ERRORS as e:
                rows.append([name, f"failed: {e}", ""])  # one bad source does not sink the batch
        return outputs, rows

    def model_info() -> dict:
        try:
            return registry.info()
        except USER_ERRORS as e:
            raise user_error(e) from None

    gpu = {"concurrency_limit": concurrency, "concurrency_id": "gpu"}
    # delete_cache: Gradio's copies of uploads and results go after an hour, so a long-lived server stays small.
    with gr.Blocks(title=kind.title, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {kind.title}\nUpload a source and a reference (the target voice, 1-25 s; longer "
                    "references are clipped to 25 s). The result streams in as each 30 s window is ready; the "
                    "full WAV follows. API: see \"Use via API\" at the bottom of the page.")
        with gr.Row():
            model = gr.Dropdown(registry.labels, value=DEFAULT_MODEL, label="Model", scale=1,
                                info="the model the server was started with, or one of its run directories")
            info_box = gr.JSON(label="Loaded model", scale=2)
            refresh = gr.Button("Refresh model info", scale=0)
        with gr.Row():
            steps = gr.Slider(1, 200, value=10, step=1, label="Diffusion steps",
                              info="10 by default, 50-100 for best quality")
            length_adjust = gr.Slider(0.5, 2.0, value=1.0, step=0.1, label="Length adjust",
                                      info="<1.0 speeds up, >1.0 slows down")
            cfg_rate = gr.Slider(0.0, 1.0, value=0.7, step=0.1, label="Inference CFG rate")
        extra = []
        if kind.f0:
            with gr.Row():
                extra = [gr.Checkbox(value=kind.auto_f0_default, label="Auto F0 adjust",
                                     info="move the source pitch to the reference's median pitch"),
                         gr.Slider(-24, 24, value=0, step=1, label="Pitch shift (semitones)"),
                         gr.Dropdown(list(F0_CHOICES), value="default", label="F0 extractor",
                                     info="default: the config's (RMVPE unless set)")]
        extra.append(gr.Number(value=-1, precision=0, label="Seed", info="negative: random"))
        settings = [model, steps, length_adjust, cfg_rate, *extra]

        with gr.Tab("Convert"):
            with gr.Row():
                source = gr.Audio(type="filepath", label="Source audio", elem_id="source-audio")
                reference = gr.Audio(type="filepath", label="Reference audio", elem_id="reference-audio")
            with gr.Row():
                go = gr.Button("Convert", variant="primary", elem_id="convert-button")
                whole = gr.Button("Convert (whole file)", visible=False)  # trigger of /convert, for the API
            with gr.Row():
                streamed = gr.Audio(label="Streamed output", streaming=True, autoplay=True, interactive=False,
                                    elem_id="stream-output")
                full = gr.Audio(label="Full output (WAV)", type="filepath", format="wav", interactive=False,
                                elem_id="full-output")
            chunk = gr.File(label="Latest chunk (WAV)", visible=False)   # for /convert_stream API callers
            go.click(convert_stream, [source, reference, *settings], [streamed, chunk, full],
                     api_name="convert_stream", **gpu)
            whole.click(convert, [source, reference, *settings], full, api_name="convert", **gpu)
        with gr.Tab("Batch"):
            batch_sources = gr.File(file_count="multiple", type="filepath", label="Source files")
            batch_reference = gr.Audio(type="filepath", label="Reference audio")
            batch_go = gr.Button("Convert all", variant="primary")
            batch_files = gr.File(file_count="multiple", label="Results", interactive=False)
            batch_status = gr.Dataframe(headers=["source", "status", "output"], label="Status", interactive=False)
            batch_go.click(batch_convert, [batch_sources, batch_reference, *settings], [batch_files, batch_status],
                           api_name="batch_convert", **gpu)
        refresh.click(model_info, None, info_box, api_name="model_info")
        demo.load(model_info, None, info_box, api_visibility="private")
    return demo


# ---------------------------------------------------------------------------------------------- command line

def default_concurrency() -> int:
    """One conversion per local GPU; on ZeroGPU every call gets its own GPU worker, so several at once."""
    return zerogpu.ZEROGPU_CONCURRENCY if zerogpu.on_zerogpu() else max(1, torch.cuda.device_count())


def parse_args(kind: AppKind, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=kind.title)
    p.add_argument("--config", default=None, help=f"model config (.yml); default: {default_preset(kind.f0).name}")
    p.add_argument("--checkpoint", default=None, help="DiT checkpoint (.pth) or hub reference; default: the config's")
    p.add_argument("--run-name", default=None, help="serve runs/<name>/ft_model.pth, else its newest checkpoint")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--fp16", type=lambda v: v.lower() in ("1", "true", "yes", "y"), default=True,
                   help="fp16 autocast for the DiT on CUDA (true/false)")
    p.add_argument("--f0-extractor", default=None, choices=("rmvpe", "fcpe"), help="default F0 extractor")
    p.add_argument("--host", default=None, help="address to bind (default: gradio's, 127.0.0.1 or $GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or $GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--max-duration", type=float, default=600.0, help="refuse sources longer than this (seconds)")
    p.add_argument("--max-file-size", default="100mb", help="refuse uploads larger than this, before decoding")
    p.add_argument("--concurrency", type=int, default=default_concurrency(),
                   help=f"conversions run at once (default: 1 per GPU; {zerogpu.ZEROGPU_CONCURRENCY} on ZeroGPU)")
    p.add_argument("--max-gpu-seconds", type=float, default=zerogpu.MAX_GPU_SECONDS,
                   help="ZeroGPU only: refuse requests whose GPU time budget is longer than this")
    p.add_argument("--queue-size", type=int, default=16, help="waiting requests beyond this are refused")
    p.add_argument("--output-dir", default=None, help="where results are written (default: a temporary folder)")
    return p.parse_args(argv)


def main(kind: AppKind, argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(kind, argv)
    if shutil.which("ffmpeg") is None:   # Gradio encodes the streamed player's audio with ffmpeg
        log.warning("ffmpeg not found: the streamed player (/convert_stream) will fail; /convert still works. "
                    "Install it (apt-get install -y ffmpeg).")
    registry = ModelRegistry(args, kind)
    registry.get(DEFAULT_MODEL)  # build once at start-up, so the first caller does not wait and bad flags fail now
    output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="seedvc_app_"))
    demo = build_demo(registry, kind, output_dir, args.concurrency, args.max_gpu_seconds)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=args.max_file_size, allowed_paths=[str(output_dir)])
