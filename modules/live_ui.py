"""The browser's live conversion: a WebSocket route on the app's own server and the "Live" tab that uses it.

One connection is one live session (modules/live.py); at most `max_sessions` at once, a connection beyond that
is told so (`busy`) and closed with code 1013 (try again later). Protocol (README "Live conversion"), JSON text
messages and binary PCM frames (16-bit signed little-endian, mono, at the model's rate):

  server -> client  {"type": "hello", "protocol": 1, "sample_rate", "format": "s16le", "channels": 1,
                     "max_frame_samples", "settings": {defaults}, "limits": {name: [low, high]}, "sessions": {...}}
  client -> server  {"type": "start", "sample_rate", "reference": <base64 audio file>, "reference_name"?, "settings"?}
  server -> client  {"type": "started", "block_samples", "latency_seconds", "settings"}
  client -> server  binary PCM frames of 1..max_frame_samples samples, any size (cut into blocks server-side)
  server -> client  one binary PCM frame per converted block, then {"type": "stats", ...BlockStats}
  client -> server  {"type": "settings", "settings"?: {...}, "reference"?: <base64>} -> {"type": "updated", ...}
                    (takes effect at the next block)
  client -> server  {"type": "stop"} -> the faded-out tail (binary), then {"type": "stopped"}; "start" may follow
  server -> client  {"type": "behind", "message", "dropped_blocks"} once, the first time input is dropped
  server -> client  {"type": "error", "code", "message"}: busy, bad_message, bad_sample_rate, bad_reference,
                    bad_settings, bad_frame, not_started, internal. Only busy closes the connection.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modules.audio import AudioError
from modules.live import LiveEngine, LiveSession, LiveSettings
from modules.pipeline import ConversionError, VoiceConverter

log = logging.getLogger(__name__)

PROTOCOL = 1
ROUTE = "/live/ws"
MAX_FRAME_SECONDS = 1.0
BUSY_CLOSE_CODE = 1013          # RFC 6455 "try again later"
STEP_WAIT_SECONDS = 0.2         # how long the worker waits for a block before checking for a stop


def pcm_to_float(frame: bytes) -> np.ndarray:
    return np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()


class ProtocolError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class LiveService:
    """Owns the session bound and the model lock; `routes` go into the FastAPI app (Gradio's app_kwargs)."""

    def __init__(self, converter: Callable[[], VoiceConverter], max_sessions: int = 2,
                 max_backlog_seconds: float = 1.0):
        self.converter = converter          # called lazily: the registry builds the model once
        self.max_sessions = max_sessions
        self.max_backlog_seconds = max_backlog_seconds
        self.model_lock = threading.Lock()
        self.active = 0
        self._count_lock = threading.Lock()

    @property
    def routes(self) -> list:
        from starlette.routing import WebSocketRoute
        return [WebSocketRoute(ROUTE, self.endpoint)]

    def _claim(self) -> bool:
        with self._count_lock:
            if self.active >= self.max_sessions:
                return False
            self.active += 1
            return True

    def _release(self) -> None:
        with self._count_lock:
            self.active -= 1

    async def endpoint(self, websocket) -> None:
        await websocket.accept()
        if not self._claim():
            await websocket.send_json({"type": "error", "code": "busy", "message":
                                       f"all {self.max_sessions} live sessions are in use; try again later"})
            await websocket.close(code=BUSY_CLOSE_CODE)
            return
        try:
            await Connection(self, websocket).run()
        finally:
            self._release()


class Connection:
    """One client: the message loop (this coroutine) and a worker task that converts and sends blocks."""

    def __init__(self, service: LiveService, websocket):
        self.service = service
        self.ws = websocket
        self.converter = service.converter()
        self.rate = self.converter.sample_rate
        self.max_frame_samples = int(self.rate * MAX_FRAME_SECONDS)
        self.session: LiveSession | None = None
        self.worker: asyncio.Task | None = None
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict | bytes) -> None:
        async with self.send_lock:   # the worker and the message loop both send; keep each message whole
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_text(json.dumps(message))

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    async def run(self) -> None:
        from starlette.websockets import WebSocketDisconnect
        await self.send({"type": "hello", "protocol": PROTOCOL, "sample_rate": self.rate, "format": "s16le",
                         "channels": 1, "max_frame_samples": self.max_frame_samples,
                         "settings": LiveSettings().as_dict(),
                         "limits": {k: list(v) for k, v in LiveSettings.LIMITS.items()},
                         "sessions": {"max": self.service.max_sessions, "active": self.service.active}})
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    if message.get("bytes") is not None:
                        self.on_frame(message["bytes"])
                    else:
                        await self.on_text(message.get("text") or "")
                except ProtocolError as e:
                    await self.error(e.code, str(e))
        except WebSocketDisconnect:
            pass
        finally:
            await self.stop(send_tail=False)

    # ------------------------------------------------------------------ messages
    def on_frame(self, frame: bytes) -> None:
        if self.session is None:
            raise ProtocolError("not_started", "audio arrived before a session was started; send "
                                               "{\"type\": \"start\", ...} first")
        if len(frame) == 0 or len(frame) % 2:
            raise ProtocolError("bad_frame", f"a PCM frame must be whole 16-bit samples; got {len(frame)} bytes")
        if len(frame) // 2 > self.max_frame_samples:
            raise ProtocolError("bad_frame", f"a PCM frame holds at most {self.max_frame_samples} samples "
                                             f"({MAX_FRAME_SECONDS:g} s); got {len(frame) // 2}")
        self.session.push(pcm_to_float(frame))

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            raise ProtocolError("bad_message", "text messages must be JSON objects") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "start":
            await self.start(message)
        elif kind == "settings":
            await self.update(message)
        elif kind == "stop":
            await self.stop(send_tail=True)
            await self.send({"type": "stopped"})
        else:
            raise ProtocolError("bad_message", f"unknown message type {kind!r}; expected start, settings or stop")

    def settings_from(self, message: dict, base: LiveSettings) -> LiveSettings:
        changes = message.get("settings") or {}
        if not isinstance(changes, dict):
            raise ProtocolError("bad_settings", "settings must be an object of name: value")
        try:
            return base.updated(changes)
        except (ConversionError, TypeError) as e:
            raise ProtocolError("bad_settings", str(e)) from None

    async def reference_from(self, message: dict) -> np.ndarray:
        data, name = message.get("reference"), str(message.get("reference_name") or "reference.wav")
        if not isinstance(data, str) or not data:
            raise ProtocolError("bad_reference", "no reference: send the target voice's audio file, base64-encoded, "
                                                 "as \"reference\"")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_reference", f"reference {name!r} is not valid base64") from None
        # Decoded from a file named as the client's (letters, digits, . _ - only), so errors name it.
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".") or "reference.wav"

        def decode() -> np.ndarray:
            with tempfile.TemporaryDirectory(prefix="seedvc_live_") as folder:
                path = Path(folder) / safe
                path.write_bytes(raw)
                try:
                    return self.converter.load(path, "reference")
                except AudioError as e:
                    raise ProtocolError("bad_reference", str(e).replace(str(path), safe)) from None
        return await asyncio.to_thread(decode)

    async def start(self, message: dict) -> None:
        if self.session is not None:
            raise ProtocolError("bad_message", "a session is already running; send stop first")
        rate = message.get("sample_rate")
        if rate != self.rate:
            raise ProtocolError("bad_sample_rate", f"audio must be {self.rate} Hz mono s16le (the model's rate); "
                                                   f"the client said {rate!r}. Resample before sending.")
        settings = self.settings_from(message, LiveSettings())
        reference = await self.reference_from(message)

        def build() -> LiveEngine:
            return LiveEngine(self.converter, reference, settings, lock=self.service.model_lock)
        try:
            engine = await asyncio.to_thread(build)
        except (AudioError, ConversionError) as e:
            raise ProtocolError("bad_reference", str(e)) from None
        self.session = LiveSession(engine, self.service.max_backlog_seconds)
        self.worker = asyncio.create_task(self.convert_loop(self.session))
        await self.send({"type": "started", "block_samples": engine.block_samples,
                         "latency_seconds": engine.latency_seconds, "settings": settings.as_dict()})

    async def update(self, message: dict) -> None:
        if self.session is None:
            raise ProtocolError("not_started", "no session to change; send start first")
        engine = self.session.engine
        settings = self.settings_from(message, engine.settings)
        reference = await self.reference_from(message) if message.get("reference") else None
        try:
            engine.update(settings, reference)
        except (AudioError, ConversionError) as e:
            raise ProtocolError("bad_reference", str(e)) from None
        await self.send({"type": "updated", "settings": settings.as_dict()})

    async def stop(self, send_tail: bool) -> None:
        session, worker, self.session, self.worker = self.session, self.worker, None, None
        if session is None:
            return
        session.close()
        if worker is not None:
            try:
                await worker      # converts what is queued, then ends
            except Exception as e:  # noqa: BLE001 - the client went away mid-send; nothing left to tell it
                log.debug("live worker ended: %s", e)
        if send_tail:
            await self.send(float_to_pcm(session.engine.finish()))

    # ------------------------------------------------------------------ conversion
    async def convert_loop(self, session: LiveSession) -> None:
        while True:
            try:
                result = await asyncio.to_thread(session.step, STEP_WAIT_SECONDS)
            except Exception as e:                              # a model failure ends the session, not the server
                log.exception("live conversion failed")
                await self.error("internal", f"conversion failed: {e}")
                return
            if result is None:
                if session.closed:
                    return
                continue
            await self.send(float_to_pcm(result.audio))
            await self.send({"type": "stats", **result.stats.as_dict(),
                             "queued_seconds": session.queued_seconds()})
            notice = session.notice()
            if notice:
                await self.send({"type": "behind", "message": notice, "dropped_blocks": session.dropped_blocks})


