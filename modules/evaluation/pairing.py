"""Which files are compared: settings grids, transcripts (index.tsv) and converted files found by name.

Converted files are found through the output plan of the tool that wrote them (inference.py's
`plan_outputs(sources, reference, settings, folder)`), passed in by the caller, so names are never parsed back.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from modules.evaluation.common import EvaluationError
from modules.pipeline import ConversionSettings

# inference.py's plan_outputs(sources, reference, settings, folder) -> ([job with .source, .output], notes)
PlanOutputs = Callable[[list[Path], Path, ConversionSettings, Path], tuple[list, list]]
SOURCE_BASELINE = "source (unconverted)"   # the "Ground Truth" row of the original's table


@dataclass(frozen=True)
class Item:
    """One thing to score: a converted clip (a file, or a wave with its sample rate) with its source and reference."""
    setting: str
    source: Path
    reference: Path
    converted: Path | tuple[np.ndarray, int] | None     # None: the source itself is scored (baseline row)
    transcript: str | None = None
    settings: ConversionSettings = ConversionSettings()

    @property
    def converted_name(self) -> str:
        if self.converted is None:
            return ""
        return str(self.converted) if isinstance(self.converted, Path) else "(in memory)"


def setting_label(settings: ConversionSettings, varying: Sequence[str] = ()) -> str:
    """Short label of a grid point; `varying` names the fields that differ across the grid (all when empty)."""
    parts = {"diffusion_steps": f"steps={settings.diffusion_steps}", "inference_cfg_rate": f"cfg={settings.inference_cfg_rate}",
             "length_adjust": f"len={settings.length_adjust}", "semitone_shift": f"shift={settings.semitone_shift}"}
    chosen = [parts[k] for k in parts if not varying or k in varying]
    return " ".join(chosen) or parts["diffusion_steps"]


def settings_grid(diffusion_steps: Sequence[int], inference_cfg_rate: Sequence[float],
                  length_adjust: Sequence[float] = (1.0,), semitone_shift: Sequence[int] = (0,),
                  auto_f0_adjust: bool = False, seed: int | None = None) -> dict[str, ConversionSettings]:
    """Every combination, validated, by label. Labels name the fields with more than one value; a grid of one
    point names all four, so the table says what was measured."""
    axes = {"diffusion_steps": list(dict.fromkeys(diffusion_steps)),
            "inference_cfg_rate": list(dict.fromkeys(inference_cfg_rate)),
            "length_adjust": list(dict.fromkeys(length_adjust)), "semitone_shift": list(dict.fromkeys(semitone_shift))}
    if any(not values for values in axes.values()):
        raise EvaluationError("every setting of the grid needs at least one value")
    varying = [k for k, values in axes.items() if len(values) > 1]
    grid = {}
    for values in itertools.product(*axes.values()):
        settings = ConversionSettings(**dict(zip(axes, values, strict=True)), auto_f0_adjust=auto_f0_adjust, seed=seed).validate()
        grid[setting_label(settings, varying)] = settings
    return grid


def read_transcripts(path: str | Path) -> dict[str, str]:
    """index.tsv as in the original's eval.py: one `id<TAB>transcript` per line; id is the source's file name
    without extension. Blank lines are skipped; any other malformed line is an error naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvaluationError(f"transcripts file {path} cannot be read: {e}") from e
    return parse_transcripts(text, f"transcripts file {path}")


def parse_transcripts(text: str, origin: str = "transcripts", separators: str = "\t") -> dict[str, str]:
    """`id<separator>transcript` lines -> {id: transcript}; the first of `separators` found on a line splits it."""
    transcripts: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cut = min((i for i in (line.find(c) for c in separators) if i >= 0), default=-1)
        key, text_part = (line[:cut].strip(), line[cut + 1:].strip()) if cut >= 0 else ("", "")
        if not key:
            raise EvaluationError(f"{origin}, line {number}: expected 'id<TAB>transcript', got {line!r}")
        if key in transcripts:
            raise EvaluationError(f"{origin}, line {number}: id {key!r} appears twice")
        transcripts[key] = text_part
    return transcripts


def transcript_key(source: Path) -> str:
    return source.name.split(".")[0]


def build_items(sources: Sequence[Path], references: Sequence[Path], grid: dict[str, ConversionSettings],
                converted: Callable[[Path, Path, str, ConversionSettings], Path | tuple[np.ndarray, int] | None],
                transcripts: dict[str, str] | None = None, baseline: bool = True) -> list[Item]:
    """Items for every setting x source x reference; `converted(source, reference, label, settings)` says where
    each converted clip is. With `baseline`, one unconverted row per source x reference comes first."""
    transcripts = transcripts or {}
    items = []
    pairs = [(s, r) for s in sources for r in references]
    if baseline:
        items += [Item(SOURCE_BASELINE, s, r, None, transcripts.get(transcript_key(s))) for s, r in pairs]
    for label, settings in grid.items():
        items += [Item(label, s, r, converted(s, r, label, settings), transcripts.get(transcript_key(s)), settings)
                  for s, r in pairs]
    return items


def in_folder(folder: Path, plan: PlanOutputs, sources: Sequence[Path]
              ) -> Callable[[Path, Path, str, ConversionSettings], Path]:
    """`converted` for build_items: where the converter's own output plan (inference.py's `plan_outputs`, which
    makes colliding names unique over the whole source list) puts each source's result in `folder`."""
    planned: dict[tuple[str, str], dict[Path, Path]] = {}

    def converted(source: Path, reference: Path, label: str, settings: ConversionSettings) -> Path:
        key = (str(reference), label)
        if key not in planned:
            jobs, _notes = plan(list(sources), reference, settings, Path(folder))
            planned[key] = {job.source: job.output for job in jobs}
        return planned[key][source]
    return converted
