"""Loading official-format checkpoints: strict by default, safe against code in pickles, clear when wrong."""

import pytest
import torch

from modules.checkpoint import CheckpointError, load_model_weights, read_checkpoint
from modules.config import load_config, preset_path
from modules.model import build_model
from tiny import dit_checkpoint, dit_config

F0_CKPT = dit_checkpoint("f0_44k")


def _small(sub="f0_44k"):
    return build_model(load_config(dit_config(sub)))


def test_training_checkpoint_keeps_its_extras_readable():
    state = read_checkpoint(F0_CKPT)
    assert state["iters"] == 1234 and state["epoch"] == 5 and set(state["net"]) == {"cfm", "length_regulator"}


def test_wrong_config_fails_with_one_error_listing_keys(tmp_path):
    model = _small("wavenet_22k")
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, F0_CKPT)
    message = str(err.value)
    assert str(F0_CKPT) in message
    assert "missing" in message and "unexpected" in message and "shape mismatch" in message
    assert "cfm.estimator.wavenet" in message          # keys the f0 checkpoint lacks
    assert "length_regulator.f0_embedding.weight" in message  # keys the wavenet model lacks
    assert "allow_partial" in message


def test_error_names_the_official_preset_that_fits(tmp_path):
    # A full-size f0_44k checkpoint (built on meta, materialised as zeros only for its keys/shapes).
    with torch.device("meta"):
        full = build_model(load_config(preset_path("config_dit_mel_seed_uvit_whisper_base_f0_44k")))
    net = {p: {k: torch.empty(0).new_zeros(()).expand(v.shape) for k, v in m.state_dict().items()}
           for p, m in full.parts().items()}
    with pytest.raises(CheckpointError, match="config_dit_mel_seed_uvit_whisper_base_f0_44k.yml"):
        load_model_weights(_small("f0_44k"), {"net": net}, source="full.pth")


def test_partial_load_is_opt_in_and_reports_what_it_skipped():
    model = _small("wavenet_22k")
    before = model.cfm.estimator.cond_x_merge_linear.weight.clone()  # [64, 416] here, [64, 224] in xlsr_tiny
    report = load_model_weights(model, dit_checkpoint("xlsr_tiny"), allow_partial=True)
    assert not report.clean and report.missing and report.unexpected
    # Tensors whose name and shape match were loaded.
    xlsr = read_checkpoint(dit_checkpoint("xlsr_tiny"))["net"]
    assert torch.equal(model.cfm.estimator.transformer.layers[0].attention.wqkv.weight,
                       xlsr["cfm"]["estimator.transformer.layers.0.attention.wqkv.weight"])
    assert any("cond_x_merge_linear.weight" in m for m in report.mismatched)
    assert torch.equal(model.cfm.estimator.cond_x_merge_linear.weight, before)  # mis-shaped: left alone


def test_ddp_prefix_and_final_format_load_the_same_weights():
    a, b = _small(), _small()
    load_model_weights(a, dit_checkpoint("f0_44k", "checkpoint_ddp"))
    load_model_weights(b, dit_checkpoint("f0_44k", "ft_model"))
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


class _Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_code_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"net": {"cfm": {}}, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_truncated_and_foreign_files_fail_clearly(tmp_path):
    truncated = tmp_path / "DiT_epoch_00000_step_00010.pth"
    truncated.write_bytes(F0_CKPT.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(truncated)
    foreign = tmp_path / "plain.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="'net'"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
