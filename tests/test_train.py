"""train.py as a user runs it: real processes on a small folder of real speech, a tiny model, the CPU.

One uninterrupted run is the yardstick; interrupted, corrupted, resumed and exported runs are compared
with it tensor by tensor.
"""
from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from modules.checkpoint import checkpoint_step, read_checkpoint, training_checkpoints
from modules.training.metrics import read_metrics
from tiny import AUDIO, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
STEPS, SAVE_EVERY, SEED = 8, 2, 3
ENV = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """tiny_speech.yml (log_dir ./runs) and data/: 6 usable clips of 1.1-1.9 s and 5 bad files."""
    work = tmp_path_factory.mktemp("train")
    write_tiny_config(work, "speech", log_dir=Path("runs"))
    data = work / "data"
    (data / "speaker" / "nested").mkdir(parents=True)
    for n, name in enumerate(["s1p1.wav", "s2p1.wav", "s3p1.wav"]):
        wave, sr = sf.read(AUDIO / name)
        sf.write(data / "speaker" / f"{n}a.wav", wave[sr: int(2.1 * sr)], sr)
        sf.write(data / "speaker" / "nested" / f"{n}b.flac", wave[3 * sr: int(4.9 * sr)], sr)
    sf.write(data / "too_short.wav", np.full(8000, 0.1, np.float32), 16000)
    sf.write(data / "silent.wav", np.zeros(32000, np.float32), 16000)
    (data / "broken.ogg").write_bytes(b"OggS" + b"\0" * 40)
    (data / "not_audio.mp3").write_text("a text file with an audio name\n" * 20)
    sf.write(data / "too_long.wav", np.full(16000 * 31, 0.1, np.float32), 16000)
    return work


def train(work: Path, run: str, *extra, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(command(run, *extra), cwd=work, env=env or ENV, capture_output=True, text=True,
                          timeout=600, **popen)


def command(run: str, *extra, config: str = "tiny_speech.yml", data: str = "data") -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--config", config, "--dataset-dir", data, "--run-name", run, "--batch-size", "2", "--max-steps", str(STEPS), "--save-every", str(SAVE_EVERY),
            "--seed", str(SEED), "--device", "cpu", "--no-progress", *map(str, extra)]


@pytest.fixture(scope="module")
def reference_run(workdir) -> tuple[Path, str]:
    """An uninterrupted run that keeps every checkpoint: (run directory, its log)."""
    proc = train(workdir, "reference", "--keep-checkpoints", 100)
    assert proc.returncode == 0, proc.stderr
    return workdir / "runs" / "reference", proc.stderr


@pytest.fixture(scope="module")
def reference(reference_run) -> Path:
    return reference_run[0]


def assert_same_training_state(a: Path, b: Path) -> None:
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    assert sa["iters"] == sb["iters"] and sa["position"] == sb["position"]
    for part in ("cfm", "length_regulator"):
        for key, value in sa["net"][part].items():
            assert torch.equal(value, sb["net"][part][key]), f"{part}.{key} differs"
    for (part, oa), (_, ob) in zip(sa["optimizer"], sb["optimizer"]):
        assert oa["param_groups"] == ob["param_groups"]
        for index, state in oa["state"].items():
            for name, value in state.items():
                assert torch.equal(value, ob["state"][index][name]), f"optimizer {part}[{index}].{name} differs"
    assert sa["scheduler"] == sb["scheduler"]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl")]


def steps(run_dir: Path) -> dict[int, Path]:
    """Training checkpoints by step (6 clips in batches of 2: epoch e holds steps 3e+1 .. 3e+3)."""
    return {checkpoint_step(p): p for p in training_checkpoints(run_dir)}


