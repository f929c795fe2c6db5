"""What a training checkpoint holds, how it is written and pruned, and how a run resumes from one.

Layout (the official keys first, so the file loads in inference.py here and in the original project):
    net          {'cfm': state_dict, 'length_regulator': state_dict}
    optimizer    [('cfm', AdamW state), ('length_regulator', AdamW state)]     list of pairs, as the original
    scheduler    [('cfm', ExponentialLR state), ('length_regulator', ...)]
    iters        steps done;  epoch  the epoch the last step belonged to
and what an exact continuation needs besides:
    position     {'epoch', 'batch'} of the next batch;  seed;  world_size
    rng          one entry per process: python, numpy, torch (and CUDA) generator states
    loss_avg     the smoothed loss shown in the progress bar;  scaler  fp16 GradScaler state or None
    config       the config dict the run was trained with
Everything is tensors and plain containers, so `torch.load(weights_only=True)` reads it.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modules.atomic_io import atomic_write, fsync_directory
from modules.checkpoint import (
    FINAL_CHECKPOINT_NAME,
    CheckpointError,
    read_checkpoint,
    select_run_checkpoint,
    training_checkpoints,
)
from modules.model import PARTS

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"
# Parts of the config that define the network and its target; a resume must not change them.
FROZEN_CONFIG_SECTIONS = ("model_params", "preprocess_params")


# ------------------------------------------------------------------------------------------- RNG states

def capture_rng() -> dict[str, Any]:
    """This process's generator states, as tensors and plain values (weights_only-loadable)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt_state), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- writing

class SaveError(RuntimeError):
    """A checkpoint could not be written; the previous ones are untouched."""


def save_checkpoint(state: dict, path: Path, before_commit: Callable[[], None] | None = None) -> Path:
    """Atomically write `state` to `path` (see modules/atomic_io.py); SaveError on failure, e.g. a full disk."""
    try:
        return atomic_write(path, lambda f: torch.save(state, f), before_commit=before_commit)
    except (OSError, RuntimeError) as e:
        # torch.save reports a failed write (ENOSPC, EFBIG) as a RuntimeError whose context is the OSError.
        cause = e if isinstance(e, OSError) else e.__context__
        if not isinstance(cause, OSError):
            raise
        raise SaveError(f"could not save {path.name} in {path.parent}: {cause}. The previous checkpoints are "
                        f"kept; free some space (or lower --keep-checkpoints) and run the same command to "
                        f"resume.") from e


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Delete training checkpoints beyond the `keep` highest steps; call only once the newest is durable."""
    removed = training_checkpoints(run_dir)[max(keep, 1):]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        fsync_directory(run_dir)
    return removed


def export_inference_checkpoint(state: Mapping[str, Any], output: Path) -> Path:
    """{'net': ...} only: the official inference format (ft_model.pth)."""
    net = {part: state["net"][part] for part in PARTS}
    return save_checkpoint({"net": net}, Path(output))


def export_checkpoint_file(checkpoint: str | Path, output: str | Path | None = None) -> Path:
    """`train.py --export`: any training checkpoint -> ft_model.pth (default: beside the checkpoint)."""
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    missing = [part for part in PARTS if part not in state["net"]]
    if missing:
        raise CheckpointError(f"{checkpoint}: 'net' has no {', '.join(missing)}; not a Seed-VC v1 checkpoint")
    return export_inference_checkpoint(state, Path(output) if output else checkpoint.parent / FINAL_CHECKPOINT_NAME)


# ------------------------------------------------------------------------------------------- resuming

@dataclass
class ResumePoint:
    path: Path
    state: dict


def find_resume_point(run_dir: Path) -> ResumePoint | None:
    """The newest readable training checkpoint of a run (the run-directory rule, without ft_model.pth).

    Unreadable checkpoints newer than it are renamed to *.corrupt: they are reported, kept for inspection,
    and can no longer shadow the good ones when old checkpoints are pruned by step.
    """
    if not training_checkpoints(run_dir):
        return None
    try:
        selection = select_run_checkpoint(run_dir, prefer_final=False)
    except CheckpointError as e:
        raise CheckpointError(f"{e}\nEvery checkpoint of this run is unreadable. Move them away to start over, "
                              f"or use another --run-name.") from None
    for path in selection.skipped_paths:
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        path.replace(aside)
        log.warning("unreadable checkpoint %s renamed to %s; resuming from %s", path.name, aside.name,
                    selection.checkpoint.name)
    return ResumePoint(selection.checkpoint, selection.state)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                       sections: tuple[str, ...] = FROZEN_CONFIG_SECTIONS) -> list[str]:
    """Human-readable 'dotted.key: saved -> current' lines for every difference in `sections`."""
    lines: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{key}.{k}" if key else str(k))
        elif a != b:
            lines.append(f"{key}: {a!r} -> {b!r}")

    for section in sections:
        walk(saved.get(section, {}), current.get(section, {}), section)
    return lines
