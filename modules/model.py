"""Building the two trainable parts of Seed-VC v1 from a config: `cfm` (the DiT flow model) and
`length_regulator`. These names, and every key below them, are the official checkpoint format."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from modules.config import ModelConfig
from modules.dit import DiT
from modules.flow_matching import CFM
from modules.length_regulator import LengthRegulator

PARTS = ("cfm", "length_regulator")


class SeedVCModel(nn.Module):
    def __init__(self, config: Mapping | ModelConfig):
        """`config`: a loaded config dict (modules.config.load_config) or its ModelConfig view."""
        super().__init__()
        view = config if isinstance(config, ModelConfig) else ModelConfig.from_config(config)
        self.config = view
        estimator = DiT(view.dit, view.style_dim, view.wavenet)
        self.cfm = CFM(estimator, view.reg_loss_type, view.dit.zero_prompt_speech_token)
        self.length_regulator = LengthRegulator.from_config(view.length_regulator)

    def parts(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in PARTS}


def build_model(config: Mapping | ModelConfig, device: torch.device | str | None = None) -> SeedVCModel:
    """Build with random weights; load a checkpoint with modules.checkpoint.load_model_weights."""
    model = SeedVCModel(config)
    return model.to(device) if device is not None else model
