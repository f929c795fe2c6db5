"""Weight normalisation with the legacy parameter names (`weight_g`, `weight_v`) that official Seed-VC,
BigVGAN and HiFT checkpoints store, and folding it away for inference."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch.nn.utils import remove_weight_norm, weight_norm
from torch.nn.utils.weight_norm import WeightNorm


def legacy_weight_norm(module: nn.Module) -> nn.Module:
    # torch's parametrization-based replacement renames the keys, which would break strict loading.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return weight_norm(module)


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every weight_g/weight_v pair by the plain weight it defines (same outputs, less work)."""
    for module in model.modules():
        if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
            remove_weight_norm(module)
    return model


def fold_weight_norm_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Fold weight norm in a state dict instead of a model, for loading without holding both forms.

    For every weight-normed module of `model` (usually built on the meta device), the `weight_g`/`weight_v`
    entries of `state` are replaced in place by the plain weight they define, one pair at a time (so each pair
    is freed before the next weight is computed), and the module's weight norm is removed, so that `state`
    then fits the folded `model`. Same arithmetic as fold_weight_norm: torch._weight_norm(v, g, dim).
    """
    for name, module in model.named_modules():
        for hook in [h for h in module._forward_pre_hooks.values() if isinstance(h, WeightNorm)]:
            key = f"{name}.{hook.name}" if name else hook.name
            g, v = state.pop(key + "_g"), state.pop(key + "_v")
            state[key] = torch._weight_norm(v, g, hook.dim)
            del g, v
            remove_weight_norm(module, hook.name)
