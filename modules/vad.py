"""Voice activity: Silero VAD (v5/v6 network) in plain torch, with the weights the `silero-vad` wheel ships.

The wheel's own loader runs TorchScript and, on import, calls torch.set_num_threads(1) for the whole process;
neither is wanted here, so the package is only located (never imported) and its safetensors file read.

    vad = SileroVAD.from_package()
    detector = VoiceActivity(vad)                  # one per stream: keeps the LSTM state and leftover samples
    probability = detector.push(block_16k)         # the highest speech probability among the block's frames
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
FRAME = 512              # samples per decision (32 ms at 16 kHz)
CONTEXT = 64             # samples of the previous frame the network sees in front of each frame
WEIGHTS_FILE = "silero_vad_16k.safetensors"


class VADError(RuntimeError):
    """The VAD weights cannot be found or read; the message says how to install them."""


def package_weights() -> Path:
    """The 16 kHz weights inside the installed `silero-vad` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VADError("voice activity needs the silero-vad package: pip install 'silero-vad>=6,<7'")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS_FILE
    if not path.is_file():
        raise VADError(f"{path} is missing; reinstall silero-vad (pip install --force-reinstall 'silero-vad>=6,<7')")
    return path


class SileroVAD(nn.Module):
    """[B, CONTEXT + FRAME] samples, state [2, B, 128] -> (speech probability [B, 1], new state)."""

    def __init__(self):
        super().__init__()
        # A fixed STFT as a convolution: 129 real + 129 imaginary filters of 256 taps, hop 128.
        self.stft_conv = nn.Conv1d(1, 258, 256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm_cell = nn.LSTMCell(128, 128)
        self.final_conv = nn.Conv1d(128, 1, 1)

    @classmethod
    def from_package(cls) -> SileroVAD:
        from safetensors.torch import load_file
        model = cls()
        model.load_state_dict(load_file(str(package_weights())), strict=True)
        return model.eval()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x, (0, CONTEXT), mode="reflect")[:, None]                  # [B, 1, 640]
        spec = self.stft_conv(x)                                              # [B, 258, 4]
        x = torch.sqrt(spec[:, :129] ** 2 + spec[:, 129:] ** 2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))                                           # -> [B, 128, 1]
        hidden = None if state is None else (state[0], state[1])
        h, c = self.lstm_cell(x[..., 0], hidden)
        probability = torch.sigmoid(self.final_conv(torch.relu(h)[..., None])).mean(dim=-1)   # [B, 1]
        return probability, torch.stack([h, c])


class VoiceActivity:
    """One stream's detector: 16 kHz samples in any block sizes, a speech probability per block."""

    def __init__(self, model: SileroVAD):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.state: torch.Tensor | None = None
        self.context = np.zeros(CONTEXT, np.float32)
        self.pending = np.zeros(0, np.float32)
        self.last_probability = 0.0

    def push(self, wave_16k: np.ndarray) -> float:
        """The highest probability among the whole frames completed by this block (the previous block's
        value when it completes none)."""
        samples = np.concatenate([self.pending, np.asarray(wave_16k, np.float32)])
        n_frames = samples.size // FRAME
        self.pending = samples[n_frames * FRAME:]
        if n_frames == 0:
            return self.last_probability
        best = 0.0
        for index in range(n_frames):
            frame = samples[index * FRAME:(index + 1) * FRAME]
            window = torch.from_numpy(np.concatenate([self.context, frame]))[None]
            probability, self.state = self.model(window, self.state)
            best = max(best, float(probability))
            self.context = frame[-CONTEXT:]
        self.last_probability = best
        return best
