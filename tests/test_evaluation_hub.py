"""The optional WavLM SECS: fetched from a (fake, 127.0.0.1) hub when reachable, labelled as the hub model;
a clear error saying what to do when offline."""
from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import constants
from test_hub import _HubHandler  # noqa: F401  (the fake hub's request handler)

from modules.evaluation import Evaluator, MetricUnavailableError
from modules.evaluation.speaker import WAVLM_REPO, WavLMSECS

REPO = "test-owner/wavlm-tiny-sv"


@pytest.fixture
def fake_hub(monkeypatch):
    import threading
    from http.server import ThreadingHTTPServer
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    server.files, server.requests = {}, []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    yield server
    server.shutdown()
    server.server_close()


def tiny_wavlm_files(folder) -> dict[str, bytes]:
    """A randomly initialised, very small WavLMForXVector saved the way the hub repo holds it."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector
    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1),
                         tdnn_dilation=(1, 1), xvector_output_dim=8, num_buckets=32)
    WavLMForXVector(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_wavlm_secs_from_the_hub_is_labelled(fake_hub, tmp_path):
    fake_hub.files[REPO] = tiny_wavlm_files(tmp_path / "model")
    secs = WavLMSECS("cpu", repo=REPO, cache_dir=tmp_path / "cache")
    assert REPO in secs.card.model and "(hub)" in secs.card.model and secs.card.metric == "SECS (WavLM)"
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    other = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3
    assert secs.similarity(secs.embed(wave), secs.embed(wave)) == pytest.approx(1.0, abs=1e-5)
    assert secs.similarity(secs.embed(wave), secs.embed(other)) < 0.999
    assert any("model.safetensors" in r for r in fake_hub.requests)


def test_wavlm_secs_offline_says_what_to_do(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    evaluator = Evaluator(["secs_wavlm"], device="cpu")
    with pytest.raises(MetricUnavailableError) as error:
        evaluator.cards()
    message = str(error.value)
    assert "WavLM SECS is not available" in message and WAVLM_REPO in message
    assert "HF_HUB_OFFLINE" in message and "--wavlm-model" in message
    assert fake_hub.requests == []
