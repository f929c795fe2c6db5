"""app_svc.py started as a ZeroGPU Space starts it, with the real `spaces` package in its emulation mode.

On ZeroGPU the main process has no GPU: `spaces` (imported before anything touches CUDA) makes CUDA look
present, records what is moved to it, and every call of a `spaces.GPU` function asks the ZeroGPU device API
for a GPU for `duration` seconds before running in a forked GPU worker. Here the device API is a stand-in on
127.0.0.1 that records each request and answers "no GPU available", so the call stops at the scheduling step
(a CPU build cannot start the CUDA worker) and the test reads the duration the app asked for.
"""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from device_models import short_clip
from gradio_client import Client, handle_file
from test_apps import Server, concatenated

from tiny import write_tiny_config

pytest.importorskip("spaces")
MAX_GPU_SECONDS = 20   # --max-gpu-seconds: small, so that a 30 s source at 50 steps is over it
# What the package needs from a CUDA build of torch to load on a CPU build: a CUDA version, a CUDA initialiser
# that does not raise, and a picklable "CUDA was initialised before a fork" check (`bool()` is False: a CPU
# build never initialises CUDA, so the check cannot fire here anyway).
STUB_CUDA_BUILD = ("import runpy, sys, torch; torch.version.cuda = '12.8'; torch._C._cuda_init = lambda: None; "
                   "torch.cuda._is_in_bad_fork = bool; "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


class DeviceAPI(ThreadingHTTPServer):
    """The ZeroGPU device API, as far as a Space's start-up and a refused request need it."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _DeviceAPIHandler)
        self.requests: list[tuple[str, dict]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def scheduled_durations(self) -> list[int]:
        return [int(params["durationSeconds"][0]) for path, params in self.requests if path == "/schedule"]


class _DeviceAPIHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        url = urlparse(self.path)
        self.server.requests.append((url.path, parse_qs(url.query)))
        status = 503 if url.path == "/schedule" else 200   # 503: "No GPU was available"
        body = json.dumps({}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    work = tmp_path_factory.mktemp("zerogpu")
    api = DeviceAPI()
    env = {"SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": api.url,
           "ZEROGPU_OFFLOAD_DIR": str(work / "offload"), "ZEROGPU_PROC_SELF_CGROUP_PATH": str(work / "cgroup")}
    (work / "cgroup").write_text("0::/\n")
    # No --device and no --fp16: a Space runs the app with its defaults.
    server = Server("app_svc.py", write_tiny_config(work, "singing"), work, "--max-gpu-seconds",
                    str(MAX_GPU_SECONDS), env=env, device=None,
                    python=[sys.executable, "-c", STUB_CUDA_BUILD])
    try:
        yield server.wait(), api, work
    finally:
        server.stop()
        api.shutdown()


def test_space_builds_the_converter_for_cuda(space):
    server, api, _ = space
    info = Client(server.url, verbose=False).predict(api_name="/model_info")
    assert info["device"].startswith("cuda"), info
    assert ("/startup-report", {}) in api.requests


def test_conversion_asks_zerogpu_for_a_duration_from_its_inputs(space):
    from modules.zerogpu import gpu_seconds

    server, api, work = space
    client = Client(server.url, verbose=False)
    sources = {3.0: concatenated(work, "three.wav", 3.0), 30.0: concatenated(work, "thirty.wav", 30.0)}
    reference = handle_file(str(short_clip(work, "s1p1.wav", 1.5)))
    requests = [(3.0, 10), (30.0, 10), (30.0, 20)]
    for seconds, steps in requests:
        with pytest.raises(Exception, match="No GPU was available"):
            client.predict(handle_file(str(sources[seconds])), reference, "default", steps, 1.0, 0.7, True, 0,
                           "default", 0, api_name="/convert")
    expected = [gpu_seconds(seconds, steps) for seconds, steps in requests]
    assert api.scheduled_durations() == expected
    assert expected[0] < expected[1] < expected[2] <= MAX_GPU_SECONDS
    # Over the largest budget: refused with the reason before any GPU is asked for.
    assert gpu_seconds(30.0, 50) > MAX_GPU_SECONDS
    with pytest.raises(Exception, match=r"needs about \d+ s of GPU time .* at most \d+ s at 50 steps"):
        client.predict(handle_file(str(sources[30.0])), reference, "default", 50, 1.0, 0.7, True, 0, "default", 0,
                       api_name="/convert")
    assert len(api.scheduled_durations()) == len(requests)


def test_default_concurrency_on_zerogpu(monkeypatch):
    from modules import ui, zerogpu
    monkeypatch.setenv("SPACES_ZERO_GPU", "false")
    assert ui.default_concurrency() == max(1, __import__("torch").cuda.device_count())
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert ui.default_concurrency() == zerogpu.ZEROGPU_CONCURRENCY > 1
