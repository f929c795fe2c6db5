"""Conditional flow matching around the DiT estimator: the training loss and the Euler sampler.

The path goes from noise z (t=0) to the mel x1 (t=1): y_t = (1 - (1 - sigma) t) z + t x1, whose velocity is
u = x1 - (1 - sigma) z. The first `prompt_len` frames hold the reference mel as an in-context prompt: they
are given to the estimator through `prompt_x`, kept at zero in the state, and never supervised.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.dit import DiT

SIGMA_MIN = 1e-6


class CFM(nn.Module):
    def __init__(self, estimator: DiT, loss_type: str = "l1", zero_prompt_speech_token: bool = False):
        """`estimator` predicts the velocity; `loss_type` is model_params.reg_loss_type (l1 or l2)."""
        super().__init__()
        self.in_channels = estimator.in_channels
        self.loss_type = loss_type
        self.zero_prompt_speech_token = zero_prompt_speech_token
        self.estimator = estimator

    def _regression_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(pred, target) if self.loss_type == "l1" else F.mse_loss(pred, target)

    def forward(self, x1: torch.Tensor, x_lens: torch.Tensor, prompt_lens: torch.Tensor, mu: torch.Tensor,
                style: torch.Tensor, t: torch.Tensor | None = None, z: torch.Tensor | None = None,
                drop_condition: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss.

        x1 [B, C, T] target mel; x_lens, prompt_lens [B]; mu [B, T, D] conditioning; style [B, S].
        t [B, 1, 1] and z [B, C, T] default to fresh draws (rand, then randn); pass them to replay a run.
        drop_condition: see DiT.forward (None draws it with the class-dropout probability in train mode).
        Returns (mean over items of the L1 (or L2) velocity error on frames [prompt_len, x_len), x1 estimate).
        """
        B = x1.shape[0]
        if t is None:
            t = torch.rand([B, 1, 1], device=x1.device, dtype=x1.dtype)
        if z is None:
            z = torch.randn_like(x1)
        y = (1 - (1 - SIGMA_MIN) * t) * z + t * x1
        u = x1 - (1 - SIGMA_MIN) * z

        frames = torch.arange(x1.shape[-1], device=x1.device)
        in_prompt = (frames[None, :] < prompt_lens.to(x1.device)[:, None])[:, None, :]  # [B, 1, T]
        prompt = torch.where(in_prompt, x1, torch.zeros_like(x1))
        y = torch.where(in_prompt, torch.zeros_like(y), y)
        if self.zero_prompt_speech_token:
            mu = torch.where(in_prompt.transpose(1, 2), torch.zeros_like(mu), mu)

        out = self.estimator(y, prompt, x_lens, t.reshape(B), style, mu, drop_condition=drop_condition)
        loss = sum(self._regression_loss(out[b, :, prompt_lens[b]:x_lens[b]], u[b, :, prompt_lens[b]:x_lens[b]])
                   for b in range(B)) / B
        return loss, out + (1 - SIGMA_MIN) * z

    @torch.no_grad()
    def inference(self, mu: torch.Tensor, x_lens: torch.Tensor, prompt: torch.Tensor, style: torch.Tensor,
                  n_timesteps: int, temperature: float = 1.0, inference_cfg_rate: float = 0.5,
                  noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Sample a mel with the Euler solver.

        mu [B, T, D] conditioning for prompt + source frames; x_lens [B] (or [1]); prompt [B, C, P] reference
        mel for the first P frames; style [B, S]. The initial noise is `noise` [B, C, T] if given, else drawn
        from `generator` (or the global RNG), times `temperature`.
        With inference_cfg_rate r > 0 the conditional and the null (no prompt, style or content) velocities
        come from one batched call: v = (1 + r) v_cond - r v_null. With r == 0 a single pass is made.
        Returns [B, C, T]; the P prompt frames are zero (callers slice them off).
        """
        B, T = mu.shape[0], mu.shape[1]
        if noise is None:
            noise = torch.randn([B, self.in_channels, T], device=mu.device, generator=generator) * temperature
        x = noise.to(device=mu.device, dtype=mu.dtype).clone()
        P = prompt.shape[-1]
        prompt_x = torch.zeros_like(x)
        prompt_x[..., :P] = prompt
        x[..., :P] = 0
        if self.zero_prompt_speech_token:
            mu = mu.clone()
            mu[:, :P] = 0

        cfg_lens = torch.cat([x_lens, x_lens]) if x_lens.numel() > 1 else x_lens  # [1] broadcasts
        t_span = torch.linspace(0, 1, n_timesteps + 1, device=mu.device)
        t = t_span[0]
        for step in range(1, n_timesteps + 1):
            dt = t_span[step] - t_span[step - 1]
            if inference_cfg_rate > 0:
                v_cond, v_null = self.estimator(
                    torch.cat([x, x]), torch.cat([prompt_x, torch.zeros_like(prompt_x)]), cfg_lens,
                    t.expand(2 * B), torch.cat([style, torch.zeros_like(style)]),
                    torch.cat([mu, torch.zeros_like(mu)])).chunk(2)
                v = (1.0 + inference_cfg_rate) * v_cond - inference_cfg_rate * v_null
            else:
                v = self.estimator(x, prompt_x, x_lens, t.expand(B), style, mu)
            x = x + dt * v
            t = t + dt  # accumulated in float32, as the original does (not read back from t_span)
            x[:, :, :P] = 0
            if on_step is not None:
                on_step(step, n_timesteps)
        return x
