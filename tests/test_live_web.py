"""The Live tab of app_vc.py as clients meet it: its WebSocket protocol from a plain Python client (round trip,
bad input, a client that vanishes, too many sessions, falling behind) and the page in headless Chromium with a
fake microphone fed from a clip, whose played output is recorded in the page and checked here."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from live_tiny import write_tiny_live_config
from test_apps import CHROMIUM, Server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from modules.audio import load_audio
from tiny import AUDIO

RATE = 22050
FAST = {"block_seconds": 0.3, "diffusion_steps": 2, "vad_threshold": 0}   # vad 0: every block converted


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("live_app")
    config = write_tiny_live_config(work)
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"          # the test machine's cores are shared; avoid oversubscription
    try:
        app = Server("app_vc.py", config, work, "--live-sessions", "1")
    finally:
        os.environ.pop("OMP_NUM_THREADS") if saved is None else os.environ.update(OMP_NUM_THREADS=saved)
    try:
        yield app.wait()
    finally:
        app.stop()


@pytest.fixture(scope="module")
def speech():
    return load_audio(AUDIO / "source_s1.wav", RATE)


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "live/ws"


def open_session(server):
    """A connection past its hello. The previous test's session is released once the server has finished
    its last block, so a `busy` right after it is retried (bounded)."""
    for _ in range(300):
        ws = connect(ws_url(server), max_size=None)
        message = json.loads(ws.recv(timeout=120))
        if message["type"] == "hello":
            return ws, message
        ws.close()
        assert message["code"] == "busy", message
        time.sleep(0.2)
    pytest.fail("the live session slot never came free")


def reference_message(path=AUDIO / "s1p1.wav", **extra) -> dict:
    return {"type": "start", "sample_rate": RATE, "reference": base64.b64encode(path.read_bytes()).decode(),
            "reference_name": path.name, "settings": FAST, **extra}


def pcm(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def receive_json(ws) -> dict:
    message = ws.recv(timeout=120)
    assert isinstance(message, str), f"expected a JSON message, got {len(message)} bytes of audio"
    return json.loads(message)


def expect_error(ws, code: str) -> str:
    message = receive_json(ws)
    assert message["type"] == "error" and message["code"] == code, message
    return message["message"]


def test_protocol_round_trip(server, speech):
    ws, hello = open_session(server)
    with ws:
        assert hello["type"] == "hello" and hello["sample_rate"] == RATE and hello["format"] == "s16le"
        ws.send(json.dumps(reference_message()))
        started = receive_json(ws)
        assert started["type"] == "started" and started["block_samples"] == 6615
        block = started["block_samples"]
        blocks = []
        for index in range(3):              # one block at a time, as a client slower than the model would
            ws.send(pcm(speech[index * block: (index + 1) * block]))
            audio = ws.recv(timeout=120)
            stats = receive_json(ws)
            assert isinstance(audio, bytes) and len(audio) == 2 * block
            assert stats["type"] == "stats" and stats["index"] == index + 1 and stats["voiced"]
            assert stats["latency_seconds"] == pytest.approx(0.3 + 0.02 + 0.04 + 0.01, abs=1e-3)
            assert stats["compute_seconds"] > 0 and isinstance(stats["keeps_up"], bool)
            blocks.append(np.frombuffer(audio, "<i2"))
        assert np.abs(np.concatenate(blocks)).max() > 0
        # Settings change at the next block, on the same connection; frames of any size are cut into blocks.
        ws.send(json.dumps({"type": "settings", "settings": {"block_seconds": 0.5}}))
        assert receive_json(ws)["type"] == "updated"
        rest = speech[3 * block: 3 * block + round(0.5 * RATE)]
        ws.send(pcm(rest[:1000]))
        ws.send(pcm(rest[1000:]))
        audio = ws.recv(timeout=120)
        assert len(audio) == 2 * round(0.5 * RATE) and receive_json(ws)["block_seconds"] == 0.5
        ws.send(json.dumps({"type": "stop"}))
        tail = ws.recv(timeout=120)
        assert isinstance(tail, bytes) and len(tail) == 2 * round(0.04 * RATE)
        assert receive_json(ws)["type"] == "stopped"


def test_bad_input_on_the_wire_is_answered_and_the_session_goes_on(server, speech, tmp_path):
    ws, _ = open_session(server)
    with ws:
        ws.send(pcm(speech[:1000]))
        assert "start" in expect_error(ws, "not_started")
        ws.send(json.dumps(reference_message(sample_rate=48000)))
        assert "22050 Hz" in expect_error(ws, "bad_sample_rate")
        not_audio = tmp_path / "notes.wav"
        not_audio.write_bytes(b"this is not audio at all" * 100)
        ws.send(json.dumps(reference_message(not_audio)))
        assert "notes.wav" in expect_error(ws, "bad_reference")
        short = tmp_path / "short.wav"
        sf.write(short, speech[: RATE // 2], RATE)
        ws.send(json.dumps(reference_message(short)))
        assert "at least 1 s" in expect_error(ws, "bad_reference")
        ws.send(json.dumps({**reference_message(), "reference": "***not base64***"}))
        assert "base64" in expect_error(ws, "bad_reference")
        ws.send(json.dumps({**reference_message(), "settings": {"block_seconds": 9}}))
        assert "block_seconds" in expect_error(ws, "bad_settings")
        ws.send("not json")
        expect_error(ws, "bad_message")
        ws.send(json.dumps({"type": "dance"}))
        expect_error(ws, "bad_message")
        # After all that, a good start works on the same connection.
        ws.send(json.dumps(reference_message()))
        assert receive_json(ws)["type"] == "started"
        ws.send(b"\x00\x01\x02")
        assert "3 bytes" in expect_error(ws, "bad_frame")
        ws.send(bytes(2 * (RATE + 1)))
        assert "at most 22050 samples" in expect_error(ws, "bad_frame")
        ws.send(json.dumps({"type": "settings", "settings": {"diffusion_steps": 0}}))
        expect_error(ws, "bad_settings")


def test_too_many_sessions_are_refused_and_a_vanished_client_frees_its_place(server):
    first, _ = open_session(server)
    try:
        with connect(ws_url(server), max_size=None) as second:
            assert "1 live sessions are in use" in expect_error(second, "busy")
            with pytest.raises(ConnectionClosed) as closed:
                second.recv(timeout=30)
            assert closed.value.rcvd.code == 1013
        first.send(json.dumps(reference_message()))
        assert receive_json(first)["type"] == "started"
    finally:
        first.socket.close()              # vanish mid-session: no stop, no closing handshake
    third, _ = open_session(server)       # the server notices the drop and frees the place
    third.close()


def test_a_client_sending_faster_than_conversion_is_told_once(server, speech):
    ws, _ = open_session(server)
    with ws:
        ws.send(json.dumps(reference_message()))
        assert receive_json(ws)["type"] == "started"
        for start in range(0, 6 * RATE, RATE):     # 6 s of audio at once: far more than the 1 s backlog
            ws.send(pcm(speech[start: start + RATE]))
        behind, stats = [], []
        while len(stats) < 4:
            message = ws.recv(timeout=120)
            if isinstance(message, str):
                message = json.loads(message)
                (behind if message["type"] == "behind" else stats).append(message)
        assert len(behind) == 1 and "falling behind" in behind[0]["message"]
        assert stats[-1]["dropped_blocks"] > 0 and stats[-1]["queued_seconds"] <= 1.0 + 1e-6
        ws.send(json.dumps({"type": "stop"}))
        while True:                                 # what was queued drains, then the tail and "stopped"
            message = ws.recv(timeout=120)
            if isinstance(message, str) and json.loads(message)["type"] == "stopped":
                break
            if isinstance(message, str):
                assert json.loads(message)["type"] != "behind"   # once only


def test_browser_live_tab_converts_the_microphone_and_plays_it(server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium (.ci/run does)")
    open_session(server)[0].close()                             # the previous test's session has ended
    microphone = tmp_path / "microphone.wav"                   # the fake microphone loops this clip
    sf.write(microphone, load_audio(AUDIO / "source_s1.wav", 48000)[: 48000 * 4], 48000, subtype="PCM_16")
    from playwright import sync_api as playwright
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
            "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.goto(server.url, timeout=120_000)
            page.get_by_role("tab", name="Live").click()
            page.locator("#live-reference").set_input_files(str(AUDIO / "s1p1.wav"))
            for name, value in FAST.items():
                page.locator(f"#live-{name}").fill(str(value))
            page.locator("#live-start").click()
            page.wait_for_function("window.seedvcLive && window.seedvcLive.blocksReceived >= 6", timeout=180_000)
            readout = page.locator("#live-readout").inner_text()
            assert "algorithmic" in readout and "compute" in readout and " ms" in readout, readout
            page.locator("#live-stop").click()
            page.locator("#live-recording").wait_for(state="visible", timeout=60_000)
            recorded = page.evaluate("""async () => {
                const blob = await (await fetch(document.querySelector('#live-recording').href)).blob();
                const bytes = new Uint8Array(await blob.arrayBuffer());
                let s = ''; for (let i = 0; i < bytes.length; i += 32768)
                    s += String.fromCharCode(...bytes.subarray(i, i + 32768));
                return btoa(s); }""")
            errors = page.evaluate("window.seedvcLive.errors")
        finally:
            browser.close()
    assert errors == []
    webm = tmp_path / "played.webm"
    webm.write_bytes(base64.b64decode(recorded))
    decoded = tmp_path / "played.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(webm), "-ac", "1", str(decoded)], check=True)
    played, rate = sf.read(decoded, dtype="float32")
    assert played.size / rate > 1.0                              # seconds of playback were recorded
    assert np.sqrt(np.mean(played ** 2)) > 1e-4                   # and they are not silence
