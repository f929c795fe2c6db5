"""Audio I/O with clear errors, and the HiFi-GAN/BigVGAN log-mel spectrogram shared by model and vocoders."""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from modules.config import MelParams

SILENCE_PEAK = 1e-4  # a file whose loudest sample is below this (-80 dBFS) is treated as silent
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


class AudioError(ValueError):
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


def _decode(path: Path, role: str) -> tuple[np.ndarray, int]:
    """-> (mono float32 samples at the file's own rate, that rate)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)    # [N, channels]
        return data.mean(axis=1), rate
    except Exception as sf_error:
        try:  # formats libsndfile lacks (m4a, ...) go through librosa's audioread fallback, if ffmpeg is there
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=True)
            return data.astype(np.float32, copy=False), int(rate)
        except Exception:
            raise AudioError(f"cannot decode {role} file {path}: {sf_error}. "
                             f"Use a wav, flac, mp3 or ogg file.") from sf_error


def load_audio(path: str | Path, sample_rate: int, *, max_seconds: float | None = None,
               min_seconds: float | None = None, role: str = "audio") -> np.ndarray:
    """Decode any common format (wav, flac, mp3, ogg, ...) to mono float32 at `sample_rate`.

    Stereo is averaged to mono and the rate converted with librosa (soxr), as the original's librosa.load.
    Raises AudioError for a missing, unreadable, empty, non-finite or silent file, or one outside
    [min_seconds, max_seconds]. `role` ("source", "reference") only words the message.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{role} file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"{role} file {path} is empty (0 bytes)")
    duration = audio_duration(path)
    if max_seconds is not None and duration is not None and duration > max_seconds:
        raise AudioError(f"{role} file {path} is {duration:.1f} s long; the limit is {max_seconds:g} s. "
                         f"Trim it or raise the maximum duration.", reason="too long")
    wave, native_rate = _decode(path, role)
    if wave.size == 0:
        raise AudioError(f"{role} file {path} contains no samples")
    if not np.isfinite(wave).all():
        raise AudioError(f"{role} file {path} contains NaN or infinite samples")
    if native_rate != sample_rate:
        # The same decode -> mean-of-channels -> soxr_hq route as librosa.load(sr=...), which the original uses.
        wave = librosa.resample(wave, orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq")
    seconds = wave.size / sample_rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(f"{role} file {path} is {seconds:.1f} s long; the limit is {max_seconds:g} s. "
                         f"Trim it or raise the maximum duration.", reason="too long")
    if min_seconds is not None and seconds < min_seconds:
        raise AudioError(f"{role} file {path} is {seconds:.2f} s long; it must be at least {min_seconds:g} s.",
                         reason="too short")
    if np.abs(wave).max() < SILENCE_PEAK:
        raise AudioError(f"{role} file {path} is silent (peak below {SILENCE_PEAK:g}); nothing to convert.",
                         reason="silent")
    return wave.astype(np.float32, copy=False)


@lru_cache(maxsize=16)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    # librosa's default (Slaney) filters, [n_mels, n_fft // 2 + 1], built once per device and dtype (no
    # host-to-device copy per call). Keyed on every parameter, so two configs with the same rate but different
    # n_fft or n_mels never share a basis.
    basis = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()
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
