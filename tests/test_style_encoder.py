"""CAM++ style encoder: speaker discrimination on real speech with the real weights (both from the fixture folder),
the Kaldi fbank's framing and filters, strict loading (random weights in the released file's layout).

About the speaker test: the fixture clip names (s1p1, s1p2, s2p1, ...) do not behave like speaker labels under
CAM++. With embeddings bit-identical to the official pipeline, s1p1 is closer to s2p2 (cos 0.55) than to s1p2
(0.40), and s1p2 is closest to s2p1 (0.66). So the test uses pairs that are the same speaker for sure: the two halves of
one recording. Each must match its own other half better than it matches any half of another recording.
"""
from __future__ import annotations

import librosa
import pytest
import torch
import torch.nn.functional as F

from modules.style_encoder import CAMPPlus, kaldi_fbank, load_campplus, style_embedding
from parity_kinds._common import PARITY_DIR, needs_fixture
from tiny import campplus_weights

REAL_WEIGHTS = PARITY_DIR / "weights" / "campplus_cn_common.bin"
CLIPS = ["s1p1", "s1p2", "s2p1", "s2p2", "s3p1", "s4p1", "source_s1"]


@pytest.fixture(scope="module")
def model() -> CAMPPlus:
    return load_campplus(campplus_weights())


@needs_fixture
def test_halves_of_one_recording_match_each_other_better_than_any_other_recording():
    model = load_campplus(REAL_WEIGHTS)
    halves = {}
    for name in CLIPS:
        wave = torch.from_numpy(librosa.load(PARITY_DIR / "audio" / f"{name}.wav", sr=16000)[0])
        middle = wave.numel() // 2
        halves[name] = [F.normalize(style_embedding(model, part)[0], dim=0) for part in (wave[:middle], wave[middle:])]
    for name in CLIPS:
        first = halves[name][0]
        same = float(first @ halves[name][1])
        others = {f"{other}[{i}]": float(first @ halves[other][i]) for other in CLIPS if other != name for i in (0, 1)}
        closest = max(others, key=others.get)
        assert same > others[closest], f"{name}: own other half {same:.3f} <= {closest} {others[closest]:.3f}"


def test_fbank_framing_matches_kaldi_snip_edges():
    wave = torch.randn(16000)
    feats = kaldi_fbank(wave)
    assert feats.shape == (1 + (16000 - 400) // 160, 80) == (98, 80)
    torch.testing.assert_close(kaldi_fbank(wave[None]), feats, rtol=0, atol=0)
    assert kaldi_fbank(torch.randn(399)).shape == (0, 80)  # shorter than one 25 ms frame
    # Frame 10 covers samples 1600..2000 only: changing a sample outside it must leave it alone.
    moved = wave.clone()
    moved[2000] += 1.0
    torch.testing.assert_close(kaldi_fbank(moved)[10], feats[10], rtol=0, atol=0)
    assert not torch.equal(kaldi_fbank(moved)[12], feats[12])


def test_fbank_tone_peaks_in_the_filter_centred_on_it():
    # Kaldi's filters are spaced evenly on 1127 ln(1 + f/700) from 20 Hz to 8 kHz; a 1 kHz tone must light the
    # filter whose centre is nearest to 1 kHz.
    t = torch.arange(16000) / 16000
    feats = kaldi_fbank(0.5 * torch.sin(2 * torch.pi * 1000.0 * t))
    mel = lambda f: 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)
    centres = mel(20.0) + (mel(8000.0) - mel(20.0)) / 81 * torch.arange(1, 81)
    expected_bin = int((centres - mel(1000.0)).abs().argmin())
    assert (feats.argmax(dim=1) == expected_bin).all()


def test_strict_load_names_missing_unexpected_and_misshaped_keys():
    state = torch.load(campplus_weights(), map_location="cpu", weights_only=True)
    missing = dict(state)
    del missing["xvector.block2.tdnnd7.cam_layer.linear1.bias"]
    with pytest.raises(RuntimeError, match=r"missing \(1\): xvector\.block2\.tdnnd7\.cam_layer\.linear1\.bias"):
        load_campplus(missing)

    renamed = dict(state)
    renamed["head.conv9.weight"] = renamed.pop("head.conv2.weight")
    with pytest.raises(RuntimeError, match=r"missing \(1\): head\.conv2\.weight; unexpected \(1\): head\.conv9\.weight"):
        load_campplus(renamed)

    misshaped = dict(state)
    misshaped["xvector.dense.linear.weight"] = torch.zeros(192, 512, 1)  # legacy name, remapped before the check
    with pytest.raises(RuntimeError, match=r"dense\.linear\.weight: \(192, 512, 1\) vs \(192, 1024, 1\)"):
        load_campplus(misshaped)


def test_loads_both_key_layouts_to_the_same_model(model):
    # The released file keeps pooling/projection under `xvector.`; our own state_dict() does not. Both load.
    reloaded = load_campplus(model.state_dict())
    feats = torch.randn(1, 200, 80)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(feats), model(feats), rtol=0, atol=0)
    assert not reloaded.training
