"""The run-directory rule: ft_model.pth first, else the highest step; unreadable files are skipped."""
import logging
import shutil

import pytest

from modules.checkpoint import CheckpointError, checkpoint_step, select_run_checkpoint
from tiny import dit_checkpoint, dit_config

CKPT = dit_checkpoint("xlsr_tiny")


def _put(run, name):
    shutil.copyfile(CKPT, run / name)
    return run / name


def test_final_model_wins(tmp_path):
    _put(tmp_path, "DiT_epoch_00001_step_00900.pth")
    final = _put(tmp_path, "ft_model.pth")
    assert select_run_checkpoint(tmp_path).checkpoint == final
    # Resume asks for the newest training state instead.
    assert select_run_checkpoint(tmp_path, prefer_final=False).checkpoint.name == "DiT_epoch_00001_step_00900.pth"


def test_highest_step_wins_not_the_highest_epoch_or_name(tmp_path, caplog):
    _put(tmp_path, "DiT_epoch_00009_step_00500.pth")
    newest = _put(tmp_path, "DiT_epoch_00002_step_10000.pth")
    _put(tmp_path, "DiT_epoch_00003_step_02000.pth")
    shutil.copyfile(dit_config("xlsr_tiny"), tmp_path / "config.yml")
    with caplog.at_level(logging.INFO, logger="modules.checkpoint"):
        sel = select_run_checkpoint(tmp_path)
    assert sel.checkpoint == newest and sel.config == tmp_path / "config.yml"
    assert "DiT_epoch_00002_step_10000.pth" in caplog.text  # the choice is always logged
    assert checkpoint_step(newest) == 10000 and checkpoint_step(tmp_path / "other.pth") is None


def test_corrupt_newest_is_skipped_with_a_warning(tmp_path, caplog):
    good = _put(tmp_path, "DiT_epoch_00000_step_00100.pth")
    (tmp_path / "DiT_epoch_00000_step_00200.pth").write_bytes(CKPT.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="modules.checkpoint"):
        sel = select_run_checkpoint(tmp_path)
    assert sel.checkpoint == good
    assert len(sel.skipped) == 1 and "step_00200" in sel.skipped[0]
    assert "skipping unreadable checkpoint" in caplog.text


def test_no_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        select_run_checkpoint(tmp_path)
    (tmp_path / "DiT_epoch_00000_step_00200.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="step_00200"):
        select_run_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="run directory not found"):
        select_run_checkpoint(tmp_path / "missing")
