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


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax,htk", [
    (22050, 1024, 80, 0, 8000, False), (44100, 2048, 128, 0, None, False), (16000, 1024, 128, 30, 8000, True),
    (24000, 1024, 100, 0, 12000, False), (16000, 400, 80, 0, None, False)])
def test_mel_filters_equal_librosa(sr, n_fft, n_mels, fmin, fmax, htk):
    import librosa

    from modules.audio import mel_filters
    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk)
    got = mel_filters(sr, n_fft, n_mels, fmin, fmax, htk=htk)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("orig,new,n", [(48000, 44100, 48001), (44100, 16000, 12345), (16000, 22050, 999),
                                        (22050, 22050, 100), (8000, 44100, 7)])
def test_resampling_equals_librosa_soxr_hq(orig, new, n):
    import librosa

    from modules.audio import resample_audio
    wave = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    expected = librosa.resample(wave, orig_sr=orig, target_sr=new, res_type="soxr_hq")
    got = resample_audio(wave, orig, new)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_loading_and_mels_do_not_import_numba(tmp_path):
    # librosa's filters and resampler pull in numba and llvmlite (~0.12 GiB of RSS); conversion needs neither
    import subprocess
    import sys
    from pathlib import Path
    sf.write(tmp_path / "a.wav", (np.sin(np.arange(4800) / 7) * 0.3).astype(np.float32), 48000)
    code = ("import sys, torch; from modules.audio import load_audio, mel_spectrogram; "
            "from modules.config import MelParams; from modules.f0.rmvpe import rmvpe_mel; "
            f"w = load_audio({str(tmp_path / 'a.wav')!r}, 22050); "
            "mel_spectrogram(torch.from_numpy(w), MelParams(sampling_rate=22050, n_fft=1024, win_length=1024, hop_length=256, "
            "n_mels=80, fmin=0, fmax=8000)); rmvpe_mel(torch.zeros(16000)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
