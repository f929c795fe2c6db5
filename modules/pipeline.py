"""The conversion engine behind inference.py and the web apps.

One `VoiceConverter` is built once (config + DiT checkpoint + front-ends + vocoder) and then converts any
number of (source, reference) pairs, either whole (`convert`) or chunk by chunk as each is vocoded
(`convert_stream`). It follows the original inference.py step by step:

  source, reference --load at the config's rate, mono--> reference clipped to 25 s
  both --resample to 16 kHz--> content features (Whisper / XLS-R), F0 for F0 models
  reference --> CAM++ style, prompt mel, prompt conditioning (length regulator with the reference F0)
  source --> conditioning at int(mel frames * length_adjust) frames, with the shifted source F0
  per <=30 s window: DiT Euler sampling with the reference as in-context prompt -> vocoder -> crossfade
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from modules import hub
from modules.audio import FRONTEND_RATE, AudioError, load_audio, mel_spectrogram, n_mel_frames
from modules.checkpoint import load_model, run_directory, select_run_checkpoint
from modules.chunking import ChunkAssembler, ChunkPlan
from modules.config import MelParams, ModelConfig, load_config, preset_path
from modules.devices import pick_device, synchronize
from modules.errors import UserError
from modules.frontends import Frontends, build_frontends
from modules.host_memory import keep_freed_host_memory, release_mapped_weights, return_freed_host_memory
from modules.model import SeedVCModel
from modules.precision import autocast_dtype, compile_module, reduced_precision
from modules.resample import resample

log = logging.getLogger(__name__)

REFERENCE_MAX_SECONDS = 25.0   # longer references are clipped, as in the original
REFERENCE_MIN_SECONDS = 1.0
# Only this much of a reference file is decoded: the clip plus a margin, so resampling treats the clip's end
# as it would in the whole file.
REFERENCE_DECODE_SECONDS = REFERENCE_MAX_SECONDS + 1.0
SOURCE_MIN_SECONDS = 0.1       # above one F0 analysis window (1024 samples at 16 kHz); shorter has no frames
LIVE_VOCODER_MARGIN_FRAMES = 8  # mel frames vocoded either side of a live window's kept span

Progress = Callable[[float, str], None]   # (fraction done in [0, 1], what is happening)


class ConversionError(UserError, ValueError):
    """A conversion request cannot be carried out; the message says which input or setting and why."""


@dataclass(frozen=True)
class ConversionSettings:
    """The original's controls, with the ranges its UIs allow. One place for the CLI, the engine and the app:
    `parse` takes loosely typed values (the API sends floats, None, huge numbers), `validate` checks ranges,
    and the app's sliders take their ranges from LIMITS."""
    diffusion_steps: int = 10
    length_adjust: float = 1.0
    inference_cfg_rate: float = 0.7
    auto_f0_adjust: bool = False
    semitone_shift: int = 0
    seed: int | None = None

    LIMITS = {"diffusion_steps": (1, 200), "length_adjust": (0.5, 2.0), "inference_cfg_rate": (0.0, 1.0),
              "semitone_shift": (-24, 24)}
    WHOLE = ("diffusion_steps", "semitone_shift")
    SEED_LIMIT = 2 ** 63 - 1

    @classmethod
    def parse(cls, **values) -> "ConversionSettings":
        """Checked settings from request values; a negative or missing seed means a random one."""
        for name, value in values.items():
            if name in cls.LIMITS and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConversionError(f"{name} must be a number, got {value!r}")
        seed = values.pop("seed", None)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, float)) or \
                    (isinstance(seed, float) and not math.isfinite(seed)) or abs(seed) > cls.SEED_LIMIT \
                    or int(seed) != seed:
                raise ConversionError(f"seed must be a whole number up to {cls.SEED_LIMIT} (negative: random), "
                                      f"got {seed!r}")
            seed = int(seed) if seed >= 0 else None
        for name in cls.LIMITS:
            value = values.get(name)
            if name not in cls.WHOLE and value is not None:
                values[name] = float(value)
            elif isinstance(value, float) and value.is_integer():
                values[name] = int(value)
        if "auto_f0_adjust" in values:
            values["auto_f0_adjust"] = bool(values["auto_f0_adjust"])
        return cls(**values, seed=seed).validate()

    def validate(self) -> "ConversionSettings":
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ConversionError(f"{name} = {value!r} is outside the supported range [{low}, {high}]")
        if any(int(getattr(self, name)) != getattr(self, name) for name in self.WHOLE):
            raise ConversionError(f"{' and '.join(self.WHOLE)} must be whole numbers")
        return self