# ---------------------------------------------------------------------------------------------- the page

# Capture and playback in one AudioWorklet: microphone samples go out in frames of CAPTURE_FRAME, converted
# blocks queue up and are played as they come (silence while none is queued; the queue is capped at 1 s).
WORKLET = r"""
class SeedVCLive extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Float32Array(1024); this.filled = 0;
    this.queue = []; this.head = 0; this.queued = 0;
    this.port.onmessage = (e) => {
      this.queue.push(e.data); this.queued += e.data.length;
      while (this.queued - this.head > sampleRate && this.queue.length > 1) {   // cap the playback delay at 1 s
        this.queued -= this.queue[0].length; this.queue.shift(); this.head = 0;
      }
    };
  }
  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) {
      for (let i = 0; i < input.length; i++) {
        this.frame[this.filled++] = input[i];
        if (this.filled === this.frame.length) { this.port.postMessage(this.frame.slice(0)); this.filled = 0; }
      }
    }
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      if (!this.queue.length) { out[i] = 0; continue; }
      const block = this.queue[0];
      out[i] = block[this.head++];
      if (this.head === block.length) { this.queue.shift(); this.queued -= block.length; this.head = 0; }
    }
    return true;
  }
}
registerProcessor('seedvc-live', SeedVCLive);
"""

