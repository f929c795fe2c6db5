"""The fine-tuning loop behind train.py: exact, crash-safe resume; one or many processes (accelerate).

A run lives in <log_dir>/<run_name>/: the config copy, DiT_epoch_*_step_*.pth checkpoints (see state.py),
metrics.jsonl, loss.png and, at the end, ft_model.pth. Starting the same command again continues from the
newest readable checkpoint with every piece of state restored, so an interrupted run ends bit-identical (on
CPU) to one that never stopped; --max-steps and --max-epochs count from the start of the run.
"""
from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from modules import hub
from modules.atomic_io import atomic_write, ensure_writable_folder, remove_stale_temporaries
from modules.checkpoint import FINAL_CHECKPOINT_NAME, load_model, read_checkpoint, run_directory
from modules.config import ConfigError, MelParams, load_config
from modules.devices import pick_device
from modules.frontends import build_frontends
from modules.model import SeedVCModel
from modules.training.data import EpochSchedule, find_audio_files, load_batches, scan_dataset
from modules.training.feature_cache import FeatureCache, frontend_identity
from modules.training.metrics import MetricsLog, plot_loss_curve
from modules.training.objective import Augmentation, FlowMatchingLoss, draw_prompt_lengths, frozen_features
from modules.training.state import (
    TrainState,
    capture_rng,
    config_differences,
    export_inference_checkpoint,
    find_resume_point,
    prune_checkpoints,
    trained_weights,
)

log = logging.getLogger(__name__)

# Test hook: seconds to wait between a checkpoint's durable temporary file and its rename, so a test can
# SIGKILL the process mid-save. Never set it in real use.
SAVE_DELAY_ENV = "SEEDVC_TEST_SAVE_DELAY"
GRAD_CLIP = 10.0        # max gradient norm, for cfm and length_regulator separately
BETAS, EPS, WEIGHT_DECAY, LR_GAMMA = (0.9, 0.98), 1e-6, 0.01, 0.999996
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


class ResumeRefused(ConfigError):
    """The run directory holds a run that this command cannot continue."""


@dataclass
class TrainingOptions:
    config: str
    dataset_dir: str
    run_name: str = "my_run"
    pretrained_ckpt: str | None = None
    batch_size: int = 2
    max_steps: int = 1000
    max_epochs: int = 1000
    save_every: int = 500
    num_workers: int = 0
    keep_checkpoints: int = 2
    seed: int | None = None
    lr: float = 1e-5
    mixed_precision: str = "no"     # no | fp16 | bf16
    device: str | None = None
    show_progress: bool = True
    feature_cache: bool = True      # cache frozen front-end features in the run directory (no augmentation)


@dataclass
class TrainingSummary:
    run_dir: Path
    step: int
    epoch: int
    exported: Path | None
    resumed_from: Path | None
    skipped_files: int


