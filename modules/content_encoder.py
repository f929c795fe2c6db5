"""Content features: what is said, with as little of who says it as possible, at 50 frames/s.

Two encoders, chosen by the config's `model_params.speech_tokenizer.type`:
  whisper  transformers' Whisper encoder (decoder dropped) on its 30 s log-mel window; e.g. openai/whisper-small
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

from modules.audio import FRONTEND_RATE
from modules.config import CONTENT_ENCODER_TYPES

FRAME_RATE = 50                  # feature frames per second (hop 320 at 16 kHz)
WINDOW_SECONDS = 30
OVERLAP_SECONDS = 5


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
        self.dim = model.config.d_model if kind == "whisper" else model.config.hidden_size

    @torch.no_grad()
    def encode_window(self, wave_16k: torch.Tensor) -> torch.Tensor:
        """One window of at most 30 s: [N] -> [1, T, dim]."""
        audio = [wave_16k.detach().float().cpu().numpy()]
        if self.kind == "whisper":
            with torch.autocast("cpu", enabled=False):  # the log-mel stays fp32 under a caller's bf16 autocast
                inputs = self.feature_extractor(audio, sampling_rate=FRONTEND_RATE, return_tensors="pt",
                                                return_attention_mask=True)
            # The log-mel covers a zero-padded 30 s window; keep the frames that cover the audio.
            features = self.model._mask_input_features(inputs.input_features, attention_mask=inputs.attention_mask)
            hidden = self.model.encoder(features.to(self.device, self.dtype), head_mask=None,
                                        return_dict=True).last_hidden_state
            return hidden.float()[:, : wave_16k.shape[-1] // 320 + 1]
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


def _whisper_encoder_only(model_dir: Path):
    """WhisperModel without its decoder, whose encoder takes its tensors straight from `model.safetensors`:
    the decoder's tensors (more than half of the file) are never read. None when the directory holds no
    safetensors file or its encoder keys differ (then transformers' own loading, with its key conversions,
    is used)."""
    from safetensors import safe_open
    from transformers import WhisperConfig, WhisperModel

    from modules.weights import assign_state, build_empty

    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        return None
    model = build_empty(lambda: WhisperModel(WhisperConfig.from_pretrained(model_dir)))
    del model.decoder
    wanted = set(model.encoder.state_dict())
    state = {}
    with safe_open(str(weights), framework="pt") as f:
        # WhisperModel files name keys encoder.*; WhisperForConditionalGeneration ones (openai/*) model.encoder.*
        for key in f.keys():
            name = key.removeprefix("model.")
            if name.startswith("encoder.") and name[len("encoder."):] in wanted:
                state[name[len("encoder."):]] = f.get_tensor(key)
    if set(state) != wanted:
        return None
    assign_state(model.encoder, state)
    return model if not any(t.is_meta for t in model.state_dict().values()) else None


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
        from transformers import WhisperFeatureExtractor, WhisperModel
        model = _whisper_encoder_only(Path(source)) if Path(source).is_dir() else None
        if model is None:
            with _quiet_transformers():
                model = WhisperModel.from_pretrained(source)
            del model.decoder  # only the encoder is used
        return ContentEncoder(kind, model, WhisperFeatureExtractor.from_pretrained(source), device, fp16)
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    with _quiet_transformers():
        model = Wav2Vec2Model.from_pretrained(source)
    model.encoder.layers = model.encoder.layers[: speech_tokenizer.get("output_layer", len(model.encoder.layers))]
    return ContentEncoder(kind, model, Wav2Vec2FeatureExtractor.from_pretrained(source), device, fp16)
