"""app_svc.py / app_vc.py as users and programs meet them: real servers on 127.0.0.1, gradio_client, a browser.

Each app runs as a subprocess on a free port with a tiny offline model. Streaming first-chunk time is written
to test-artifacts/app_timings.txt, the browser screenshot to test-artifacts/app_svc_browser.png.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from tiny import AUDIO, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
MAX_DURATION = 45.0
STEPS = 2
SVC_SAMPLE_RATE, VC_SAMPLE_RATE = 44100, 22050
SOURCE, REFERENCE = AUDIO / "source_s1.wav", AUDIO / "s1p2.wav"
USER_FILES = ("take1.wav", "notes/secret.txt")   # already in app_svc's --output-dir before it starts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, app: str, config: Path, workdir: Path, *extra: str, env: dict | None = None,
                 device: str | None = "cpu", python: list[str] | None = None):
        """device None: no --device / --fp16 flags (the app's defaults); python: the interpreter command."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = workdir / f"{app}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
                   CUDA_VISIBLE_DEVICES="", **(env or {}))
        device_flags = ["--device", device, "--fp16", "false"] if device else []
        self.proc = subprocess.Popen(
            [*(python or [sys.executable]), str(ROOT / app), "--config", str(config), *device_flags,
             "--host", "127.0.0.1", "--port", str(self.port), "--max-duration", str(MAX_DURATION),
             "--output-dir", str(workdir / f"{app}_out"), *extra],
            cwd=workdir, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 240) -> Server:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("apps")
    svc_config = write_tiny_config(work, "singing", log_dir=work / "runs")
    # A finished training run beside it: its model must be offered as "run:demo", by name only.
    run = work / "runs" / "demo"
    run.mkdir(parents=True)
    shutil.copyfile(svc_config, run / "config.yml")
    import yaml
    shutil.copyfile(yaml.safe_load(svc_config.read_text())["pretrained_model"], run / "ft_model.pth")
    vc_config = write_tiny_config(work, "speech")
    # A speech run in the singing app's log_dir: not a model of its kind, so it must not be offered.
    speech_run = work / "runs" / "speech_voice"
    speech_run.mkdir()
    shutil.copyfile(vc_config, speech_run / "config.yml")
    shutil.copyfile(yaml.safe_load(vc_config.read_text())["pretrained_model"], speech_run / "ft_model.pth")
    # The user's own files in the folder given as --output-dir: the app must neither delete nor serve them.
    user_folder = work / "app_svc.py_out"
    (user_folder / "notes").mkdir(parents=True)
    for name in USER_FILES:
        (user_folder / name).write_bytes(b"the user's own file")
        os.utime(user_folder / name, (time.time() - 7200, time.time() - 7200))   # two hours old
    started = [Server("app_svc.py", svc_config, work, "--concurrency", "2", "--max-file-size", "4mb"),
               Server("app_vc.py", vc_config, work, "--queue-size", "1", "--concurrency", "1")]
    try:
        svc, vc = (s.wait() for s in started)
        yield {"svc": svc, "vc": vc, "work": work}
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="module")
def svc(servers):
    return Client(servers["svc"].url, verbose=False)


def svc_args(source=SOURCE, reference=REFERENCE, model="default", steps=STEPS, length_adjust=1.0, cfg=0.7,
             auto_f0=True, semitones=0, f0_extractor="default", seed=0):
    wrap = lambda f: handle_file(str(f)) if f is not None else None
    return (wrap(source), wrap(reference), model, steps, length_adjust, cfg, auto_f0, semitones, f0_extractor, seed)


def seconds(path) -> float:
    return sf.info(str(path)).duration


def check_wave(path, sample_rate: int, expected_seconds: float) -> None:
    info = sf.info(str(path))
    assert info.samplerate == sample_rate
    assert abs(info.duration - expected_seconds) < 0.05, (info.duration, expected_seconds)
    wave, _ = sf.read(str(path))
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0


