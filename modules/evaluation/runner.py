"""Scoring items with the metric models, each loaded once and only when first needed.

    evaluator = Evaluator(["secs", "wer", "dnsmos"])        # nothing loaded yet
    result = evaluator.evaluate(items)                      # rows (one per item), failures, model cards
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from modules.audio import AudioError, load_audio
from modules.evaluation.common import EVAL_RATE, EvaluationError, MetricUnavailableError
from modules.evaluation.pairing import SOURCE_BASELINE, Item
from modules.evaluation.speaker import NoSpeechError
from modules.pipeline import pick_device
from modules.resample import resample

log = logging.getLogger(__name__)

METRICS = ("secs", "wer", "dnsmos", "f0", "secs_wavlm")
DEFAULT_METRICS = ("secs", "wer", "dnsmos")
# Output columns of each metric, in table order.
COLUMNS = {"secs": ["secs"], "secs_wavlm": ["secs_wavlm"], "wer": ["wer", "cer"],
           "dnsmos": ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"], "f0": ["f0_corr", "f0_rmse_cents"]}
Progress = Callable[[float, str], None]


@dataclass
class EvaluationResult:
    rows: list[dict]                                   # one per item that could be scored
    failures: list[tuple[str, str]]                    # (what, why) for items skipped
    cards: list[dict]                                  # model and version of every metric used
    columns: list[str] = field(default_factory=list)   # metric columns present in the rows


def parse_metrics(spec: str | Sequence[str]) -> list[str]:
    names = [m.strip().lower() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise EvaluationError(f"unknown metric(s) {unknown or spec!r}; choose from {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


class Evaluator:
    """Holds the metric models (built lazily, once) and scores items; per-file caches live for one call."""

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, *, device: str | torch.device | None = None,
                 f0_extractor: str = "fcpe", f0_weights: str | Path | None = None, wavlm_repo: str | None = None):
        self.metrics = parse_metrics(metrics)
        self.device = pick_device(str(device) if device else None)
        if self.device.type == "mps":   # none of the metric runtimes has an MPS path worth the float64 caveats
            self.device = torch.device("cpu")
        self.f0_extractor, self.f0_weights, self.wavlm_repo = f0_extractor, f0_weights, wavlm_repo
        self._models: dict[str, object] = {}

    def with_metrics(self, metrics: Sequence[str]) -> "Evaluator":
        """An evaluator for other metrics that shares this one's loaded models."""
        other = Evaluator(metrics, device=self.device, f0_extractor=self.f0_extractor, f0_weights=self.f0_weights,
                          wavlm_repo=self.wavlm_repo)
        other._models = self._models
        return other

    def model(self, name: str):
        """The model behind a metric, loaded on first use."""
        if name not in self._models:
            from modules.evaluation import intelligibility, pitch, quality, speaker
            log.info("loading the %s model on %s", name, self.device)
            if name == "secs":
                self._models[name] = speaker.ResemblyzerSECS(self.device)
            elif name == "secs_wavlm":
                kwargs = {"repo": self.wavlm_repo} if self.wavlm_repo else {}
                self._models[name] = speaker.WavLMSECS(self.device, **kwargs)
            elif name == "wer":
                self._models[name] = intelligibility.WhisperASR(self.device)
            elif name == "dnsmos":
                self._models[name] = quality.DNSMOS(self.device)
            elif name == "f0":
                self._models[name] = pitch.F0Metrics(self.f0_extractor, self.f0_weights, self.device)
            else:
                raise EvaluationError(f"unknown metric {name!r}")
        return self._models[name]

    def cards(self) -> list[dict]:
        return [self.model(name).card.as_dict() for name in self.metrics]

    # ------------------------------------------------------------------------------------------ scoring
    def evaluate(self, items: Sequence[Item], *, progress: Progress | None = None,
                 show_bar: bool = True) -> EvaluationResult:
        for name in self.metrics:   # load everything before the first file, so a missing model fails at once
            self.model(name)
        cache: dict[tuple, object] = {}
        rows, failures = [], []
        bar = tqdm(items, desc="evaluating", unit="clip", disable=not show_bar or len(items) < 2)
        for index, item in enumerate(bar):
            if progress is not None:
                progress(index / max(len(items), 1), f"scoring {index + 1}/{len(items)}: {item.source.name}")
            what = f"{item.setting}: {item.converted_name or item.source}"
            try:
                rows.append(self.score(item, cache))
            except (AudioError, ValueError, OSError, RuntimeError) as e:
                failures.append((what, str(e)))
                tqdm.write(f"SKIPPED {what}: {e}")
        columns = [c for name in self.metrics for c in COLUMNS[name] if any(c in row for row in rows)]
        return EvaluationResult(rows, failures, self.cards(), columns)

    def _wave(self, path: Path, role: str, cache: dict) -> np.ndarray:
        key = ("wave", str(path))
        if key not in cache:
            cache[key] = load_audio(path, EVAL_RATE, role=role)
        return cache[key]

    def _cached(self, cache: dict, key: tuple, compute: Callable):
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def score(self, item: Item, cache: dict | None = None) -> dict:
        cache = {} if cache is None else cache
        source = self._wave(item.source, "source", cache)
        reference = self._wave(item.reference, "reference", cache)
        baseline = item.converted is None
        if baseline:
            converted = source
        elif isinstance(item.converted, Path):
            converted = load_audio(item.converted, EVAL_RATE, role="converted")
        else:
            wave, rate = item.converted
            converted = resample(torch.from_numpy(np.asarray(wave, dtype=np.float32)), rate, EVAL_RATE).numpy()
            if converted.size == 0 or not np.isfinite(converted).all():
                raise AudioError("the converted audio is empty or not finite")
        row: dict = {"setting": item.setting, "source": str(item.source), "reference": str(item.reference),
                     "converted": item.converted_name}
        for name in ("secs", "secs_wavlm"):
            if name in self.metrics:
                model = self.model(name)
                try:
                    ref_embedding = self._cached(cache, (name, str(item.reference)),
                                                 lambda m=model: m.embed(reference))
                    row[name] = model.similarity(ref_embedding, model.embed(converted))
                except NoSpeechError as e:   # that metric is undefined for this clip; the others still count
                    row[name] = float("nan")
                    which = "reference" if (name, str(item.reference)) not in cache else "converted clip"
                    row["note"] = f"{name}: {e} in the {which}"
        if "wer" in self.metrics and (item.transcript or not baseline):
            asr = self.model("wer")
            source_text = self._cached(cache, ("asr", str(item.source)), lambda: asr.transcribe(source))
            text = item.transcript if item.transcript else source_text
            hypothesis = source_text if baseline else asr.transcribe(converted)
            from modules.evaluation.intelligibility import error_rates
            row.update(error_rates(text, hypothesis))
            row["asr_reference"] = "transcript" if item.transcript else "ASR of the source"
            row["hypothesis"] = hypothesis
        if "dnsmos" in self.metrics:
            model = self.model("dnsmos")
            compute = lambda: {f"dnsmos_{k}": v for k, v in model.score(converted).items()}
            row.update(self._cached(cache, ("dnsmos", str(item.source)), compute) if baseline else compute())
        if "f0" in self.metrics and not baseline:
            model = self.model("f0")
            f0_source = self._cached(cache, ("f0", str(item.source)), lambda: model.f0(source))
            f0_reference = self._cached(cache, ("f0", str(item.reference)), lambda: model.f0(reference))
            scores = model.compare(f0_source, model.f0(converted), f0_reference,
                                   item.settings.semitone_shift, item.settings.auto_f0_adjust)
            row.update({k: scores[k] for k in ("f0_corr", "f0_rmse_cents")})
        return row


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["COLUMNS", "DEFAULT_METRICS", "METRICS", "EvaluationResult", "Evaluator", "MetricUnavailableError",
           "SOURCE_BASELINE", "parse_metrics"]