PAGE = """
<div id="live-panel" style="display:flex; flex-direction:column; gap:8px">
  <p>Speak into the microphone and hear the converted voice. Pick a reference (the target voice, 1-25 s), then
  Start. Settings apply from the next block. Use headphones: the output must not reach the microphone.</p>
  <label>Reference audio <input type="file" id="live-reference" accept="audio/*"></label>
  <div style="display:flex; flex-wrap:wrap; gap:12px">
    __SETTINGS__
  </div>
  <div style="display:flex; gap:8px">
    <button id="live-start" class="lg primary">Start</button>
    <button id="live-stop" class="lg secondary" disabled>Stop</button>
    <button id="live-apply" class="lg secondary" disabled>Apply settings</button>
  </div>
  <div id="live-status">idle</div>
  <pre id="live-readout">latency: -</pre>
  <a id="live-recording" style="display:none" download="live-output.webm">Download what was played</a>
</div>
"""

SCRIPT = r"""
const $ = (id) => element.querySelector('#' + id);
const NAMES = __NAMES__;
const state = window.seedvcLive = {ws: null, ctx: null, node: null, stream: null, recorder: null, chunks: [],
                                   blocksReceived: 0, samplesPlayed: 0, lastStats: null, errors: []};
const status = (text) => { $('live-status').textContent = text; };
const settings = () => Object.fromEntries(NAMES.map((n) => [n, Number($('live-' + n).value)]));
const toBase64 = (buffer) => {
  let binary = ''; const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 32768) binary += String.fromCharCode(...bytes.subarray(i, i + 32768));
  return btoa(binary);
};
const toPCM = (floats) => {
  const pcm = new Int16Array(floats.length);
  for (let i = 0; i < floats.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(floats[i] * 32768)));
  return pcm.buffer;
};
const fromPCM = (buffer) => { const pcm = new Int16Array(buffer); const f = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768; return f; };
const ms = (s) => (1000 * s).toFixed(0) + ' ms';

async function openAudio(rate) {
  state.ctx = new AudioContext({sampleRate: rate});
  const url = URL.createObjectURL(new Blob([__WORKLET__], {type: 'application/javascript'}));
  await state.ctx.audioWorklet.addModule(url);
  state.stream = await navigator.mediaDevices.getUserMedia(
    {audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  state.node = new AudioWorkletNode(state.ctx, 'seedvc-live', {numberOfInputs: 1, numberOfOutputs: 1,
                                                               outputChannelCount: [1]});
  state.ctx.createMediaStreamSource(state.stream).connect(state.node);
  state.node.connect(state.ctx.destination);
  const recorded = state.ctx.createMediaStreamDestination();   // what is played, recorded for download
  state.node.connect(recorded);
  state.chunks = [];
  state.recorder = new MediaRecorder(recorded.stream);
  state.recorder.ondataavailable = (e) => { if (e.data.size) state.chunks.push(e.data); };
  state.recorder.start(250);
  state.node.port.onmessage = (e) => {
    if (state.ws && state.ws.readyState === WebSocket.OPEN && state.started) state.ws.send(toPCM(e.data));
  };
}

function closeAudio() {
  if (state.recorder && state.recorder.state !== 'inactive') {
    state.recorder.onstop = () => {
      const link = $('live-recording');
      link.href = URL.createObjectURL(new Blob(state.chunks, {type: state.recorder.mimeType}));
      link.style.display = '';
    };
    state.recorder.stop();
  }
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.ctx) state.ctx.close();
  state.ctx = state.node = state.stream = null;
}

async function start() {
  const file = $('live-reference').files[0];
  if (!file) { status('pick a reference audio file first'); return; }
  $('live-start').disabled = true;
  const reference = toBase64(await file.arrayBuffer());
  const ws = state.ws = new WebSocket(new URL('__ROUTE__'.slice(1), document.baseURI).href.replace(/^http/, 'ws'));
  ws.binaryType = 'arraybuffer';
  ws.onmessage = async (event) => {
    if (typeof event.data !== 'string') {
      const block = fromPCM(event.data);
      state.blocksReceived += 1; state.samplesPlayed += block.length;
      if (state.node) state.node.port.postMessage(block, [block.buffer]);
      return;
    }
    const m = JSON.parse(event.data);
    if (m.type === 'hello') {
      try { await openAudio(m.sample_rate); } catch (e) { status('microphone unavailable: ' + e); ws.close(); return; }
      ws.send(JSON.stringify({type: 'start', sample_rate: state.ctx.sampleRate, reference: reference,
                              reference_name: file.name, settings: settings()}));
      status('analysing the reference...');
    } else if (m.type === 'started') {
      state.started = true; status('live: speak now');
      $('live-stop').disabled = false; $('live-apply').disabled = false;
    } else if (m.type === 'stats') {
      state.lastStats = m;
      $('live-readout').textContent = 'latency: ' + ms(m.latency_seconds) + ' algorithmic + ' +
        ms(m.compute_seconds) + ' compute = ' + ms(m.latency_seconds + m.compute_seconds) +
        ' | block ' + ms(m.block_seconds) + ' | keeps up: ' + (m.keeps_up ? 'yes' : 'NO') +
        ' | voice: ' + (m.voiced ? 'yes' : 'no') + ' | dropped blocks: ' + m.dropped_blocks;
    } else if (m.type === 'behind') {
      status(m.message);
    } else if (m.type === 'updated') {
      status('settings applied');
    } else if (m.type === 'error') {
      state.errors.push(m); status('error (' + m.code + '): ' + m.message);
      if (!state.started) { $('live-start').disabled = false; }
    } else if (m.type === 'stopped') {
      ws.close();
    }
  };
  ws.onclose = () => { state.started = false; closeAudio(); $('live-start').disabled = false;
                       $('live-stop').disabled = true; $('live-apply').disabled = true;
                       if ($('live-status').textContent.startsWith('live')) status('stopped'); };
}

$('live-start').addEventListener('click', start);
$('live-stop').addEventListener('click', () => {
  state.started = false;
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({type: 'stop'}));
});
$('live-apply').addEventListener('click', () => {
  if (state.ws && state.started) state.ws.send(JSON.stringify({type: 'settings', settings: settings()}));
});
"""