class Trainer:
    def __init__(self, options: TrainingOptions, augmentation: Augmentation | None = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.options = options
        self.augmentation = augmentation
        self.config_path = Path(options.config)
        self.cfg = load_config(self.config_path)
        self.run_dir = run_directory(self.cfg, options.run_name)
        self.mel_params = MelParams.from_config(self.cfg)
        _check_options(options)
        find_audio_files(options.dataset_dir)   # a missing or empty folder fails now, before any model loads
        ensure_writable_folder(self.run_dir, "the run directory (log_dir in the config, then --run-name)")

        wants_cpu = options.device is not None and options.device.startswith("cpu")
        # Class dropout and an F0-less length regulator leave some parameters without gradients on a step.
        # The precision is the command line's alone: without it `accelerate launch` or an `accelerate config`
        # file would add an autocast of its own beside (or instead of) --mixed-precision.
        self.accelerator = Accelerator(cpu=wants_cpu, mixed_precision=options.mixed_precision, kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=True)])
        self.world_size = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.device = self.accelerator.device if self.world_size > 1 else pick_device(options.device)
        if options.mixed_precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"--mixed-precision fp16 needs a CUDA device (this run uses {self.device}); "
                              f"use bf16 or no")

    # ------------------------------------------------------------------------------------------ set-up
    def _resume_state(self) -> tuple[Path | None, dict | None]:
        """The main process picks the checkpoint (renaming unreadable newer ones); the others read the same."""
        chosen: list = [None]
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in remove_stale_temporaries(self.run_dir):
                log.info("removed %s, left by an interrupted save", stale.name)
            point = find_resume_point(self.run_dir)
            chosen = [str(point.path) if point else None]
        chosen = self._broadcast(chosen)
        if chosen[0] is None:
            return None, None
        return Path(chosen[0]), read_checkpoint(chosen[0])

    def _broadcast(self, objects: list) -> list:
        if self.world_size > 1:
            from accelerate.utils import broadcast_object_list
            broadcast_object_list(objects, from_process=0)
        return objects

    def _check_resumable(self, path: Path, checkpoint: dict) -> None:
        saved = TrainState.saved_config(checkpoint)
        if saved is None:   # a checkpoint written by the original project: compare with the run's config copy
            copy = self.run_dir / self.config_path.name
            saved = load_config(copy) if copy.exists() else None
        if saved is None:
            log.warning("%s holds no config; cannot check that model_params are unchanged", path.name)
            return
        differences = config_differences(saved, self.cfg)
        if differences:
            raise ResumeRefused(
                f"{self.run_dir} was trained with a different config, so it cannot be resumed with "
                f"{self.config_path}:\n  " + "\n  ".join(differences) +
                f"\nUse the config it was trained with ({self.run_dir}/*.yml) or another --run-name.")

    def _copy_config(self) -> None:
        data = self.config_path.read_bytes()
        target = self.run_dir / self.config_path.name
        if not target.exists() or target.read_bytes() != data:
            atomic_write(target, lambda f: f.write(data))

    # ------------------------------------------------------------------------------------------ the run
    def run(self) -> TrainingSummary:
        opts = self.options
        resumed_from, checkpoint = self._resume_state()
        if checkpoint is not None:
            self._check_resumable(resumed_from, checkpoint)
        if self.is_main:
            self._copy_config()

        # Built on the meta device and filled with the checkpoint's tensors (one copy of the weights).
        if checkpoint is not None:
            model = load_model(self.cfg, checkpoint, source=str(resumed_from))
        else:
            pretrained = hub.resolve_dit_checkpoint(self.config_path, opts.pretrained_ckpt)
            model = load_model(self.cfg, pretrained)
        model = model.to(self.device)
        optimizers, schedulers = build_optimizers(model, opts.lr)
        scaler = torch.amp.GradScaler("cuda") if opts.mixed_precision == "fp16" else None
        if checkpoint is not None:
            state = TrainState.from_checkpoint(checkpoint, optimizers, schedulers, scaler, seed=_pick_seed(opts.seed))
            del checkpoint  # free the checkpoint's copy of the weights
            if opts.seed is not None and opts.seed != state.seed:
                log.warning("--seed %d ignored: this run continues with its saved seed %d", opts.seed, state.seed)
            log.info("resuming %s from %s (step %d, epoch %d)", self.run_dir, resumed_from.name, state.iters,
                     state.position.epoch)
        else:
            state = TrainState(seed=_pick_seed(opts.seed), optimizers=optimizers, schedulers=schedulers,
                               scaler=scaler)
            log.info("fine-tuning from %s", pretrained)
        state.config = self.cfg
        _seed_everything(state.seed + self.rank)

        if self._finished(state):
            log.info("run already complete at step %d (epoch %d); exporting only", state.iters, state.position.epoch)
            exported = self._export(model) if self.is_main else None
            return TrainingSummary(self.run_dir, state.iters, state.position.epoch, exported, resumed_from, 0)

        frontends, _ = build_frontends(self.cfg, self.device, vocoder=False)
        cache = None
        if opts.feature_cache and self.augmentation is None:
            cache = FeatureCache(self.run_dir, frontend_identity(self.cfg, self.device, self.mel_params.sampling_rate),
                                 clean=self.is_main)
        files: list = [None]
        skipped = 0
        if self.is_main:
            report = scan_dataset(opts.dataset_dir, self.mel_params.sampling_rate, opts.show_progress)
            log.info("dataset %s: %s", opts.dataset_dir, report.summary())
            files = [[str(p) for p in report.usable]]
            skipped = sum(len(v) for v in report.skipped.values())
        files = [Path(p) for p in self._broadcast(files)[0]]
        schedule = EpochSchedule(len(files), opts.batch_size, state.seed, self.world_size, self.rank)
        if resumed_from is not None:
            self._restore_rng(state)

        loss_module = FlowMatchingLoss(model.cfm, model.length_regulator).train()
        trainable = self.accelerator.prepare(loss_module) if self.world_size > 1 else loss_module
        metrics = MetricsLog(self.run_dir / "metrics.jsonl", state.iters) if self.is_main else None
        batches = load_batches(files, self.mel_params, schedule, state.position, opts.num_workers)
        autocast = torch.autocast(self.device.type, dtype=torch.float16 if opts.mixed_precision == "fp16"
                                  else torch.bfloat16, enabled=opts.mixed_precision != "no")
        bar = tqdm(total=opts.max_steps, initial=state.iters, unit="step", desc=self.run_dir.name,
                   disable=not (self.is_main and opts.show_progress), dynamic_ncols=True)
        started = time.perf_counter()
        try:
            while not self._finished(state):
                batch = next(batches)
                batch.waves, batch.mels = batch.waves.to(self.device), batch.mels.to(self.device)
                batch.mel_lengths = batch.mel_lengths.to(self.device)
                features = frozen_features(batch, frontends, self.mel_params.sampling_rate, self.augmentation, cache)
                prompt_lengths = draw_prompt_lengths(batch.mel_lengths)
                with autocast:
                    loss = trainable(batch.mels, batch.mel_lengths, prompt_lengths, features)
                norms = _optimize(loss, model, optimizers, schedulers, scaler)

                value = float(self.accelerator.reduce(loss.detach(), "mean")) if self.world_size > 1 else float(loss.detach())
                state.record_step(batch.next_position, value)
                lr = schedulers["cfm"].get_last_lr()[0]
                if metrics:
                    metrics.append({"step": state.iters, "epoch": state.epoch, "loss": value,
                                    "loss_avg": state.loss_avg, "lr": lr, "grad_norm_cfm": norms["cfm"],
                                    "grad_norm_length_regulator": norms["length_regulator"],
                                    "seconds": round(time.perf_counter() - started, 3)})
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", avg=f"{state.loss_avg:.4f}", lr=f"{lr:.3e}", epoch=state.epoch)
                if state.iters % opts.save_every == 0 or self._finished(state):
                    self._save(model, state)
        finally:
            bar.close()
            if metrics:
                metrics.close()
            if cache is not None:
                log.info("feature cache %s: %d clips read, %d computed", cache.directory, cache.hits, cache.misses)
        exported = self._export(model) if self.is_main else None
        self.accelerator.wait_for_everyone()
        return TrainingSummary(self.run_dir, state.iters, state.position.epoch, exported, resumed_from, skipped)

    def _finished(self, state: TrainState) -> bool:
        return state.iters >= self.options.max_steps or state.position.epoch >= self.options.max_epochs

    def _restore_rng(self, state: TrainState) -> None:
        """This process's generators as they were at the save, or (another number of processes) a fresh seed."""
        if not state.restore_process_rng(self.rank, self.world_size):
            log.warning("the checkpoint was written by %d process(es), this run has %d: random draws will "
                        "differ from an uninterrupted run", state.world_size, self.world_size)
            _seed_everything(state.seed + self.rank + 7919 * state.iters)

    # ------------------------------------------------------------------------------------------ files
    def _save(self, model: SeedVCModel, state: TrainState) -> None:
        """Every process's RNG into `state`, then (main process) the checkpoint, pruning and the loss plot."""
        rng = [capture_rng()]
        if self.world_size > 1:
            from accelerate.utils import gather_object
            rng = gather_object(rng)
        state.rng = rng
        if self.is_main:
            path = state.save(model, self.run_dir, before_commit=_test_delay())
            for old in prune_checkpoints(self.run_dir, self.options.keep_checkpoints):
                log.info("removed old checkpoint %s", old.name)
            plot_loss_curve(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")
            tqdm.write(f"saved {path}")
        self.accelerator.wait_for_everyone()

    def _export(self, model: SeedVCModel) -> Path:
        path = export_inference_checkpoint(trained_weights(model), self.run_dir / FINAL_CHECKPOINT_NAME)
        log.info("exported %s (use it with --checkpoint %s --config %s)", path, path,
                 self.run_dir / self.config_path.name)
        return path


def build_optimizers(model: SeedVCModel, lr: float) -> tuple[dict[str, torch.optim.Optimizer],
                                                             dict[str, torch.optim.lr_scheduler.LRScheduler]]:
    """One AdamW and one ExponentialLR per trained part (by PARTS name), with the original's settings.

    On CPU and CUDA the update runs as one fused kernel (on a 2-core CPU 0.04 s instead of 0.15 s per step for
    the 22 kHz model); the result equals the for-loop AdamW's to float rounding."""
    device = next(model.parameters()).device.type
    fused = True if device in FUSED_ADAMW_DEVICES else None
    optimizers = {part: torch.optim.AdamW(module.parameters(), lr=lr, betas=BETAS, eps=EPS,
                                          weight_decay=WEIGHT_DECAY, fused=fused)
                  for part, module in model.parts().items()}
    schedulers = {part: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=LR_GAMMA) for part, opt in optimizers.items()}
    return optimizers, schedulers


