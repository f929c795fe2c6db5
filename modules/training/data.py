"""Fine-tuning data: a folder of clips, scanned once, then served in a seeded order that a resume can replay.

The original draws a random replacement when a clip is out of range, which makes the data order depend on
what was skipped and when. Here every file is checked up front (decoded once, with a progress bar), so the
usable list is fixed, and epoch e's order is a permutation drawn from (seed, e) alone. A run's position is
then just (epoch, batch index), which is what a checkpoint stores.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from modules.audio import AUDIO_EXTENSIONS, AudioError, load_audio, mel_spectrogram
from modules.config import MelParams
from modules.errors import UserError

log = logging.getLogger(__name__)

MIN_CLIP_SECONDS, MAX_CLIP_SECONDS = 1.0, 30.0
MEL_PAD_VALUE = -10.0   # log-mel of near silence; padded frames are outside every loss mask anyway


class DatasetError(UserError, ValueError):
    """The dataset folder cannot be trained on; the message says why and what to do."""


def find_audio_files(dataset_dir: str | Path) -> list[Path]:
    """Every audio file under `dataset_dir`, recursively, in a stable (sorted) order.

    Links are followed, but each real folder is read once and each real file listed once (by resolved path), so
    a link back up the tree (a loop) or a second link to the same clips adds nothing."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}. Pass --dataset-dir pointing to a folder of "
                           f"audio files ({', '.join(AUDIO_EXTENSIONS)}).")
    seen_dirs: set[str] = set()
    seen_files: dict[str, Path] = {}
    for dirpath, dirnames, names in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []     # already read through another path: do not descend again
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for name in sorted(names):
            if name.lower().endswith(AUDIO_EXTENSIONS) and not name.startswith("."):
                seen_files.setdefault(os.path.realpath(os.path.join(dirpath, name)), Path(dirpath) / name)
    files = sorted(seen_files.values())
    if not files:
        raise DatasetError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {root}")
    return files


@dataclass
class ScanReport:
    usable: list[Path]
    seconds: float
    skipped: dict[str, list[str]] = field(default_factory=dict)   # reason -> messages naming the files

    def summary(self) -> str:
        text = f"{len(self.usable)} usable clips ({self.seconds / 60:.1f} min)"
        if self.skipped:
            counts = Counter({reason: len(items) for reason, items in self.skipped.items()})
            text += f"; skipped {counts.total()}: " + ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
        return text


def scan_dataset(dataset_dir: str | Path, sample_rate: int, show_progress: bool = True) -> ScanReport:
    """Decode every file once; unreadable, silent, <1 s or >30 s clips are skipped with a warning naming them."""
    usable, skipped, seconds = [], {}, 0.0
    for path in tqdm(find_audio_files(dataset_dir), desc="checking dataset", unit="file", disable=not show_progress):
        try:
            wave = load_audio(path, sample_rate, min_seconds=MIN_CLIP_SECONDS, max_seconds=MAX_CLIP_SECONDS,
                              role="training clip")
        except AudioError as e:
            log.warning("skipping %s", e)
            skipped.setdefault(e.reason, []).append(str(e))
            continue
        usable.append(path)
        seconds += wave.size / sample_rate
    report = ScanReport(usable, seconds, skipped)
    if not usable:
        raise DatasetError(f"no usable clips under {dataset_dir}: {report.summary()}. Clips must be "
                           f"{MIN_CLIP_SECONDS:g}-{MAX_CLIP_SECONDS:g} s of non-silent audio.")
    return report


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    batch: int = 0       # batches of this epoch already consumed


class BatchPlan(NamedTuple):
    """One element of the loader's sampler: the clips of this process's share of a batch, and where the run
    stands once that batch is trained on. The position travels with the batch, so a loader that prefetches
    (num_workers > 0) still hands the training loop the right one."""
    indices: list[int]
    next_position: DataPosition


