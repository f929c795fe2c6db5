"""Content features: what is said, with as little of who says it as possible, at 50 frames/s.

Two encoders, chosen by the config's `model_params.speech_tokenizer.type`:
  whisper  Whisper's encoder (WhisperEncoder below; the decoder is never read) on its 30 s log-mel window, with
           transformers' feature extractor; e.g. openai/whisper-small
  xlsr     wav2vec2 / XLS-R truncated to its first `output_layer` transformer layers; facebook/wav2vec2-xls-r-300m
`name` is a transformers model directory (hub downloads are resolved by modules.hub). Audio longer than 30 s
is encoded in 30 s windows overlapping by 5 s, and the first 5 s of features of every later window dropped,
as the original does.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.audio import FRONTEND_RATE
from modules.config import CONTENT_ENCODER_TYPES
from modules.linear import Linear

FRAME_RATE = 50                  # feature frames per second (hop 320 at 16 kHz)
WINDOW_SECONDS = 30
OVERLAP_SECONDS = 5


class WhisperEncoderLayer(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x)))). Names follow transformers' keys."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int):
        super().__init__()
        self.n_heads = n_heads
        self.self_attn = nn.Module()
        self.self_attn.q_proj = Linear(dim, dim)
        self.self_attn.k_proj = Linear(dim, dim, bias=False)
        self.self_attn.v_proj = Linear(dim, dim)
        self.self_attn.out_proj = Linear(dim, dim)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = Linear(dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """x [B, T, D] -> [B, Q, D]: the first Q = `queries` (default T) positions, each attending to all T."""
        attn = self.self_attn
        B, T, D = x.shape
        Q = T if queries is None else queries
        h = self.self_attn_layer_norm(x)
        heads = lambda t: t.view(B, t.shape[1], self.n_heads, -1).transpose(1, 2)       # [B, H, ., D / H]
        q, k, v = heads(attn.q_proj(h[:, :Q])), heads(attn.k_proj(h)), heads(attn.v_proj(h))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, Q, D)
        x = x[:, :Q] + attn.out_proj(y)
        x = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == torch.float16:  # as transformers does in half precision: keep activations finite
            limit = torch.finfo(torch.float16).max - 1000
            x = x.clamp(-limit, limit)
        return x


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: log-mel [B, n_mels, 2 P] (the 30 s window) -> [B, frames, D] at 50 frames/s.

    Two GELU convs (the second halves the frame rate), learned positions, pre-norm blocks, a final LayerNorm.
    Module names are the `encoder.*` keys of transformers' Whisper checkpoints. Only the first `frames` outputs
    are wanted (the audio's; the rest cover padding), so the last block computes only those queries.
    """

    def __init__(self, n_mels: int, dim: int, n_layers: int, n_heads: int, ffn_dim: int, positions: int):
        super().__init__()
        self.dim = dim
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(positions, dim)
        self.layers = nn.ModuleList(WhisperEncoderLayer(dim, n_heads, ffn_dim) for _ in range(n_layers))
        self.layer_norm = nn.LayerNorm(dim)

    @classmethod
    def from_config(cls, config) -> "WhisperEncoder":
        """From a transformers WhisperConfig (read from the model folder's config.json)."""
        if config.activation_function != "gelu":
            raise ValueError(f"Whisper config: activation_function {config.activation_function!r} is not supported "
                             "(only 'gelu')")
        return cls(config.num_mel_bins, config.d_model, config.encoder_layers, config.encoder_attention_heads,
                   config.encoder_ffn_dim, config.max_source_positions)

    def forward(self, features: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        positions = self.embed_positions.num_embeddings
        if features.shape[-1] != 2 * positions:
            raise ValueError(f"Whisper's encoder takes a log-mel of {2 * positions} frames (30 s), got "
                             f"{features.shape[-1]}")
        x = F.gelu(self.conv2(F.gelu(self.conv1(features))))                 # [B, D, P]
        x = x.transpose(1, 2) + self.embed_positions.weight                  # [B, P, D]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, frames if i == last else None)
        return self.layer_norm(x)


class ContentEncoder(nn.Module):
    """16 kHz mono wave [N] -> content features [1, T, dim] (float32)."""

    def __init__(self, kind: str, model: nn.Module, feature_extractor, device: torch.device | str = "cpu",
                 fp16: bool = True):
        super().__init__()
        self.kind = kind
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.device = torch.device(device)
        # fp16 only on CUDA (as the original runs it) unless turned off; fp32 elsewhere, where half is slow or
        # unsupported.
        self.dtype = torch.float16 if fp16 and self.device.type == "cuda" else torch.float32
        self.model.to(self.device, self.dtype)
        self.dim = model.dim if kind == "whisper" else model.config.hidden_size

    @torch.no_grad()
    def encode_window(self, wave_16k: torch.Tensor) -> torch.Tensor:
        """One window of at most 30 s: [N] -> [1, T, dim]."""
        audio = [wave_16k.detach().float().cpu().numpy()]
        if self.kind == "whisper":
            with torch.autocast("cpu", enabled=False):  # the log-mel stays fp32 under a caller's bf16 autocast
                inputs = self.feature_extractor(audio, sampling_rate=FRONTEND_RATE, return_tensors="pt",
                                                return_attention_mask=True)
            # The log-mel covers a zero-padded 30 s window; keep the frames that cover the audio.
            frames = min(wave_16k.shape[-1] // 320 + 1, self.model.embed_positions.num_embeddings)
            return self.model(inputs.input_features.to(self.device, self.dtype), frames).float()
        inputs = self.feature_extractor(audio, sampling_rate=FRONTEND_RATE, return_tensors="pt",
                                        return_attention_mask=True, padding=True)
        return self.model(inputs.input_values.to(self.device, self.dtype)).last_hidden_state.float()

    def forward(self, wave_16k: torch.Tensor) -> torch.Tensor:
        wave_16k = wave_16k.reshape(-1)
        window, overlap = FRONTEND_RATE * WINDOW_SECONDS, FRONTEND_RATE * OVERLAP_SECONDS
        if wave_16k.shape[-1] <= window:
            return self.encode_window(wave_16k)
        # First window: 30 s. Each later one: the last 5 s of the previous window + the next 25 s, whose first
        # 5 s of features (250 frames) are dropped, so every kept frame saw some left context.
        pieces = [self.encode_window(wave_16k[:window])]
        start = window
        while start < wave_16k.shape[-1]:
            chunk = wave_16k[start - overlap: start + window - overlap]
            pieces.append(self.encode_window(chunk)[:, FRAME_RATE * OVERLAP_SECONDS:])
            start += window - overlap
        return torch.cat(pieces, dim=1)


@contextmanager
def _quiet_transformers():
    # Loading Whisper without its decoder makes transformers print a long "missing keys" report; it is expected.
    from transformers.utils import logging as hf_logging
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_whisper_encoder(source: str) -> WhisperEncoder:
    """The encoder of a transformers Whisper model (folder or hub id), strictly. From a folder's
    `model.safetensors` only the encoder's tensors are read (the decoder is more than half the file) and
    transformers' modelling code is never imported; other layouts go through transformers' own loading."""
    from transformers import WhisperConfig

    from modules.weights import assign_state, build_empty, check_state_strict

    weights = Path(source) / "model.safetensors"
    encoder = build_empty(lambda: WhisperEncoder.from_config(WhisperConfig.from_pretrained(source)))
    wanted, state = set(encoder.state_dict()), {}
    if weights.is_file():
        from safetensors import safe_open
        with safe_open(str(weights), framework="pt") as f:
            # WhisperModel files name keys encoder.*; WhisperForConditionalGeneration ones (openai/*) model.encoder.*
            for key in f.keys():
                name = key.removeprefix("model.")
                if name.startswith("encoder.") and name[len("encoder."):] in wanted:
                    state[name[len("encoder."):]] = f.get_tensor(key)
    if set(state) != wanted:  # no safetensors file, or other key names: transformers converts them
        from transformers import WhisperModel
        with _quiet_transformers():
            state = WhisperModel.from_pretrained(source).encoder.state_dict()
    check_state_strict(encoder, state, "Whisper's encoder", source)
    assign_state(encoder, state)
    return encoder


def load_content_encoder(speech_tokenizer: Mapping, model_dir: str | Path | None = None,
                         device: torch.device | str = "cpu", fp16: bool = True) -> ContentEncoder:
    """Build the encoder a config's `speech_tokenizer` block names, from `model_dir` (default: its `name`).
    fp16: run it in half precision on CUDA (ignored on other devices)."""
    kind = speech_tokenizer.get("type")
    if kind not in CONTENT_ENCODER_TYPES:
        raise ValueError(f"model_params.speech_tokenizer.type {kind!r} is not supported; "
                         f"choose one of {', '.join(CONTENT_ENCODER_TYPES)}")
    source = str(model_dir or speech_tokenizer["name"])
    if kind == "whisper":
        from transformers import WhisperFeatureExtractor
        return ContentEncoder(kind, load_whisper_encoder(source), WhisperFeatureExtractor.from_pretrained(source),
                              device, fp16)
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    with _quiet_transformers():
        model = Wav2Vec2Model.from_pretrained(source)
    model.encoder.layers = model.encoder.layers[: speech_tokenizer.get("output_layer", len(model.encoder.layers))]
    return ContentEncoder(kind, model, Wav2Vec2FeatureExtractor.from_pretrained(source), device, fp16)
