"""The bookkeeping around the metrics: grids and their labels, transcripts, intervals, the table and the files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.evaluation import EvaluationResult, build_items, in_folder, settings_grid
from modules.evaluation.app import parse_grid
from modules.evaluation.pairing import SOURCE_BASELINE, parse_transcripts, read_transcripts
from modules.evaluation.report import format_table, mean_interval, summarise, write_outputs
from modules.pipeline import ConversionError


def test_grid_labels_name_only_what_varies():
    grid = settings_grid([4, 10], [0.5, 0.7], [1.0], [0])
    assert list(grid) == ["steps=4 cfg=0.5", "steps=4 cfg=0.7", "steps=10 cfg=0.5", "steps=10 cfg=0.7"]
    assert grid["steps=10 cfg=0.5"].diffusion_steps == 10 and grid["steps=10 cfg=0.5"].inference_cfg_rate == 0.5
    assert list(settings_grid([25], [0.7])) == ["steps=25 cfg=0.7 len=1.0 shift=0"]
    with pytest.raises(ConversionError, match="inference_cfg_rate"):
        settings_grid([4], [1.5])


def test_items_pair_every_source_reference_and_setting(tmp_path):
    grid = settings_grid([4, 10], [0.7])
    from inference import plan_outputs
    sources = [Path("a.wav"), Path("b.wav")]
    items = build_items(sources, [Path("r.wav")], grid, in_folder(tmp_path, plan_outputs, sources), {"a": "text of a"})
    assert [(i.setting, i.source.name, i.converted and Path(i.converted).name) for i in items] == [
        (SOURCE_BASELINE, "a.wav", None), (SOURCE_BASELINE, "b.wav", None),
        ("steps=4", "a.wav", "vc_a_r_1.0_4_0.7.wav"), ("steps=4", "b.wav", "vc_b_r_1.0_4_0.7.wav"),
        ("steps=10", "a.wav", "vc_a_r_1.0_10_0.7.wav"), ("steps=10", "b.wav", "vc_b_r_1.0_10_0.7.wav")]
    assert [i.transcript for i in items[:2]] == ["text of a", None]


def test_colliding_sources_are_found_under_the_names_inference_py_gives_them(tmp_path):
    from inference import plan_outputs
    sources = [Path("x/clip.wav"), Path("y/clip.wav")]
    where = in_folder(tmp_path, plan_outputs, sources)
    settings = settings_grid([4], [0.7])["steps=4 cfg=0.7 len=1.0 shift=0"]
    first, second = (where(s, Path("r.wav"), "l", settings) for s in sources)
    assert first != second and first.parent == tmp_path == second.parent


def test_transcripts_and_grids_name_the_bad_input(tmp_path):
    index = tmp_path / "index.tsv"
    index.write_text("a\tHello there.\n\nb\tSecond one\n")
    assert read_transcripts(index) == {"a": "Hello there.", "b": "Second one"}
    index.write_text("a\tx\na\ty\n")
    with pytest.raises(ValueError, match=r"index.tsv, line 2: id 'a' appears twice"):
        read_transcripts(index)
    assert parse_transcripts("a|typed in a browser", "box", "\t|") == {"a": "typed in a browser"}
    assert parse_grid("4, 10;25", "steps", int) == [4, 10, 25]
    for bad in ("4.5", "four", ""):
        with pytest.raises(ConversionError, match="steps"):
            parse_grid(bad, "steps", int)


def test_mean_interval_is_the_student_t_one():
    entry = mean_interval([1.0, 2.0, 3.0, float("nan")])   # NaN (no voiced frames, say) is left out
    assert entry["n"] == 3 and entry["mean"] == 2.0
    assert entry["ci95"] == pytest.approx(4.302653 * 1.0 / 3 ** 0.5, rel=1e-6)
    assert mean_interval([0.5])["ci95"] != mean_interval([0.5])["ci95"]   # one value: no interval (NaN)


def test_table_csv_json_png(tmp_path):
    rows = [{"setting": "steps=4", "source": "a.wav", "reference": "r.wav", "converted": "c1.wav", "secs": 0.8,
             "wer": 0.1}, {"setting": "steps=4", "source": "b.wav", "reference": "r.wav", "converted": "c2.wav",
                           "secs": 0.6, "wer": 0.3},
            {"setting": "steps=10", "source": "a.wav", "reference": "r.wav", "converted": "c3.wav", "secs": 0.9}]
    result = EvaluationResult(rows, [("steps=10: c4.wav", "unreadable")], [{"metric": "SECS", "model": "m",
                                                                             "version": "v"}], ["secs", "wer"])
    table = format_table(summarise(result), result.columns)
    assert "| setting | n | SECS | WER % |" in table
    assert "| steps=4 | 2 | 0.7 ± 1.3 | 20.00 ± 1.3e+02 |" in table and "| steps=10 | 1 | 0.9 | - |" in table
    out = write_outputs(tmp_path, result)
    document = json.loads(out["json"].read_text())
    assert document["summary"]["steps=10"]["secs"] == {"n": 1, "mean": 0.9, "ci95": None}
    assert document["failures"] == [{"item": "steps=10: c4.wav", "error": "unreadable"}]
    assert out["csv"].read_text().splitlines()[1].startswith("steps=4,a.wav,r.wav,c1.wav,0.8,0.1")
    assert out["png"].read_bytes()[:4] == b"\x89PNG"
