"""The parity contract: every case in the fixture's index.json runs through the project's own code.

Handlers live in tests/parity_kinds/<component>.py. A kind nobody handles yet is skipped with its name.
"""
from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
import torch

import parity_kinds
from parity_kinds._common import PARITY_DIR, fixture_path, load_index, needs_fixture

pytestmark = needs_fixture

KINDS: dict = {}
MANIFESTS: dict = {}
for _info in pkgutil.iter_modules(parity_kinds.__path__):
    if not _info.name.startswith("_"):
        _mod = importlib.import_module(f"parity_kinds.{_info.name}")
        KINDS.update(getattr(_mod, "KINDS", {}))
        MANIFESTS.update(getattr(_mod, "MANIFESTS", {}))


def _manifest_handler(case: dict) -> None:
    rel = case["files"]["manifest"]
    manifest = json.loads(fixture_path(rel).read_text())
    built = MANIFESTS[rel.split("/")[-1]]()
    sections = {"": manifest} if "state_dict" in manifest else {
        k: v for k, v in manifest.items() if isinstance(v, dict) and "state_dict" in v}
    for section, spec in sections.items():
        module = built[section]
        got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]
        want = [[k, list(s), d] for k, s, d in spec["state_dict"]]
        assert got == want, _describe_manifest_diff(case["id"], section, got, want)
        n_expected = spec.get("n_params", spec.get("n_params_with_weight_norm"))
        if n_expected is not None:
            n_params = sum(p.numel() for p in module.parameters())
            assert n_params == n_expected, f"{case['id']}[{section}]: {n_params} parameters != {n_expected}"


def _describe_manifest_diff(case_id, section, got, want) -> str:
    got_d, want_d = {k: (s, d) for k, s, d in got}, {k: (s, d) for k, s, d in want}
    missing = [k for k in want_d if k not in got_d]
    extra = [k for k in got_d if k not in want_d]
    wrong = [f"{k}: {got_d[k]} != {want_d[k]}" for k in want_d if k in got_d and got_d[k] != want_d[k]]
    order = "" if missing or extra or wrong else " (same entries, different order)"
    return f"{case_id}[{section}] manifest differs{order}: missing {missing[:10]}, unexpected {extra[:10]}, mismatched {wrong[:10]}"


def _handler(case: dict):
    if case["kind"] == "state_dict_manifest":
        return _manifest_handler if case["files"]["manifest"].split("/")[-1] in MANIFESTS else None
    return KINDS.get(case["kind"])


CASES = load_index()["cases"] if (PARITY_DIR / "index.json").is_file() else []


def test_parity_fixture_has_cases():
    assert CASES, f"no parity cases found under {PARITY_DIR}"


def test_report_unhandled_kinds():
    unhandled = sorted({c["kind"] if c["kind"] != "state_dict_manifest" else f"state_dict_manifest:{c['files']['manifest']}"
                        for c in CASES if _handler(c) is None})
    if unhandled:
        pytest.skip("kinds not handled yet: " + ", ".join(unhandled))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_parity(case):
    handler = _handler(case)
    if handler is None:
        pytest.skip(f"kind not handled yet: {case['kind']}")
    with torch.no_grad():
        handler(case)
