"""eval.py as a user runs it: a real process on a small folder, converting first with a tiny offline model, then
scoring the same files again without --convert after one of them was damaged."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from evaluation_audio import SENTENCES, speak

from tiny import AUDIO, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]


def run_eval(*args, cwd: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(ROOT / "eval.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_convert_grid_then_score_folder_with_a_bad_file(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    for name in ("meeting", "walk"):
        speak(SENTENCES[name], sources / f"{name}.wav")
    (tmp_path / "index.tsv").write_text("".join(f"{n}\t{SENTENCES[n]}\n" for n in ("meeting", "walk")))
    config = write_tiny_config(tmp_path)
    common = ["--source", sources, "--reference", AUDIO / "s1p2.wav", "--transcripts", tmp_path / "index.tsv",
              "--converted", tmp_path / "converted", "--diffusion-steps", 1, 2, "--metrics", "secs,wer,dnsmos",
              "--device", "cpu"]
    first = run_eval(*common, "--convert", "--config", config, "--seed", 0, "--fp16", "false",
                     "--output", tmp_path / "first", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    converted = sorted(p.name for p in (tmp_path / "converted").iterdir())
    assert converted == ["vc_meeting_s1p2_1.0_1_0.7.wav", "vc_meeting_s1p2_1.0_2_0.7.wav",
                         "vc_walk_s1p2_1.0_1_0.7.wav", "vc_walk_s1p2_1.0_2_0.7.wav"]   # inference.py's names
    table = first.stdout
    for row in ("| source (unconverted) | 2 |", "| steps=1 | 2 |", "| steps=2 | 2 |"):
        assert row in table, table
    assert "SECS | WER % | CER % | SIG | BAK | OVRL | P808" in table and "Resemblyzer" in table and "tiny.en" in table
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert {c["metric"] for c in summary["metrics"]} == {"SECS", "WER/CER", "DNSMOS"}
    source_row = summary["summary"]["source (unconverted)"]
    assert source_row["wer"]["mean"] < 0.2 and source_row["secs"]["n"] == 2     # espeak-ng is intelligible
    csv_lines = (tmp_path / "first" / "per_utterance.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 6 and csv_lines[0].startswith("setting,source,reference,converted,secs,wer,cer")
    assert (tmp_path / "first" / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (tmp_path / "converted" / "vc_walk_s1p2_1.0_2_0.7.wav").write_bytes(b"not audio")
    # DNSMOS: defined for any clip (the random model's buzz has no speech for SECS, see the CSV's note column).
    second = run_eval(*common, "--metrics", "dnsmos", "--no-baseline", "--output", tmp_path / "second", cwd=tmp_path)
    assert second.returncode == 1, second.stderr[-3000:]
    assert "1 item(s) skipped" in second.stderr and "vc_walk_s1p2_1.0_2_0.7.wav" in second.stderr
    assert "| steps=1 | 2 |" in second.stdout and "| steps=2 | 1 |" in second.stdout
    again = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert again["summary"]["steps=1"]["dnsmos_ovrl"] == summary["summary"]["steps=1"]["dnsmos_ovrl"]
    assert len(again["failures"]) == 1


def test_user_errors_name_the_input(tmp_path):
    (tmp_path / "src").mkdir()
    missing = run_eval("--source", tmp_path / "src", "--reference", AUDIO / "s1p2.wav", "--converted", tmp_path,
                       cwd=tmp_path)
    assert missing.returncode == 2 and "no source audio files found" in missing.stderr
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    bad = run_eval("--source", AUDIO / "s1p1.wav", "--reference", AUDIO / "s1p2.wav", "--converted", tmp_path,
                   "--transcripts", tmp_path / "bad.tsv", cwd=tmp_path)
    assert bad.returncode == 2 and "bad.tsv, line 1" in bad.stderr
    metric = run_eval("--source", AUDIO / "s1p1.wav", "--reference", AUDIO / "s1p2.wav", "--converted", tmp_path,
                      "--metrics", "secs,utmos", cwd=tmp_path)
    assert metric.returncode == 2 and "utmos" in metric.stderr
