"""Resolving pretrained assets: local paths, the hub cache, downloads, offline mode and the error it gives.

The "hub" is a small fake server on 127.0.0.1 that answers huggingface_hub's HEAD/GET requests the way the real
one does (X-Repo-Commit, ETag, X-Error-Code); HF_ENDPOINT points at it, so no test can reach the internet.
"""
import hashlib
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from huggingface_hub import constants

from modules import hub
from modules.config import ConfigError, preset_path

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"
V2_44K = "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema_v2.pth"
OLD_44K = "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema.pth"


class _HubHandler(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def log_message(self, *args):
        pass

    def _answer(self, send_body: bool):
        self.server.requests.append(f"{self.command} {self.path}")
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        repo = match and self.server.files.get(match[1])
        if repo is None:
            return self._reply(404, {"X-Error-Code": "RepoNotFound"}, b"", send_body)
        if match[2] not in ("main", COMMIT):
            return self._reply(404, {"X-Error-Code": "RevisionNotFound"}, b"", send_body)
        if match[3] not in repo:
            return self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b"", send_body)
        body = repo[match[3]]
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        self._reply(200, {"X-Repo-Commit": COMMIT, "ETag": etag}, body, send_body)

    def _reply(self, status: int, headers: dict, body: bytes, send_body: bool):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Every test starts online-capable but aimed at a closed local port; none may reach huggingface.co."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # in case the suite itself runs with it set


@pytest.fixture
def fake_hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    server.files, server.requests = {}, []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "checkpoints"


def _preset(name: str) -> dict:
    return yaml.safe_load(preset_path(name).read_text())


def test_download_lands_in_cache_and_is_reused_without_network(fake_hub, cache):
    fake_hub.files["lj1995/VoiceConversionWebUI"] = {"rmvpe.pt": b"rmvpe weights"}
    cfg = _preset("config_dit_mel_seed_uvit_whisper_base_f0_44k")
    path = hub.resolve_f0_model(cfg, cache_dir=cache)
    assert path.read_bytes() == b"rmvpe weights"
    assert cache in path.parents and path.name == "rmvpe.pt"
    assert any(r.startswith("GET /lj1995/VoiceConversionWebUI/resolve/main/rmvpe.pt") for r in fake_hub.requests)

    seen = len(fake_hub.requests)
    assert hub.resolve_f0_model(cfg, cache_dir=cache) == path
    assert len(fake_hub.requests) == seen, "a cached file must be reused without any request"


def test_local_paths_win_over_the_hub(fake_hub, cache, tmp_path):
    campplus = tmp_path / "my_campplus.bin"
    campplus.write_bytes(b"x")
    rmvpe_dir = tmp_path / "f0"
    rmvpe_dir.mkdir()
    (rmvpe_dir / "rmvpe.pt").write_bytes(b"x")
    bigvgan = tmp_path / "bigvgan"
    bigvgan.mkdir()
    (bigvgan / "config.json").write_text("{}")
    (bigvgan / "bigvgan_generator.pt").write_bytes(b"x")
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    dit = tmp_path / "ft_model.pth"
    dit.write_bytes(b"x")

    cfg = _preset("config_dit_mel_seed_uvit_whisper_base_f0_44k")
    cfg["pretrained_model"] = str(dit)
    cfg["model_params"]["style_encoder"]["campplus_path"] = str(campplus)
    cfg["model_params"]["f0_extractor"] = {"type": "rmvpe", "path": str(rmvpe_dir)}
    cfg["model_params"]["vocoder"]["name"] = str(bigvgan)
    cfg["model_params"]["speech_tokenizer"]["name"] = str(whisper)

    assets = hub.resolve_assets(cfg, cache_dir=cache)
    assert assets.dit_checkpoint == dit
    assert assets.campplus == campplus
    assert assets.f0_model == rmvpe_dir / "rmvpe.pt"
    assert assets.vocoder == {"config": bigvgan / "config.json", "weights": bigvgan / "bigvgan_generator.pt"}
    assert assets.content_encoder == whisper
    assert fake_hub.requests == [] and not cache.exists()
    # An explicit --checkpoint beats the config's pretrained_model.
    other = tmp_path / "other.pth"
    other.write_bytes(b"y")
    assert hub.resolve_dit_checkpoint(cfg, other, cache_dir=cache) == other


def test_missing_local_path_is_not_sent_to_the_hub(fake_hub, cache, tmp_path):
    cfg = {"model_params": {"style_encoder": {"campplus_path": str(tmp_path / "nope.bin")}}}
    with pytest.raises(hub.AssetUnavailableError, match="no such local file"):
        hub.resolve_campplus(cfg, cache_dir=cache)
    bigvgan = tmp_path / "half_bigvgan"
    bigvgan.mkdir()
    (bigvgan / "config.json").write_text("{}")
    cfg = {"model_params": {"vocoder": {"type": "bigvgan", "name": str(bigvgan)}}}
    with pytest.raises(hub.AssetUnavailableError, match="without 'bigvgan_generator.pt'"):
        hub.resolve_vocoder(cfg, cache_dir=cache)
    assert fake_hub.requests == []