def test_fresh_run_layout_and_bad_files_are_reported(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert names == ["DiT_epoch_00000_step_00002.pth", "DiT_epoch_00001_step_00004.pth",
                     "DiT_epoch_00001_step_00006.pth", "DiT_epoch_00002_step_00008.pth", "ft_model.pth",
                     "loss.png", "metrics.jsonl", "tiny_speech.yml"]
    state = read_checkpoint(steps(reference)[8])
    assert state["epoch"] == 2 and state["position"] == {"epoch": 2, "batch": 2}
    # The official layout, and what an exact continuation needs besides.
    assert [p for p, _ in state["optimizer"]] == [p for p, _ in state["scheduler"]] == ["cfm", "length_regulator"]
    assert state["iters"] == STEPS and state["seed"] == SEED and state["config"]["model_params"]
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    lr = state["optimizer"][0][1]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-5 * 0.999996 ** STEPS, rel=1e-9)
    assert list(read_checkpoint(reference / "ft_model.pth")) == ["net"]
    assert [s for s, _ in losses(reference)] == list(range(1, STEPS + 1))
    assert (reference / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_files_are_skipped_with_a_summary(reference_run):
    log = reference_run[1]
    for name, reason in (("too_short.wav", "it must be at least 1 s"), ("silent.wav", "is silent"),
                         ("too_long.wav", "the limit is 30 s"), ("broken.ogg", "broken.ogg"),
                         ("not_audio.mp3", "not_audio.mp3")):
        assert any(name in line and reason in line for line in log.splitlines() if "WARNING" in line), name
    assert "6 usable clips (0.1 min); skipped 5: 2 unreadable, 1 silent, 1 too long, 1 too short" in log


def test_sigkill_at_random_moments_then_resume_is_bit_exact(workdir, reference):
    """Kill the real process mid-save (seen by its temporary file) and at random steps, resume each time."""
    run_dir = workdir / "runs" / "killed"
    env = dict(ENV, SEEDVC_TEST_SAVE_DELAY="0.4")
    rng = random.Random(7)
    kills = kills_mid_save = 0
    for target in ("save", "step", "save", "step"):
        proc = subprocess.Popen(command("killed"), cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        start_steps = len(losses(run_dir)) if (run_dir / "metrics.jsonl").exists() else 0
        deadline = time.time() + 120
        delay = rng.uniform(0.0, 0.6)
        while proc.poll() is None and time.time() < deadline:
            if target == "save" and run_dir.is_dir() and list(run_dir.glob(".DiT_epoch_*.tmp")):
                break
            if target == "step" and (run_dir / "metrics.jsonl").exists() and len(losses(run_dir)) > start_steps:
                time.sleep(delay)
                break
            time.sleep(0.01)
        if proc.poll() is None:
            mid_save = bool(list(run_dir.glob(".DiT_epoch_*.tmp")))
            proc.send_signal(signal.SIGKILL)
            kills += 1
            kills_mid_save += mid_save
        proc.wait()
        # Whatever the moment, every file under a checkpoint name is complete.
        for path in training_checkpoints(run_dir):
            read_checkpoint(path)
    assert kills >= 3 and kills_mid_save >= 1
    proc = train(workdir, "killed")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr
    assert_same_training_state(steps(reference)[8], steps(run_dir)[8])
    assert losses(run_dir) == losses(reference)
    assert not list(run_dir.glob(".*.tmp"))
    assert sorted(steps(run_dir)) == [6, 8]


def test_corrupt_newest_checkpoint_is_skipped_and_the_previous_one_used(workdir, reference):
    proc = train(workdir, "corrupt", "--max-steps", 4, "--keep-checkpoints", 5)
    assert proc.returncode == 0, proc.stderr
    run_dir = workdir / "runs" / "corrupt"
    newest = steps(run_dir)[4]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])   # a torn file
    proc = train(workdir, "corrupt", "--max-steps", 6, "--keep-checkpoints", 5)
    assert proc.returncode == 0, proc.stderr
    assert "skipping unreadable checkpoint" in proc.stderr and f"{newest.name}: not a readable" in proc.stderr
    assert f"resuming from {steps(run_dir)[2].name}" in proc.stderr
    assert newest.with_name(newest.name + ".corrupt").exists()
    assert_same_training_state(steps(reference)[6], steps(run_dir)[6])