def concatenated(tmp_path: Path, name: str, total_seconds: float) -> Path:
    """The real clips one after another, cut to total_seconds."""
    pieces, rate = [], 24000
    for clip in sorted(AUDIO.glob("s*p*.wav")) * 4:
        wave, rate = sf.read(str(clip), dtype="float32")
        pieces.append(wave)
        if sum(map(len, pieces)) >= total_seconds * rate:
            break
    path = tmp_path / name
    sf.write(str(path), np.concatenate(pieces)[: int(total_seconds * rate)], rate)
    return path


# ------------------------------------------------------------------------------------------------ endpoints

def test_api_lists_exactly_the_named_endpoints(svc, servers):
    named = svc.view_api(print_info=False, return_format="dict")
    assert sorted(named["named_endpoints"]) == ["/batch_convert", "/convert", "/convert_stream", "/evaluate",
                                                "/model_info"]
    assert not named["unnamed_endpoints"]
    speech = Client(servers["vc"].url, verbose=False).view_api(print_info=False, return_format="dict")
    params = [p["label"] for p in speech["named_endpoints"]["/convert"]["parameters"]]
    assert not any("F0" in p or "Pitch" in p for p in params), params   # speech app: no F0 controls


def test_model_info_names_the_model_and_the_runs(svc):
    info = svc.predict(api_name="/model_info")
    assert info["sample_rate"] == SVC_SAMPLE_RATE and info["device"] == "cpu" and info["f0_condition"] is True
    assert info["config"] == "tiny_singing.yml" and info["checkpoint"] == "checkpoint.pth"   # names, not paths
    assert info["models"] == ["default", "run:demo"]


def test_convert_length_follows_source_and_length_adjust(svc):
    check_wave(svc.predict(*svc_args(), api_name="/convert"), SVC_SAMPLE_RATE, seconds(SOURCE))
    half = svc.predict(*svc_args(length_adjust=0.5, semitones=3, auto_f0=False), api_name="/convert")
    check_wave(half, SVC_SAMPLE_RATE, seconds(SOURCE) * 0.5)


def test_convert_with_a_run_directory_model(svc):
    check_wave(svc.predict(*svc_args(model="run:demo"), api_name="/convert"), SVC_SAMPLE_RATE, seconds(SOURCE))


def test_speech_app_converts(servers):
    client = Client(servers["vc"].url, verbose=False)
    assert client.predict(api_name="/model_info")["sample_rate"] == VC_SAMPLE_RATE
    out = client.predict(handle_file(str(SOURCE)), handle_file(str(REFERENCE)), "default", STEPS, 1.0, 0.7, 0,
                         api_name="/convert")
    check_wave(out, VC_SAMPLE_RATE, seconds(SOURCE))


def test_stream_yields_several_chunks_for_a_long_source(svc, tmp_path):
    """A 30 s source: the first 30 s window holds the reference prompt too, so the result comes in two pieces."""
    long_source = concatenated(tmp_path, "long_30s.wav", 30.0)
    start = time.perf_counter()
    job = svc.submit(*svc_args(source=long_source), api_name="/convert_stream")
    first_chunk, progress = None, set()
    while not job.done():
        if first_chunk is None and any(out[1] for out in job.outputs()):
            first_chunk = time.perf_counter() - start
        progress.update(unit.desc for unit in job.status().progress_data or ())
        time.sleep(0.02)
    total = time.perf_counter() - start
    outputs = job.outputs()
    chunks = [chunk for player, chunk, full in outputs if chunk]
    assert len(chunks) > 1, outputs
    assert any(desc and ("analysing" in desc or "chunk" in desc) for desc in progress), progress   # progress shown
    assert all(player and not full for player, chunk, full in outputs[:-1])
    assert outputs[-1][2] and not outputs[-1][1]                               # the full file comes last
    full = job.result()[2]
    check_wave(full, SVC_SAMPLE_RATE, 30.0)
    pieces = [sf.read(str(chunk), dtype="float32")[0] for chunk in chunks]
    assert all(sf.info(str(chunk)).samplerate == SVC_SAMPLE_RATE for chunk in chunks)
    np.testing.assert_allclose(np.concatenate(pieces), sf.read(str(full), dtype="float32")[0], atol=1e-4)
    ARTIFACTS.mkdir(exist_ok=True)
    line = (f"app_svc tiny model, CPU, {STEPS} diffusion steps, 30 s source, 11 s reference: first streamed chunk "
            f"after {first_chunk:.2f} s, whole result after {total:.2f} s, {len(chunks)} chunks\n")
    (ARTIFACTS / "app_timings.txt").write_text(line)
    print(line)


