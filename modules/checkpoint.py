"""Reading Seed-VC checkpoints and loading them into a model, strictly by default.

Accepted layouts (all from the original project):
  {'net': {'cfm': sd, 'length_regulator': sd}}                               final `ft_model.pth`, hub `DiT_*.pth`
  the same plus 'optimizer', 'scheduler', 'iters', 'epoch' (and our extras)  training `DiT_epoch_*_step_*.pth`
Keys may carry the `module.` prefix that DDP adds. A checkpoint is untrusted input, so it is always read
with `torch.load(weights_only=True)`: it can hold tensors and plain containers, never code.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from modules.config import PRESETS_DIR, load_config
from modules.errors import UserError
from modules.model import PARTS, SeedVCModel
from modules.weights import describe_diff, read_weights, state_dict_diff

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be read, has an unknown layout, or does not fit the model."""


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint safely; unreadable or truncated files raise CheckpointError naming the file."""
    state = read_weights(path, "checkpoint", CheckpointError)
    if not isinstance(state, Mapping) or not isinstance(state.get("net"), Mapping):
        keys = list(state)[:8] if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"{path}: expected a dict with a 'net' entry (Seed-VC layout), found {keys}")
    return dict(state)


def network_state(state: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """{'cfm': sd, 'length_regulator': sd} from a checkpoint dict, with DDP `module.` prefixes removed."""
    net = state["net"]
    out = {}
    for part, sd in net.items():
        out[part] = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    return out


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)        # in the model, absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)     # in the checkpoint, absent from the model
    mismatched: list[str] = field(default_factory=list)     # same name, different shape ("key: ckpt vs model")

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        return describe_diff(self.missing, self.unexpected, self.mismatched)


def _compare(model_parts: Mapping[str, nn.Module], net: Mapping[str, Mapping[str, torch.Tensor]]) -> LoadReport:
    report = LoadReport()
    for part, module in model_parts.items():
        missing, unexpected, mismatched = state_dict_diff(module.state_dict(), net.get(part, {}), f"{part}.")
        report.missing += missing
        report.unexpected += unexpected
        report.mismatched += mismatched
    report.unexpected += [f"{part}" for part in net if part not in model_parts]
    return report


@lru_cache(maxsize=1)
def _preset_signatures() -> dict[str, dict[str, dict[str, tuple]]]:
    """Key -> shape of every official preset, built on the meta device (no memory, no weights)."""
    signatures = {}
    for path in sorted(PRESETS_DIR.glob("*.yml")):
        with torch.device("meta"):
            model = SeedVCModel(load_config(path))
        signatures[path.name] = {p: {k: tuple(v.shape) for k, v in m.state_dict().items()}
                                 for p, m in model.parts().items()}
    return signatures


def guess_preset(net: Mapping[str, Mapping[str, torch.Tensor]]) -> str | None:
    """The official preset whose keys and shapes match `net` exactly, if any."""
    given = {p: {k: tuple(v.shape) for k, v in sd.items()} for p, sd in net.items() if p in PARTS}
    for name, signature in _preset_signatures().items():
        if signature == given:
            return name
    return None


def load_model_weights(model: SeedVCModel, checkpoint: str | Path | Mapping[str, Any], *,
                       allow_partial: bool = False, source: str | None = None) -> LoadReport:
    """Load `net` weights into `model.cfm` and `model.length_regulator`.

    Strict by default: any missing, unexpected or mis-shaped key raises one CheckpointError that lists them
    and names the official preset the checkpoint fits, if one does. With allow_partial=True (fine-tuning from
    a different config) the matching tensors are loaded and the rest is skipped and reported.
    """
    if isinstance(checkpoint, Mapping):
        state, source = checkpoint, source or "<checkpoint dict>"
    else:
        state, source = read_checkpoint(checkpoint), source or str(checkpoint)
    net = network_state(state)
    parts = model.parts()
    report = _compare(parts, net)
    if not report.clean and not allow_partial:
        fits = guess_preset(net)
        hint = (f"\nIt matches the official preset configs/presets/{fits}; pass that config (--config)."
                if fits else "\nNo official preset matches it exactly; check that --config is the one it was "
                             "trained with.")
        raise CheckpointError(f"{source}: checkpoint does not fit the model built from this config:\n"
                              f"  {report.describe()}{hint}\nTo load only the matching tensors (fine-tuning from "
                              f"another config), opt in with allow_partial=True.")
    skipped = {entry.split(":")[0] for entry in report.mismatched}
    for part, module in parts.items():
        own = module.state_dict()
        usable = {k: v for k, v in net.get(part, {}).items()
                  if k in own and f"{part}.{k}" not in skipped}
        module.load_state_dict(usable, strict=not allow_partial)
    if not report.clean:
        log.warning("%s: partial load, skipped:\n%s", source, report.describe())
    return report


# ----------------------------------------------------------------------------------------------------------
# The run-directory rule, shared by inference, training (resume) and the apps.

DEFAULT_LOG_DIR = "./runs"
TRAINING_CHECKPOINT_GLOB = "DiT_epoch_*_step_*.pth"
FINAL_CHECKPOINT_NAME = "ft_model.pth"
_STEP_PATTERN = re.compile(r"^DiT_epoch_(\d+)_step_(\d+)\.pth$")


def runs_root(cfg: Mapping | None) -> Path:
    """Where a config's runs live: its `log_dir`, default ./runs."""
    return Path((cfg or {}).get("log_dir") or DEFAULT_LOG_DIR)


