"""Means with 95 % intervals per setting, the printed table, and the CSV / JSON / PNG outputs (written atomically)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from modules.atomic_io import atomic_write
from modules.evaluation.runner import EvaluationResult, is_number

# Table headers; WER and CER are shown in percent as in the original's tables (CSV and JSON keep fractions).
HEADERS = {"secs": ("SECS", 1.0), "secs_wavlm": ("SECS-WavLM", 1.0), "wer": ("WER %", 100.0), "cer": ("CER %", 100.0),
           "dnsmos_sig": ("SIG", 1.0), "dnsmos_bak": ("BAK", 1.0), "dnsmos_ovrl": ("OVRL", 1.0),
           "dnsmos_p808": ("P808", 1.0), "f0_corr": ("F0CORR", 1.0), "f0_rmse_cents": ("F0RMSE ct", 1.0)}


def mean_interval(values: Sequence[float]) -> dict:
    """Mean and the half-width of its 95 % Student-t interval (NaN for fewer than two values)."""
    data = np.asarray([v for v in values if is_number(v)], dtype=np.float64)
    if data.size == 0:
        return {"n": 0, "mean": float("nan"), "ci95": float("nan")}
    half = float("nan")
    if data.size > 1:
        half = float(stats.t.ppf(0.975, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size))
    return {"n": int(data.size), "mean": float(data.mean()), "ci95": half}


def summarise(result: EvaluationResult) -> dict[str, dict[str, dict]]:
    """{setting: {column: {n, mean, ci95}}}, settings in the order they first appear."""
    settings = list(dict.fromkeys(row["setting"] for row in result.rows))
    return {s: {c: mean_interval([row.get(c) for row in result.rows if row["setting"] == s]) for c in result.columns}
            for s in settings}


def _cell(entry: dict, scale: float) -> str:
    if entry["n"] == 0:
        return "-"
    mean = f"{entry['mean'] * scale:.4g}" if scale == 1 else f"{entry['mean'] * scale:.2f}"
    if math.isnan(entry["ci95"]):
        return mean
    return f"{mean} ± {entry['ci95'] * scale:.2g}"


def format_table(summary: dict, columns: Sequence[str]) -> str:
    """A Markdown table: one row per setting, mean ± 95 % interval per metric, n = scored clips."""
    header = ["setting", "n"] + [HEADERS[c][0] for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, entries in summary.items():
        n = max((entries[c]["n"] for c in columns), default=0)
        lines.append("| " + " | ".join([setting, str(n)] + [_cell(entries[c], HEADERS[c][1]) for c in columns]) + " |")
    return "\n".join(lines)


def table_rows(summary: dict, columns: Sequence[str]) -> list[list[str]]:
    """The table as rows of strings (for a UI data frame), without the Markdown."""
    return [[setting, str(max((e[c]["n"] for c in columns), default=0))] +
            [_cell(e[c], HEADERS[c][1]) for c in columns] for setting, e in summary.items()]


def write_csv(path: Path, result: EvaluationResult) -> Path:
    fields = ["setting", "source", "reference", "converted", *result.columns, "asr_reference", "hypothesis", "note"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    data = buffer.getvalue().encode()
    return atomic_write(path, lambda f: f.write(data))


def write_json(path: Path, result: EvaluationResult, summary: dict, extra: dict | None = None) -> Path:
    def clean(value):   # JSON has no NaN
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value
    document = {"metrics": result.cards, "columns": result.columns, "summary": clean(summary),
                "failures": [{"item": what, "error": why} for what, why in result.failures], **(extra or {})}
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    return atomic_write(path, lambda f: f.write(data))


def plot(path: Path, result: EvaluationResult) -> Path:
    """One panel per metric: the distribution over clips of each setting (box), its mean (dot)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = result.columns or []
    settings = list(dict.fromkeys(row["setting"] for row in result.rows))
    n = max(len(columns), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 0.5 + 3.2 * nrows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        name, scale = HEADERS[column]
        data = [[row[column] * scale for row in result.rows if row["setting"] == s and is_number(row.get(column))]
                for s in settings]
        positions = [i for i, values in enumerate(data) if values]
        if positions:
            ax.boxplot([data[i] for i in positions], positions=positions, widths=0.5)
            ax.plot(positions, [np.mean(data[i]) for i in positions], "o", color="tab:red", label="mean")
        ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize=8)
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def write_outputs(folder: Path, result: EvaluationResult, extra: dict | None = None) -> dict[str, Path]:
    """per_utterance.csv, summary.json, metrics.png in `folder`; returns their paths and the table text."""
    folder = Path(folder)
    summary = summarise(result)
    paths = {"csv": write_csv(folder / "per_utterance.csv", result),
             "json": write_json(folder / "summary.json", result, summary, extra),
             "png": plot(folder / "metrics.png", result)}
    return {**paths, "summary": summary, "table": format_table(summary, result.columns)}