def _optimize(loss: torch.Tensor, model, optimizers: dict, schedulers: dict, scaler) -> dict[str, float]:
    """Backward, clip each part's gradients at GRAD_CLIP on its own, step its optimizer and scheduler.
    Returns the gradient norms before clipping."""
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler else loss).backward()
    norms = {}
    for part, opt in optimizers.items():
        if scaler:
            scaler.unscale_(opt)
        norms[part] = float(torch.nn.utils.clip_grad_norm_(getattr(model, part).parameters(), GRAD_CLIP))
    for part, opt in optimizers.items():
        scaler.step(opt) if scaler else opt.step()
        schedulers[part].step()
    if scaler:
        scaler.update()
    return norms


def _check_options(o: TrainingOptions) -> None:
    for name in ("batch_size", "max_steps", "max_epochs", "save_every", "keep_checkpoints"):
        if getattr(o, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(o, name)}")
    if o.num_workers < 0:
        raise ConfigError(f"--num-workers must be 0 or more, got {o.num_workers}")
    if not o.lr > 0:
        raise ConfigError(f"--lr must be positive, got {o.lr}")
    if o.mixed_precision not in ("no", "fp16", "bf16"):
        raise ConfigError(f"--mixed-precision must be no, fp16 or bf16, got {o.mixed_precision!r}")


def _pick_seed(seed: int | None) -> int:
    return seed if seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _test_delay():
    seconds = float(os.environ.get(SAVE_DELAY_ENV) or 0)
    return (lambda: time.sleep(seconds)) if seconds > 0 else None