def test_four_clients_at_once(servers):
    results, errors = [None] * 4, []
    clips = sorted(AUDIO.glob("s*p*.wav"))[:4]

    def call(i):
        try:
            client = Client(servers["svc"].url, verbose=False)
            results[i] = client.predict(*svc_args(source=clips[i], reference=clips[(i + 1) % 4], steps=1),
                                        api_name="/convert")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors
    for i, path in enumerate(results):
        check_wave(path, SVC_SAMPLE_RATE, seconds(clips[i]))


def test_batch_keeps_going_past_a_bad_file(svc, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00not really audio" * 10)
    files, table = svc.predict([handle_file(str(SOURCE)), handle_file(str(corrupt)), handle_file(str(AUDIO / "s3p1.wav"))],
                               *svc_args()[1:], api_name="/batch_convert")
    status = {row[0]: row[1] for row in table["data"]}
    assert status["source_s1.wav"] == "ok" and status["s3p1.wav"] == "ok", status
    assert status["corrupt.wav"].startswith("failed: cannot decode"), status
    assert len(files) == 2
    check_wave(files[0], SVC_SAMPLE_RATE, seconds(SOURCE))


def test_batch_with_a_bad_reference_says_so_once(svc, tmp_path):
    from gradio_client.exceptions import AppError
    short = tmp_path / "short_reference.wav"
    sf.write(str(short), sf.read(str(REFERENCE), dtype="float32")[0][:12000], 24000)
    with pytest.raises(AppError, match="reference file .*short_reference.wav is 0.50 s long"):
        svc.predict([handle_file(str(SOURCE)), handle_file(str(AUDIO / "s3p1.wav"))], handle_file(str(short)),
                    *svc_args()[2:], api_name="/batch_convert")


# ------------------------------------------------------------------------------------------------ bad input

def bad_inputs(tmp_path: Path) -> list[tuple[str, tuple, str]]:
    silent, short, corrupt, text = (tmp_path / n for n in ("silent.wav", "short.wav", "corrupt.wav", "notes.txt"))
    sf.write(str(silent), np.zeros(3 * 24000, np.float32), 24000)
    sf.write(str(short), sf.read(str(REFERENCE), dtype="float32")[0][:12000], 24000)
    corrupt.write_bytes(os.urandom(4000))
    text.write_text("not audio\n" * 50)
    too_long = concatenated(tmp_path, "too_long.wav", MAX_DURATION + 5)
    return [
        ("missing source", svc_args(source=None), "no source audio"),
        ("missing reference", svc_args(reference=None), "no reference audio"),
        ("corrupt source", svc_args(source=corrupt), "cannot decode source"),
        ("unsupported file", svc_args(reference=text), "reference"),
        ("silent source", svc_args(source=silent), "silent"),
        ("too-short reference", svc_args(reference=short), "at least 1 s"),
        ("source over --max-duration", svc_args(source=too_long), f"the limit is {MAX_DURATION:g} s"),
        ("steps out of range", svc_args(steps=500), "maximum"),
        ("length adjust out of range", svc_args(length_adjust=3.0), "maximum"),
        ("CFG rate out of range", svc_args(cfg=-1.0), "minimum"),
        ("pitch out of range", svc_args(semitones=99), "maximum"),
        ("unknown model (a path)", svc_args(model="/etc/passwd"), "passwd"),
        ("unknown F0 extractor", svc_args(f0_extractor="crepe"), "crepe"),
    ]


def test_every_bad_input_gets_a_clear_error_and_the_server_keeps_serving(svc, tmp_path):
    from gradio_client.exceptions import AppError
    problems = []
    for what, args, expected in bad_inputs(tmp_path):
        try:
            svc.predict(*args, api_name="/convert")
            problems.append(f"{what}: no error")
        except AppError as e:
            if expected not in str(e):
                problems.append(f"{what}: {e!s:.200}")
    assert not problems, "\n".join(problems)
    check_wave(svc.predict(*svc_args(), api_name="/convert"), SVC_SAMPLE_RATE, seconds(SOURCE))


def test_upload_over_the_size_limit_is_refused(svc, tmp_path):
    big = tmp_path / "big.wav"
    sf.write(str(big), np.random.default_rng(0).uniform(-0.5, 0.5, 24000 * 50).astype(np.float32), 24000,
             subtype="FLOAT")   # 4.8 MB > the server's 4mb
    with pytest.raises(Exception, match="(?i)size|large|413"):
        svc.predict(*svc_args(source=big), api_name="/convert")
    check_wave(svc.predict(*svc_args(), api_name="/convert"), SVC_SAMPLE_RATE, seconds(SOURCE))


def test_a_full_queue_refuses_with_a_clear_message(servers):
    from gradio_client.utils import QueueError, Status
    client = Client(servers["vc"].url, verbose=False)
    args = (handle_file(str(SOURCE)), handle_file(str(REFERENCE)), "default")
    busy = (Status.PROCESSING, Status.PROGRESS, Status.ITERATING)
    running = client.submit(*args, 30, 1.0, 0.7, 0, api_name="/convert")     # the one worker is busy ...
    deadline = time.time() + 60
    while running.status().code not in busy and not running.done() and time.time() < deadline:
        time.sleep(0.05)
    waiting = client.submit(*args, 1, 1.0, 0.7, 0, api_name="/convert")      # ... this fills the queue of 1
    while waiting.status().code != Status.IN_QUEUE and not waiting.done() and time.time() < deadline:
        time.sleep(0.05)
    assert running.status().code in busy and waiting.status().code == Status.IN_QUEUE, "the worker finished too soon"
    refused_at = time.perf_counter()
    with pytest.raises(QueueError, match="(?i)queue is full"):
        client.predict(*args, 1, 1.0, 0.7, 0, api_name="/convert")
    assert time.perf_counter() - refused_at < 10          # refused at once, not after the queue drains
    check_wave(running.result(timeout=300), VC_SAMPLE_RATE, seconds(SOURCE))
    check_wave(waiting.result(timeout=300), VC_SAMPLE_RATE, seconds(SOURCE))


def test_no_endpoint_reads_or_serves_server_files(servers):
    """The curl form: a FileData naming a file on the server is refused; only uploads are read."""
    import json
    base = servers["svc"].url + "gradio_api"
    file_data = lambda path: {"path": path, "meta": {"_type": "gradio.FileData"}}
    request = urllib.request.Request(
        f"{base}/call/convert", headers={"Content-Type": "application/json"},
        data=json.dumps({"data": [file_data(str(SOURCE)), file_data(str(REFERENCE)), "default", 1, 1.0, 0.7,
                                  True, 0, "default", 0]}).encode())
    event = json.load(urllib.request.urlopen(request, timeout=30))["event_id"]
    answer = urllib.request.urlopen(f"{base}/call/convert/{event}", timeout=120).read().decode()
    assert "event: error" in answer and "not uploaded by a user" in answer, answer
    for path in (str(SOURCE), "/etc/passwd", str(servers["work"] / "tiny_singing.yml")):   # the last: in its cwd
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/file={path}", timeout=30)


# ------------------------------------------------------------------------------------------------ Space support

def test_spaces_gpu_wraps_with_a_duration_from_the_input(monkeypatch):
    from modules import zerogpu
    from modules.pipeline import ConversionSettings
    fn = lambda model, f0_extractor, source, reference, settings, progress=None: None
    duration = lambda model, f0_extractor, source, reference, settings, progress=None: zerogpu.gpu_seconds(
        sf.info(source).duration, settings.diffusion_steps)
    monkeypatch.setattr(zerogpu, "spaces", None)     # not importable: a no-op
    assert zerogpu.on_gpu(fn, duration) is fn
    seen = {}

    def gpu(duration):
        def wrap(f):
            seen["duration"] = duration
            return lambda *a, **k: f(*a, **k)
        return wrap
    monkeypatch.setattr(zerogpu, "spaces", types.SimpleNamespace(GPU=gpu))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert zerogpu.on_gpu(fn, duration) is not fn
    short = seen["duration"]("default", None, str(SOURCE), str(REFERENCE), ConversionSettings(diffusion_steps=10))
    long = seen["duration"]("default", None, str(SOURCE), str(REFERENCE), ConversionSettings(diffusion_steps=200))
    assert zerogpu.SETUP_SECONDS <= short < long <= zerogpu.MAX_GPU_SECONDS


# ------------------------------------------------------------------------------------------------ browser

CHROMIUM = Path("/usr/bin/chromium")


def test_browser_upload_convert_and_play(servers, tmp_path):
    if not CHROMIUM.exists():
        message = "needs Debian's chromium at /usr/bin/chromium: apt-get install -y chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)      # CI installs it: a missing browser there is a broken setup, not a skip
        pytest.skip(message)
    from playwright import sync_api as playwright
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(servers["svc"].url, wait_until="networkidle")
            page.locator("#source-audio input[type=file]").set_input_files(str(SOURCE))
            page.locator("#reference-audio input[type=file]").set_input_files(str(REFERENCE))
            for box in ("#source-audio", "#reference-audio"):   # uploaded: the box offers its file for download
                page.locator(f"{box} [data-testid=download-link]").wait_for(state="attached", timeout=60000)
            page.locator("#convert-button").click()
            page.locator("#full-output [data-testid=download-link]").wait_for(state="attached", timeout=180000)
            # The streamed player has played audio; the full WAV is offered for download.
            page.wait_for_function("() => { const a = document.querySelector('#stream-output audio');"
                                   " return a && a.src && a.duration > 1; }", timeout=60000)
            streamed = page.evaluate("document.querySelector('#stream-output audio').duration")
            href = page.get_attribute("#full-output [data-testid=download-link]", "href")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "app_svc_browser.png"), full_page=True)
        finally:
            browser.close()
    full = Path(tmp_path) / "full.wav"
    full.write_bytes(urllib.request.urlopen(href, timeout=30).read())
    check_wave(full, SVC_SAMPLE_RATE, seconds(SOURCE))
    assert streamed > 0.5 * seconds(SOURCE), streamed


