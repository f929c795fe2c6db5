"""The Gradio web app shared by app_svc.py (singing) and app_vc.py (speech): page, API and queue.

Public endpoints (stable names, every setting an argument, no hidden UI state):
  /convert         source, reference, model, settings...      -> the whole result as a WAV file
  /convert_stream  same arguments                              -> a generator of (player stream, chunk WAV, None),
                                                                  then (None, None, full WAV) once done
  /batch_convert   [sources], reference, model, settings...    -> [WAV per source], per-file status table
  /model_info      (nothing)                                   -> JSON: loaded model, sample rate, device, choices
  /evaluate        [sources], reference, model, setting grids... -> table, plot, CSV, JSON (modules/evaluation/app.py)
The singing app adds auto F0 adjust, pitch shift and F0 extractor after the CFG rate; both end with the seed.
Every argument has a name (the ConversionSettings field it sets). Models are picked by label among those the
server was started with or found in its run directories, of the app's kind only (F0 models for the singing
app, speech models for the speech app); no endpoint takes a filesystem path. Results are written to a
subfolder the app owns (OUTPUT_SUBFOLDER of --output-dir); only files it wrote there are pruned or served.
Errors a user can fix are shown as they are; any other failure is logged and shown as an internal error, so
no message carries a server path or an internal exception text. Every GPU event shares one worker pool
(concurrency_id="gpu"). On a ZeroGPU Space each conversion runs inside `spaces.GPU`
(modules/zerogpu.py) with a budget from its decoded length.
app_vc.py also has a Live tab whose audio goes over the WebSocket route /live/ws (modules/live_ui.py).
"""
from __future__ import annotations

