"""Training metrics a user can read or look at: metrics.jsonl (one line per step) and loss.png."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from modules.atomic_io import atomic_write

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends one JSON object per step. On resume, lines past the resumed step are dropped first: those steps
    are about to be trained again, and the file must tell the history of the weights actually kept."""

    def __init__(self, path: Path, resumed_step: int):
        self.path = path
        if path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if (step := _step(line)) is not None and step <= resumed_step]
            atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))
        self._file = path.open("a")

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None   # a line cut short by a kill


def read_metrics(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_loss_curve(metrics_path: Path, png_path: Path) -> None:
    """Loss per step and its running average, written atomically. A plotting failure only warns."""
    records = read_metrics(metrics_path)
    if not records:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in records]
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        ax.plot(steps, [r["loss"] for r in records], lw=0.6, alpha=0.45, label="loss")
        ax.plot(steps, [r["loss_avg"] for r in records], lw=1.8, label="running average")
        ax.set_xlabel("step")
        ax.set_ylabel("flow-matching L1 loss")
        ax.set_title(f"{png_path.parent.name}: step {steps[-1]}, lr {records[-1]['lr']:.3g}")
        ax.grid(alpha=0.3)
        ax.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(fig)
        atomic_write(png_path, lambda f: f.write(buffer.getvalue()))
    except Exception as e:  # a missing font or a full disk must not stop training; the checkpoint matters
        log.warning("could not draw %s: %s", png_path.name, e)
