"""On-disk cache of the frozen front-end features of training clips (content, F0, CAM++ style).

Without augmentation the frozen models see the same clip every epoch and give the same features, so they
are computed once per clip and reused across epochs and resumes. Entries live in
`<run_dir>/feature_cache/<front-end identity>/<clip hash>.pt`:

  clip hash          sha256 of the clip's samples as the trainer loads them (float32 at the config's rate):
                     an edited, re-encoded or resampled file gets a new entry
  front-end identity sha256 of the config's front-end settings, the device type and the name, size and
                     modification time of every front-end weight file: another content encoder, CAM++ or F0
                     model (or a replaced file) uses another directory

An entry holds exactly the tensors the front-ends returned, so a cached run is bit-identical to an uncached
one. Entries are written atomically; an unreadable entry is recomputed and rewritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from modules import hub
from modules.atomic_io import atomic_write, remove_stale_temporaries
from modules.config import ModelConfig

log = logging.getLogger(__name__)

CACHE_DIR_NAME = "feature_cache"
FORMAT_VERSION = 1


def _fingerprint(path: Path) -> list:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def frontend_identity(cfg: Mapping[str, Any], device: torch.device | str, sample_rate: int) -> str:
    """A short hash naming the front-ends a config resolves to on this device (see the module docstring)."""
    mp = cfg["model_params"]
    files = [hub.resolve_content_encoder(cfg), hub.resolve_campplus(cfg)]
    f0 = None
    if ModelConfig.from_config(cfg).f0_condition:
        f0 = hub.f0_extractor_type(cfg)
        path = hub.resolve_f0_model(cfg, f0)
        if path is None:   # FCPE's weights from the torchfcpe wheel
            from modules.f0.fcpe import bundled_fcpe_path
            path = bundled_fcpe_path()
        files.append(path)
    description = {"version": FORMAT_VERSION, "speech_tokenizer": mp["speech_tokenizer"], "f0": f0,
                   "sample_rate": sample_rate, "device": torch.device(device).type,
                   "files": [_fingerprint(Path(p)) for p in files]}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:20]


def clip_hash(wave: torch.Tensor) -> str:
    """sha256 of a clip's float32 samples [N]."""
    return hashlib.sha256(wave.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


class FeatureCache:
    def __init__(self, run_dir: Path, identity: str, clean: bool = True):
        """clean: remove temporaries a killed writer left (only the main process, before any other writes)."""
        self.directory = Path(run_dir) / CACHE_DIR_NAME / identity
        self.directory.mkdir(parents=True, exist_ok=True)
        if clean:
            remove_stale_temporaries(self.directory)
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def get(self, key: str) -> dict[str, torch.Tensor | None] | None:
        path = self._path(key)
        if not path.exists():
            self.misses += 1
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged entry is only a cache miss
            log.warning("feature cache entry %s unreadable (%s); recomputing it", path.name, e)
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: Mapping[str, torch.Tensor | None]) -> None:
        cpu = {k: None if v is None else v.detach().cpu() for k, v in entry.items()}
        atomic_write(self._path(key), lambda f: torch.save(cpu, f))
