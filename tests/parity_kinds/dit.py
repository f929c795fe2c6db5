"""Parity of the DiT presets: manifests, checkpoint loading, length regulator, estimator, CFM sampling and loss.

Every model is built from the fixture's config through modules.config and loaded through
modules.checkpoint, exactly as a user's official files would be.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from modules.checkpoint import load_model_weights
from modules.config import load_config, preset_path
from modules.length_regulator import f0_to_coarse
from modules.model import SeedVCModel, build_model
from parity_kinds._common import check, check_exact, fixture_path, load_index, load_pt


@lru_cache(maxsize=4)
def _model(config_rel: str, checkpoint_rel: str) -> SeedVCModel:
    model = build_model(load_config(fixture_path(config_rel)))
    load_model_weights(model, fixture_path(checkpoint_rel))
    return model.eval()


def _case_model(case: dict) -> SeedVCModel:
    return _model(case["files"]["config"], case["files"]["checkpoint"])


def checkpoint_load(case: dict) -> None:
    """The three formats load strictly to identical weights (exact, the case's atol 0), which give identical
    estimator outputs on this machine (exact). The stored output is bit-exact only on the machine that made it
    (CPU kernels differ by ISA), so, as the case's note says, it is compared at the estimator case's tolerance."""
    files = case["files"]
    io = load_pt(files["estimator_io"])
    estimator_case = _sibling_case(case, "dit_estimator")
    reference = reference_out = None
    for key in ("checkpoint", "checkpoint_ddp", "ft_model"):
        model = build_model(load_config(fixture_path(files["config"])))
        report = load_model_weights(model, fixture_path(files[key]))
        assert report.clean, report.describe()
        state = {f"{p}.{k}": v for p, m in model.parts().items() for k, v in m.state_dict().items()}
        with torch.no_grad():
            got = model.eval().cfm.estimator(io["x"], io["prompt_x"], io["x_lens"], io["t"], io["style"], io["mu"])
        if reference is None:
            reference, reference_out = state, got
        else:
            for k, v in state.items():
                check_exact(case, f"{key}:{k}", v, reference[k])
            check_exact(case, f"{key}:estimator_vs_checkpoint", got, reference_out)
        check(estimator_case, f"{key}:estimator", got, io["expected"])


def _sibling_case(case: dict, kind: str) -> dict:
    """The case of `kind` that uses the same config and estimator file (its tolerance applies)."""
    for other in load_index()["cases"]:
        if other["kind"] == kind and other["files"].get("config") == case["files"]["config"] \
                and other["files"].get("io") == case["files"]["estimator_io"]:
            return other
    raise LookupError(f"{case['id']}: no {kind} case for {case['files']['estimator_io']}")


def length_regulator(case: dict) -> None:
    lr = _case_model(case).length_regulator
    io = load_pt(case["files"]["io"])
    variant = case["id"].rsplit(".", 1)[-1]
    if variant == "length_regulator_f0none":
        f0, expected = None, io["f0_none"]["expected"]
    elif variant == "length_regulator_f0_out_of_range":
        f0, expected = io["f0_out_of_range"]["f0"], io["f0_out_of_range"]["expected"]
        check_exact(case, "f0_coarse", f0_to_coarse(f0, lr.n_f0_bins), io["f0_out_of_range"]["f0_coarse"])
    else:
        f0, expected = io.get("f0"), io["expected"]
        if f0 is not None:
            check_exact(case, "f0_coarse", f0_to_coarse(f0, lr.n_f0_bins), io["f0_coarse"])
    out = lr(io["x"], io["ylens"], f0=f0)
    check(case, "out", out, expected["out"])


def dit_estimator(case: dict) -> None:
    io = load_pt(case["files"]["io"])
    got = _case_model(case).cfm.estimator(io["x"], io["prompt_x"], io["x_lens"], io["t"], io["style"], io["mu"])
    check(case, "expected", got, io["expected"])


def cfm_inference(case: dict) -> None:
    model = _case_model(case)
    io = load_pt(case["files"]["io"])
    lr_in = io["lr_inputs"]
    # The conditioning, built the way inference does it: prompt and source regulated separately, then joined.
    prompt_cond = model.length_regulator(lr_in["S_ori"], lr_in["ylens_prompt"], f0=lr_in.get("F0_ori"))
    source_cond = model.length_regulator(lr_in["S_alt"], lr_in["ylens_source"], f0=lr_in.get("F0_alt"))
    check(case, "prompt_condition", prompt_cond, lr_in["prompt_condition"])
    check(case, "source_condition", source_cond, lr_in["source_condition"])
    sub = io["cases"]["cfg_" + case["id"].rsplit("cfg", 1)[-1]]
    out = model.cfm.inference(io["mu"], io["x_lens"], io["prompt"], io["style"], n_timesteps=io["n_timesteps"],
                              temperature=io["temperature"], inference_cfg_rate=sub["inference_cfg_rate"],
                              noise=sub["z"])
    check(case, "expected_full", out, sub["expected_full"])
    check(case, "expected_sliced", out[:, :, io["prompt"].shape[-1]:], sub["expected_sliced"])


def cfm_training_loss(case: dict) -> None:
    model = _case_model(case)
    io = load_pt(case["files"]["io"])
    sub = io["cases"][case["id"].rsplit(".", 1)[-1]]
    loss, pred_x1 = model.cfm(io["x1"], io["x_lens"], io["prompt_lens"], io["mu"], io["style"],
                              t=io["t"], z=io["z"], drop_condition=sub["class_dropout"])
    check(case, "expected_loss", loss, sub["expected_loss"])
    check(case, "expected_pred_x1", pred_x1, sub["expected_pred_x1"])
    est = sub["estimator_inputs"]
    out = model.cfm.estimator(est["y"], est["prompt"], est["x_lens"], est["t"], est["style"], est["mu"],
                              drop_condition=sub["class_dropout"])
    check(case, "expected_estimator_out", out, sub["expected_estimator_out"])


def _full_preset(name: str):
    def build() -> dict:
        with torch.device("meta"):  # full size, no memory: only keys, shapes and dtypes are compared
            model = build_model(load_config(preset_path(name)))
        return model.parts()
    return build


KINDS = {
    "v1_checkpoint_load": checkpoint_load,
    "length_regulator": length_regulator,
    "dit_estimator": dit_estimator,
    "cfm_inference": cfm_inference,
    "cfm_training_loss": cfm_training_loss,
}

MANIFESTS = {
    "f0_44k_full.json": _full_preset("config_dit_mel_seed_uvit_whisper_base_f0_44k"),
    "wavenet_22k_full.json": _full_preset("config_dit_mel_seed_uvit_whisper_small_wavenet"),
    "xlsr_tiny_full.json": _full_preset("config_dit_mel_seed_uvit_xlsr_tiny"),
}
