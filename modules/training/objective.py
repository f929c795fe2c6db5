"""The fine-tuning objective: one batch of clips -> the conditional flow-matching loss.

Per item, as the original train.py: the frozen front-ends give content features (from the possibly
timbre-shifted wave), F0 (F0 models) and CAM++ style over the whole clip; the length regulator maps content
to the clip's mel frames; a random prefix of each clip, of floor(U * (frames - 1)) frames and empty with
probability 0.1, is the in-context prompt, conditioned on the original (unshifted) content; the loss is the
CFM L1 on the remaining frames. Class dropout (the config's class_dropout_prob) happens inside the DiT.

The original shifts timbre with the OpenVoice V2 converter before taking the content features, so the model
cannot copy the source timbre through them. That converter is not part of this project: pass any callable as
`augmentation` to plug one in. Without it the content comes from the original wave.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from modules.audio import FRONTEND_RATE
from modules.frontends import Frontends
from modules.resample import resample
from modules.training.data import Batch
from modules.training.feature_cache import FeatureCache, clip_hash

# (wave [N] float32 at `sample_rate`, sample_rate) -> wave [N'] at the same rate, another speaker's timbre
Augmentation = Callable[[torch.Tensor, int], torch.Tensor]

PROMPT_DROP_PROB = 0.1


@dataclass
class FrozenFeatures:
    content: list[torch.Tensor]          # per item [1, T_c, D], from the augmented wave when there is one
    prompt_content: list[torch.Tensor]   # per item [1, T_c', D], from the original wave
    f0: list[torch.Tensor | None]        # per item [1, T_f0] Hz, float64 on the CPU, or None
    style: torch.Tensor                  # [B, 192]


def _clip_features(wave: torch.Tensor, frontends: Frontends, sample_rate: int) -> dict[str, torch.Tensor | None]:
    """The frozen models on one clip [N]: content [1, T_c, D], F0 [1, T_f0] (or None), style [1, 192]."""
    wave_16k = resample(wave[None], sample_rate, FRONTEND_RATE)[0]
    # F0 stays on the CPU in float64 (MPS has no float64); the length regulator moves only its quantised bins.
    f0 = torch.from_numpy(frontends.f0(wave_16k))[None] if frontends.f0 is not None else None
    return {"content": frontends.content(wave_16k), "f0": f0, "style": frontends.style(wave_16k)}


@torch.no_grad()
def frozen_features(batch: Batch, frontends: Frontends, sample_rate: int,
                    augmentation: Augmentation | None = None, cache: FeatureCache | None = None) -> FrozenFeatures:
    """Everything the frozen models contribute to a batch, item by item (no padding reaches them, and an item's
    features do not depend on the rest of its batch, so cached and computed features are the same bits).

    With `cache` and no augmentation, each clip's features are computed once and read back afterwards."""
    content, prompt_content, f0, style = [], [], [], []
    for wave, n in zip(batch.waves, batch.wave_lengths.tolist()):
        wave = wave[:n]
        entry = None
        if cache is not None and augmentation is None:
            key = clip_hash(wave)
            entry = cache.get(key)
            if entry is not None:
                entry = {k: v if v is None or k == "f0" else v.to(wave.device) for k, v in entry.items()}
            else:
                entry = _clip_features(wave, frontends, sample_rate)
                cache.put(key, entry)
        if entry is None:
            entry = _clip_features(wave, frontends, sample_rate)
        prompt_content.append(entry["content"])
        if augmentation is not None:
            shifted = augmentation(wave, sample_rate)
            content.append(frontends.content(resample(shifted[None], sample_rate, FRONTEND_RATE)[0]))
        else:
            content.append(entry["content"])
        f0.append(entry["f0"])
        style.append(entry["style"])
    return FrozenFeatures(content, prompt_content, f0, torch.cat(style))


def draw_prompt_lengths(mel_lengths: torch.Tensor) -> torch.Tensor:
    """[B] prompt frames: floor(U * (len - 1)), forced to 0 with probability 0.1. Drawn on the CPU generator,
    so a run replays identically on any device."""
    lengths = mel_lengths.cpu()
    prompt = (torch.rand(lengths.shape) * (lengths - 1)).floor().long()
    prompt[torch.rand(lengths.shape) < PROMPT_DROP_PROB] = 0
    return prompt


class FlowMatchingLoss(nn.Module):
    """The trainable parts, wrapped so one forward computes the whole loss (one DDP forward per step).

    Its state dict is not the checkpoint format; checkpoints save `cfm` and `length_regulator` themselves.
    """

    def __init__(self, cfm: nn.Module, length_regulator: nn.Module):
        super().__init__()
        self.cfm = cfm
        self.length_regulator = length_regulator

    def forward(self, mels: torch.Tensor, mel_lengths: torch.Tensor, prompt_lengths: torch.Tensor,
                features: FrozenFeatures) -> torch.Tensor:
        """mels [B, n_mels, T] (T = max length), mel_lengths / prompt_lengths [B] -> scalar loss."""
        B, _, T = mels.shape
        conditions = []
        for i in range(B):
            ylens = mel_lengths[i: i + 1]
            cond = self.length_regulator(features.content[i], ylens, f0=features.f0[i])       # [1, T_i, D]
            if features.content[i] is not features.prompt_content[i] and prompt_lengths[i] > 0:
                original = self.length_regulator(features.prompt_content[i], ylens, f0=features.f0[i])
                p = int(prompt_lengths[i])
                cond = torch.cat([original[:, :p], cond[:, p:]], dim=1)
            conditions.append(nn.functional.pad(cond, (0, 0, 0, T - cond.shape[1])))
        mu = torch.cat(conditions)                                                           # [B, T, D]
        loss, _ = self.cfm(mels, mel_lengths, prompt_lengths.to(mels.device), mu, features.style)
        return loss
