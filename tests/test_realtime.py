"""realtime.py against a fake `sounddevice` (tests/fake_sounddevice) whose microphone plays a clip in real time
and whose speaker records to a file: devices listed, live conversion with figures each second, Ctrl-C stops
cleanly, bad reference and bad devices refused with a clear message."""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from live_tiny import write_tiny_live_config

from modules.audio import load_audio
from modules.live import LiveEngine, LiveSettings
from tiny import AUDIO

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).resolve().parent / "fake_sounddevice"
DEVICE_RATE = 48000


def realtime(*args: str, tmp_path: Path, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{FAKE}{os.pathsep}{ROOT}", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               FAKE_SD_INPUT=str(tmp_path / "microphone.wav"), FAKE_SD_OUTPUT=str(tmp_path / "speaker.wav"))
    return subprocess.Popen([sys.executable, str(ROOT / "realtime.py"), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_tiny_live_config(tmp_path_factory.mktemp("rt"))


def microphone(tmp_path: Path) -> None:
    """1 s of silence, 3 s of speech, then the fake keeps sending silence (the VAD's silence is checked in
    test_live.py; here the point is that converted speech reaches the speaker)."""
    speech = load_audio(AUDIO / "source_s1.wav", DEVICE_RATE)[: 3 * DEVICE_RATE]
    sf.write(tmp_path / "microphone.wav", np.concatenate([np.zeros(DEVICE_RATE, np.float32), speech]), DEVICE_RATE)


def test_list_devices(tmp_path):
    proc = realtime("--list-devices", tmp_path=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Fake microphone" in out and "Fake speaker" in out


def test_live_run_prints_figures_and_stops_cleanly_on_ctrl_c(config, tmp_path):
    microphone(tmp_path)
    proc = realtime("--config", str(config), "--device", "cpu", "--reference", str(AUDIO / "s1p1.wav"),
                    "--input-device", "0", "--output-device", "Fake speaker", "--block-seconds", "0.3",
                    "--diffusion-steps", "2", tmp_path=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.time() + 240
    while sum(line.startswith("latency") for line in lines) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)                        # what Ctrl-C sends
    proc.wait(timeout=60)
    reader.join(timeout=10)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    figures = [line for line in lines if line.startswith("latency")]
    assert len(figures) >= 4, lines
    assert all("ms algorithmic" in line and "keeps up:" in line and "dropped blocks:" in line for line in figures)
    assert "Traceback" not in err and lines[-1].startswith("stopped after")
    played, rate = sf.read(tmp_path / "speaker.wav", dtype="float32")
    assert rate == DEVICE_RATE and played.size > 2 * rate
    assert np.abs(played).max() > 1e-3                            # the speech came out converted


def test_bad_reference_is_refused_by_name(config, tmp_path):
    microphone(tmp_path)
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    proc = realtime("--config", str(config), "--device", "cpu", "--reference", str(bad), tmp_path=tmp_path)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2 and "notes.wav" in err and "reference" in err and "Traceback" not in err


def test_bad_devices_are_refused_with_a_hint(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("sounddevice", FAKE / "sounddevice.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    from modules.live_devices import DeviceError, run_devices

    class Echo:   # no model needed: the devices are refused before anything is converted
        sample_rate = 22050

        def _wave(self, wave, role):
            return wave

        def live_reference(self, wave, prompt_seconds):
            return None

    engine = LiveEngine(Echo(), np.zeros(22050 * 2, np.float32), LiveSettings())
    for devices in ({"input_device": 7, "output_device": 1}, {"input_device": 1, "output_device": 1},
                    {"input_device": "no such mic", "output_device": 1}):
        with pytest.raises(DeviceError, match="--list-devices"):
            run_devices(engine, **devices)
