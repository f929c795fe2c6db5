"""Loading user audio: any common format and rate, stereo mixed to mono, and a clear error for every bad input."""
import numpy as np
import pytest
import soundfile as sf

from modules.audio import AudioError, load_audio
from parity_kinds._common import PARITY_DIR, needs_fixture
from tiny import AUDIO

SR = 22050


def _tone(seconds=2.0, sr=44100, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize("ext, fmt", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")])
def test_common_formats_and_rates_load_as_mono(tmp_path, ext, fmt):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, _tone(channels=2, sr=48000), 48000, format=fmt)
    wave = load_audio(path, SR)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.size - 2 * SR) < 0.05 * SR  # lossy codecs may pad a little
    assert 0.2 < np.abs(wave).max() < 0.4


def test_real_stereo_48k_clip():
    wave = load_audio(AUDIO / "singing_technopolis_14s.wav", 44100)
    assert wave.ndim == 1 and abs(wave.size / 44100 - 14.56) < 0.5


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
    cases = {}
    cases["missing.wav"] = "not found"
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty.wav"] = "empty"
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)
    cases["corrupt.wav"] = "cannot decode"
    sf.write(tmp_path / "zero.wav", np.zeros((0,)), SR)
    cases["zero.wav"] = "no samples|empty|cannot decode"
    sf.write(tmp_path / "silent.wav", np.zeros(SR * 2), SR)
    cases["silent.wav"] = "silent"
    sf.write(tmp_path / "nan.wav", np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    cases["nan.wav"] = "NaN or infinite"
    sf.write(tmp_path / "long.wav", _tone(seconds=3.0, sr=SR), SR)
    for name, pattern in cases.items():
        with pytest.raises(AudioError, match=pattern) as err:
            load_audio(tmp_path / name, SR, role="source")
        assert name in str(err.value) and "source" in str(err.value)
    with pytest.raises(AudioError, match="limit is 2 s"):
        load_audio(tmp_path / "long.wav", SR, max_seconds=2)
    with pytest.raises(AudioError, match="at least 5 s"):
        load_audio(tmp_path / "long.wav", SR, min_seconds=5, role="reference")


@needs_fixture
def test_decoding_matches_the_original_librosa_route():
    import torch

    from parity_kinds._common import load_pt
    inputs = load_pt("e2e_f0_44k/inputs.pt")
    wave = load_audio(PARITY_DIR / inputs["target_file"], 44100)[: 44100 * 25]
    assert torch.equal(torch.from_numpy(wave)[None], inputs["ref_audio"])