import argparse
import inspect
import io
import logging
import os
import shutil
import sys
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
from modules.arguments import add_model_arguments
from modules.atomic_io import ensure_writable_folder
from modules.checkpoint import FINAL_CHECKPOINT_NAME, run_config, runs_root, training_checkpoints
from modules.config import ModelConfig, load_config
from modules.errors import UserError
from modules.evaluation.app import evaluate_tab
from modules.live_ui import LiveService, live_tab
from modules.pipeline import (
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
OUTPUT_SUBFOLDER = "seedvc_app_results"   # the app writes here (inside --output-dir), and nowhere else
INTERNAL_ERROR = ("The conversion failed because of an internal error (details are in the server's log). "
                  "Try again; if it keeps failing, report it with the log.")


@dataclass(frozen=True)
class AppKind:
    title: str
    f0: bool                        # singing app: F0 model and F0 controls
    auto_f0_default: bool = True
    live: bool = False              # a Live tab (microphone in, converted voice out; modules/live_ui.py)


SINGING = AppKind("Seed-VC singing voice conversion (44.1 kHz, F0-conditioned)", f0=True)
SPEECH = AppKind("Seed-VC voice conversion (speech)", f0=False, live=True)


# ---------------------------------------------------------------------------------------------- models

class ModelRegistry:
    """Labels -> how to build a converter; built lazily, the last `keep` kept in memory.

    "default" is the model from the command line; "run:<name>" is every run directory under the config's
    log_dir (default ./runs) holding ft_model.pth or a training checkpoint, found at start-up.
    """

    def __init__(self, args: argparse.Namespace, kind: AppKind, keep: int = 2):
        config = args.config or (None if args.run_name else str(default_preset(kind.f0)))
        common = {"device": args.device, "fp16": args.fp16, "max_source_seconds": args.max_duration,
                  "require_f0": kind.f0}
        self.recipes: dict[str, dict[str, Any]] = {
            DEFAULT_MODEL: {"config": config, "checkpoint": args.checkpoint, "run_name": args.run_name, **common}}
        log_dir = runs_root(load_config(config) if config else None)
        if log_dir.is_dir():
            for run in sorted(p for p in log_dir.iterdir() if p.is_dir()):
                if ((run / FINAL_CHECKPOINT_NAME).exists() or training_checkpoints(run)) and self._fits(run, kind):
                    self.recipes[f"run:{run.name}"] = {"run_dir": str(run), **common}
        self.f0_extractor = args.f0_extractor
        self.keep = keep
        self._loaded: OrderedDict[tuple[str, str | None], VoiceConverter] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _fits(run: Path, kind: AppKind) -> bool:
        """A run is offered only by the app of its kind: F0 controls mean nothing to a speech model."""
        config = run_config(run)
        try:
            f0 = ModelConfig.from_config(load_config(config)).f0_condition if config else None
        except UserError as e:
            log.warning("run %s not offered: %s", run.name, e)
            return False
        if f0 is not None and f0 != kind.f0:
            log.info("run %s not offered: it is a %s model", run.name, "singing (F0)" if f0 else "speech")
            return False
        return True

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
        self.output_dir = ensure_writable_folder(output_dir / OUTPUT_SUBFOLDER, "--output-dir")
        self._written: list[tuple[float, Path]] = []    # (when, path) of every result this process wrote
        self._written_lock = threading.Lock()
        self.max_gpu_seconds = max_gpu_seconds

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
        if source is None or isinstance(source, str) and not source:
            raise ConversionError("no source audio: upload the voice or song to convert")
        if reference is None or isinstance(reference, str) and not reference:
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
               settings: ConversionSettings, progress: Callable | None = None) -> tuple[int, Iterator[np.ndarray]]:
        """Checks and decodes the inputs now (raising ConversionError or AudioError), then returns the result's
        sample rate and its pieces, each converted as it is read."""
        converter = self.check(source, reference, model, f0_extractor, settings)
        # Decoded here, outside any GPU slot: the budget is set from the decoded length, and decoding needs no GPU.
        source_wave, reference_wave = converter._wave(source, "source"), converter._wave(reference, "reference")
        if self.in_space:
            self.check_gpu_budget(source_wave.size / converter.sample_rate, settings)
        return converter.sample_rate, self._run(model, f0_extractor, source_wave, reference_wave, settings,
                                                None if self.in_space else progress)

    def write(self, wave: np.ndarray, sample_rate: int, stem: str) -> str:
        self.prune()
        fd, path = tempfile.mkstemp(prefix=f"{stem}_", suffix=".wav", dir=self.output_dir)
        os.close(fd)
        sf.write(path, wave, sample_rate, subtype="PCM_16")
        with self._written_lock:
            self._written.append((time.time(), Path(path)))
        return path

    def new_folder(self, stem: str) -> Path:
        """A fresh folder for a result made of several files (an evaluation's table, CSV, JSON and plot), pruned
        like the single files."""
        self.prune()
        path = Path(tempfile.mkdtemp(prefix=f"{stem}_", dir=self.output_dir))
        with self._written_lock:
            self._written.append((time.time(), path))
        return path

    def prune(self, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
        """Drop this process's results (files and folders) older than max_age_s (Gradio has copied them into its
        own cache by then); nothing else in the folder is ever touched."""
        cutoff = time.time() - max_age_s
        with self._written_lock:
            old = [path for when, path in self._written if when < cutoff]
            self._written = [(when, path) for when, path in self._written if when >= cutoff]
        for path in old:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- page

class CallerGone(Exception):
    """The caller of the running event disconnected: its work stops at the next diffusion step."""


def caller_gone() -> bool:
    """True once Gradio's queue has marked the running event's caller as gone (its event stream closed).

    Gradio stops iterating an abandoned generator only after the chunk in flight; checking this at every
    diffusion step frees the worker sooner. Reads the queue's own bookkeeping; where that is not available
    (another Gradio, a ZeroGPU worker process) it is never True and nothing changes."""
    try:
        from gradio.context import LocalContext
        event_id, blocks = LocalContext.event_id.get(None), LocalContext.blocks.get(None)
        jobs = blocks._queue.active_jobs if blocks is not None and event_id else []
        return any(event._id == event_id and not event.alive for job in jobs if job for event in job)
    except (ImportError, AttributeError):
        return False


def setting_names(kind: AppKind) -> tuple[str, ...]:
    """The settings every endpoint takes after (source, reference, model), in order: ConversionSettings fields,
    plus the F0 extractor in the singing app."""
    f0 = ("auto_f0_adjust", "semitone_shift", "f0_extractor") if kind.f0 else ()
    return ("diffusion_steps", "length_adjust", "inference_cfg_rate", *f0, "seed")


def named_endpoint(impl: Callable, inputs: tuple[str, ...], progress: Any) -> Callable:
    """`impl(*inputs_by_name, progress)` as an endpoint whose signature names every input, so the API page and
    gradio_client show the names (a *args function shows param_6 ...). User errors become a page error with
    their own text; any other failure is logged and reported as an internal error, with no details."""
    import gradio as gr

    signature = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                   for name in inputs]
                                  + [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       default=progress)])

    def arguments(args, kwargs) -> dict:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def user_facing(error: Exception) -> Exception:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, UserError):
            return gr.Error(str(error), title="Cannot convert")
        log.error("%s failed", impl.__name__, exc_info=error)
        return gr.Error(INTERNAL_ERROR, title="Internal error")

    if inspect.isgeneratorfunction(impl):
        def endpoint(*args, **kwargs):
            try:
                yield from impl(**arguments(args, kwargs))
            except CallerGone:
                log.info("%s: the caller went away; stopped", impl.__name__)
            except Exception as e:  # noqa: BLE001 - every failure gets a message; bugs are logged
                raise user_facing(e) from None
    else:
        def endpoint(*args, **kwargs):
            try:
                return impl(**arguments(args, kwargs))
            except CallerGone:
                log.info("%s: the caller went away; stopped", impl.__name__)
                return None
            except Exception as e:  # noqa: BLE001 - every failure gets a message; bugs are logged
                raise user_facing(e) from None
    endpoint.__signature__ = signature
    endpoint.__name__ = impl.__name__
    return endpoint