def test_retention_keeps_the_newest_across_a_resume(workdir):
    proc = train(workdir, "retention", "--max-steps", 3, "--save-every", 1)
    assert proc.returncode == 0, proc.stderr
    run_dir = workdir / "runs" / "retention"
    assert sorted(steps(run_dir)) == [2, 3]
    proc = train(workdir, "retention", "--max-steps", 5, "--save-every", 1)
    assert proc.returncode == 0, proc.stderr
    assert sorted(steps(run_dir)) == [4, 5]


def test_finished_run_only_exports(workdir, reference):
    copy = workdir / "runs" / "finished"
    shutil.copytree(reference, copy)
    (copy / "ft_model.pth").unlink()
    before = sorted(p.name for p in copy.iterdir())
    proc = train(workdir, "finished", "--keep-checkpoints", 100)
    assert proc.returncode == 0, proc.stderr
    assert "exporting only" in proc.stderr
    assert sorted(p.name for p in copy.iterdir()) == sorted(before + ["ft_model.pth"])
    final = read_checkpoint(reference / "ft_model.pth")["net"]
    assert all(torch.equal(v, final["cfm"][k]) for k, v in read_checkpoint(copy / "ft_model.pth")["net"]["cfm"].items())


def test_resume_with_changed_model_params_is_refused(workdir, reference):
    shutil.copytree(reference, workdir / "runs" / "mismatch")
    cfg = yaml.safe_load((workdir / "tiny_speech.yml").read_text())
    cfg["model_params"]["DiT"]["class_dropout_prob"] = 0.3
    (workdir / "changed.yml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(command("mismatch", "--max-steps", 10, config="changed.yml"), cwd=workdir, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "model_params.DiT.class_dropout_prob: 0.1 -> 0.3" in proc.stderr
    assert len(training_checkpoints(workdir / "runs" / "mismatch")) == 4   # nothing touched


def test_full_disk_during_a_save_keeps_the_previous_checkpoints(workdir, reference):
    """RLIMIT_FSIZE makes the checkpoint write fail with EFBIG, as a full disk fails it with ENOSPC."""
    run_dir = workdir / "runs" / "full_disk"
    run_dir.mkdir(parents=True)
    kept = Path(shutil.copy(steps(reference)[2], run_dir))
    shutil.copy(reference / "tiny_speech.yml", run_dir)
    limit = kept.stat().st_size // 2
    proc = train(workdir, "full_disk", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert proc.returncode == 1, proc.stderr
    assert f"could not save {steps(reference)[4].name}" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir() if p.suffix == ".pth") == [kept.name]
    assert not list(run_dir.glob(".*.tmp"))
    read_checkpoint(kept)


def test_export_then_convert_with_inference(workdir, reference, tmp_path):
    exported = tmp_path / "mine.pth"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--export",
                           str(steps(reference)[4]), "--output", str(exported)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(torch.load(exported, weights_only=True)) == ["net"]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "inference.py"), "--source", str(AUDIO / "s3p1.wav"),
                           "--target", str(AUDIO / "s1p1.wav"), "--output", str(out), "--checkpoint", str(exported),
                           "--config", str(reference / "tiny_speech.yml"), "--diffusion-steps", "2", "--device", "cpu"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wav,) = out.glob("vc_*.wav")
    assert abs(sf.info(wav).duration - sf.info(AUDIO / "s3p1.wav").duration) < 0.05


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_missing_or_empty_dataset_fails_at_once(workdir, folder):
    (workdir / "empty").mkdir(exist_ok=True)
    proc = subprocess.run(command(f"no_data_{folder}", data=folder), cwd=workdir, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert (f"dataset directory not found: {folder}" if folder == "missing" else "no audio files") in proc.stderr
    assert not (workdir / "runs" / f"no_data_{folder}").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_accelerate_save_and_resume(workdir):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    first = subprocess.run(launch + command("ddp", "--max-steps", 2, "--save-every", 1)[1:], cwd=workdir,
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = workdir / "runs" / "ddp"
    state = read_checkpoint(steps(run_dir)[2])
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # A global batch of 4 from 6 clips: one step per epoch, each process on its own half.
    assert state["position"] == {"epoch": 2, "batch": 0}
    second = subprocess.run(launch + command("ddp", "--max-steps", 3, "--save-every", 1)[1:], cwd=workdir,
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("resuming") == 2     # both processes
    assert read_checkpoint(steps(run_dir)[3])["iters"] == 3
    assert (run_dir / "ft_model.pth").exists()


def test_epoch_schedule_is_seeded_complete_and_disjoint_across_processes():
    from modules.training.data import DataPosition, EpochSchedule
    ranks = [EpochSchedule(10, batch_size=2, seed=5, world_size=2, rank=r) for r in (0, 1)]
    assert ranks[0].batches_per_epoch == 2          # 10 clips, global batch 4: the partial batch is dropped
    position, seen = DataPosition(), []
    for _ in range(2):
        seen += ranks[0].indices(position) + ranks[1].indices(position)
        position = ranks[0].advance(position)
    assert position == DataPosition(1, 0) and len(set(seen)) == 8
    again = EpochSchedule(10, batch_size=2, seed=5, world_size=2, rank=0)
    assert again.order(3) == ranks[0].order(3) != ranks[0].order(4)
    tiny = EpochSchedule(3, batch_size=4, seed=0)     # fewer clips than a batch: repeated, as the original
    batch = tiny.indices(DataPosition())
    assert tiny.batches_per_epoch == 1 and len(batch) == 4 and set(batch) == {0, 1, 2}


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    from modules.atomic_io import atomic_write
    target = tmp_path / "DiT_epoch_00000_step_00001.pth"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_bad_checkpoint_arguments_fail_with_the_file_named(workdir, tmp_path):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("not a checkpoint")
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "--export", str(not_a_checkpoint)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and f"{not_a_checkpoint}: not a readable checkpoint" in proc.stderr
    assert not (tmp_path / "ft_model.pth").exists()
    missing = tmp_path / "missing.pth"
    proc = train(workdir, "bad_pretrained", "--pretrained-ckpt", missing)
    assert proc.returncode == 2 and str(missing) in proc.stderr
    assert not list((workdir / "runs" / "bad_pretrained").glob("*.pth"))


# ------------------------------------------------------------------------------------------------ issue 11

def test_links_in_the_dataset_are_followed_once(workdir, tmp_path):
    """Two links back up the tree (loops) and one to a folder outside: each real folder is read once and each
    real file counted once, so 3 real clips are 3 usable clips."""
    data = tmp_path / "linked"
    (data / "spk").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for n, (folder, clip) in enumerate(((data / "spk", "s1p1.wav"), (data / "spk", "s2p1.wav"), (outside, "s3p1.wav"))):
        wave, sr = sf.read(AUDIO / clip)
        sf.write(folder / f"{n}.wav", wave[sr: int(2.5 * sr)], sr)
    (data / "spk" / "up").symlink_to("..")
    (data / "spk" / "up_again").symlink_to("..")
    (data / "outside").symlink_to(outside)
    (data / "spk" / "same_clip.wav").symlink_to(data / "spk" / "0.wav")
    cmd = command("linked", data=str(data))
    cmd[cmd.index("--max-steps") + 1] = "1"
    proc = subprocess.run(cmd, cwd=workdir, env=ENV, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 usable clips" in proc.stderr, proc.stderr[-3000:]


def test_an_unwritable_run_directory_fails_before_anything_heavy(workdir, tmp_path):
    from fs_helpers import unwritable_folder
    config = yaml.safe_load((workdir / "tiny_speech.yml").read_text())
    config["log_dir"] = str(unwritable_folder(tmp_path))
    (tmp_path / "ro.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(command("ro", config=str(tmp_path / "ro.yml"), data=str(workdir / "data")), cwd=workdir,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr, proc.stderr[-3000:]
    assert "fine-tuning from" not in proc.stderr and "checking dataset" not in proc.stderr  # nothing heavy ran
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and config["log_dir"] in errors[0], proc.stderr[-3000:]
