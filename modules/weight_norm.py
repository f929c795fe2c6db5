"""Weight normalisation with the legacy parameter names (`weight_g`, `weight_v`) that official Seed-VC,
BigVGAN and HiFT checkpoints store, and folding it away for inference."""
from __future__ import annotations

import warnings

import torch.nn as nn
from torch.nn.utils import remove_weight_norm, weight_norm


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