@dataclass
class ReferenceFeatures:
    style: torch.Tensor             # [1, 192]
    prompt_mel: torch.Tensor        # [1, n_mels, P]
    prompt_condition: torch.Tensor  # [1, P, D]
    f0: torch.Tensor | None         # [1, T_f0] float64 Hz on the CPU (F0 models only)


@dataclass
class ConversionResult:
    wave: np.ndarray                # float32 at `sample_rate`
    sample_rate: int
    seconds_elapsed: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.seconds_elapsed / max(len(self.wave) / self.sample_rate, 1e-9)


def shift_source_f0(f0_source: torch.Tensor, f0_reference: torch.Tensor, auto_adjust: bool,
                    semitones: float) -> torch.Tensor:
    """The original's F0 transform, in the F0's own dtype (float64).

    Voiced means > 1 Hz. With auto_adjust, voiced source log-F0 is moved by (median reference log-F0 -
    median source log-F0); torch.median takes the lower middle value. Then voiced frames are scaled by
    2^(semitones/12). Every frame goes through exp(log(f0 + 1e-5)), so unvoiced frames end near 1e-5 Hz.
    """
    voiced = f0_source > 1
    log_f0 = torch.log(f0_source + 1e-5)
    shifted = log_f0.clone()
    if auto_adjust:
        ref_voiced = f0_reference[f0_reference > 1]
        if voiced.any() and ref_voiced.numel():
            shift = torch.median(torch.log(ref_voiced + 1e-5)) - torch.median(log_f0[voiced])
            shifted[voiced] = log_f0[voiced] + shift
        else:
            log.warning("auto F0 adjust skipped: no voiced frames in the %s", "source" if not voiced.any() else "reference")
    shifted = torch.exp(shifted)
    if semitones:
        shifted[voiced] = shifted[voiced] * 2 ** (semitones / 12)
    return shifted


