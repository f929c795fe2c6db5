"""inference.py as a user runs it: real processes, real files, tiny offline models."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from tiny import AUDIO, dit_checkpoint, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(ROOT / "inference.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_single_file_with_the_original_flags(tmp_path):
    config = write_tiny_config(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("--source", AUDIO / "source_s1.wav", "--target", AUDIO / "s1p1.wav", "--output", out,
                   "--config", config, "--diffusion-steps", 2, "--length-adjust", 1.0, "--inference-cfg-rate", 0.7,
                   "--fp16", "false", "--seed", 0, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    wav = out / "vc_source_s1_s1p1_1.0_2_0.7.wav"
    info = sf.info(wav)
    assert info.samplerate == 22050 and abs(info.duration - sf.info(AUDIO / "source_s1.wav").duration) < 0.05
    assert "RTF" in proc.stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_batch_folder_keeps_going_past_a_corrupt_file(tmp_path):
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    shutil.copyfile(AUDIO / "s3p1.wav", folder / "a.wav")
    shutil.copyfile(AUDIO / "s4p1.wav", folder / "nested" / "b.wav")
    (folder / "broken.wav").write_bytes(b"RIFF" + b"\x01" * 64)
    out = tmp_path / "out"
    proc = run_cli("--source", folder, "--target", AUDIO / "s1p1.wav", "--output", out,
                   "--config", write_tiny_config(tmp_path), "--diffusion-steps", 2, "--seed", 0)
    assert proc.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["vc_a_s1p1_1.0_2_0.7.wav", "vc_b_s1p1_1.0_2_0.7.wav"]
    assert "1 of 3 file(s) failed" in proc.stderr and "broken.wav" in proc.stderr


def test_run_name_picks_the_run_checkpoint_and_its_config(tmp_path):
    run = tmp_path / "runs" / "my_voice"
    run.mkdir(parents=True)
    write_tiny_config(run)
    shutil.copyfile(dit_checkpoint("wavenet_22k", "ft_model"), run / "ft_model.pth")
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--target", AUDIO / "s1p1.wav", "--output", tmp_path / "out",
                   "--run-name", "my_voice", "--diffusion-steps", 1, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ft_model.pth" in proc.stderr  # the choice is logged
    assert len(list((tmp_path / "out").glob("vc_*.wav"))) == 1


def test_errors_before_any_work(tmp_path):
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--checkpoint", "x.pth")
    assert proc.returncode == 2 and "--checkpoint needs the --config" in proc.stderr
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--config", write_tiny_config(tmp_path), "--diffusion-steps", 500)
    assert proc.returncode == 2 and "diffusion_steps" in proc.stderr
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--config", write_tiny_config(tmp_path), "--f0-condition", "true")
    assert proc.returncode == 2 and "f0_condition" in proc.stderr
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--run-name", "missing", cwd=tmp_path)
    assert proc.returncode == 2 and "run directory not found" in proc.stderr


def test_official_model_offline_fails_with_a_pointer_to_local_files(tmp_path):
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--target", AUDIO / "s1p1.wav", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Plachta/Seed-VC" in proc.stderr and "--checkpoint" in proc.stderr
