"""Speaker similarity (SECS): cosine of speaker embeddings of the converted audio and the reference.

ResemblyzerSECS is the extractor behind the original's published SECS (0.8676, zero-shot speech): its GE2E
d-vector weights ship inside the `resemblyzer` wheel, and each wave goes through its own `preprocess_wav`
(volume normalisation, long silences trimmed) before `embed_utterance`. WavLMSECS is the hub's
microsoft/wavlm-base-plus-sv x-vector, the original eval.py's other choice; it needs the hub (or its cache).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules import hub
from modules.evaluation.common import EVAL_RATE, MetricUnavailableError, ModelCard, package_version, require

WAVLM_REPO = "microsoft/wavlm-base-plus-sv"


class NoSpeechError(ValueError):
    """The speaker encoder found no speech in a clip, so its SECS is undefined."""


class ResemblyzerSECS:
    name = "secs"

    def __init__(self, device: torch.device | str = "cpu"):
        resemblyzer = require("resemblyzer", "resemblyzer")
        self._preprocess = resemblyzer.preprocess_wav
        self.encoder = resemblyzer.VoiceEncoder(device=torch.device(device), verbose=False)
        self.card = ModelCard("SECS", "Resemblyzer GE2E VoiceEncoder (256-d d-vector)",
                              f"{package_version('resemblyzer')}, bundled pretrained.pt")

    def embed(self, wave_16k: np.ndarray) -> np.ndarray:
        """[N] float32 at 16 kHz -> [256] L2-normalised embedding. Raises NoSpeechError when Resemblyzer's
        voice-activity trimming leaves nothing: its embedding of nothing is a constant, not a voice."""
        wave = self._preprocess(np.asarray(wave_16k, dtype=np.float32))
        if wave.size == 0:
            raise NoSpeechError("no speech left after Resemblyzer's silence trimming")
        return self.encoder.embed_utterance(wave)

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.inner(a, b))  # both unit length, as in the original


class WavLMSECS:
    """WavLM-Base+ speaker verification x-vectors from the hub, cosine similarity of normalised embeddings."""
    name = "secs_wavlm"

    def __init__(self, device: torch.device | str = "cpu", repo: str = WAVLM_REPO,
                 cache_dir: str | Path = hub.CHECKPOINTS_DIR):
        from transformers import AutoFeatureExtractor, WavLMForXVector
        try:
            folder = hub.resolve_transformers_dir(repo, "--wavlm-model", cache_dir=cache_dir)
        except hub.AssetUnavailableError as e:
            raise MetricUnavailableError(f"WavLM SECS is not available: {e}") from e
        self.device = torch.device(device)
        self.features = AutoFeatureExtractor.from_pretrained(folder)
        self.model = WavLMForXVector.from_pretrained(folder).to(self.device).eval()
        self.card = ModelCard("SECS (WavLM)", f"{repo} x-vector (hub)",
                              f"{package_version('transformers')}, snapshot {Path(folder).name}")

    @torch.no_grad()
    def embed(self, wave_16k: np.ndarray) -> np.ndarray:
        inputs = self.features(np.asarray(wave_16k, dtype=np.float32), sampling_rate=EVAL_RATE, return_tensors="pt")
        embedding = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
        return torch.nn.functional.normalize(embedding, dim=-1)[0].float().cpu().numpy()

    similarity = staticmethod(ResemblyzerSECS.similarity)
