"""The conversion engine with tiny offline models on real clips: output shape, reproducibility, streaming,
the reference cache and every bad input."""
import shutil

import numpy as np
import pytest
import soundfile as sf

from modules.audio import AudioError
from modules.pipeline import ConversionError, ConversionSettings, build_converter
from tiny import AUDIO, write_tiny_config

FAST = ConversionSettings(diffusion_steps=2, inference_cfg_rate=0.7, seed=0)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return build_converter(write_tiny_config(tmp_path_factory.mktemp("cfg")), device="cpu")


def test_output_follows_the_source_length_and_rate(speech):
    source = AUDIO / "source_s1.wav"
    for length_adjust in (1.0, 0.8):
        result = speech.convert(source, AUDIO / "s1p1.wav", ConversionSettings(2, length_adjust, seed=0))
        assert result.sample_rate == 22050
        seconds = sf.info(source).duration * length_adjust
        assert abs(len(result.wave) / 22050 - seconds) < 0.05
        assert result.wave.dtype == np.float32 and np.isfinite(result.wave).all()
        assert set(result.timings) >= {"load", "reference", "source", "dit", "vocoder"}


def test_seed_makes_runs_identical(speech):
    a = speech.convert(AUDIO / "s3p1.wav", AUDIO / "s1p1.wav", FAST).wave
    b = speech.convert(AUDIO / "s3p1.wav", AUDIO / "s1p1.wav", FAST).wave
    c = speech.convert(AUDIO / "s3p1.wav", AUDIO / "s1p1.wav", ConversionSettings(2, seed=1)).wave
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_long_source_streams_in_several_chunks_that_add_up(speech, tmp_path):
    waves = [sf.read(AUDIO / f)[0] for f in ("source_s1.wav", "s1p1.wav", "s2p1.wav")]
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate(waves), 24000)  # ~41 s: longer than the 30 s context
    pieces = list(speech.convert_stream(long, AUDIO / "s4p1.wav", FAST))
    assert len(pieces) >= 2
    whole = speech.convert(long, AUDIO / "s4p1.wav", FAST).wave
    assert np.array_equal(np.concatenate(pieces), whole)
    assert abs(len(whole) / 22050 - sf.info(long).duration) < 0.05


def test_reference_cache_is_keyed_by_content_not_name(speech, tmp_path):
    ref = tmp_path / "ref.wav"
    shutil.copyfile(AUDIO / "s2p2.wav", ref)
    speech.convert(AUDIO / "s3p1.wav", ref, FAST)
    misses = speech.reference_cache_misses
    renamed = tmp_path / "renamed_copy.flac"
    data, sr = sf.read(ref)
    sf.write(renamed, data, sr)                      # re-uploaded under another name and format: same samples
    speech.convert(AUDIO / "s3p1.wav", renamed, FAST)
    assert speech.reference_cache_misses == misses
    sf.write(ref, data * 0.5, sr)                    # same name, changed content
    speech.convert(AUDIO / "s3p1.wav", ref, FAST)
    assert speech.reference_cache_misses == misses + 1


def test_bad_inputs_get_clear_errors(speech, tmp_path):
    good = AUDIO / "s1p1.wav"
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros(22050 * 2), 22050)
    sf.write(tmp_path / "short.wav", sf.read(good)[0][:12000], 24000)  # 0.5 s
    sf.write(tmp_path / "nan.wav", np.full(22050, np.nan, np.float32), 22050, subtype="FLOAT")
    cases = [("corrupt.wav", "source", "cannot decode"), ("empty.wav", "source", "empty"),
             ("silent.wav", "source", "silent"), ("nan.wav", "source", "NaN"),
             ("short.wav", "reference", "at least 1 s"), ("silent.wav", "reference", "silent")]
    for name, role, words in cases:
        src, ref = (tmp_path / name, good) if role == "source" else (good, tmp_path / name)
        with pytest.raises(AudioError, match=words) as err:
            speech.convert(src, ref, FAST)
        assert name in str(err.value)
    for bad in (ConversionSettings(0), ConversionSettings(2, 3.0), ConversionSettings(2, 1.0, -0.1)):
        with pytest.raises(ConversionError, match="range"):
            speech.convert(good, good, bad)
    speech.convert(AUDIO / "s3p1.wav", good, FAST)  # and the engine still works


def test_maximum_source_duration(tmp_path):
    limited = build_converter(write_tiny_config(tmp_path), device="cpu", max_source_seconds=5)
    with pytest.raises(AudioError, match="limit is 5 s"):
        limited.convert(AUDIO / "s1p1.wav", AUDIO / "s2p1.wav", FAST)


def test_singing_model_with_f0_shift_offline(tmp_path):
    singing = build_converter(write_tiny_config(tmp_path, "singing"), device="cpu")
    assert singing.sample_rate == 44100 and singing.description["f0_extractor"] == "fcpe"
    settings = ConversionSettings(2, 1.0, 0.7, auto_f0_adjust=True, semitone_shift=3, seed=0)
    result = singing.convert(AUDIO / "singing_technopolis_14s.wav", AUDIO / "s1p1.wav", settings)
    assert result.sample_rate == 44100 and abs(len(result.wave) / 44100 - 14.56) < 0.3
