"""Vocoders beyond parity: strict loading, weight-norm folding, any BigVGAN channel count, HiFT length and seeded
reproducibility, fp32."""
import copy
import json

import pytest
import torch

from modules.config import PRESETS_DIR
from modules.vocoders import Vocoder, build_hift, load_bigvgan, load_hift
from modules.vocoders.bigvgan import BigVGAN
from modules.weight_norm import fold_weight_norm
from tiny import bigvgan_config, models

HIFIGAN = PRESETS_DIR.parent / "hifigan.yml"


def test_bigvgan_strict_load_names_the_bad_key(tmp_path):
    state = torch.load(models() / "bigvgan_22k" / "bigvgan_generator.pt", weights_only=True)
    state["generator"]["extra.weight"] = torch.zeros(1)
    del state["generator"]["conv_pre.bias"]
    torch.save(state, tmp_path / "bigvgan_generator.pt")
    (tmp_path / "config.json").write_bytes((models() / "bigvgan_22k" / "config.json").read_bytes())
    with pytest.raises(RuntimeError, match=r"conv_pre\.bias.*extra\.weight"):
        load_bigvgan(tmp_path)


def test_folding_weight_norm_keeps_the_output():
    h = json.loads((models() / "bigvgan_22k" / "config.json").read_text())
    model = BigVGAN(h).eval()
    state = torch.load(models() / "bigvgan_22k" / "bigvgan_generator.pt", weights_only=True)["generator"]
    model.load_state_dict(state)
    mel = torch.randn(1, 80, 12) * 0.5 - 4
    with torch.no_grad():
        before = model(mel)
        after = fold_weight_norm(copy.deepcopy(model))(mel)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_bigvgan_with_initial_channels_not_divisible_by_the_total_upsampling(tmp_path):
    # 96 channels over six 2x-or-more stages: 96, 48, 24, 12, 6, 3, 1 (floor division at every stage).
    h = bigvgan_config("bigvgan_v2_22khz_80band_256x", upsample_initial_channel=96)
    torch.manual_seed(0)
    model = BigVGAN(h)
    assert [up.weight_v.shape[0] for (up,) in model.ups] == [96, 48, 24, 12, 6, 3]  # in channels, as released
    (tmp_path / "config.json").write_text(json.dumps(h))
    torch.save({"generator": model.state_dict()}, tmp_path / "bigvgan_generator.pt")
    loaded = load_bigvgan(tmp_path)
    mel = torch.randn(1, 80, 6) * 0.5 - 4
    with torch.no_grad():
        out = loaded(mel)
    assert out.shape == (1, 1, 6 * 256) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def hift(tmp_path_factory):
    torch.manual_seed(0)
    model = build_hift(HIFIGAN)
    path = tmp_path_factory.mktemp("hift") / "hift.pt"
    torch.save(model.state_dict(), path)
    return Vocoder(load_hift(HIFIGAN, path))


def test_hift_length_and_seeded_reproducibility(hift):
    mel = torch.randn(1, 80, 20)
    run = lambda seed: hift(mel, generator=torch.Generator().manual_seed(seed))
    out = run(1)
    assert out.shape == (1, 1, 20 * 256) and out.dtype == torch.float32
    assert torch.equal(out, run(1))
    assert not torch.equal(out, run(2))
    assert out.abs().max() <= 0.99


def test_vocoder_runs_in_fp32_under_autocast(hift):
    mel = torch.randn(1, 80, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hift(mel, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, hift(mel, generator=torch.Generator().manual_seed(0)))