def run_directory(cfg: Mapping | None, run_name: str) -> Path:
    """The run directory of `run_name`: <log_dir>/<run_name>."""
    return runs_root(cfg) / run_name


def checkpoint_name(epoch: int, step: int) -> str:
    """The official training-checkpoint file name; `checkpoint_step` parses it back."""
    return f"DiT_epoch_{epoch:05d}_step_{step:05d}.pth"


def checkpoint_step(path: str | Path) -> int | None:
    """The step parsed from `DiT_epoch_XXXXX_step_YYYYY.pth`, or None for any other name."""
    match = _STEP_PATTERN.match(Path(path).name)
    return int(match.group(2)) if match else None


def training_checkpoints(run_dir: str | Path) -> list[Path]:
    """Training checkpoints in `run_dir`, newest (highest step) first."""
    found = [p for p in Path(run_dir).glob(TRAINING_CHECKPOINT_GLOB) if checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: (checkpoint_step(p), p.name), reverse=True)


def run_config(run_dir: str | Path) -> Path | None:
    """The config saved in a run directory: its newest *.yml / *.yaml, or None."""
    configs = sorted(list(Path(run_dir).glob("*.yml")) + list(Path(run_dir).glob("*.yaml")),
                     key=lambda p: p.stat().st_mtime)
    return configs[-1] if configs else None


@dataclass
class RunSelection:
    checkpoint: Path
    state: dict                     # the checkpoint, already read (so it is read once)
    config: Path | None             # the config saved in the run directory, if there is one
    skipped: list[str] = field(default_factory=list)  # unreadable newer files, with the reason
    skipped_paths: list[Path] = field(default_factory=list)  # the same files


def select_run_checkpoint(run_dir: str | Path, *, prefer_final: bool = True) -> RunSelection:
    """Choose the checkpoint of a run directory.

    1. `ft_model.pth` if it exists (and prefer_final; training resume passes False to continue instead);
    2. else the training checkpoint with the highest step in its name; a file that cannot be read is
       skipped with a warning, and the next newest is tried;
    3. else CheckpointError.
    The config saved in the run directory (the newest *.yml / *.yaml) is returned alongside.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory not found: {run_dir}")
    candidates = training_checkpoints(run_dir)
    final = run_dir / FINAL_CHECKPOINT_NAME
    if prefer_final and final.exists():
        candidates.insert(0, final)
    skipped, skipped_paths = [], []
    for path in candidates:
        try:
            state = read_checkpoint(path)
        except CheckpointError as e:
            log.warning("skipping unreadable checkpoint %s", e)
            skipped.append(str(e))
            skipped_paths.append(path)
            continue
        config = run_config(run_dir)
        log.info("run %s: using checkpoint %s%s", run_dir, path.name, f" with config {config.name}" if config else "")
        return RunSelection(checkpoint=path, state=state, config=config, skipped=skipped,
                            skipped_paths=skipped_paths)
    detail = "".join(f"\n  {s}" for s in skipped)
    raise CheckpointError(f"{run_dir}: no usable checkpoint (looked for {FINAL_CHECKPOINT_NAME} and "
                          f"{TRAINING_CHECKPOINT_GLOB}){detail}")