class ClipDataset(torch.utils.data.Dataset):
    """plan -> Batch of its clips: waves at the config rate and their log-mels. A clip that went bad since the
    scan is skipped with a warning (the batch then simply has one item fewer)."""

    def __init__(self, files: list[Path], mel_params: MelParams):
        self.files = files
        self.mel_params = mel_params

    def clip(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(wave [N] float32, log-mel [n_mels, T]), or None if the file cannot be read."""
        try:
            wave = load_audio(self.files[index], self.mel_params.sampling_rate, role="training clip")
        except AudioError as e:
            log.warning("skipping %s", e)
            return None
        wave = torch.from_numpy(wave)
        return wave, mel_spectrogram(wave[None], self.mel_params)[0]

    def __getitem__(self, plan: BatchPlan) -> Batch:
        return collate([self.clip(i) for i in plan.indices], plan.next_position)


@dataclass
class Batch:
    waves: torch.Tensor         # [B, N] zero-padded
    wave_lengths: torch.Tensor  # [B]
    mels: torch.Tensor          # [B, n_mels, T] padded with MEL_PAD_VALUE
    mel_lengths: torch.Tensor   # [B]
    next_position: DataPosition  # the data position after this batch (BatchPlan)


def collate(items: list[tuple[torch.Tensor, torch.Tensor] | None], next_position: DataPosition) -> Batch:
    """Longest first, as the original sorts; pads waves with 0 and mels with MEL_PAD_VALUE."""
    items = sorted((it for it in items if it is not None), key=lambda it: it[1].shape[-1], reverse=True)
    if not items:
        raise DatasetError("every clip of a batch failed to load; see the warnings above")
    n_mels, frames = items[0][1].shape[0], items[0][1].shape[-1]
    samples = max(w.shape[-1] for w, _ in items)
    waves = torch.zeros(len(items), samples)
    mels = torch.full((len(items), n_mels, frames), MEL_PAD_VALUE)
    for i, (w, m) in enumerate(items):
        waves[i, : w.shape[-1]] = w
        mels[i, :, : m.shape[-1]] = m
    return Batch(waves, torch.tensor([w.shape[-1] for w, _ in items]), mels,
                 torch.tensor([m.shape[-1] for _, m in items]), next_position)


class EpochSchedule:
    """Which clips make up batch b of epoch e, for every process.

    Epoch e's order is a permutation of the usable clips from a generator seeded with (seed, e), repeated
    until it fills one global batch (batch_size x processes), as the original repeats a short file list.
    Each step takes the next global batch; process r gets its slice r. The last partial batch is dropped,
    so every process always has a full batch.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.world_size, self.rank = world_size, rank
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = max(n_items, self.global_batch) // self.global_batch

    @lru_cache(maxsize=2)   # noqa: B019 (a handful of schedules live as long as the run)
    def order(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n_items).tolist()
        while len(order) < self.global_batch:
            order += order
        return order

    def indices(self, position: DataPosition) -> list[int]:
        start = position.batch * self.global_batch + self.rank * self.batch_size
        return self.order(position.epoch)[start: start + self.batch_size]

    def advance(self, position: DataPosition) -> DataPosition:
        if position.batch + 1 >= self.batches_per_epoch:
            return DataPosition(position.epoch + 1, 0)
        return DataPosition(position.epoch, position.batch + 1)

    def batches_from(self, position: DataPosition) -> Iterator[BatchPlan]:
        """The plans of the batches from `position` on, forever (the trainer decides when to stop). The only
        place a run's position moves: the training loop takes it from each batch."""
        while True:
            following = self.advance(position)
            yield BatchPlan(self.indices(position), following)
            position = following


def _as_is(batch: Batch) -> Batch:
    return batch


def load_batches(files: list[Path], mel_params: MelParams, schedule: EpochSchedule, position: DataPosition,
                 num_workers: int = 0) -> Iterator[Batch]:
    """The batches of this process from `position` on, each carrying the position after it, loaded by
    `num_workers` worker processes (0: in this one)."""
    # batch_size=None: each sampler element (a plan) is already a whole batch. The loader's own generator:
    # creating it must not draw from the global RNG, or a resumed run's random stream would be one draw off
    # from the uninterrupted one.
    loader = torch.utils.data.DataLoader(ClipDataset(files, mel_params), sampler=schedule.batches_from(position),
                                         batch_size=None, collate_fn=_as_is, num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(0))
    return iter(loader)