def test_offline_without_cache_gives_one_clear_error(monkeypatch, fake_hub, cache):
    fake_hub.files["lj1995/VoiceConversionWebUI"] = {"rmvpe.pt": b"w"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.AssetUnavailableError) as err:
        hub.resolve_f0_model({}, cache_dir=cache)
    message = str(err.value)
    assert "'lj1995/VoiceConversionWebUI'" in message and "'rmvpe.pt'" in message
    assert "HF_HUB_OFFLINE" in message and "model_params.f0_extractor.path" in message
    assert (err.value.repo, err.value.filename) == ("lj1995/VoiceConversionWebUI", "rmvpe.pt")
    assert fake_hub.requests == [], "offline mode must not send any request"

    with pytest.raises(hub.AssetUnavailableError) as err:
        hub.resolve_dit_checkpoint(preset_path("config_dit_mel_seed_uvit_xlsr_tiny"), cache_dir=cache)
    assert "'Plachta/Seed-VC'" in str(err.value) and "DiT_uvit_tat_xlsr_ema.pth" in str(err.value)
    assert "--checkpoint" in str(err.value)


def test_offline_with_cache_works(monkeypatch, fake_hub, cache):
    fake_hub.files["funasr/campplus"] = {"campplus_cn_common.bin": b"cam++"}
    cfg = _preset("config_dit_mel_seed_uvit_whisper_small_wavenet")
    online = hub.resolve_campplus(cfg, cache_dir=cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(fake_hub.requests)
    assert hub.resolve_campplus(cfg, cache_dir=cache) == online
    assert len(fake_hub.requests) == seen


def test_unreachable_hub_gives_the_same_clear_error(monkeypatch, cache):
    # HF_ENDPOINT points at a closed local port (autouse fixture): a network failure, not offline mode.
    # huggingface_hub retries it 5 times with a 1-8 s back-off; skip the waiting.
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)
    with pytest.raises(hub.AssetUnavailableError) as err:
        hub.resolve_campplus({}, cache_dir=cache)
    message = str(err.value)
    assert "'funasr/campplus'" in message and "'campplus_cn_common.bin'" in message
    assert "model_params.style_encoder.campplus_path" in message and "http://127.0.0.1:9/" in message
    assert "download failed" in message and "refused" in message and not err.value.missing_on_hub


def test_file_missing_on_the_hub(fake_hub, cache):
    fake_hub.files["Plachta/Seed-VC"] = {}
    with pytest.raises(hub.AssetUnavailableError, match="no such file") as err:
        hub.resolve_dit_checkpoint(preset_path("config_dit_mel_seed_uvit_whisper_small_wavenet"), cache_dir=cache)
    assert err.value.missing_on_hub


def test_presets_resolve_to_the_official_dit_files_and_44k_to_v2(fake_hub, cache):
    fake_hub.files["Plachta/Seed-VC"] = {name: name.encode() for name in (
        "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth", V2_44K, OLD_44K, "DiT_uvit_tat_xlsr_ema.pth")}
    for preset, expected in (("config_dit_mel_seed_uvit_whisper_small_wavenet",
                              "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth"),
                             ("config_dit_mel_seed_uvit_whisper_base_f0_44k", V2_44K),
                             ("config_dit_mel_seed_uvit_xlsr_tiny", "DiT_uvit_tat_xlsr_ema.pth")):
        assert hub.resolve_dit_checkpoint(preset_path(preset), cache_dir=cache).name == expected
        assert hub.resolve_dit_checkpoint(_preset(preset), cache_dir=cache).name == expected  # dict, no file name
    # The preset names the older file; asking for it by full hub reference still gets it.
    assert _preset("config_dit_mel_seed_uvit_whisper_base_f0_44k")["pretrained_model"] == OLD_44K
    old = hub.resolve_dit_checkpoint(preset_path("config_dit_mel_seed_uvit_whisper_base_f0_44k"),
                                     f"Plachta/Seed-VC/{OLD_44K}", cache_dir=cache)
    assert old.read_bytes() == OLD_44K.encode()


