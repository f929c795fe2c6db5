"""Building the two trainable parts of Seed-VC v1 from a config: `cfm` (the DiT flow model) and
`length_regulator`. These names, and every key below them, are the official checkpoint format."""
from __future__ import annotations

import torch
import torch.nn as nn

from modules.flow_matching import CFM
from modules.length_regulator import LengthRegulator

PARTS = ("cfm", "length_regulator")


class SeedVCModel(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        model_params = config["model_params"]
        self.cfm = CFM(model_params)
        self.length_regulator = LengthRegulator.from_config(model_params)

    def parts(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in PARTS}


def build_model(config: dict, device: torch.device | str | None = None) -> SeedVCModel:
    """Build with random weights; load a checkpoint with modules.checkpoint.load_model_weights."""
    model = SeedVCModel(config)
    return model.to(device) if device is not None else model