# ------------------------------------------------------------------------------------------------ Space metadata

def test_readme_front_matter_describes_the_space():
    """The YAML block that opens README.md is what Hugging Face reads to run the Space."""
    import yaml
    from packaging.requirements import Requirement
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["sdk"] == "gradio" and meta["python_version"] == "3.11"
    assert (ROOT / meta["app_file"]).is_file()
    gradio_pin = next(Requirement(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
                      if line.startswith("gradio"))
    assert gradio_pin.specifier.contains(meta["sdk_version"]), (meta["sdk_version"], str(gradio_pin))


# ------------------------------------------------------------------------------------------------ issue 11: faults
# found by trying the apps as a new user would

def test_output_dir_holds_only_what_the_app_wrote(svc, servers):
    """--output-dir pointed at a folder of the user's: old files there survive a conversion and are not served."""
    check_wave(svc.predict(*svc_args(), api_name="/convert"), SVC_SAMPLE_RATE, seconds(SOURCE))
    user_folder = servers["work"] / "app_svc.py_out"
    for name in USER_FILES:
        assert (user_folder / name).read_bytes() == b"the user's own file", name
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{servers['svc'].url}gradio_api/file={user_folder / name}", timeout=30)


def test_result_folders_are_pruned_like_result_files(tmp_path):
    """An evaluation's folder (table, CSV, JSON, plot) ages out with the single results; nothing else goes."""
    from modules.ui import Engine
    engine = Engine(registry=None, output_dir=tmp_path)
    users = engine.output_dir / "users_own_file.txt"
    users.write_text("keep me")
    folder = engine.new_folder("evaluation")
    (folder / "summary.json").write_text("{}")
    result = Path(engine.write(np.zeros(1600, np.float32), 16000, "converted"))
    engine.prune()                       # younger than the age limit: kept
    assert folder.is_dir() and result.is_file()
    engine.prune(max_age_s=-1)           # all of this process's results are now "old"
    assert not folder.exists() and not result.exists()
    assert users.read_text() == "keep me"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_long_references_are_not_decoded_whole(servers, tmp_path):
    """A 2 h 8-bit WAV (58 MB) and a 30 min Opus reference: the server decodes only the part it uses (the
    reference is clipped anyway), so its peak memory rises by less than 300 MB; decoding either whole costs
    about 1 GB."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to make the Opus file")
    eight_bit = tmp_path / "two_hours_8bit.wav"
    rate = 8000
    tone = (np.sin(2 * np.pi * 220 * np.arange(rate * 60) / rate) * 0.3).astype(np.float32)
    with sf.SoundFile(str(eight_bit), "w", rate, 1, subtype="PCM_U8") as f:
        for _ in range(120):
            f.write(tone)
    opus = tmp_path / "half_hour.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=48000:"
                    "duration=1800", "-ac", "1", "-c:a", "libopus", "-b:a", "6k", "-application", "voip",
                    "-compression_level", "0", str(opus)], check=True, timeout=120)
    server = servers["vc"]
    client = Client(server.url, verbose=False)
    source = AUDIO / "s3p1.wav"
    # One ordinary conversion first: the first one in a fresh server loads code and caches (~400 MB).
    client.predict(handle_file(str(source)), handle_file(str(REFERENCE)), "default", 1, 1.0, 0.7, 0,
                   api_name="/convert")
    for reference in (eight_bit, opus):
        before = peak_rss_mb(server.proc.pid)
        out = client.predict(handle_file(str(source)), handle_file(str(reference)), "default", 1, 1.0, 0.7, 0,
                             api_name="/convert")
        check_wave(out, VC_SAMPLE_RATE, seconds(source))
        rise = peak_rss_mb(server.proc.pid) - before
        print(f"{reference.name}: server peak RSS {before:.0f} MB -> +{rise:.0f} MB")
        assert rise < 300, f"{reference.name}: the server's peak RSS rose by {rise:.0f} MB"


STREAM_CLIENT = """
import sys
from gradio_client import Client, handle_file
client = Client(sys.argv[1], verbose=False)
job = client.submit(handle_file(sys.argv[2]), handle_file(sys.argv[3]), "default", 100, 1.0, 0.7, 0,
                    api_name="/convert_stream")
for _player, chunk, _full in job:
    if chunk:
        print("first chunk", flush=True)
        break
import time
time.sleep(600)
"""


def test_an_abandoned_stream_stops_before_the_next_chunk(servers, tmp_path):
    """A client killed after the first streamed chunk: the server stops its job at the next diffusion step
    instead of finishing the chunk in flight (and today, after it, the rest); the next caller (one worker)
    then gets the worker."""
    server = servers["vc"]
    written = lambda pattern: {p.name for p in (servers["work"] / "app_vc.py_out").rglob(pattern)}
    before_chunks, before_results = written("chunk_*.wav"), written("converted_*.wav")
    long_source = concatenated(tmp_path, "long_44s.wav", MAX_DURATION - 1)   # three 30 s windows
    client = subprocess.Popen([sys.executable, "-c", STREAM_CLIENT, server.url, str(long_source),
                               str(AUDIO / "s1p1.wav")], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert client.stdout.readline().strip() == "first chunk"
    finally:
        client.kill()
        client.wait()
    # The next caller runs once the worker is free: after the abandoned job stopped (or finished).
    out = Client(server.url, verbose=False).predict(handle_file(str(SOURCE)), handle_file(str(REFERENCE)),
                                                    "default", 1, 1.0, 0.7, 0, api_name="/convert")
    check_wave(out, VC_SAMPLE_RATE, seconds(SOURCE))
    chunks = written("chunk_*.wav") - before_chunks
    assert len(chunks) == 1, f"the abandoned stream went on converting: {sorted(chunks)}"
    assert len(written("converted_*.wav") - before_results) == 1     # only the next caller's result


def test_error_messages_name_the_input_and_hide_server_paths(svc, servers, tmp_path):
    from gradio_client.exceptions import AppError
    corrupt, tiny_clip, text = tmp_path / "corrupt.wav", tmp_path / "blip.wav", tmp_path / "notes.txt"
    corrupt.write_bytes(os.urandom(4000))
    sf.write(str(tiny_clip), sf.read(str(SOURCE), dtype="float32")[0][:334], 24000)
    text.write_text("not audio\n" * 50)
    cases = [
        ("huge seed", svc_args(seed=1e30), ["seed"]),
        ("corrupt source", svc_args(source=corrupt), ["source", "corrupt.wav"]),
        ("text as reference", svc_args(reference=text), ["reference", "notes.txt"]),
        ("too-short source", svc_args(source=tiny_clip), ["source", "blip.wav", "at least"]),
    ]
    leaks = ("/tmp", "gradio", str(servers["work"]), "ufunc", "Errno", "samples; F0", "Error opening")
    problems = []
    for what, args, expected in cases:
        try:
            svc.predict(*args, api_name="/convert")
            problems.append(f"{what}: no error")
            continue
        except AppError as e:
            message = str(e)
        missing = [word for word in expected if word not in message]
        leaked = [word for word in leaks if word in message]
        if missing or leaked:
            problems.append(f"{what}: {message!r} (missing {missing}, leaks {leaked})")
    assert not problems, "\n".join(problems)


def test_singing_app_offers_only_f0_models(svc):
    from gradio_client.exceptions import AppError
    assert "run:speech_voice" not in svc.predict(api_name="/model_info")["models"]
    with pytest.raises(AppError, match="unknown model|not in the list of choices"):
        svc.predict(*svc_args(model="run:speech_voice"), api_name="/convert")


def test_every_api_argument_has_a_name(svc, servers):
    for client, f0 in ((svc, True), (Client(servers["vc"].url, verbose=False), False)):
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        for endpoint, spec in api.items():
            names = [p["parameter_name"] for p in spec["parameters"]]
            assert not [n for n in names if n.startswith("param_")], (endpoint, names)
        names = [p["parameter_name"] for p in api["/convert"]["parameters"]]
        tail = ["auto_f0_adjust", "semitone_shift", "f0_extractor", "seed"] if f0 else ["seed"]
        assert names == ["source", "reference", "model", "diffusion_steps", "length_adjust", "inference_cfg_rate",
                         *tail]


def test_page_puts_uploads_and_convert_first(servers):
    """On a laptop-sized window the uploads and the Convert button are visible without scrolling, the settings
    sit in a closed accordion and the model panel is readable text, not a JSON tree."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright import sync_api as playwright
    height = 720
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                                                         "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(servers["svc"].url, wait_until="networkidle")
            for box in ("#source-audio", "#reference-audio", "#convert-button"):
                bounds = page.locator(box).bounding_box()
                assert bounds and bounds["y"] + bounds["height"] <= height, (box, bounds)
            assert not page.get_by_label("Diffusion steps").first.is_visible()   # inside the closed accordion
            page.get_by_text("Settings", exact=True).first.click()
            page.get_by_label("Diffusion steps").first.wait_for(state="visible", timeout=10000)
            page.get_by_text("Loaded model", exact=True).first.click()
            panel = page.locator("#model-panel")
            panel.get_by_text("Sample rate").wait_for(timeout=30000)
            text = panel.inner_text()
            assert "44100 Hz" in text and "{" not in text and "sample_rate" not in text, text
        finally:
            browser.close()


class CountingEndpoint:
    """A 'hub' on 127.0.0.1 that accepts connections and closes them at once, counting them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def run_app(app: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / app), "--device", "cpu", "--port", str(free_port()), *args],
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False",
                                            CUDA_VISIBLE_DEVICES="", **env),
                          capture_output=True, text=True, timeout=300)


def test_app_start_up_errors_are_one_line_and_exit_2(tmp_path):
    hub = CountingEndpoint()
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
    unreachable = run_app("app_svc.py", env=env, cwd=tmp_path)            # the official model, hub unreachable
    offline = run_app("app_vc.py", env={"HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    bad_config = run_app("app_vc.py", "--config", "missing.yml", env={"HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    bad_flag = run_app("app_vc.py", "--fp16", "ture", env={"HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    for proc, expected in ((unreachable, "Plachta/Seed-VC"), (offline, "HF_HUB_OFFLINE"), (bad_config, "missing.yml")):
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert hub.connections <= 2, f"{hub.connections} connections to an unreachable hub: retries"
    assert bad_flag.returncode == 2 and "--fp16" in bad_flag.stderr, bad_flag.stderr[-2000:]   # strict booleans


# ------------------------------------------------------------------------------------------------ /evaluate

def test_evaluate_compares_settings_over_the_api(servers, tmp_path):
    from evaluation_audio import SENTENCES, speak
    vc = Client(servers["vc"].url, verbose=False)
    sources = [speak(SENTENCES[name], tmp_path / f"{name}.wav") for name in ("meeting", "walk")]
    table, plot, csv_path, json_path = vc.predict(
        [handle_file(str(s)) for s in sources], handle_file(str(REFERENCE)), "default", "1, 2", 1.0, "0.7", 0,
        f"meeting\t{SENTENCES['meeting']}", ["secs", "wer"], api_name="/evaluate")
    assert table["headers"] == ["setting", "n", "SECS", "WER %", "CER %"]
    assert [row[:2] for row in table["data"]] == [["source (unconverted)", "2"], ["steps=1", "2"], ["steps=2", "2"]]
    assert Path(plot).read_bytes()[:4] == b"\x89PNG"
    assert len(Path(csv_path).read_text().splitlines()) == 1 + 6
    import json
    summary = json.loads(Path(json_path).read_text())
    assert {card["metric"] for card in summary["metrics"]} == {"SECS", "WER/CER"}
    assert summary["summary"]["source (unconverted)"]["wer"]["n"] == 1   # only "meeting" has a transcript


def test_evaluate_bounds_the_work_per_call(servers, svc):
    vc = Client(servers["vc"].url, verbose=False)
    source, reference = handle_file(str(SOURCE)), handle_file(str(REFERENCE))
    with pytest.raises(Exception, match="at most 12"):
        vc.predict([source] * 2, reference, "default", "1, 2, 3, 4, 5, 6, 7", 1.0, "0.7", 0, "", ["secs"],
                   api_name="/evaluate")
    with pytest.raises(Exception, match="at most 50"):
        vc.predict([source], reference, "default", "200", 1.0, "0.7", 0, "", ["secs"], api_name="/evaluate")
    params = [p["label"] for p in svc.view_api(print_info=False, return_format="dict")
              ["named_endpoints"]["/evaluate"]["parameters"]]
    assert "Pitch shift (semitones)" in params and "Auto F0 adjust" in params
