"""The live engine fed real clips block by block, as a microphone would: length and latency, joins without
clicks, silence where the input is silent, settings changed between blocks, and a session that falls behind."""
import itertools

import numpy as np
import pytest
import torch
from live_tiny import small_hift, write_tiny_live_config

from modules import live
from modules.audio import AudioError, load_audio
from modules.live import LiveEngine, LiveSession, LiveSettings
from modules.pipeline import ConversionError, build_converter
from tiny import AUDIO

RATE = 22050


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine's cores are shared; one thread per process avoids oversubscription stalls.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def converter(tmp_path_factory):
    converter = build_converter(write_tiny_live_config(tmp_path_factory.mktemp("live")), device="cpu")
    converter.frontends.vocoder = small_hift()
    return converter


@pytest.fixture(scope="module")
def reference():
    return load_audio(AUDIO / "s1p1.wav", RATE)


@pytest.fixture(scope="module")
def speech():
    return load_audio(AUDIO / "source_s1.wav", RATE)


class EchoConverter:
    """Stands in for the model where the join itself is under test: returns the requested span of the input,
    each call at its own random gain and up to `shift_jitter` samples early (as a real model's blocks differ in
    level and alignment), so a bare concatenation clicks."""
    sample_rate = RATE

    def __init__(self, gain_jitter: float = 0.0, shift_jitter: int = 0):
        self.rng = np.random.default_rng(0)
        self.gain_jitter, self.shift_jitter = gain_jitter, shift_jitter

    def _wave(self, wave, role):
        return np.asarray(wave, np.float32)

    def live_reference(self, wave, prompt_seconds):
        return None

    def convert_window(self, wave, ref, settings, *, keep_samples, tail_samples):
        gain = 1.0 + self.gain_jitter * self.rng.uniform(-1, 1)
        end = wave.size - tail_samples - int(self.rng.integers(0, self.shift_jitter + 1))
        return (wave[end - keep_samples: end] * gain).astype(np.float32)


WOBBLY = {"gain_jitter": 0.5, "shift_jitter": 100}   # 100 samples: inside the 220-sample SOLA search


ALWAYS = LiveSettings(vad_threshold=0.0)   # convert every block: the echo tests are about joins, not VAD


def run_blocks(engine, wave):
    """Feed `wave` in whole blocks of the engine's current size; returns (output, stats per block)."""
    outputs, stats = [], []
    start = 0
    while start + engine.block_samples <= wave.size:
        size = engine.block_samples
        result = engine.process(wave[start: start + size])
        assert result.audio.shape == (size,) and result.audio.dtype == np.float32
        outputs.append(result.audio)
        stats.append(result.stats)
        start += size
    return np.concatenate(outputs), stats


def join_click_ratio(output, block, around=220):
    """The sample-to-sample jump energy at block joins over that of the 10 ms either side (about 1 for a
    seamless join), averaged over the joins inside sound."""
    jump = np.diff(output.astype(np.float64)) ** 2
    ratios = []
    for join in range(block - 1, jump.size - around, block):     # jump[join] = output[join + 1] - output[join]
        local = np.concatenate([jump[join - around: join - 1], jump[join + 2: join + around]]).mean()
        if local > 1e-8:
            ratios.append(jump[join] / local)
    return float(np.mean(ratios))


def test_output_has_the_input_length_and_the_stated_latency(speech):
    engine = LiveEngine(EchoConverter(), np.zeros(RATE * 2, np.float32), ALWAYS)
    output, stats = run_blocks(engine, speech)
    n_blocks = speech.size // engine.block_samples
    assert output.size == n_blocks * engine.block_samples
    assert all(s.latency_seconds == pytest.approx(0.18 + 0.02 + 0.04 + 0.01, abs=1e-3) for s in stats)
    # The echo comes out the stated latency later, sample for sample: in the stream by right context +
    # crossfade + search; waiting for each whole block to arrive adds the block itself in real time.
    delay = round(engine.latency_seconds * RATE) - engine.block_samples
    np.testing.assert_allclose(output[delay:], speech[: output.size - delay], atol=1e-6)
    assert engine.finish().size == engine.crossfade_samples


def test_joins_do_not_click(speech):
    engine = LiveEngine(EchoConverter(**WOBBLY), np.zeros(RATE * 2, np.float32), ALWAYS)
    output, _ = run_blocks(engine, speech)
    assert join_click_ratio(output, engine.block_samples) < 1.5


