"""Chunk windows, crossfade assembly and the F0 transform, against the original's recorded behaviour."""
import numpy as np
import pytest
import torch

from modules.chunking import ChunkAssembler, ChunkPlan, crossfade
from modules.pipeline import ConversionError, ConversionSettings, shift_source_f0
from parity_kinds._common import load_pt, needs_fixture


@needs_fixture
def test_windows_follow_the_recorded_chunks():
    frontend = load_pt("e2e_f0_44k/frontend.pt")
    plan = ChunkPlan(frontend["sr"], frontend["hop_length"], prompt_frames=frontend["mel2"].shape[-1])
    assert plan.context_frames == frontend["max_context_window"]
    assert plan.source_window == frontend["max_source_window"]
    assert plan.overlap_samples == frontend["overlap_wave_len"]
    for case in ("case_a", "case_b"):
        io = load_pt(f"e2e_f0_44k/{case}.pt")
        got = list(plan.windows(int(io["target_lengths"])))
        want = [(c["processed_frames"], c["processed_frames"] + c["n_frames"], c["is_last_chunk"]) for c in io["chunks"]]
        assert got == want


def test_rate_and_hop_come_from_the_plan():
    assert ChunkPlan(22050, 256, 100).context_frames == 86 * 30
    assert ChunkPlan(16000, 160, 100).context_frames == 100 * 30
    assert ChunkPlan(22050, 256, 0).overlap_samples == 16 * 256
    with pytest.raises(ValueError, match="shorter reference"):
        list(ChunkPlan(22050, 256, 2575).windows(100))


def test_assembly_is_a_crossfade_that_keeps_the_total_length():
    rng = np.random.default_rng(0)
    hop, frames = 4, [40, 40, 10]
    waves = [rng.standard_normal(n * hop).astype(np.float32) for n in frames]
    asm = ChunkAssembler(16 * hop)
    pieces = [asm.push(w, i == len(waves) - 1) for i, w in enumerate(waves)]
    assert sum(map(len, pieces)) == sum(frames) * hop - 2 * 16 * hop
    np.testing.assert_array_equal(pieces[0], waves[0][:-64])
    expected_mid = crossfade(waves[0][-64:], waves[1][:-64])
    np.testing.assert_array_equal(pieces[1], expected_mid)
    # cos^2 fades sum to one: a constant signal crossfaded with itself stays constant.
    flat = crossfade(np.ones(64, np.float32), np.ones(100, np.float32))
    np.testing.assert_allclose(flat, 1.0, atol=1e-6)
    short = crossfade(np.ones(64, np.float32), np.zeros(10, np.float32))  # shorter than the overlap
    assert len(short) == 10 and short[0] == pytest.approx(1.0)


@needs_fixture
@pytest.mark.parametrize("case", ["case_a", "case_b"])
def test_f0_transform_matches_the_original(case):
    frontend, io = load_pt("e2e_f0_44k/frontend.pt"), load_pt(f"e2e_f0_44k/{case}.pt")
    args = {"case_a": (False, 0), "case_b": (True, 3)}[case]
    got = shift_source_f0(frontend["F0_alt"], frontend["F0_ori"], *args)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, io["shifted_f0_alt"], atol=1e-6, rtol=1e-9)


def test_settings_outside_the_supported_ranges_are_refused():
    ConversionSettings().validate()
    for bad in (dict(diffusion_steps=0), dict(diffusion_steps=201), dict(length_adjust=0.1),
                dict(inference_cfg_rate=1.5), dict(semitone_shift=30), dict(length_adjust=float("nan")),
                dict(diffusion_steps=2.5)):
        with pytest.raises(ConversionError):
            ConversionSettings(**bad).validate()
