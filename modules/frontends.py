"""The frozen models around the DiT, by role, and how a config builds them.

Every role is a torch module with one call signature (all take 16 kHz mono audio, FRONTEND_RATE):

    content  ContentEncoder   wave [N] -> content features [1, T, D] float32        modules/content_encoder.py
    style    StyleEncoder     wave [N] -> CAM++ speaker style [1, 192]                modules/style_encoder.py
    f0       F0Extractor      wave [N] -> f0 Hz, float64 numpy [N // 160 + 1]         modules/f0 (RMVPE, FCPE)
    vocoder  Vocoder          mel [B, n_mels, T], generator=None -> wave [B, 1, T*hop] modules/vocoders (model rate)

Conversion (modules/pipeline.py) uses all four; fine-tuning (modules/training) uses all but the vocoder.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

import torch
import torch.nn as nn

from modules import hub
from modules.audio import FRONTEND_RATE
from modules.config import ModelConfig
from modules.content_encoder import load_content_encoder
from modules.devices import same_device
from modules.f0 import load_f0_extractor
from modules.style_encoder import StyleEncoder, load_campplus
from modules.vocoders import load_vocoder

__all__ = ["FRONTEND_RATE", "Frontends", "build_frontends"]

ROLE_NAMES = {"content": "content encoder", "style": "style encoder", "f0": "F0 extractor", "vocoder": "vocoder"}


@dataclass
class Frontends:
    content: nn.Module
    style: nn.Module
    vocoder: nn.Module | None     # None when built for training
    f0: nn.Module | None = None   # F0-conditioned models only

    def __post_init__(self) -> None:
        for role, part in self.modules().items():
            if not isinstance(part, nn.Module):
                raise TypeError(f"the {ROLE_NAMES[role]} must be a torch module (see modules/frontends.py), "
                                f"got {type(part).__name__}")

    def modules(self) -> dict[str, nn.Module]:
        """The front-ends by role; a role without one (None) is left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def misplaced(self, device: torch.device) -> str | None:
        """A sentence naming the first front-end with a weight not on `device`, or None when all are there."""
        for role, module in self.modules().items():
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if not same_device(tensor.device, device):
                    return (f"the {ROLE_NAMES[role]} is on {tensor.device} ({name}) but the converter runs on "
                            f"{device}: build the front-ends for {device} (build_frontends(config, device))")
        return None


def build_frontends(cfg: Mapping, device: torch.device, *, f0_extractor: str | None = None,
                    vocoder: bool = True, fp16: bool = True) -> tuple[Frontends, str | None]:
    """The front-ends a loaded config names, all on `device`: the content encoder, CAM++, the F0 extractor (F0
    models only, at its own default voicing threshold) and the vocoder (training passes vocoder=False).
    fp16=False keeps the content encoder in fp32 on CUDA too. Returns them with the F0 extractor's kind."""
    content = load_content_encoder(cfg["model_params"]["speech_tokenizer"], hub.resolve_content_encoder(cfg), device,
                                   fp16=fp16)
    style = StyleEncoder(load_campplus(hub.resolve_campplus(cfg), device))
    f0, f0_kind = None, None
    if ModelConfig.from_config(cfg).f0_condition:
        f0_kind = hub.f0_extractor_type(cfg, f0_extractor)
        f0 = load_f0_extractor(f0_kind, hub.resolve_f0_model(cfg, f0_kind), device)
    return Frontends(content=content, style=style,
                     vocoder=load_vocoder(cfg, hub.resolve_vocoder(cfg), device) if vocoder else None,
                     f0=f0), f0_kind
