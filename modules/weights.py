"""Reading weight files safely and loading them strictly: one place for every pretrained part.

Weight files are untrusted input: they are read with `torch.load(weights_only=True)`, which accepts tensors
and plain containers and refuses pickled code. Loading is strict: every missing, unexpected or mis-shaped key
is reported in one error, instead of torch's first-failure message or the original's silent skipping.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from modules.errors import UserError


class WeightsError(UserError, RuntimeError):
    """A weights file cannot be read, or its tensors do not fit the model."""


def read_weights(path: str | Path, what: str = "weights", error: type[Exception] = WeightsError) -> Any:
    """torch.load onto the CPU, tensors and plain containers only; a clear error naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickled code, not a torch file: all mean "unusable"
        raise error(f"{path}: not a readable {what} file ({type(e).__name__}: {e})") from e


def state_dict_diff(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                    prefix: str = "") -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped "key: given vs expected") between two state dicts."""
    missing = [prefix + k for k in expected if k not in given]
    unexpected = [prefix + k for k in given if k not in expected]
    mismatched = [f"{prefix}{k}: {tuple(given[k].shape)} vs {tuple(v.shape)}"
                  for k, v in expected.items() if k in given and tuple(given[k].shape) != tuple(v.shape)]
    return missing, unexpected, mismatched


def describe_diff(missing: list[str], unexpected: list[str], mismatched: list[str], limit: int = 12) -> str:
    def show(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    parts = [f"{label} ({len(items)}): {show(items)}" for label, items in
             (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)) if items]
    return "; ".join(parts)


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str,
                      error: type[Exception] = WeightsError) -> None:
    """model.load_state_dict(state, strict=True), after checking everything and reporting it in one error."""
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise error(f"{source}: expected a flat state dict of tensors for {what}, got {type(state).__name__}")
    diff = state_dict_diff(model.state_dict(), state)
    if any(diff):
        raise error(f"{source}: weights do not fit {what}: {describe_diff(*diff)}")
    model.load_state_dict(state, strict=True)