def test_hub_references(fake_hub, cache):
    fake_hub.files["someone/rmvpe-mirror"] = {"rmvpe.pt": b"a", "weights/f0.pt": b"b"}
    fake_hub.files["lj1995/VoiceConversionWebUI"] = {"rmvpe_other.pt": b"c"}
    f0 = lambda path: hub.resolve_f0_model({"model_params": {"f0_extractor": {"type": "rmvpe", "path": path}}},
                                           cache_dir=cache).read_bytes()
    assert f0("someone/rmvpe-mirror") == b"a"               # repo id: the usual file name
    assert f0("someone/rmvpe-mirror/weights/f0.pt") == b"b"  # repo + path inside it
    assert f0("rmvpe_other.pt") == b"c"                      # bare name: the official repo
    with pytest.raises(ConfigError, match="f0_extractor"):
        hub.resolve_f0_model({"model_params": {"f0_extractor": {"type": "crepe"}}}, cache_dir=cache)
    # FCPE's weights ship in the torchfcpe package: nothing to fetch, even when the config names rmvpe.
    assert hub.resolve_f0_model({"model_params": {"f0_extractor": {"type": "fcpe"}}}, cache_dir=cache) is None
    assert hub.resolve_f0_model({"model_params": {"f0_extractor": {"type": "rmvpe", "path": "x/y"}}}, "fcpe",
                                cache_dir=cache) is None


def test_vocoders(fake_hub, cache):
    fake_hub.files["nvidia/bigvgan_v2_22khz_80band_256x"] = {"config.json": b"{}", "bigvgan_generator.pt": b"g"}
    fake_hub.files["FunAudioLLM/CosyVoice-300M"] = {"hift.pt": b"h"}
    bigvgan = hub.resolve_vocoder(_preset("config_dit_mel_seed_uvit_whisper_small_wavenet"), cache_dir=cache)
    assert bigvgan["config"].read_bytes() == b"{}" and bigvgan["weights"].read_bytes() == b"g"
    hift = hub.resolve_vocoder(_preset("config_dit_mel_seed_uvit_xlsr_tiny"), cache_dir=cache)
    assert hift["weights"].read_bytes() == b"h" and hift["config"] == ROOT / "configs" / "hifigan.yml"


def test_content_encoder_snapshot_falls_back_to_pytorch_bin(monkeypatch, fake_hub, cache):
    fake_hub.files["facebook/wav2vec2-xls-r-300m"] = {
        "config.json": b"{}", "preprocessor_config.json": b"{}", "pytorch_model.bin": b"w", "README.md": b""}
    cfg = _preset("config_dit_mel_seed_uvit_xlsr_tiny")
    folder = hub.resolve_content_encoder(cfg, cache_dir=cache)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "preprocessor_config.json",
                                                        "pytorch_model.bin"]
    # Offline afterwards: the cached snapshot (and the hub's "no model.safetensors") are enough.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(fake_hub.requests)
    assert hub.resolve_content_encoder(cfg, cache_dir=cache) == folder
    assert len(fake_hub.requests) == seen


def test_content_encoder_offline_error_names_the_key(monkeypatch, fake_hub, cache):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.AssetUnavailableError) as err:
        hub.resolve_content_encoder(_preset("config_dit_mel_seed_uvit_whisper_small_wavenet"), cache_dir=cache)
    message = str(err.value)
    assert "'openai/whisper-small'" in message and "'config.json'" in message
    assert "model_params.speech_tokenizer.name" in message and fake_hub.requests == []


def test_f0_model_only_for_f0_conditioned_configs(fake_hub, cache, tmp_path):
    local = tmp_path / "assets"
    local.mkdir()
    for name in ("dit.pth", "campplus_cn_common.bin", "hift.pt"):
        (local / name).write_bytes(b"x")
    cfg = _preset("config_dit_mel_seed_uvit_xlsr_tiny")
    cfg["pretrained_model"] = str(local / "dit.pth")
    cfg["model_params"]["style_encoder"]["campplus_path"] = str(local)
    cfg["model_params"]["vocoder"]["name"] = str(local)
    cfg["model_params"]["speech_tokenizer"]["name"] = str(local)
    assets = hub.resolve_assets(cfg, cache_dir=cache)
    assert assets.f0_model is None and assets.vocoder["weights"] == local / "hift.pt"
    assert fake_hub.requests == []


def test_importing_the_module_changes_no_hub_setting():
    before = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    import importlib
    importlib.reload(hub)
    after = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    assert before == after


@pytest.mark.parametrize("offline", [False, True])
def test_env_vars_set_before_start_are_honoured(fake_hub, tmp_path, offline):
    """A fresh process, HF_ENDPOINT / HF_HUB_OFFLINE set before huggingface_hub is imported (the usual way)."""
    fake_hub.files["funasr/campplus"] = {"campplus_cn_common.bin": b"cam++"}
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=fake_hub.url, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    code = ("import sys; from modules import hub\n"
            "try: print(hub.resolve_campplus({}, cache_dir=sys.argv[1]).read_bytes())\n"
            "except hub.AssetUnavailableError as e: print('ERROR', e)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60).stdout
    if offline:
        assert out.startswith("ERROR") and "HF_HUB_OFFLINE" in out and fake_hub.requests == []
    else:
        assert out.strip() == "b'cam++'" and fake_hub.requests
