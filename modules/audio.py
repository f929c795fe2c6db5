"""Audio I/O with clear errors, rate conversion, mel filter banks, and the HiFi-GAN/BigVGAN log-mel spectrogram
shared by model and vocoders.

librosa is imported only to decode formats libsndfile lacks: importing its filters or resampler pulls in numba
and llvmlite (about 0.12 GiB of RSS), so the two functions used from it are computed here with the same
arithmetic (and checked against it in tests/test_audio_io.py).
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from modules.config import MelParams
from modules.errors import UserError

# Every frozen front-end (content encoders, CAM++, RMVPE, FCPE) takes 16 kHz mono audio.
FRONTEND_RATE = 16000
SILENCE_PEAK = 1e-4  # a file whose loudest sample is below this (-80 dBFS) is treated as silent
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class AudioError(UserError, ValueError):
    """An input file cannot be used; the message names the file and says what is wrong.

    `reason` is a short tag for summaries: unreadable, silent, too long, too short."""

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


def audio_duration(path: str | Path) -> float | None:
    """Duration in seconds from the header, without decoding; None when the header cannot tell."""
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate if info.samplerate else None


def _decode(path: Path, role: str, shown: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """-> (mono float32 samples at the file's own rate, that rate); at most `max_seconds` of them (plus one
    sample, so a caller can tell that the file is longer), whatever the header claims."""
    try:
        with sf.SoundFile(str(path)) as f:
            frames = -1 if max_seconds is None else int(max_seconds * f.samplerate) + 1
            data = f.read(frames, dtype="float32", always_2d=True)                # [N, channels]
            return data.mean(axis=1), f.samplerate
    except Exception as sf_error:
        try:  # formats libsndfile lacks (m4a, ...) go through librosa's audioread fallback, if ffmpeg is there
            import librosa
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=True, duration=max_seconds)
            return data.astype(np.float32, copy=False), int(rate)
        except Exception:
            raise AudioError(f"cannot decode {role} file {shown}: it is damaged or not in an audio format this "
                             f"program reads. Use a wav, flac, mp3 or ogg file.") from sf_error


def load_audio(path: str | Path, sample_rate: int, *, max_seconds: float | None = None,
               min_seconds: float | None = None, keep_seconds: float | None = None, role: str = "audio",
               name: str | None = None) -> np.ndarray:
    """Decode any common format (wav, flac, mp3, ogg, ...) to mono float32 at `sample_rate`.

    Stereo is averaged to mono and the rate converted with soxr (`resample_audio`), as the original's librosa.load.
    Raises AudioError for a missing, unreadable, empty, non-finite or silent file, or one outside
    [min_seconds, max_seconds]. The work is bounded: a file over max_seconds is refused from its header where
    the header tells, else after decoding just past the limit; with keep_seconds only that much is decoded
    (the rest of the file is never read). `role` ("source", "reference") and `name` (the file name the user
    knows; default: the path) only word the messages.
    """
    path = Path(path)
    shown = name or str(path)
    if not path.is_file():
        raise AudioError(f"{role} file not found: {shown}")
    if path.stat().st_size == 0:
        raise AudioError(f"{role} file {shown} is empty (0 bytes)")

    def too_long(seconds: float, at_least: str = "") -> AudioError:
        return AudioError(f"{role} file {shown} is {at_least}{seconds:.1f} s long; the limit is {max_seconds:g} s. "
                          f"Trim it or raise the maximum duration.", reason="too long")

    duration = audio_duration(path)
    if max_seconds is not None and duration is not None and duration > max_seconds:
        raise too_long(duration)
    limits = [s for s in (max_seconds, keep_seconds) if s is not None]
    wave, native_rate = _decode(path, role, shown, min(limits) if limits else None)
    if wave.size == 0:
        raise AudioError(f"{role} file {shown} contains no samples")
    if max_seconds is not None and wave.size > max_seconds * native_rate:
        raise too_long(max_seconds, "more than ")
    if not np.isfinite(wave).all():
        raise AudioError(f"{role} file {shown} contains NaN or infinite samples")
    if native_rate != sample_rate:
        # The same decode -> mean-of-channels -> soxr_hq route as librosa.load(sr=...), which the original uses.
        wave = resample_audio(wave, native_rate, sample_rate)
    seconds = wave.size / sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise too_long(seconds)
    if min_seconds is not None and seconds < min_seconds:
        raise AudioError(f"{role} file {shown} is {seconds:.2f} s long; it must be at least {min_seconds:g} s.",
                         reason="too short")
    if np.abs(wave).max() < SILENCE_PEAK:
        raise AudioError(f"{role} file {shown} is silent (peak below {SILENCE_PEAK:g}); nothing to convert.",
                         reason="silent")
    return wave.astype(np.float32, copy=False)


def resample_audio(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """[N] float32 at orig_rate -> [ceil(N * new_rate / orig_rate)] at new_rate: soxr's high quality, cut or
    zero-padded to that length, as librosa.resample(res_type="soxr_hq") gives it."""
    if orig_rate == new_rate:
        return wave
    size = int(math.ceil(wave.shape[-1] * float(new_rate) / orig_rate))
    out = soxr.resample(wave, orig_rate, new_rate, quality="soxr_hq")[:size]
    return np.pad(out, (0, size - out.shape[-1])).astype(wave.dtype, copy=False)


# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz, so 1 kHz is mel 15), logarithmic above (27 steps
# per factor 6.4)
SLANEY_HZ_PER_MEL, SLANEY_BREAK_HZ, SLANEY_BREAK_MEL = 200.0 / 3, 1000.0, 15.0
SLANEY_LOG_STEP = float(np.log(6.4) / 27.0)


def _hz_to_mel(hz: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    log_part = SLANEY_BREAK_MEL + np.log(np.maximum(hz, 1e-10) / SLANEY_BREAK_HZ) / SLANEY_LOG_STEP
    return np.where(hz >= SLANEY_BREAK_HZ, log_part, hz / SLANEY_HZ_PER_MEL)


def _mel_to_hz(mel: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    log_part = SLANEY_BREAK_HZ * np.exp(SLANEY_LOG_STEP * (mel - SLANEY_BREAK_MEL))
    return np.where(mel >= SLANEY_BREAK_MEL, log_part, mel * SLANEY_HZ_PER_MEL)


def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                htk: bool = False) -> np.ndarray:
    """Triangular mel filters with Slaney area normalisation, [n_mels, n_fft // 2 + 1] float32: librosa's
    filters.mel (Slaney or HTK mel scale), which the checkpoints were trained with."""
    fmax = sr / 2.0 if fmax is None else fmax
    bins = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)                                   # [F] Hz
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.asarray(fmin, dtype=np.float64), htk),
                                   _hz_to_mel(np.asarray(fmax, dtype=np.float64), htk), n_mels + 2), htk)
    widths = np.diff(edges)[:, None]                                              # [n_mels + 1, 1]
    ramps = edges[:, None] - bins[None, :]                                        # [n_mels + 2, F]
    rising, falling = -ramps[:-2] / widths[:-1], ramps[2:] / widths[1:]           # [n_mels, F] each
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2: n_mels + 2] - edges[:n_mels]))[:, None]           # equal area per filter
    return weights


@lru_cache(maxsize=16)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    # librosa's default (Slaney) filters, [n_mels, n_fft // 2 + 1], built once per device and dtype (no
    # host-to-device copy per call). Keyed on every parameter, so two configs with the same rate but different
    # n_fft or n_mels never share a basis.
    basis = torch.from_numpy(mel_filters(sr, n_fft, n_mels, fmin, fmax)).float()
    return basis.to(device=device, dtype=dtype)


def mel_spectrogram(wave: torch.Tensor, params: MelParams) -> torch.Tensor:
    """Natural-log mel magnitude spectrogram.

    wave [B, N] (or [N]) in about [-1, 1] -> [B, n_mels, T], T = n_mel_frames(N). The wave is reflect-padded
    by (n_fft - hop) // 2 on each side and framed without centring, as HiFi-GAN and BigVGAN do.
    """
    if wave.dim() == 1:
        wave = wave[None]
    pad = (params.n_fft - params.hop_length) // 2
    wave = F.pad(wave[:, None], (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(params.win_length, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(wave, params.n_fft, hop_length=params.hop_length, win_length=params.win_length,
                      window=window, center=False, normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(spec)
    magnitude = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)  # [B, n_fft//2 + 1, T]; the epsilon keeps the grad finite
    basis = _mel_filterbank(params.sampling_rate, params.n_fft, params.n_mels, params.fmin, params.fmax,
                            magnitude.device, magnitude.dtype)
    mel = torch.matmul(basis, magnitude)
    return torch.log(torch.clamp(mel, min=1e-5))


def n_mel_frames(n_samples: int, params: MelParams) -> int:
    """Frames `mel_spectrogram` gives for `n_samples` samples."""
    pad = (params.n_fft - params.hop_length) // 2
    return (n_samples + 2 * pad - params.n_fft) // params.hop_length + 1
