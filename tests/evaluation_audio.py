"""Speech with a known text for the evaluation tests: espeak-ng renderings made on the spot, and noise at an SNR."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modules.audio import load_audio

SENTENCES = {
    "stella": "Please call Stella and ask her to bring these things with her from the store.",
    "meeting": "I would like to thank you for coming to the meeting today.",
    "walk": "The weather is nice today, so we will go for a walk in the park.",
}


def speak(text: str, path: Path, voice: str = "en-us") -> Path:
    """Render `text` with espeak-ng (140 words a minute) into `path` (22.05 kHz WAV)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), text], check=True, timeout=60)
    return path


def speech_16k(name: str, folder: Path) -> np.ndarray:
    wave = load_audio(speak(SENTENCES[name], folder / f"{name}.wav"), 16000)
    return (wave / np.abs(wave).max() * 0.9).astype(np.float32)   # inside [-1, 1] after resampling


def with_noise(wave: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(wave.size).astype(np.float32)
    noise *= np.sqrt(np.mean(wave ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return wave + noise
