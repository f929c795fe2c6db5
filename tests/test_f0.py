"""F0 extractors: FCPE (bundled weights) against Praat's autocorrelation tracker on a real singing clip (from the
fixture folder), the shared output contract, the factory, and strict RMVPE weight loading."""
from __future__ import annotations

import librosa
import numpy as np
import parselmouth
import pytest
import soundfile as sf
import torch

from modules.f0 import F0_KINDS, F0WeightsError, load_f0_extractor, load_rmvpe
from modules.f0.rmvpe import E2E
from parity_kinds._common import PARITY_DIR, needs_fixture
from tiny import AUDIO

SINGING = PARITY_DIR / "audio" / "singing_technopolis_14s.wav"


@pytest.fixture(scope="module")
def fcpe():
    return load_f0_extractor("fcpe", None, "cpu")


@pytest.fixture(scope="module")
def singing_16k() -> np.ndarray:
    return _mono_16k(SINGING)  # 48 kHz stereo


@pytest.fixture(scope="module")
def speech_16k() -> np.ndarray:
    """A synthesized voice whose first second has a few frames FCPE is unsure of (between 0.5 and its default)."""
    return _mono_16k(AUDIO / "s2p1.wav")


def _mono_16k(path) -> np.ndarray:
    wave, sr = sf.read(path, dtype="float32")
    wave = wave.mean(axis=1) if wave.ndim > 1 else wave
    return librosa.resample(wave, orig_sr=sr, target_sr=16000, res_type="soxr_hq")


def praat_f0(wave_16k: np.ndarray, n_frames: int) -> np.ndarray:
    """Praat autocorrelation pitch, sampled at our frame times (i * 10 ms) from its nearest frame; 0 = unvoiced."""
    pitch = parselmouth.Sound(wave_16k.astype(np.float64), sampling_frequency=16000).to_pitch_ac(
        time_step=0.01, pitch_floor=75.0, pitch_ceiling=1100.0)
    times, hz = pitch.xs(), pitch.selected_array["frequency"]
    nearest = np.abs(np.arange(n_frames)[:, None] * 0.01 - times[None]).argmin(axis=1)
    return hz[nearest]


@needs_fixture
def test_fcpe_tracks_singing_like_praat(fcpe, singing_16k):
    f0 = fcpe(singing_16k)
    assert f0.dtype == np.float64 and f0.shape == (len(singing_16k) // 160 + 1,)
    reference = praat_f0(singing_16k, len(f0))
    both = (f0 > 0) & (reference > 0)
    assert both.mean() > 0.7, f"only {both.mean():.0%} of the frames are voiced for both trackers"
    cents = 1200 * np.abs(np.log2(f0[both] / reference[both]))
    assert np.median(cents) < 50, f"median |FCPE - Praat| = {np.median(cents):.1f} cents"
    assert np.all(f0[f0 > 0] > 30) and np.all(f0 < 2000)


def test_fcpe_output_contract(fcpe, speech_16k):
    clip = speech_16k[: 16000 + 37]
    f0 = fcpe(torch.from_numpy(clip))  # tensors are accepted too
    assert f0.shape == (101,) and f0.dtype == np.float64
    # a higher voicing threshold can only unvoice frames, never change the voiced values
    strict = fcpe.with_threshold(0.5)(clip)
    kept = strict > 0
    assert kept.sum() < (f0 > 0).sum()
    np.testing.assert_array_equal(strict[kept], f0[kept])
    assert not fcpe(np.zeros(4000, dtype=np.float32)).any(), "digital silence must come out unvoiced"
    with pytest.raises(ValueError, match="at least"):
        fcpe(clip[:500])
    with pytest.raises(ValueError, match="mono"):
        fcpe(np.zeros((2, 4000), dtype=np.float32))


def test_factory_rejects_unknown_kind_and_missing_rmvpe_path():
    with pytest.raises(ValueError, match="rmvpe, fcpe"):
        load_f0_extractor("crepe", None)
    with pytest.raises(ValueError, match="rmvpe.pt"):
        load_f0_extractor("rmvpe", None)
    assert set(F0_KINDS) == {"rmvpe", "fcpe"}


def test_rmvpe_strict_load_lists_bad_keys():
    state = {name: torch.empty_like(value) for name, value in E2E(4, 1, (2, 2)).state_dict().items()}
    del state["cnn.bias"]
    state["cnn.extra"] = torch.zeros(3)
    state["fc.1.weight"] = torch.zeros(10, 512)
    with pytest.raises(F0WeightsError) as err:
        load_rmvpe(state)
    message = str(err.value)
    assert "missing (1): cnn.bias" in message
    assert "unexpected (1): cnn.extra" in message
    assert "fc.1.weight: (10, 512) vs (360, 512)" in message


def test_rmvpe_file_errors_name_the_file(tmp_path):
    wrong = tmp_path / "wrong_rmvpe.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, wrong)
    with pytest.raises(F0WeightsError, match="wrong_rmvpe.pt: weights do not fit RMVPE"):
        load_f0_extractor("rmvpe", wrong)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(F0WeightsError, match="garbage.pt: not a readable weights file"):
        load_f0_extractor("rmvpe", garbage)
    with pytest.raises(F0WeightsError, match="not found"):
        load_f0_extractor("rmvpe", tmp_path / "absent.pt")
