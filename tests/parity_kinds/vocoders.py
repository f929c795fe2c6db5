"""Parity of the vocoders (fixture README sections D and G): BigVGAN v2 at 22 and 44 kHz, HiFT's F0 predictor."""
from __future__ import annotations

import json

import torch

from modules.config import PRESETS_DIR
from modules.vocoders import BigVGAN, build_hift, load_bigvgan
from modules.vocoders.hift import ConvRNNF0Predictor
from modules.weight_norm import fold_weight_norm
from parity_kinds._common import check, fixture_path, load_pt, seeded_weights

HIFIGAN_CONFIG = PRESETS_DIR.parent / "hifigan.yml"


def bigvgan_generator(case: dict) -> None:
    files = case["files"]
    model = load_bigvgan(config_path=fixture_path(files["config"]), weights_path=fixture_path(files["generator"]))
    io = load_pt(files["io"])
    check(case, "expected", model(io["mel"]), io["expected"])
    check(case, "expected_pre_clamp", model(io["mel"], clamp=False), io["expected_pre_clamp"])


def hift_f0_predictor(case: dict) -> None:
    io = load_pt(case["files"]["io"])
    sub = io[case["id"].rsplit(".", 1)[-1]]
    predictor = ConvRNNF0Predictor(**sub["config"])
    if "state_dict" in sub:
        state = sub["state_dict"]
    else:  # full size: seeded weights for the f0_predictor.* entries of the HiFT manifest, prefix stripped
        manifest = json.loads(fixture_path(case["files"]["manifest"]).read_text())["state_dict"]
        entries = [[k[len("f0_predictor."):], s, d] for k, s, d in manifest if k.startswith("f0_predictor.")]
        state = seeded_weights(case["files"]["seeded_py"], entries)
    predictor.load_state_dict(state, strict=True)
    check(case, "expected", fold_weight_norm(predictor).eval()(io["mel"]), sub["expected"])


def _bigvgan_manifest(name: str):
    def build() -> dict:
        config = json.loads(fixture_path(f"manifests/{name}").read_text())["config"]
        with torch.device("meta"):
            return {"": BigVGAN(config)}
    return build


def _hift_manifest() -> dict:
    with torch.device("meta"):
        return {"": build_hift(HIFIGAN_CONFIG)}


KINDS = {"bigvgan_generator": bigvgan_generator, "hift_f0_predictor": hift_f0_predictor}
MANIFESTS = {"bigvgan_22k_full.json": _bigvgan_manifest("bigvgan_22k_full.json"),
             "bigvgan_44k_full.json": _bigvgan_manifest("bigvgan_44k_full.json"),
             "hift.json": _hift_manifest}
