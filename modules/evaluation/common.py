"""What every metric shares: the 16 kHz analysis rate, how a metric names its model, and device choice."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import torch

from modules.errors import UserError

EVAL_RATE = 16000   # every metric model here takes 16 kHz mono audio


class MetricUnavailableError(UserError, RuntimeError):
    """A metric's model cannot be loaded (a missing package, or an offline hub); the message says what to do."""


class EvaluationError(UserError, ValueError):
    """An evaluation request cannot be carried out (a bad grid, metric name or transcripts file)."""


@dataclass(frozen=True)
class ModelCard:
    """Which model produced a figure: SECS from different extractors (and so on) cannot be compared."""
    metric: str        # e.g. "SECS"
    model: str         # e.g. "Resemblyzer GE2E VoiceEncoder"
    version: str       # package versions and weight file

    def as_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "model": self.model, "version": self.version}


def package_version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def require(module: str, package: str):
    """Import `module`, or raise MetricUnavailableError naming the pip package to install."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MetricUnavailableError(f"the {package!r} package is needed for this metric ({e}); "
                                     f"install it with `pip install -r requirements.txt`") from e


def is_cuda(device: torch.device) -> bool:
    return torch.device(device).type == "cuda"
