"""Deterministic test clips made by code: voiced, pitched, formant-shaped signals (ours to ship, no licence issue).

A "speaker" is a pitch range and a vocal-tract length (formant scale); a "recording" is a seeded sequence of
syllables (vowel targets, consonant noise, phrase pauses). The singing clip is a seeded melody with vibrato.
Clip names, rates, channel counts and lengths match the fixture's third-party clips, so tests written against
either read the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

# (F1, F2, F3) Hz of an adult male voice; a speaker scales them.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240],
                   [660, 1720, 2410], [490, 1350, 1690]], dtype=np.float64)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])


@dataclass(frozen=True)
class Clip:
    name: str
    sample_rate: int
    frames: int
    f0_hz: float          # speaking pitch (speech) or the melody's tonic (singing)
    formant_scale: float  # shorter vocal tract -> higher formants
    seed: int
    channels: int = 1
    singing: bool = False


# The fixture clips' exact lengths (24 kHz mono speech; 48 kHz stereo singing).
CLIPS = (
    Clip("s1p1.wav", 24000, 350335, 115.0, 1.00, 11),
    Clip("s1p2.wav", 24000, 263036, 115.0, 1.00, 12),
    Clip("s2p1.wav", 24000, 332397, 205.0, 1.17, 21),
    Clip("s2p2.wav", 24000, 281984, 205.0, 1.17, 22),
    Clip("s3p1.wav", 24000, 278671, 145.0, 1.06, 31),
    Clip("s4p1.wav", 24000, 309242, 240.0, 1.22, 41),
    Clip("source_s1.wav", 24000, 299497, 115.0, 1.00, 13),
    Clip("singing_technopolis_14s.wav", 48000, 698993, 220.0, 1.15, 51, channels=2, singing=True),
)


def _smooth_steps(values: np.ndarray, lengths: np.ndarray, n: int, glide: int) -> np.ndarray:
    """Piecewise-constant targets [K, D] held for `lengths` samples each, smoothed by a `glide`-sample ramp."""
    track = np.repeat(values, lengths, axis=0)[:n]
    if len(track) < n:
        track = np.concatenate([track, np.repeat(track[-1:], n - len(track), axis=0)])
    kernel = np.hanning(2 * glide + 1)
    kernel /= kernel.sum()
    padded = np.pad(track, ((glide, glide), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(track.shape[1])], axis=1)


def _harmonics(f0: np.ndarray, formants: np.ndarray, sr: int, top_hz: float, tilt: float) -> np.ndarray:
    """Additive voiced signal: harmonic k of f0 [N] weighted by resonances at formants [N, 3]."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros_like(f0)
    for k in range(1, int(top_hz / f0.min()) + 1):
        freq = k * f0
        gain = sum(1.0 / (1.0 + ((freq - formants[:, j]) / (BANDWIDTHS[j] / 2)) ** 2) for j in range(3))
        gain = (gain + 0.02) * k ** -tilt * (freq < min(top_hz, sr / 2 - 200))
        out += gain * np.sin(k * phase)
    return out


def _lowpass_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    noise = rng.standard_normal(n)
    return np.convolve(noise, np.ones(width) / width, mode="same")


def _speech(clip: Clip) -> np.ndarray:
    rng = np.random.default_rng(clip.seed)
    sr, n = clip.sample_rate, clip.frames
    # Syllables of 0.15-0.35 s, every 4-8 syllables a 0.15-0.3 s pause.
    lengths, vowels, voiced = [], [], []
    total = 0
    while total < n:
        for _ in range(rng.integers(4, 9)):
            lengths.append(int(rng.uniform(0.15, 0.35) * sr))
            vowels.append(VOWELS[rng.integers(len(VOWELS))] * clip.formant_scale)
            voiced.append(1.0)
        lengths.append(int(rng.uniform(0.15, 0.3) * sr))
        vowels.append(vowels[-1])
        voiced.append(0.0)
        total = sum(lengths)
    lengths = np.array(lengths)
    formants = _smooth_steps(np.array(vowels), lengths, n, glide=int(0.04 * sr))
    gate = _smooth_steps(np.array(voiced)[:, None], lengths, n, glide=int(0.02 * sr))[:, 0]
    # Syllable envelope: each syllable swells and fades, with a consonant-like noise burst at its onset.
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    syllable = np.zeros(n)
    burst = np.zeros(n)
    for start, length in zip(starts, lengths):
        stop = min(start + length, n)
        if stop <= start:
            continue
        pos = np.linspace(0, 1, stop - start)
        syllable[start:stop] = np.sin(np.pi * pos) ** 0.6
        burst[start:stop] = np.exp(-pos * length / (0.03 * sr))
    t = np.arange(n) / sr
    # Intonation: a phrase-level declination and slow wander, about +-15 %.
    f0 = clip.f0_hz * (1 + 0.12 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 0.05 * np.sin(2 * np.pi * 2.3 * t))
    voiced_part = _harmonics(f0, formants, sr, top_hz=5000.0, tilt=0.8) * syllable * gate
    fricative = np.diff(_lowpass_noise(rng, n + 1, 2)) * burst * gate * 0.3
    wave = voiced_part / np.abs(voiced_part).max() + fricative + 1e-3 * rng.standard_normal(n)
    return wave


def _singing(clip: Clip) -> np.ndarray:
    rng = np.random.default_rng(clip.seed)
    sr, n = clip.sample_rate, clip.frames
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])  # major scale, semitones above the tonic
    notes, lengths, vowels, voiced = [], [], [], []
    total, degree = 0, 0
    while total < n:
        for _ in range(rng.integers(5, 9)):  # a phrase of notes, then a breath
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(scale) - 1))
            notes.append(scale[degree])
            lengths.append(int(rng.uniform(0.3, 0.7) * sr))
            vowels.append(VOWELS[rng.integers(len(VOWELS))] * clip.formant_scale)
            voiced.append(1.0)
        notes.append(notes[-1])
        lengths.append(int(rng.uniform(0.25, 0.4) * sr))
        vowels.append(vowels[-1])
        voiced.append(0.0)
        total = sum(lengths)
    lengths = np.array(lengths)
    semitones = _smooth_steps(np.array(notes, dtype=np.float64)[:, None], lengths, n, glide=int(0.03 * sr))[:, 0]
    formants = _smooth_steps(np.array(vowels), lengths, n, glide=int(0.05 * sr))
    gate = _smooth_steps(np.array(voiced)[:, None], lengths, n, glide=int(0.04 * sr))[:, 0]
    t = np.arange(n) / sr
    vibrato = 0.3 * np.sin(2 * np.pi * 5.5 * t) * np.clip(t % 2.0, 0, 1)  # +-30 cents
    f0 = clip.f0_hz * 2 ** ((semitones + vibrato) / 12)
    voice = _harmonics(f0, formants, sr, top_hz=8000.0, tilt=0.9) * gate
    voice /= np.abs(voice).max()
    breath = 1e-3 * rng.standard_normal((n, clip.channels))
    return voice[:, None] * np.array([0.9, 1.0])[: clip.channels] + breath


def synthesize(clip: Clip) -> np.ndarray:
    """The clip's samples: [frames] (mono) or [frames, channels], peak 0.5."""
    wave = _singing(clip) if clip.singing else _speech(clip)
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def write_clips(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for clip in CLIPS:
        sf.write(directory / clip.name, synthesize(clip), clip.sample_rate, subtype="PCM_16")
