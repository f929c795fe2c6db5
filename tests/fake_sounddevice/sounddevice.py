"""A stand-in for the `sounddevice` package (no sound hardware in CI), put first on PYTHONPATH by the tests.

Two devices: 0 "Fake microphone" plays FAKE_SD_INPUT (a WAV file, then silence) in real time, 1 "Fake speaker"
writes what it is given to FAKE_SD_OUTPUT (a WAV file) when the stream closes. The duplex Stream calls its
callback from its own thread every FAKE_SD_BLOCK frames, paced by the clock, as PortAudio does.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import soundfile as sf

__version__ = "0.0-fake"
RATE = 48000


class PortAudioError(Exception):
    pass


DEVICES = [
    {"name": "Fake microphone", "index": 0, "max_input_channels": 1, "max_output_channels": 0,
     "default_samplerate": float(RATE), "hostapi": 0},
    {"name": "Fake speaker", "index": 1, "max_input_channels": 0, "max_output_channels": 2,
     "default_samplerate": float(RATE), "hostapi": 0},
]


class DeviceList(list):
    def __str__(self) -> str:
        return "\n".join(f"{'>' if d['index'] == 0 else '<'} {d['index']} {d['name']}, ALSA "
                         f"({d['max_input_channels']} in, {d['max_output_channels']} out)" for d in self)


class _Default:
    device = [0, 1]


default = _Default()


def _find(device, kind):
    if device is None:
        device = default.device[0 if kind == "input" else 1]
    if isinstance(device, str):
        matches = [d for d in DEVICES if device.lower() in d["name"].lower()]
        if not matches:
            raise ValueError(f"No device matching {device!r}")
        device = matches[0]["index"]
    if not 0 <= device < len(DEVICES):
        raise PortAudioError(f"Error querying device {device}")
    found = DEVICES[device]
    if kind and found[f"max_{kind}_channels"] < 1:
        raise ValueError(f"Device {device} has no {kind} channels")
    return found


def query_devices(device=None, kind=None):
    if device is None and kind is None:
        return DeviceList(DEVICES)
    return _find(device, kind)


def check_output_settings(device=None, samplerate=None, channels=None, dtype=None):
    _find(device, "output")


class Stream:
    def __init__(self, samplerate, channels, dtype, callback, device=(None, None), blocksize=0):
        _find(device[0], "input")
        _find(device[1], "output")
        self.rate = int(samplerate)
        self.callback = callback
        self.block = int(os.environ.get("FAKE_SD_BLOCK", "960"))
        wave, rate = sf.read(os.environ["FAKE_SD_INPUT"], dtype="float32", always_2d=True)
        assert rate == self.rate, "the fake microphone's file must be at the device rate"
        self.input = wave[:, 0]
        self.written: list[np.ndarray] = []
        self.latency = (0.01, 0.02)
        self._stop = threading.Event()

    def _run(self) -> None:
        position, started = 0, time.monotonic()
        while not self._stop.is_set():
            chunk = np.zeros((self.block, 1), np.float32)
            piece = self.input[position: position + self.block]
            chunk[: piece.size, 0] = piece
            out = np.zeros((self.block, 1), np.float32)
            self.callback(chunk, out, self.block, None, None)
            self.written.append(out[:, 0].copy())
            position += self.block
            delay = started + position / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        played = np.concatenate(self.written) if self.written else np.zeros(0, np.float32)
        sf.write(os.environ["FAKE_SD_OUTPUT"], played, self.rate)
        return False