class VoiceConverter:
    """The engine on one device: it moves the DiT model there and refuses front-ends built for another."""

    def __init__(self, config: dict, model: SeedVCModel, frontends: Frontends, *, device: str | torch.device = "cpu",
                 fp16: bool = True, max_source_seconds: float | None = None, reference_cache_size: int = 8,
                 description: dict | None = None, precision: str | None = None, compile: bool = False):
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        misplaced = frontends.misplaced(self.device)
        if misplaced:
            raise ConversionError(misplaced)
        self.frontends = frontends
        self.mel_params = MelParams.from_config(config)
        self.sample_rate = self.mel_params.sampling_rate
        self.f0_condition = ModelConfig.from_config(config).f0_condition
        if self.f0_condition and frontends.f0 is None:
            raise ConversionError("this model is F0-conditioned but no F0 extractor was given")
        # The DiT and the content encoder run under autocast in this dtype (None: fp32). By default fp16 on CUDA
        # only, where it pays off; `precision` (fp32, bf16, fp16) overrides it. The vocoder always runs in fp32.
        self.autocast_dtype = autocast_dtype(precision, self.device, fp16)
        self.content_autocast = precision is not None  # by default the content encoder keeps its own dtype
        if compile:
            self.model.cfm.estimator = compile_module(self.model.cfm.estimator)
            if frontends.vocoder is not None:
                frontends.vocoder.generator = compile_module(frontends.vocoder.generator)
        self.max_source_seconds = max_source_seconds
        self.description = description or {}
        self._reference_cache: OrderedDict[str, ReferenceFeatures] = OrderedDict()
        self._reference_cache_size = reference_cache_size
        self.reference_cache_misses = 0

    # ------------------------------------------------------------------ inputs
    @property
    def fp16(self) -> bool:
        """Whether the DiT runs under fp16 autocast (the original's --fp16; CUDA only)."""
        return self.autocast_dtype == torch.float16

    def load(self, path: str | Path, role: str) -> np.ndarray:
        """Decode a "source" or "reference" file; errors name it by role and file name, never its folder."""
        name = Path(path).name
        if role == "reference":
            return load_audio(path, self.sample_rate, min_seconds=REFERENCE_MIN_SECONDS,
                              keep_seconds=REFERENCE_DECODE_SECONDS, role=role, name=name)
        return load_audio(path, self.sample_rate, min_seconds=SOURCE_MIN_SECONDS,
                          max_seconds=self.max_source_seconds, role=role, name=name)

    def _wave(self, audio: str | Path | np.ndarray, role: str) -> np.ndarray:
        """A file decoded (see load) or an array checked, as float32 [N] at the model rate."""
        if isinstance(audio, (str, Path)):
            return self.load(audio, role)
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0 or not np.isfinite(wave).all():
            raise AudioError(f"{role} audio must be a non-empty 1-D array of finite samples")
        shortest = REFERENCE_MIN_SECONDS if role == "reference" else SOURCE_MIN_SECONDS
        if wave.size < shortest * self.sample_rate:
            raise AudioError(f"{role} audio is {wave.size / self.sample_rate:.2f} s long; "
                             f"it must be at least {shortest:g} s.", reason="too short")
        return wave

    # ------------------------------------------------------------------ features
    def _autocast(self) -> torch.autocast:
        return reduced_precision(self.autocast_dtype, self.device)

    def _content(self, wave_16k: torch.Tensor) -> torch.Tensor:
        if not self.content_autocast:
            return self.frontends.content(wave_16k)
        with self._autocast():
            return self.frontends.content(wave_16k).float()

    def _to_16k(self, wave: torch.Tensor) -> torch.Tensor:
        return resample(wave, self.sample_rate, FRONTEND_RATE)

    def reference_features(self, wave: np.ndarray) -> ReferenceFeatures:
        """Style, prompt mel and prompt conditioning of a reference, cached by a hash of its samples."""
        wave = wave[: int(self.sample_rate * REFERENCE_MAX_SECONDS)]
        key = hashlib.sha256(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest()
        cached = self._reference_cache.get(key)
        if cached is not None:
            self._reference_cache.move_to_end(key)
            return cached
        self.reference_cache_misses += 1
        ref = torch.from_numpy(wave).to(self.device)[None]                 # [1, N]
        ref_16k = self._to_16k(ref)
        content = self._content(ref_16k[0])                                # [1, T_c, D_c]
        prompt_mel = mel_spectrogram(ref, self.mel_params)                 # [1, n_mels, P]
        style = self.frontends.style(ref_16k[0])                           # [1, 192]
        f0 = None
        if self.f0_condition:  # float64 stays on the CPU (MPS has none); the length regulator moves its bins
            f0 = torch.from_numpy(self.frontends.f0(ref_16k[0]))[None]
        lengths = torch.tensor([prompt_mel.shape[-1]], device=self.device)
        prompt_condition = self.model.length_regulator(content, lengths, f0=f0)
        features = ReferenceFeatures(style=style, prompt_mel=prompt_mel, prompt_condition=prompt_condition, f0=f0)
        self._reference_cache[key] = features
        while len(self._reference_cache) > self._reference_cache_size:
            self._reference_cache.popitem(last=False)
        return features

    def source_condition(self, wave: np.ndarray, reference: ReferenceFeatures,
                         settings: ConversionSettings) -> torch.Tensor:
        """[1, int(mel frames * length_adjust), D] conditioning for the source."""
        src = torch.from_numpy(wave).to(self.device)[None]
        src_16k = self._to_16k(src)
        content = self._content(src_16k[0])
        n_frames = int(n_mel_frames(src.shape[-1], self.mel_params) * settings.length_adjust)
        f0 = None
        if self.f0_condition:
            f0_source = torch.from_numpy(self.frontends.f0(src_16k[0]))[None]          # float64, CPU
            f0 = shift_source_f0(f0_source, reference.f0, settings.auto_f0_adjust, settings.semitone_shift)
        return self.model.length_regulator(content, torch.tensor([n_frames], device=self.device), f0=f0)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def convert_stream(self, source: str | Path | np.ndarray, reference: str | Path | np.ndarray,
                       settings: ConversionSettings = ConversionSettings(), *,
                       chunk_noise: Sequence[torch.Tensor] | None = None,
                       progress: Progress | None = None, timings: dict[str, float] | None = None) -> Iterator[np.ndarray]:
        """Yield float32 pieces of the converted audio as each chunk is vocoded; together they are the result.

        chunk_noise: the initial noise of each chunk's sampler ([1, n_mels, P + chunk frames]), to replay a
        run exactly; otherwise it is drawn from a generator seeded with settings.seed (or the global RNG).
        """
        settings.validate()
        timings = {} if timings is None else timings
        report = progress or (lambda fraction, what: None)
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            synchronize(self.device)  # asynchronous devices: count queued work in the stage that queued it
            now = time.perf_counter()
            timings[name] = timings.get(name, 0.0) + now - clock
            clock = now

        source_wave = self._wave(source, "source")
        reference_wave = self._wave(reference, "reference")
        lap("load")
        report(0.0, "analysing the reference")
        ref = self.reference_features(reference_wave)
        lap("reference")
        report(0.05, "analysing the source")
        cond = self.source_condition(source_wave, ref, settings)
        lap("source")
        # On the CPU, memory-mapped weights leave RSS while a stage that does not use them runs (see
        # modules/host_memory.py): the front-ends' during the DiT and vocoder, the DiT's during the vocoder.
        release_pages = self.device.type == "cpu"
        if release_pages:
            release_mapped_weights(m for role, m in self.frontends.modules().items() if role != "vocoder")

        plan = ChunkPlan(self.sample_rate, self.mel_params.hop_length, ref.prompt_mel.shape[-1])
        windows = list(plan.windows(cond.shape[1]))
        generator = None
        if settings.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(settings.seed))
        assembler = ChunkAssembler(plan.overlap_samples)
        try:
            for index, (start, end, is_last) in enumerate(windows):
                on_step = lambda step, total: report(0.1 + 0.85 * (index + step / total) / len(windows),
                                                     f"chunk {index + 1}/{len(windows)}: step {step}/{total}")
                mel = self.sample_mel(cond[:, start:end], ref, settings, generator=generator, on_step=on_step,
                                      noise=None if chunk_noise is None else chunk_noise[index])
                lap("dit")
                if release_pages:
                    release_mapped_weights([self.model])
                wave = self.frontends.vocoder(mel, generator=generator).reshape(-1).float().cpu().numpy()
                lap("vocoder")
                yield assembler.push(wave, is_last)
        finally:
            return_freed_host_memory()  # the buffers reused during this conversion go back to the OS
        report(1.0, "done")

    def sample_mel(self, condition: torch.Tensor, ref: ReferenceFeatures, settings: ConversionSettings, *,
                   generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                   on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """DiT Euler sampling of one window: source conditioning [1, T, D] after the reference prompt ->
        the window's mel [1, n_mels, T] (fp32; the prompt frames cut off)."""
        mu = torch.cat([ref.prompt_condition, condition], dim=1)
        with self._autocast():
            mel = self.model.cfm.inference(
                mu, torch.tensor([mu.shape[1]], device=self.device), ref.prompt_mel, ref.style,
                n_timesteps=int(settings.diffusion_steps), inference_cfg_rate=settings.inference_cfg_rate,
                noise=noise, generator=generator, on_step=on_step)
        return mel[:, :, ref.prompt_mel.shape[-1]:].float()

    # ------------------------------------------------------------------ live input (modules/live.py)
    def live_reference(self, wave: np.ndarray, prompt_seconds: float) -> ReferenceFeatures:
        """The cached reference features with the prompt clipped to its first `prompt_seconds` (a short prompt
        keeps each live window cheap); the style still comes from the whole (<= 25 s) reference."""
        features = self.reference_features(wave)
        frames = max(1, int(prompt_seconds * self.sample_rate / self.mel_params.hop_length))
        return ReferenceFeatures(style=features.style, prompt_mel=features.prompt_mel[:, :, :frames],
                                 prompt_condition=features.prompt_condition[:, :frames], f0=features.f0)

    @torch.no_grad()
    def convert_window(self, wave: np.ndarray, ref: ReferenceFeatures, settings: ConversionSettings, *,
                       keep_samples: int, tail_samples: int, generator: torch.Generator | None = None) -> np.ndarray:
        """One window of live input (float32 at the model rate) -> the `keep_samples` converted samples that end
        `tail_samples` before the window's end. The whole window conditions the DiT (left context in front,
        right context behind); only the mel frames covering the kept span, plus a margin, are vocoded."""
        hop = self.mel_params.hop_length
        mel = self.sample_mel(self.source_condition(wave, ref, settings), ref, settings, generator=generator)
        start = wave.size - tail_samples - keep_samples                     # first kept input sample
        first_frame = max(0, start // hop - LIVE_VOCODER_MARGIN_FRAMES)
        last_frame = min(mel.shape[-1], -(-(start + keep_samples) // hop) + LIVE_VOCODER_MARGIN_FRAMES)
        out = self.frontends.vocoder(mel[:, :, first_frame:last_frame], generator=generator).reshape(-1)
        offset = start - first_frame * hop              # vocoded sample j is input sample first_frame * hop + j
        out = out[offset: offset + keep_samples].float().cpu().numpy()
        return np.pad(out, (0, keep_samples - out.size))

    def convert(self, source: str | Path | np.ndarray, reference: str | Path | np.ndarray,
                settings: ConversionSettings = ConversionSettings(), **kwargs) -> ConversionResult:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        pieces = list(self.convert_stream(source, reference, settings, timings=timings, **kwargs))
        return ConversionResult(np.concatenate(pieces), self.sample_rate, time.perf_counter() - start, timings)



# ---------------------------------------------------------------------------------------------- building

PRESET_SPEECH = "config_dit_mel_seed_uvit_whisper_small_wavenet.yml"
PRESET_SINGING = "config_dit_mel_seed_uvit_whisper_base_f0_44k.yml"


def default_preset(f0_condition: bool) -> Path:
    """The official preset the original picks: the 44.1 kHz singing model with F0, else the speech model."""
    return preset_path(PRESET_SINGING if f0_condition else PRESET_SPEECH)


def build_converter(config: str | Path | None = None, *, checkpoint: str | Path | None = None,
                    run_name: str | None = None, run_dir: str | Path | None = None, device: str | None = None,
                    fp16: bool = True, f0_extractor: str | None = None, max_source_seconds: float | None = None,
                    require_f0: bool | None = None, reference_cache_size: int = 8, precision: str | None = None,
                    compile: bool = False) -> VoiceConverter:
    """Build the engine once from a config plus a model source.

    The model source is, in order: `run_dir` (or `run_name` under the config's log_dir, default ./runs) through
    the run-directory rule; an explicit `checkpoint`; else the official checkpoint the config names (hub).
    A config saved in the run directory is used when no `config` is given. `precision` and `compile` are the
    opt-in speed modes of modules.precision.
    """
    state = None
    if run_name or run_dir:
        base_cfg = load_config(config) if config else {}
        run_dir = Path(run_dir) if run_dir else run_directory(base_cfg, run_name)
        selection = select_run_checkpoint(run_dir)
        config = config or selection.config
        if config is None:
            raise ConversionError(f"{run_dir} holds no config (*.yml); pass --config")
        checkpoint, state = selection.checkpoint, selection.state
    if config is None:
        raise ConversionError("no config given")
    cfg = load_config(config)
    f0_condition = ModelConfig.from_config(cfg).f0_condition
    if require_f0 is not None and require_f0 != f0_condition:
        wanted = "an F0-conditioned (singing)" if require_f0 else "a speech (not F0-conditioned)"
        raise ConversionError(f"{Path(str(config)).name} is not {wanted} model: its length_regulator.f0_condition "
                              f"is {str(f0_condition).lower()}. Use a config of the other kind (inference.py: "
                              f"--f0-condition {str(f0_condition).lower()}; app_svc.py for F0 models, app_vc.py "
                              f"for speech)")
    dev = pick_device(device)
    autocast_dtype(precision, dev, fp16)  # refuse an unsupported precision before loading anything
    if dev.type == "cpu":
        keep_freed_host_memory()  # each call's large buffers are reused, not page-faulted in again

    checkpoint = checkpoint if state is not None else hub.resolve_dit_checkpoint(config, checkpoint)
    model = load_model(cfg, state if state is not None else checkpoint, source=str(checkpoint)).to(dev).eval()
    del state  # the model holds the checkpoint's tensors; nothing else of it is needed

    frontends, f0_kind = build_frontends(cfg, dev, f0_extractor=f0_extractor, fp16=fp16)
    description = {"config": str(config), "checkpoint": str(checkpoint), "sample_rate": cfg["preprocess_params"]["sr"],
                   "device": str(dev), "f0_extractor": f0_kind}
    log.info("loaded %s", description)
    return VoiceConverter(cfg, model, frontends, device=dev, fp16=fp16, max_source_seconds=max_source_seconds,
                          reference_cache_size=reference_cache_size, description=description, precision=precision,
                          compile=compile)