def describe_model(info: dict) -> str:
    """The model panel: /model_info as a few readable lines."""
    f0 = f"yes, extractor {info.get('f0_extractor')}" if info.get("f0_condition") else "no (speech model)"
    limit = info.get("max_source_seconds")
    return "\n".join([
        f"**Config:** {info.get('config', '?')}  \n**Checkpoint:** {info.get('checkpoint', '?')}",
        f"- Sample rate: {info.get('sample_rate')} Hz",
        f"- Device: {info.get('device')}",
        f"- F0-conditioned: {f0}",
        f"- Longest source: {f'{limit:g} s' if limit else 'no limit'}; references are clipped to 25 s",
        f"- Models offered: {', '.join(info.get('models', []))}",
        f"- Loaded now: {', '.join(info.get('loaded', [])) or 'none'}",
    ])


def build_demo(registry: ModelRegistry, kind: AppKind, output_dir: Path, concurrency: int = 1,
               max_gpu_seconds: float = zerogpu.MAX_GPU_SECONDS):
    import gradio as gr

    engine = Engine(registry, output_dir, max_gpu_seconds)
    progress_bar = gr.Progress()   # Gradio injects the per-event tracker into a parameter with this default
    names = setting_names(kind)
    inputs = ("source", "reference", "model", *names)

    def settings_from(values: dict) -> tuple[ConversionSettings, str | None]:
        values = {name: values[name] for name in names}
        f0_extractor = values.pop("f0_extractor", None)
        return ConversionSettings.parse(**values), f0_extractor

    def reporter(progress) -> Callable[[float, str], None]:
        """The engine's progress callback: shows progress, and stops the work once the caller has gone."""
        def report(fraction: float, text: str) -> None:
            if caller_gone():
                raise CallerGone
            if progress is not None:
                progress(fraction, desc=text)
        return report

    def pieces(source, reference, model, values: dict, progress) -> tuple[int, Iterator[np.ndarray]]:
        settings, f0_extractor = settings_from(values)
        return engine.stream(source, reference, model, f0_extractor, settings, reporter(progress))

    def convert(source, reference, model, progress=None, **values):
        sample_rate, stream = pieces(source, reference, model, values, progress)
        return engine.write(np.concatenate(list(stream)), sample_rate, "converted")

    def convert_stream(source, reference, model, progress=None, **values):
        sample_rate, stream = pieces(source, reference, model, values, progress)
        done = []
        for piece in stream:
            done.append(piece)
            if piece.size:
                # The player gets bytes (Gradio re-encodes them for the browser, which API callers cannot
                # play); API callers get each piece as its own WAV.
                yield wav_bytes(piece, sample_rate), engine.write(piece, sample_rate, "chunk"), None
        yield None, None, engine.write(np.concatenate(done), sample_rate, "converted")

    def batch_convert(source, reference, model, progress=None, **values):
        sources = [source] if isinstance(source, str) else list(source or [])
        if not sources:
            raise ConversionError("no source files: upload one or more files to convert")
        settings, f0_extractor = settings_from(values)
        engine.check(sources[0], reference, model, f0_extractor, settings)  # whole-batch problems stop it
        # So does a bad reference; decoded once, the same samples serve every source.
        reference_wave = registry.get(model, f0_extractor).load(reference, "reference")
        outputs, rows = [], []
        for index, path in enumerate(sources):
            name = Path(path).name
            reporter(progress)(index / len(sources), f"{index + 1}/{len(sources)}: {name}")
            try:
                sample_rate, stream = engine.stream(path, reference_wave, model, f0_extractor, settings, reporter(None))
                outputs.append(engine.write(np.concatenate(list(stream)), sample_rate, f"vc_{Path(name).stem}"))
                rows.append([name, "ok", Path(outputs[-1]).name])
            except UserError as e:
                rows.append([name, f"failed: {e}", ""])  # one bad source does not sink the batch
            except Exception:
                log.exception("batch: %s failed", name)
                rows.append([name, "failed: internal error (see the server's log)", ""])
        return outputs, rows

    def model_info() -> dict:
        try:
            return registry.info()
        except UserError as e:
            raise gr.Error(str(e), title="Cannot load the model") from None

    def model_text() -> str:
        try:
            return describe_model(registry.info())
        except UserError as e:
            return f"The model cannot be loaded: {e}"

    low, high = ConversionSettings.LIMITS["diffusion_steps"]
    gpu = {"concurrency_limit": concurrency, "concurrency_id": "gpu"}
    # delete_cache: Gradio's copies of uploads and results go after an hour, so a long-lived server stays small.
    with gr.Blocks(title=kind.title, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {kind.title}\nUpload the audio to convert and a reference of the target voice (1-25 s; "
                    "longer references are clipped to 25 s), then Convert. The result streams in window by "
                    "window; the full WAV follows. Settings are below; the API is under \"Use via API\".")
        with gr.Tab("Convert"):
            with gr.Row():
                source = gr.Audio(type="filepath", label="Source audio", elem_id="source-audio")
                reference = gr.Audio(type="filepath", label="Reference audio", elem_id="reference-audio")
            go = gr.Button("Convert", variant="primary", elem_id="convert-button")
            whole = gr.Button("Convert (whole file)", visible=False)  # trigger of /convert, for the API
            with gr.Row():
                streamed = gr.Audio(label="Streamed output", streaming=True, autoplay=True, interactive=False,
                                    elem_id="stream-output")
                full = gr.Audio(label="Full output (WAV)", type="filepath", format="wav", interactive=False,
                                elem_id="full-output")
            chunk = gr.File(label="Latest chunk (WAV)", visible=False)   # for /convert_stream API callers
        with gr.Tab("Batch"):
            with gr.Row():
                batch_sources = gr.File(file_count="multiple", type="filepath", label="Source files")
                batch_reference = gr.Audio(type="filepath", label="Reference audio")
            batch_go = gr.Button("Convert all", variant="primary")
            batch_files = gr.File(file_count="multiple", label="Results", interactive=False)
            batch_status = gr.Dataframe(headers=["source", "status", "output"], label="Status", interactive=False)
        if kind.live:
            with gr.Tab("Live"):
                live_tab()
        bind_evaluate = evaluate_tab(engine, kind, gpu)   # "Evaluate" tab, /evaluate (modules/evaluation/app.py)
        with gr.Accordion("Settings", open=False):
            model = gr.Dropdown(registry.labels, value=DEFAULT_MODEL, label="Model",
                                info="the model the server was started with, or one of its run directories")
            with gr.Row():
                steps = gr.Slider(low, high, value=10, step=1, label="Diffusion steps",
                                  info="10 by default, 50-100 for best quality")
                length_adjust = gr.Slider(*ConversionSettings.LIMITS["length_adjust"], value=1.0, step=0.1,
                                          label="Length adjust", info="<1.0 speeds up, >1.0 slows down")
                cfg_rate = gr.Slider(*ConversionSettings.LIMITS["inference_cfg_rate"], value=0.7, step=0.1,
                                     label="Inference CFG rate")
            extra = []
            if kind.f0:
                with gr.Row():
                    extra = [gr.Checkbox(value=kind.auto_f0_default, label="Auto F0 adjust",
                                         info="move the source pitch to the reference's median pitch"),
                             gr.Slider(*ConversionSettings.LIMITS["semitone_shift"], value=0, step=1,
                                       label="Pitch shift (semitones)"),
                             gr.Dropdown(list(F0_CHOICES), value="default", label="F0 extractor",
                                         info="default: the config's (RMVPE unless set)")]
            extra.append(gr.Number(value=-1, precision=0, label="Seed", info="negative: random"))
        with gr.Accordion("Loaded model", open=False):
            info_panel = gr.Markdown(elem_id="model-panel")
            refresh = gr.Button("Refresh model info")
            info_json = gr.JSON(visible=False)   # what /model_info returns to API callers
        settings = [model, steps, length_adjust, cfg_rate, *extra]

        go.click(named_endpoint(convert_stream, inputs, progress_bar), [source, reference, *settings],
                 [streamed, chunk, full], api_name="convert_stream", **gpu)
        whole.click(named_endpoint(convert, inputs, progress_bar), [source, reference, *settings], full,
                    api_name="convert", **gpu)
        batch_go.click(named_endpoint(batch_convert, inputs, progress_bar), [batch_sources, batch_reference,
                                                                            *settings],
                       [batch_files, batch_status], api_name="batch_convert", **gpu)
        bind_evaluate(model)
        refresh.click(model_info, None, info_json, api_name="model_info")
        refresh.click(model_text, None, info_panel, api_visibility="private")
        demo.load(model_text, None, info_panel, api_visibility="private")
    return demo


# ---------------------------------------------------------------------------------------------- command line

def default_concurrency() -> int:
    """One conversion per local GPU; on ZeroGPU every call gets its own GPU worker, so several at once."""
    return zerogpu.ZEROGPU_CONCURRENCY if zerogpu.on_zerogpu() else max(1, torch.cuda.device_count())


def parse_args(kind: AppKind, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=kind.title)
    add_model_arguments(p, config_help=f"model config (.yml); default: {default_preset(kind.f0).name}",
                        max_duration=600.0)
    p.add_argument("--host", default=None, help="address to bind (default: gradio's, 127.0.0.1 or $GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860 or $GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--max-file-size", default="100mb", help="refuse uploads larger than this, before decoding")
    p.add_argument("--concurrency", type=int, default=default_concurrency(),
                   help=f"conversions run at once (default: 1 per GPU; {zerogpu.ZEROGPU_CONCURRENCY} on ZeroGPU)")
    p.add_argument("--max-gpu-seconds", type=float, default=zerogpu.MAX_GPU_SECONDS,
                   help="ZeroGPU only: refuse requests whose GPU time budget is longer than this")
    p.add_argument("--queue-size", type=int, default=16, help="waiting requests beyond this are refused")
    p.add_argument("--output-dir", default=None,
                   help=f"results go to its subfolder {OUTPUT_SUBFOLDER}/ (default: a temporary folder)")
    if kind.live:
        p.add_argument("--live-sessions", type=int, default=2,
                       help="live (microphone) sessions at once; more connections are refused")
    return p.parse_args(argv)


def main(kind: AppKind, argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(kind, argv)
    if shutil.which("ffmpeg") is None:   # Gradio encodes the streamed player's audio with ffmpeg
        log.warning("ffmpeg not found: the streamed player (/convert_stream) will fail; /convert still works. "
                    "Install it (apt-get install -y ffmpeg).")
    try:
        registry = ModelRegistry(args, kind)
        registry.get(DEFAULT_MODEL)  # built once at start-up: the first caller does not wait, bad flags fail now
        output_dir = Path(args.output_dir or tempfile.mkdtemp(prefix="seedvc_app_"))
        demo = build_demo(registry, kind, output_dir, args.concurrency, args.max_gpu_seconds)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    # The Live tab's audio travels over a WebSocket route on this same server (modules/live_ui.py).
    live = LiveService(lambda: registry.get(DEFAULT_MODEL), args.live_sessions) if kind.live else None
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=args.max_file_size, allowed_paths=[str(output_dir / OUTPUT_SUBFOLDER)],
                app_kwargs={"routes": live.routes} if live else None)
