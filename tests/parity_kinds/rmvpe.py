"""Parity of RMVPE (fixture README section C): state-dict manifest, log-mel, salience and decoded f0 with the
seeded stand-in weights, and the decoder alone on a hand-made salience."""
from __future__ import annotations

import json
from functools import lru_cache

import torch

from modules.f0.rmvpe import E2E, RMVPE, load_rmvpe, salience_to_cents, salience_to_f0
from parity_kinds._common import check, fixture_path, load_pt, seeded_weights


@lru_cache(maxsize=1)
def seeded_rmvpe(manifest_rel: str, seeded_rel: str) -> RMVPE:
    # The E2E has 90 M parameters: build and load it once per session.
    manifest = json.loads(fixture_path(manifest_rel).read_text())
    return load_rmvpe(seeded_weights(seeded_rel, manifest["state_dict"]))


def rmvpe_f0(case: dict) -> None:
    files = case["files"]
    rmvpe = seeded_rmvpe(files["manifest"], files["seeded_py"])
    io = load_pt(files["io"])
    mel = rmvpe.mel(io["audio_16k"])
    check(case, "mel", mel, io["mel"])
    check(case, "salience_from_stored_mel", rmvpe.salience(io["mel"]), io["salience"])
    check(case, "salience_from_own_mel", rmvpe.salience(mel), io["salience"])
    f0 = rmvpe.with_threshold(io["thred"])(io["audio_16k"])
    assert f0.dtype.name == "float64", f"{case['id']}: f0 dtype {f0.dtype}"
    check(case, "f0", torch.from_numpy(f0), io["f0"])


def rmvpe_decode(case: dict) -> None:
    io = load_pt(case["files"]["io"])["decode"]
    salience = io["salience"].numpy()
    cents = salience_to_cents(salience, io["thred"])
    f0 = salience_to_f0(salience, io["thred"])
    assert f0.dtype.name == "float64", f"{case['id']}: f0 dtype {f0.dtype}"
    check(case, "cents", torch.from_numpy(cents), io["cents"])
    check(case, "f0", torch.from_numpy(f0), io["f0"])


def _build_e2e() -> dict:
    with torch.device("meta"):  # keys, shapes and dtypes only: no 360 MB allocation
        return {"": E2E(4, 1, (2, 2))}


KINDS = {"rmvpe_f0": rmvpe_f0, "rmvpe_decode": rmvpe_decode}
MANIFESTS = {"rmvpe.json": _build_e2e}
