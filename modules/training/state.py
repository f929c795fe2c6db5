"""One training checkpoint is one `TrainState` plus the weights: its schema, how it is written and pruned, and
how a run resumes from one.

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
Everything is tensors and plain containers, so `torch.load(weights_only=True)` reads it. A checkpoint of the
original project has only the official keys; it resumes at the start of the epoch after its 'epoch'.
The file names (DiT_epoch_*_step_*.pth) are made and parsed in modules/checkpoint.py.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modules.atomic_io import atomic_write, fsync_directory
from modules.checkpoint import (
    FINAL_CHECKPOINT_NAME,
    CheckpointError,
    checkpoint_name,
    read_checkpoint,
    select_run_checkpoint,
    training_checkpoints,
)
from modules.model import PARTS, SeedVCModel
from modules.training.data import DataPosition

log = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"
LOSS_SMOOTHING = 0.99   # the running average shown in the progress bar, as the original prints
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


# ------------------------------------------------------------------------------------------- the state

# AdamW options that choose a kernel, not the arithmetic's inputs (lr, betas, ...)
UPDATE_IMPLEMENTATION = ("fused", "foreach")


@dataclass
class TrainState:
    """Everything besides the weights that a run needs to continue exactly; the checkpoint schema above.

    The optimizers, schedulers and scaler are the live objects of the run (by part name, as in PARTS); `rng`
    holds every process's generator states as of the last save (or the checkpoint it was read from).
    """
    seed: int
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scaler: torch.amp.GradScaler | None = None
    config: Mapping[str, Any] | None = None
    iters: int = 0                                    # steps done
    epoch: int = 0                                    # the epoch the last step belonged to
    position: DataPosition = DataPosition()           # the next batch
    rng: list[dict[str, Any]] = field(default_factory=list)
    loss_avg: float | None = None

    @property
    def world_size(self) -> int:
        """How many processes wrote `rng` (one entry each)."""
        return len(self.rng)

    def record_step(self, next_position: DataPosition, loss: float) -> None:
        """One optimizer step done on the batch at `position`; the data loader says where the next one is."""
        self.epoch = self.position.epoch
        self.iters += 1
        self.position = next_position
        self.loss_avg = loss if self.loss_avg is None else LOSS_SMOOTHING * self.loss_avg + (1 - LOSS_SMOOTHING) * loss

    def restore_process_rng(self, rank: int, world_size: int) -> bool:
        """Set this process's generators as they were at the save; False if another number of processes wrote
        them (the run then cannot replay the uninterrupted one's random draws)."""
        if self.world_size != world_size:
            return False
        restore_rng(self.rng[rank])
        return True

    def to_checkpoint(self, model: SeedVCModel) -> dict[str, Any]:
        """The checkpoint dict (the layout above) of this state and `model`'s trained parts."""
        return {
            "net": trained_weights(model),
            "optimizer": [(part, self.optimizers[part].state_dict()) for part in PARTS],
            "scheduler": [(part, self.schedulers[part].state_dict()) for part in PARTS],
            "iters": self.iters, "epoch": self.epoch,
            "position": {"epoch": self.position.epoch, "batch": self.position.batch},
            "seed": self.seed, "world_size": self.world_size, "rng": self.rng, "loss_avg": self.loss_avg,
            "scaler": self.scaler.state_dict() if self.scaler else None, "config": self.config,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], optimizers: dict[str, torch.optim.Optimizer],
                        schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler],
                        scaler: torch.amp.GradScaler | None = None, *, seed: int) -> TrainState:
        """Load a checkpoint's optimizer, scheduler and scaler states into the run's objects and read the rest.

        `seed` is used when the checkpoint has none (the original project's); so is its position, then the
        start of the epoch after the saved one, as the original resumes.
        """
        for part, sd in checkpoint["optimizer"]:
            # The saved groups carry how the update was computed (fused / foreach); this machine's choice wins,
            # so a checkpoint of the original project (for-loop AdamW) resumes on the fused kernel here.
            how = [{k: g.get(k) for k in UPDATE_IMPLEMENTATION} for g in optimizers[part].param_groups]
            optimizers[part].load_state_dict(sd)
            for group, kept in zip(optimizers[part].param_groups, how):
                group.update(kept)
        for part, sd in checkpoint["scheduler"]:
            schedulers[part].load_state_dict(sd)
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        epoch = int(checkpoint.get("epoch", 0))
        position = (DataPosition(**checkpoint["position"]) if "position" in checkpoint
                    else DataPosition(epoch + 1, 0))
        return cls(seed=int(checkpoint.get("seed", seed)), optimizers=optimizers, schedulers=schedulers,
                   scaler=scaler, config=checkpoint.get("config"), iters=int(checkpoint["iters"]), epoch=epoch,
                   position=position, rng=list(checkpoint.get("rng") or []), loss_avg=checkpoint.get("loss_avg"))

    @staticmethod
    def saved_config(checkpoint: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The config a checkpoint was trained with; None in one written by the original project."""
        return checkpoint.get("config")

    def save(self, model: SeedVCModel, run_dir: Path, before_commit: Callable[[], None] | None = None) -> Path:
        """Write run_dir/DiT_epoch_<epoch>_step_<iters>.pth atomically (see save_checkpoint)."""
        return save_checkpoint(self.to_checkpoint(model), run_dir / checkpoint_name(self.epoch, self.iters),
                               before_commit=before_commit)


def trained_weights(model: SeedVCModel) -> dict[str, dict[str, torch.Tensor]]:
    """'net' of a checkpoint: {part: state_dict} of the trained parts."""
    return {part: module.state_dict() for part, module in model.parts().items()}


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


def export_inference_checkpoint(net: Mapping[str, Mapping[str, torch.Tensor]], output: Path) -> Path:
    """{'net': ...} only: the official inference format (ft_model.pth); `net` as trained_weights gives it."""
    return save_checkpoint({"net": {part: net[part] for part in PARTS}}, Path(output))


def export_checkpoint_file(checkpoint: str | Path, output: str | Path | None = None) -> Path:
    """`train.py --export`: any training checkpoint -> ft_model.pth (default: beside the checkpoint)."""
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint)
    missing = [part for part in PARTS if part not in state["net"]]
    if missing:
        raise CheckpointError(f"{checkpoint}: 'net' has no {', '.join(missing)}; not a Seed-VC v1 checkpoint")
    return export_inference_checkpoint(state["net"], Path(output) if output else checkpoint.parent / FINAL_CHECKPOINT_NAME)


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
