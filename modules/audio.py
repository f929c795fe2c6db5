"""Audio features shared by the model and the vocoders: the HiFi-GAN/BigVGAN log-mel spectrogram."""
from __future__ import annotations

from functools import lru_cache

import librosa
import torch
import torch.nn.functional as F

from modules.config import MelParams


@lru_cache(maxsize=8)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    # librosa's default (Slaney) filters, [n_mels, n_fft // 2 + 1]. Keyed on every parameter, so two configs
    # with the same rate but different n_fft or n_mels never share a basis.
    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)).float()


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
    basis = _mel_filterbank(params.sampling_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    mel = torch.matmul(basis.to(device=wave.device, dtype=magnitude.dtype), magnitude)
    return torch.log(torch.clamp(mel, min=1e-5))


def n_mel_frames(n_samples: int, params: MelParams) -> int:
    """Frames `mel_spectrogram` gives for `n_samples` samples."""
    pad = (params.n_fft - params.hop_length) // 2
    return (n_samples + 2 * pad - params.n_fft) // params.hop_length + 1
