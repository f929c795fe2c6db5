"""Shared helpers for the parity suite: fixture paths, loading, tolerance checks and error tracking."""
from __future__ import annotations

import importlib.util
import json
import os
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_DIR = Path(os.environ.get("SEEDVC_PARITY_DIR", REPO_ROOT.parent / "shared" / "fixtures" / "parity"))
# The fixture folder (official outputs, third-party voices, the real CAM++ weights) is not part of the
# repository; tests that need it are skipped without it, unless SEEDVC_REQUIRE_FIXTURES=1 (CI) is set.
FIXTURE_PRESENT = (PARITY_DIR / "index.json").is_file()
FIXTURE_MISSING = (f"parity fixture folder not found: {PARITY_DIR} (index.json); "
                   "set SEEDVC_PARITY_DIR to the fixture folder to run these tests")
needs_fixture = pytest.mark.skipif(not FIXTURE_PRESENT, reason=FIXTURE_MISSING)

# kind -> largest |got - expected| seen in this session (printed at the end of the run).
MAX_ERROR: dict[str, float] = defaultdict(float)


def fixture_path(rel: str) -> Path:
    return PARITY_DIR / rel


@lru_cache(maxsize=None)
def load_index() -> dict:
    path = PARITY_DIR / "index.json"
    if not path.is_file():
        raise FileNotFoundError(FIXTURE_MISSING)
    return json.loads(path.read_text())


def fixture_seed() -> int:
    """The seed of this fixture tree (index.json's top-level "seed"), behind its seeded stand-in weights."""
    return int(load_index()["seed"])


def seeded_weights(seeded_py_rel: str, manifest: list) -> dict:
    """The fixture's stand-in weights for `manifest` ([[key, shape, dtype], ...]), from the tree's own seeded.py
    with the tree's seed."""
    spec = importlib.util.spec_from_file_location("parity_seeded", fixture_path(seeded_py_rel))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.seeded_state_dict(manifest, seed=fixture_seed())


@lru_cache(maxsize=16)
def load_pt(rel: str) -> Any:
    # Fixtures hold only plain containers and tensors, so the safe loader suffices.
    return torch.load(fixture_path(rel), map_location="cpu", weights_only=True)


def tolerance(case: dict, field: str | None) -> tuple[float, float]:
    per_field = (case.get("tolerances") or {}).get(field) if field else None
    atol = case["atol"]
    rtol = case["rtol"]
    if per_field:
        atol = per_field.get("atol", atol)
        rtol = per_field.get("rtol", rtol)
    return float(atol), float(rtol)


def check(case: dict, field: str | None, got: torch.Tensor, expected: torch.Tensor,
          mask: torch.Tensor | None = None, atol: float | None = None, rtol: float | None = None) -> float:
    """Assert `got` matches `expected` under the case's tolerance; returns the max abs error.

    `mask` (bool, broadcastable) selects the elements that are compared.
    """
    f_atol, f_rtol = tolerance(case, field)
    atol = f_atol if atol is None else atol
    rtol = f_rtol if rtol is None else rtol
    got = torch.as_tensor(got)
    expected = torch.as_tensor(expected)
    name = f"{case['id']}:{field or 'value'}"
    assert tuple(got.shape) == tuple(expected.shape), f"{name}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
    dtype = torch.float64
    g = got.detach().to(dtype)
    e = expected.detach().to(dtype)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool).expand_as(g)
        g, e = g[mask], e[mask]
    err = (g - e).abs()
    max_err = float(err.max()) if err.numel() else 0.0
    MAX_ERROR[case["kind"]] = max(MAX_ERROR[case["kind"]], max_err)
    bad = err > atol + rtol * e.abs()
    assert not bool(bad.any()), (
        f"{name}: {int(bad.sum())}/{bad.numel()} elements out of tolerance "
        f"(atol={atol}, rtol={rtol}); max |diff| = {max_err:.3e}"
    )
    return max_err


def check_exact(case: dict, field: str, got: torch.Tensor, expected: torch.Tensor) -> None:
    got, expected = torch.as_tensor(got), torch.as_tensor(expected)
    assert got.dtype == expected.dtype, f"{case['id']}:{field}: dtype {got.dtype} != {expected.dtype}"
    check(case, field, got, expected, atol=0.0, rtol=0.0)
