"""Parity of the CAM++ style encoder with the real `campplus_cn_common.bin`: state-dict manifest, Kaldi fbank,
embeddings and their cosine-similarity matrix (fixture README section B)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from modules.style_encoder import CAMPPlus, kaldi_fbank, load_campplus, style_embedding
from parity_kinds._common import check, fixture_path, load_pt


@lru_cache(maxsize=1)
def _model(weights_rel: str) -> CAMPPlus:
    return load_campplus(fixture_path(weights_rel))


def _embed_fbank(model: CAMPPlus, fbank: torch.Tensor) -> torch.Tensor:
    # Stored raw fbank [T, 80] -> embedding [192], mean-normalised the way inference.py does it.
    return model((fbank - fbank.mean(dim=0, keepdim=True))[None])[0]


def campplus_embedding(case: dict) -> None:
    model = _model(case["files"]["weights"])
    io = load_pt(case["files"]["io"])
    embeddings = []
    for name in io["order"]:
        entry = io["files"][name]
        wave = entry["wave_16k"]
        check(case, "fbank", kaldi_fbank(wave), entry["fbank"])
        # The model alone on the stored fbank, then the whole public route from the wave.
        check(case, "embedding", _embed_fbank(model, entry["fbank"]), entry["embedding"])
        embedding = style_embedding(model, wave)[0]
        check(case, "embedding", embedding, entry["embedding"])
        embeddings.append(embedding)
    unit = F.normalize(torch.stack(embeddings), dim=-1)
    check(case, "cosine_similarity", unit @ unit.T, io["cosine_similarity"])

    # inference.py's own route (22.05 kHz load, resampled to 16 kHz). Its 16 kHz wave is not stored, so check the
    # frame count its length implies and the embedding of its stored fbank, and how close that lands to the
    # librosa-16k embedding of the same file.
    example = io["official_inference_path_example"]
    n_frames = 1 + (example["n_samples_16k"] - 400) // 160
    assert example["fbank"].shape == (n_frames, 80), f"{case['id']}: example fbank shape {tuple(example['fbank'].shape)}"
    example_embedding = _embed_fbank(model, example["fbank"])
    check(case, "embedding", example_embedding, example["embedding"])
    same_file = embeddings[io["order"].index(Path(example["source_file"]).stem)]
    cosine = F.cosine_similarity(example_embedding, same_file, dim=0)
    check(case, "cosine_similarity", cosine, torch.tensor(example["cos_to_librosa16k_embedding"]))


KINDS = {"campplus_embedding": campplus_embedding}
MANIFESTS = {"campplus.json": lambda: {"": CAMPPlus()}}
