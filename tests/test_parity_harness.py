"""The parity harness reads its fixture tree instead of assuming it: the seeded stand-in weights use the seed the
tree's index.json states. Runs on a small fake tree, so it needs no fixture folder."""
import json

import pytest
import torch

from parity_kinds import _common

FAKE_SEEDED_PY = '''
import torch

def seeded_state_dict(manifest, seed):
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=g) for key, shape, _ in manifest}
'''


@pytest.fixture
def tree_with_seed(tmp_path, monkeypatch):
    (tmp_path / "seeded.py").write_text(FAKE_SEEDED_PY)
    (tmp_path / "index.json").write_text(json.dumps({"seed": 7, "cases": []}))
    monkeypatch.setattr(_common, "PARITY_DIR", tmp_path)
    _common.load_index.cache_clear()
    yield tmp_path
    _common.load_index.cache_clear()


def test_seeded_weights_use_the_seed_stated_in_index_json(tree_with_seed):
    assert _common.fixture_seed() == 7
    weights = _common.seeded_weights("seeded.py", [["w", [3], "float32"]])
    assert torch.equal(weights["w"], torch.randn(3, generator=torch.Generator().manual_seed(7)))
