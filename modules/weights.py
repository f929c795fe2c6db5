"""Reading weight files safely and loading them strictly: one place for every pretrained part.

Weight files are untrusted input: they are read with `torch.load(weights_only=True)`, which accepts tensors
and plain containers and refuses pickled code. Loading is strict: every missing, unexpected or mis-shaped key
is reported in one error, instead of torch's first-failure message or the original's silent skipping.

Memory: files are memory-mapped where the format allows (`mmap=True`, zip-format files), and a model built on
the `meta` device (`build_empty`) takes the file's tensors as its own (`load_state_dict(assign=True)`), so the
weights exist once, not once in the model and once in the loaded state dict. A mapped file backs the model's
tensors while it is in use: replace weight files by renaming a new file into place (as every writer in this
project does), never by rewriting them in place under a running process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import torch
import torch.nn as nn

from modules.errors import UserError

M = TypeVar("M", bound=nn.Module)



class WeightsError(UserError, RuntimeError):
    """A weights file cannot be read, or its tensors do not fit the model."""


def read_weights(path: str | Path, what: str = "weights", error: type[Exception] = WeightsError, *,
                 mmap: bool = True) -> Any:
    """torch.load onto the CPU, tensors and plain containers only; a clear error naming the file otherwise.

    mmap: map the file instead of copying its tensors into fresh memory (for tensors used as they are; a
    caller that replaces them, e.g. by folding weight norm, passes False so the originals can be freed).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    if mmap:
        try:
            # Legacy (non-zip) files cannot be mapped; a damaged file is re-read plainly below, so its error
            # message is the same with and without mapping.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickled code, not a torch file: all mean "unusable"
        raise error(f"{path}: not a readable {what} file ({type(e).__name__}: {e})") from e


def has_meta_tensors(module: nn.Module) -> bool:
    return any(t.is_meta for t in module.state_dict().values())


def build_empty(factory: Callable[[], M]) -> M:
    """factory() on the meta device: the module's structure without allocating or initialising its weights.
    Fill it with load_state_strict (which then takes the given tensors as the module's own)."""
    with torch.device("meta"):
        return factory()


def fitted_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with each tensor in the dtype the model holds it in (assign=True would otherwise keep the
    file's dtype); a tensor already in that dtype is passed through, not copied."""
    own = model.state_dict()
    return {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}


def assign_state(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> None:
    """load_state_dict, taking the tensors themselves (no copy) when the model was built by build_empty."""
    if has_meta_tensors(model):
        model.load_state_dict(fitted_state(model, state), strict=strict, assign=True)
        left = [k for k, v in model.state_dict().items() if v.is_meta]
        if left:  # only possible with strict=False: the caller must build normally for a partial load
            raise RuntimeError(f"tensors left without values after loading an empty model: {', '.join(left[:8])}")
    else:
        model.load_state_dict(state, strict=strict)


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


def check_state_strict(model: nn.Module, state: Any, what: str, source: str,
                       error: type[Exception] = WeightsError) -> None:
    """Raise one error listing every missing, unexpected and mis-shaped key of `state` against `model`."""
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise error(f"{source}: expected a flat state dict of tensors for {what}, got {type(state).__name__}")
    diff = state_dict_diff(model.state_dict(), state)
    if any(diff):
        raise error(f"{source}: weights do not fit {what}: {describe_diff(*diff)}")


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str,
                      error: type[Exception] = WeightsError) -> None:
    """model.load_state_dict(state, strict=True), after checking everything and reporting it in one error."""
    check_state_strict(model, state, what, source, error)
    assign_state(model, state)


def weights_nbytes(module: nn.Module) -> int:
    """Bytes of the parameters and buffers a module holds (each storage counted once)."""
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total
