"""inference.py as a user runs it: real processes, real files, tiny offline models."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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
    pair = ("--source", AUDIO / "s3p1.wav", "--target", AUDIO / "s1p1.wav")   # both required since issue 11
    proc = run_cli(*pair, "--checkpoint", "x.pth")
    assert proc.returncode == 2 and "--checkpoint needs the --config" in proc.stderr
    proc = run_cli(*pair, "--config", write_tiny_config(tmp_path), "--diffusion-steps", 500)
    assert proc.returncode == 2 and "diffusion_steps" in proc.stderr
    proc = run_cli(*pair, "--config", write_tiny_config(tmp_path), "--f0-condition", "true")
    assert proc.returncode == 2 and "f0_condition" in proc.stderr
    proc = run_cli(*pair, "--run-name", "missing", cwd=tmp_path)
    assert proc.returncode == 2 and "run directory not found" in proc.stderr


def test_official_model_offline_fails_with_a_pointer_to_local_files(tmp_path):
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--target", AUDIO / "s1p1.wav", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Plachta/Seed-VC" in proc.stderr and "--checkpoint" in proc.stderr


# ------------------------------------------------------------------------------------------------ issue 11

def clip(path: Path, name: str, seconds: float) -> Path:
    """The first `seconds` of a test clip, written to `path` (short clips keep these tests fast)."""
    wave, rate = sf.read(AUDIO / name, dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave[: int(seconds * rate)], rate)
    return path


def tiny_args(tmp_path, *extra):
    return ("--target", clip(tmp_path / "ref" / "s1p1.wav", "s1p1.wav", 3.0), "--config",
            write_tiny_config(tmp_path), "--diffusion-steps", 1, "--seed", 0, "--device", "cpu", *extra)


def test_batch_outputs_are_unique_and_never_replace_a_file(tmp_path):
    """x/a/clip.wav, x/b/clip.wav, song.wav and song.v2.wav: four sources, four results; a second run into the
    same folder refuses to replace them unless --overwrite."""
    folder = tmp_path / "x"
    lengths = {"a/clip.wav": 1.2, "b/clip.wav": 1.5, "song.wav": 1.8, "song.v2.wav": 2.1}
    for name, seconds in lengths.items():
        clip(folder / name, "s3p1.wav", seconds)
    out = tmp_path / "out"
    proc = run_cli("--source", folder, "--output", out, *tiny_args(tmp_path))
    assert proc.returncode == 0, proc.stderr
    written = sorted(p for p in out.rglob("*.wav"))
    assert len(written) == 4, (written, proc.stdout, proc.stderr)
    for seconds in lengths.values():   # each result has its own source's length
        assert sum(abs(sf.info(p).duration - seconds) < 0.05 for p in written) == 1, seconds
    assert "song.v2.wav" in proc.stderr       # the name collision is reported
    before = {p: p.read_bytes() for p in written}
    again = run_cli("--source", folder, "--output", out, *tiny_args(tmp_path))
    assert again.returncode == 2 and "--overwrite" in again.stderr, again.stderr
    assert "RTF" not in again.stdout                        # refused before converting anything
    assert {p: p.read_bytes() for p in written} == before
    forced = run_cli("--source", folder / "song.wav", "--output", out, "--overwrite", *tiny_args(tmp_path))
    assert forced.returncode == 0, forced.stderr
    assert sorted(out.rglob("*.wav")) == written


def test_an_unusable_output_folder_is_refused_before_converting(tmp_path):
    from fs_helpers import unwritable_folder
    source = clip(tmp_path / "in" / "s3p1.wav", "s3p1.wav", 1.5)
    for output in (unwritable_folder(tmp_path), source):     # unwritable; a file (the source itself)
        proc = run_cli("--source", source, "--output", output, *tiny_args(tmp_path))
        assert proc.returncode == 2, proc.stderr
        assert "RTF" not in proc.stdout and "Errno" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert "--output" in proc.stderr and str(output) in proc.stderr, proc.stderr


def test_a_too_short_source_is_named(tmp_path):
    blip = tmp_path / "blip.wav"
    sf.write(blip, sf.read(AUDIO / "s3p1.wav", dtype="float32")[0][:334], 24000)
    proc = run_cli("--source", blip, "--output", tmp_path / "out", *tiny_args(tmp_path))
    assert proc.returncode == 1
    failure = proc.stderr.splitlines()[-1]
    assert "source" in failure and "blip.wav" in failure and "at least" in failure, proc.stderr
    assert "F0 extraction" not in proc.stderr and "samples" not in failure


def test_a_run_that_writes_nothing_leaves_no_new_folder(tmp_path):
    blip = tmp_path / "blip.wav"
    sf.write(blip, sf.read(AUDIO / "s3p1.wav", dtype="float32")[0][:334], 24000)
    new = tmp_path / "new" / "out"
    assert run_cli("--source", blip, "--output", new, *tiny_args(tmp_path)).returncode == 1
    assert not (tmp_path / "new").exists()
    proc = run_cli("--source", AUDIO / "s3p1.wav", "--target", AUDIO / "s1p1.wav", cwd=tmp_path)  # offline hub
    assert proc.returncode == 2 and not (tmp_path / "reconstructed").exists(), proc.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    assert run_cli("--source", blip, "--output", mine, *tiny_args(tmp_path)).returncode == 1
    assert mine.is_dir(), "a folder that existed before is the user's: never removed"


def test_source_and_target_are_required(tmp_path):
    for args in ((), ("--source", AUDIO / "s3p1.wav"), ("--target", AUDIO / "s1p1.wav")):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "required" in proc.stderr, proc.stderr
        assert "examples/" not in proc.stderr


def test_a_model_bug_is_not_reported_as_a_bad_input(tmp_path, monkeypatch):
    """A RuntimeError inside the model is a bug: it surfaces as one, not as "FAILED <file>" with exit 1."""
    import inference

    class Broken:
        sample_rate = 22050

        def convert(self, *args, **kwargs):
            raise RuntimeError("shape mismatch inside the DiT")

        def load(self, path, role):
            return path

    monkeypatch.setattr(inference, "build_converter", lambda *a, **k: Broken())
    with pytest.raises(RuntimeError, match="shape mismatch"):
        inference.main(["--source", str(AUDIO / "s3p1.wav"), "--target", str(AUDIO / "s1p1.wav"),
                        "--output", str(tmp_path / "out"), "--config", str(write_tiny_config(tmp_path))])


def test_a_batch_decodes_its_reference_once(tmp_path, monkeypatch):
    import inference
    from modules import audio
    decoded = []
    real_decode = audio._decode
    monkeypatch.setattr(audio, "_decode", lambda path, *a, **k: decoded.append(Path(path).name) or
                        real_decode(path, *a, **k))
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("s3p1.wav", "s4p1.wav"):
        clip(folder / name, name, 1.5)
    assert inference.main(["--source", str(folder), "--output", str(tmp_path / "out"),
                           *map(str, tiny_args(tmp_path))]) == 0
    assert decoded.count("s1p1.wav") == 1, decoded
