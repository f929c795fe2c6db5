"""Live conversion between local sound devices (PortAudio through `sounddevice`), behind realtime.py.

One duplex stream at the input device's default rate: its callback queues microphone samples (resampled to the
model's rate) into a LiveSession and plays what is ready (resampled back; silence when nothing is). The main
thread converts block after block and prints the latency figures once a second.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from modules.errors import UserError
from modules.live import BlockStats, LiveEngine, LiveSession, take_samples

PLAYBACK_MAX_SECONDS = 1.0      # converted audio waiting to be played; older is dropped (bounded delay)


class DeviceError(UserError, RuntimeError):
    """The sound devices cannot be used; the message says which and what to do."""


def import_sounddevice():
    try:
        import sounddevice
    except ImportError:
        raise DeviceError("realtime.py needs the sounddevice package: pip install 'sounddevice>=0.4.6,<0.6'") from None
    except OSError as e:   # the package is there but PortAudio is not
        raise DeviceError(f"PortAudio is missing ({e}); install it (apt-get install -y libportaudio2, or "
                          f"brew install portaudio)") from None
    return sounddevice


class Resampler:
    """Streaming rate conversion (soxr) of float32 mono pieces; identity when the rates match."""

    def __init__(self, from_rate: int, to_rate: int):
        self.stream = None
        if from_rate != to_rate:
            import soxr
            self.stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32")

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return wave if self.stream is None else self.stream.resample_chunk(wave)


class Playback:
    """Converted audio waiting for the output callback, at most PLAYBACK_MAX_SECONDS of it."""

    def __init__(self, rate: int):
        self.limit = int(PLAYBACK_MAX_SECONDS * rate)
        self.pieces: deque[np.ndarray] = deque()
        self.queued = 0
        self.lock = threading.Lock()

    def push(self, wave: np.ndarray) -> None:
        with self.lock:
            self.pieces.append(wave)
            self.queued += wave.size
            while self.queued > self.limit and len(self.pieces) > 1:
                self.queued -= self.pieces.popleft().size

    def pull(self, n: int) -> np.ndarray:
        with self.lock:
            out, filled = take_samples(self.pieces, n)
            self.queued -= filled
        return out


def describe(stats: list[BlockStats], device_latency: float, dropped: int) -> str:
    """One line of figures over the blocks since the last line."""
    worst = max(s.compute_seconds for s in stats)
    mean = sum(s.compute_seconds for s in stats) / len(stats)
    last = stats[-1]
    keeps = all(s.keeps_up for s in stats)
    return (f"latency {1000 * last.latency_seconds:.0f} ms algorithmic + {1000 * mean:.0f} ms compute "
            f"+ {1000 * device_latency:.0f} ms devices = {1000 * (last.latency_seconds + mean + device_latency):.0f} ms"
            f" | block {1000 * last.block_seconds:.0f} ms, compute max {1000 * worst:.0f} ms"
            f" | keeps up: {'yes' if keeps else 'NO'} | voice: {'yes' if last.voiced else 'no'}"
            f" | dropped blocks: {dropped}")


def run_devices(engine: LiveEngine, *, input_device: int | str | None, output_device: int | str | None,
                report: Callable[[str], None] = print, stop: threading.Event | None = None,
                report_every: float = 1.0) -> None:
    """Convert from `input_device` to `output_device` until `stop` is set or Ctrl-C (KeyboardInterrupt, which
    is caught here: the faded-out tail is queued and the stream closed)."""
    sd = import_sounddevice()
    stop = stop or threading.Event()
    try:
        device_rate = int(sd.query_devices(input_device, "input")["default_samplerate"])
        sd.check_output_settings(device=output_device, samplerate=device_rate, channels=1, dtype="float32")
    except (ValueError, sd.PortAudioError) as e:
        raise DeviceError(f"cannot use input device {input_device!r} / output device {output_device!r}: {e}. "
                          f"List them with realtime.py --list-devices.") from None
    session = LiveSession(engine)
    capture = Resampler(device_rate, engine.sample_rate)
    play = Resampler(engine.sample_rate, device_rate)
    playback = Playback(device_rate)

    def callback(indata, outdata, frames, time_info, status) -> None:
        session.push(capture(np.ascontiguousarray(indata[:, 0], dtype=np.float32)))
        outdata[:, 0] = playback.pull(frames)

    pending: list[BlockStats] = []
    try:
        stream = sd.Stream(samplerate=device_rate, channels=1, dtype="float32", callback=callback,
                           device=(input_device, output_device))
    except (ValueError, sd.PortAudioError) as e:
        raise DeviceError(f"cannot open the sound devices ({input_device!r} -> {output_device!r}) at "
                          f"{device_rate} Hz: {e}") from None
    report(f"live: {device_rate} Hz devices, model at {engine.sample_rate} Hz, block "
           f"{1000 * engine.block_samples / engine.sample_rate:.0f} ms; Ctrl-C stops")
    with stream:
        device_latency = float(sum(stream.latency)) if isinstance(stream.latency, (tuple, list)) \
            else float(stream.latency)
        last_report = time.monotonic()
        try:
            while not stop.is_set():
                result = session.step(timeout=0.1)
                if result is not None:
                    playback.push(play(result.audio))
                    pending.append(result.stats)
                notice = session.notice()
                if notice:
                    report(notice)
                if pending and time.monotonic() - last_report >= report_every:
                    report(describe(pending, device_latency, session.dropped_blocks))
                    pending, last_report = [], time.monotonic()
        except KeyboardInterrupt:
            pass
        playback.push(play(engine.finish()))        # the held-back tail, faded out
        session.close()
        deadline = time.monotonic() + 0.2
        while playback.queued and time.monotonic() < deadline:
            time.sleep(0.01)
    report(f"stopped after {engine.blocks_done} blocks ({session.dropped_blocks} dropped)")
