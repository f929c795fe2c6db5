"""Vocoders: log-mel -> waveform, always in fp32 (fp16 vocoding sounds robotic; see the original's issue #71).

    vocoder = load_vocoder(config, hub.resolve_vocoder(config), device)
    wave = vocoder(mel)                     # [B, n_mels, T] -> [B, 1, T * hop]
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from modules.vocoders.bigvgan import BigVGAN, load_bigvgan
from modules.vocoders.hift import HiFTGenerator, build_hift, load_hift

__all__ = ["BigVGAN", "HiFTGenerator", "Vocoder", "build_hift", "load_bigvgan", "load_hift", "load_vocoder"]


class Vocoder(nn.Module):
    """A common face for BigVGAN and HiFT, which share one call signature: generator(mel, generator=None) ->
    [B, 1, N]; run in fp32 under any autocast."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator
        self.hop_length = generator.hop_length

    @torch.no_grad()
    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.autocast(mel.device.type, enabled=False):
            return self.generator(mel.float(), generator=generator)


def load_vocoder(config: Mapping, files: Mapping[str, Path], device: torch.device | str = "cpu") -> Vocoder:
    """The vocoder a config names (`model_params.vocoder.type`), from resolved files {'config', 'weights'}."""
    kind = config["model_params"]["vocoder"]["type"]
    if kind == "bigvgan":
        return Vocoder(load_bigvgan(config_path=files["config"], weights_path=files["weights"], device=device))
    if kind == "hifigan":
        return Vocoder(load_hift(files["config"], files["weights"], device))
    raise ValueError(f"model_params.vocoder.type {kind!r} is not supported; choose bigvgan or hifigan")