SETTING_LABELS = {"block_seconds": "Block (s)", "crossfade_seconds": "Crossfade (s)",
                  "left_context_seconds": "Left context (s)", "right_context_seconds": "Right context (s)",
                  "diffusion_steps": "Diffusion steps", "inference_cfg_rate": "CFG rate",
                  "vad_threshold": "Voice threshold (0 = off)", "prompt_seconds": "Reference prompt (s)"}


def live_tab() -> None:
    """The Live tab's contents; call inside `with gr.Tab("Live"):` of a Blocks whose app mounts LiveService."""
    import gradio as gr
    defaults = LiveSettings().as_dict()
    inputs = "\n    ".join(
        f'<label>{label}<br><input type="number" id="live-{name}" value="{defaults[name]}" '
        f'min="{LiveSettings.LIMITS[name][0]}" max="{LiveSettings.LIMITS[name][1]}" '
        f'step="{1 if name == "diffusion_steps" else 0.01}" style="width:9em"></label>'
        for name, label in SETTING_LABELS.items())
    script = (SCRIPT.replace("__NAMES__", json.dumps(list(SETTING_LABELS)))
              .replace("__WORKLET__", json.dumps(WORKLET)).replace("__ROUTE__", ROUTE))
    gr.HTML(PAGE.replace("__SETTINGS__", inputs), js_on_load=script, elem_id="live-tab")