def test_the_click_measure_catches_a_bare_join(speech, monkeypatch):
    # The same run without SOLA and crossfade: the level and alignment steps must register as clicks.
    monkeypatch.setattr(live, "crossfade", lambda tail, chunk: chunk)
    monkeypatch.setattr(live, "SOLA_SEARCH_SECONDS", 0.0)
    engine = LiveEngine(EchoConverter(**WOBBLY), np.zeros(RATE * 2, np.float32), ALWAYS)
    output, _ = run_blocks(engine, speech)
    assert join_click_ratio(output, engine.block_samples) > 10.0


def test_model_output_is_silent_where_the_input_is(converter, reference, speech):
    silence = np.zeros(RATE, np.float32)
    wave = np.concatenate([silence, speech[: 2 * RATE], silence, silence])
    engine = LiveEngine(converter, reference, LiveSettings(block_seconds=0.3))
    output, stats = run_blocks(engine, wave)
    assert output.size == wave.size // engine.block_samples * engine.block_samples
    assert np.isfinite(output).all()
    voiced = [s.voiced for s in stats]
    assert not any(voiced[:3]) and any(voiced[3:10]) and not voiced[-1]   # 1 s silence, 2 s speech, silence
    blocks = output.reshape(len(stats), -1)
    assert np.all(blocks[:3] == 0)                                   # silent input -> exact silence
    assert np.abs(blocks[4:9]).max() > 1e-3                          # speech -> converted audio
    assert np.all(blocks[-1] == 0)
    tail = engine.finish()
    assert np.all(tail == 0)                                          # nothing held back after silence


def test_settings_change_at_the_next_block(converter, reference, speech):
    calls = []
    original = converter.convert_window

    def spy(*args, **kwargs):
        calls.append(args[2].diffusion_steps)
        return original(*args, **kwargs)

    converter.convert_window = spy
    try:
        engine = LiveEngine(converter, reference, LiveSettings(block_seconds=0.2, diffusion_steps=3))
        block = engine.block_samples
        silent = engine.process(np.zeros(block, np.float32))
        assert not silent.stats.voiced and calls == []
        engine.update(LiveSettings(block_seconds=0.4, diffusion_steps=2, vad_threshold=0.0))
        assert engine.block_samples == block                         # nothing changes until the next block
        result = engine.process(speech[: round(0.4 * RATE)])
        assert result.audio.size == round(0.4 * RATE) and result.stats.voiced and calls == [2]
        assert result.stats.latency_seconds == pytest.approx(0.4 + 0.02 + 0.04 + 0.01, abs=1e-3)
        # A new reference: analysed once, then reused for every later block.
        misses = converter.reference_cache_misses
        engine.update(reference=load_audio(AUDIO / "s2p1.wav", RATE))
        for start in (0, 1, 2):
            engine.process(speech[(start + 1) * 8820: (start + 2) * 8820])
        assert converter.reference_cache_misses == misses + 1
    finally:
        del converter.convert_window


def test_bad_settings_and_reference_are_refused_before_anything_changes(converter, reference):
    engine = LiveEngine(converter, reference)
    for change in ({"block_seconds": 0.0}, {"diffusion_steps": 2.5}, {"vad_threshold": 2},
                   {"crossfade_seconds": 0.3, "block_seconds": 0.2}, {"speed": 1}):
        with pytest.raises(ConversionError):
            engine.update(engine.settings.updated(change))
    with pytest.raises(AudioError, match="reference"):
        engine.update(reference=np.zeros(RATE // 2, np.float32))
    with pytest.raises(AudioError, match="reference"):
        LiveEngine(converter, np.full(RATE * 2, np.nan, np.float32))
    with pytest.raises(ValueError, match="block must hold"):
        engine.process(np.zeros(100, np.float32))
    assert engine.settings == LiveSettings()


def test_a_session_that_cannot_keep_up_says_so_once_and_drops(speech):
    ticks = itertools.count(step=0.5)                       # each clock read is 0.5 s later
    engine = LiveEngine(EchoConverter(), np.zeros(RATE * 2, np.float32), ALWAYS, clock=lambda: next(ticks))
    session = LiveSession(engine, max_backlog_seconds=1.0)
    block = engine.block_samples
    result = None
    for index in range(20):                                 # 20 blocks arrive while one is converted
        session.push(speech[index * block: (index + 1) * block])
        assert session.queued_seconds() <= max(1.0, 2 * block / RATE) + 1e-9   # the backlog stays bounded
    result = session.step(timeout=0)
    assert result is not None and not result.stats.keeps_up and result.stats.compute_seconds == 0.5
    assert result.stats.dropped_blocks == session.dropped_blocks > 0
    notice = session.notice()
    assert notice and "falling behind" in notice
    session.push(speech[:block * 10])
    assert session.notice() is None                         # said once per session
    session.close()
    while session.step(timeout=0) is not None:
        pass
    assert session.step(timeout=0) is None
