"""Parity of resampling and the content encoders (fixture README sections E, F and H)."""
from __future__ import annotations

from functools import lru_cache

import torch

from modules.content_encoder import ContentEncoder, load_content_encoder
from modules.resample import resample
from parity_kinds._common import check, fixture_path, load_pt


@lru_cache(maxsize=2)
def _encoder(kind: str, model_dir: str, output_layer: int | None) -> ContentEncoder:
    block = {"type": kind, "name": model_dir} | ({"output_layer": output_layer} if output_layer else {})
    return load_content_encoder(block, fixture_path(model_dir))


def resample_case(case: dict) -> None:
    for name, sub in load_pt(case["files"]["io"])["cases"].items():
        orig, new = (int(x) for x in name.split("_to_"))
        check(case, name, resample(sub["wave"], orig, new), sub["expected"])


def whisper_semantic_fn(case: dict) -> None:
    io = load_pt(case["files"]["io"])
    encoder = _encoder("whisper", case["files"]["model_dir"], None)
    short = io["short"]
    features = encoder.feature_extractor([short["wave_16k"].numpy()], sampling_rate=16000, return_tensors="pt",
                                         return_attention_mask=True)
    check(case, "input_features", features.input_features[0], short["input_features"])
    check(case, "expected", encoder(short["wave_16k"])[0], short["expected"])
    # Over 30 s: windows of 30 s with 5 s of overlap, the wave rebuilt from the CAM++ fixture's clips.
    long = io["long"]
    real = load_pt("campplus/real.pt")
    wave = torch.cat([real["files"][n]["wave_16k"] for n in long["wave_16k_concat_of"]])[: long["n_samples"]]
    check(case, "expected", encoder(wave)[0], long["expected"])


def xlsr_semantic_fn(case: dict) -> None:
    io = load_pt(case["files"]["io"])
    encoder = _encoder("xlsr", case["files"]["model_dir"], int(io["output_layer"]))
    inputs = encoder.feature_extractor([io["wave_16k"].numpy()], sampling_rate=16000, return_tensors="pt",
                                       return_attention_mask=True, padding=True)
    check(case, "input_values", inputs.input_values[0], io["input_values"])
    check(case, "expected", encoder(io["wave_16k"])[0], io["expected"])


KINDS = {"resample": resample_case, "whisper_semantic_fn": whisper_semantic_fn, "xlsr_semantic_fn": xlsr_semantic_fn}
