"""TrainState, the one training-checkpoint schema (modules/training/state.py), without running a training."""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping

import numpy as np
import torch

from modules.checkpoint import read_checkpoint
from modules.config import load_config
from modules.model import build_model
from modules.training.data import DataPosition
from modules.training.state import TrainState, capture_rng
from modules.training.trainer import TrainingOptions, build_optimizers
from tiny import CHECKPOINT_EPOCH, CHECKPOINT_ITERS, dit_checkpoint, dit_config

OFFICIAL_KEYS = ["net", "optimizer", "scheduler", "iters", "epoch"]
EXTRA_KEYS = ["position", "seed", "world_size", "rng", "loss_avg", "scaler", "config"]


def same(a, b) -> bool:
    """Equal as nested containers of tensors and plain values (tuples and lists alike)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def run_objects():
    cfg = load_config(dit_config("wavenet_22k"))
    model = build_model(cfg)
    optimizers, schedulers = build_optimizers(model, lr=1e-5)
    return cfg, model, optimizers, schedulers


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_round_trip_through_a_file_gives_the_same_state(tmp_path):
    cfg, model, optimizers, schedulers = run_objects()
    for part, module in model.parts().items():    # one step, so the AdamW moments are not empty
        for p in module.parameters():
            p.grad = torch.randn_like(p)
        optimizers[part].step()
        schedulers[part].step()
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    state = TrainState(seed=11, optimizers=optimizers, schedulers=schedulers, scaler=scaler, config=cfg, iters=7,
                       epoch=2, position=DataPosition(3, 1), rng=[capture_rng()], loss_avg=0.25)
    expected_draws = draws()
    path = tmp_path / "state.pth"
    torch.save(state.to_checkpoint(model), path)

    checkpoint = torch.load(path, weights_only=True)
    assert list(checkpoint) == OFFICIAL_KEYS + EXTRA_KEYS
    assert [part for part, _ in checkpoint["optimizer"]] == ["cfm", "length_regulator"]
    _, fresh_model, fresh_optimizers, fresh_schedulers = run_objects()
    fresh_scaler = torch.amp.GradScaler("cpu")
    restored = TrainState.from_checkpoint(checkpoint, fresh_optimizers, fresh_schedulers, fresh_scaler, seed=99)

    for f in dataclasses.fields(TrainState):
        if f.name not in ("optimizers", "schedulers", "scaler"):
            assert same(getattr(restored, f.name), getattr(state, f.name)), f.name
    for part in ("cfm", "length_regulator"):
        assert same(restored.optimizers[part].state_dict(), optimizers[part].state_dict()), part
        assert same(restored.schedulers[part].state_dict(), schedulers[part].state_dict()), part
    assert same(restored.scaler.state_dict(), scaler.state_dict())
    assert restored.world_size == 1 and TrainState.saved_config(checkpoint) == cfg
    assert same(restored.to_checkpoint(model), state.to_checkpoint(model))

    draws()
    assert restored.restore_process_rng(rank=0, world_size=1)
    assert same(draws(), expected_draws)
    assert not restored.restore_process_rng(rank=0, world_size=2)


def test_an_original_format_checkpoint_resumes_at_the_next_epoch():
    """Only net, optimizer, scheduler, iters and epoch (the original project's trainer): the run continues at
    step `iters`, at the first batch of the epoch after `epoch`, with the seed it is given."""
    checkpoint = read_checkpoint(dit_checkpoint("wavenet_22k"))
    assert sorted(checkpoint) == sorted(OFFICIAL_KEYS)
    _, _, optimizers, schedulers = run_objects()
    state = TrainState.from_checkpoint(checkpoint, optimizers, schedulers, seed=42)
    assert (state.iters, state.epoch) == (CHECKPOINT_ITERS, CHECKPOINT_EPOCH)
    assert state.position == DataPosition(CHECKPOINT_EPOCH + 1, 0)
    assert state.seed == 42 and state.loss_avg is None and state.scaler is None
    assert TrainState.saved_config(checkpoint) is None
    assert same(schedulers["cfm"].state_dict(), dict(checkpoint["scheduler"])["cfm"])
    assert state.world_size == 0 and not state.restore_process_rng(rank=0, world_size=1)


def test_train_py_flags_default_to_the_training_options():
    import train
    args = train.parse_args([])
    for f in dataclasses.fields(TrainingOptions):
        if f.default is not dataclasses.MISSING:
            assert getattr(args, f.name) == f.default, f.name


def test_each_batch_carries_the_position_after_it_through_worker_processes():
    """The loader prefetches with workers; the position still arrives with the batch it follows."""
    from modules.config import MelParams
    from modules.training.data import ClipDataset, EpochSchedule, load_batches
    from tiny import AUDIO

    files = [AUDIO / f"{name}.wav" for name in ("s1p1", "s1p2", "s2p1", "s2p2", "s3p1")]
    mel_params = MelParams.from_config(load_config(dit_config("wavenet_22k")))
    schedule = EpochSchedule(len(files), batch_size=2, seed=1)      # 2 batches per epoch
    start = DataPosition(0, 1)
    batches = load_batches(files, mel_params, schedule, start, num_workers=2)
    got = [next(batches) for _ in range(5)]
    assert [b.next_position for b in got] == [DataPosition(1, 0), DataPosition(1, 1), DataPosition(2, 0),
                                              DataPosition(2, 1), DataPosition(3, 0)]
    clips = ClipDataset(files, mel_params)
    for batch, position in zip(got, [start] + [b.next_position for b in got[:-1]]):
        frames = sorted((clips.clip(i)[1].shape[-1] for i in schedule.indices(position)), reverse=True)
        assert batch.mel_lengths.tolist() == frames


def test_adamw_runs_fused_on_cpu_also_after_resuming_an_original_checkpoint():
    """The original saves for-loop AdamW groups (no `fused`); loading one must not switch this run's update off
    the fused kernel, and the fused update is the for-loop one to float rounding."""
    checkpoint = read_checkpoint(dit_checkpoint("wavenet_22k"))
    assert not any(g.get("fused") for _, sd in checkpoint["optimizer"] for g in sd["param_groups"])
    _, model, optimizers, schedulers = run_objects()
    TrainState.from_checkpoint(checkpoint, optimizers, schedulers, seed=0)
    assert all(g["fused"] for opt in optimizers.values() for g in opt.param_groups)

    reference_model = build_model(load_config(dit_config("wavenet_22k")))
    reference_model.load_state_dict(model.state_dict())
    loop = {part: torch.optim.AdamW(m.parameters(), foreach=False) for part, m in reference_model.parts().items()}
    for part, sd in checkpoint["optimizer"]:
        loop[part].load_state_dict(sd)
    torch.manual_seed(0)
    for part in optimizers:
        for p, q in zip(getattr(model, part).parameters(), getattr(reference_model, part).parameters()):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        for _ in range(3):
            optimizers[part].step()
            loop[part].step()
        for p, q in zip(getattr(model, part).parameters(), getattr(reference_model, part).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
            assert not torch.equal(p, p.grad)  # stepped
