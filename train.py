"""Fine-tune Seed-VC v1 on a folder of audio, with exact, crash-safe resume.

    python train.py --config configs/presets/config_dit_mel_seed_uvit_whisper_small_wavenet.yml \\
        --dataset-dir my_voice/ --run-name my_voice --max-steps 1000 --save-every 200
    python train.py ... (the same command again)        # continues from the newest checkpoint
    accelerate launch --num_processes 2 train.py ...    # several GPUs (DDP); only rank 0 writes files
    python train.py --export runs/my_voice/DiT_epoch_00001_step_00400.pth [--output my.pth]

The run lives in <log_dir>/<run-name>/ (log_dir from the config, default ./runs); ft_model.pth is written there
at the end. Exit status: 0 done, 1 training failed (e.g. a save failed; earlier checkpoints are kept), 2 bad
arguments, config, dataset or checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from modules.config import ConfigError, preset_path
from modules.errors import UserError
from modules.training.state import SaveError, export_checkpoint_file
from modules.training.trainer import Trainer, TrainingOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Every TrainingOptions field has its flag, with the dataclass's default (they are written once, there)."""
    o = TrainingOptions
    p = argparse.ArgumentParser(description="Fine-tune Seed-VC v1 (resumes automatically).")
    p.add_argument("--config", default=str(preset_path("config_dit_mel_seed_uvit_xlsr_tiny.yml")),
                   help="model config (.yml); default: the real-time xlsr_tiny preset, as the original")
    p.add_argument("--pretrained-ckpt", default=o.pretrained_ckpt,
                   help="checkpoint to start from (default: the official one the config names)")
    p.add_argument("--dataset-dir", default=None, help="folder of audio, searched recursively "
                   "(wav, flac, mp3, ogg, opus, m4a; clips of 1-30 s)")
    p.add_argument("--run-name", default=o.run_name, help="run directory under the config's log_dir")
    p.add_argument("--batch-size", type=int, default=o.batch_size, help="clips per step (per process)")
    p.add_argument("--max-steps", type=int, default=o.max_steps, help="total steps of the run, resumes included")
    p.add_argument("--max-epochs", type=int, default=o.max_epochs, help="total epochs of the run, resumes included")
    p.add_argument("--save-every", type=int, default=o.save_every, help="write a checkpoint every N steps")
    p.add_argument("--num-workers", type=int, default=o.num_workers, help="data-loading worker processes")
    p.add_argument("--keep-checkpoints", type=int, default=o.keep_checkpoints,
                   help="training checkpoints to keep (newest)")
    p.add_argument("--seed", type=int, default=o.seed, help="seed of a new run (a resumed run keeps its own)")
    p.add_argument("--lr", type=float, default=o.lr, help="AdamW learning rate")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=o.mixed_precision,
                   help="autocast for the trained parts (fp16 needs CUDA)")
    p.add_argument("--device", default=o.device, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-progress", dest="show_progress", action="store_false", default=o.show_progress,
                   help="no progress bars (logs only)")
    p.add_argument("--no-feature-cache", dest="feature_cache", action="store_false", default=o.feature_cache,
                   help="recompute the frozen front-end features at every step instead of caching them per clip "
                        "in <run dir>/feature_cache")
    p.add_argument("--export", metavar="CHECKPOINT", default=None,
                   help="only write ft_model.pth ({'net': ...}) from this checkpoint, then exit")
    p.add_argument("--output", default=None, help="with --export: where to write (default: beside it)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.export:
            print(f"wrote {export_checkpoint_file(args.export, args.output)}")
            return 0
        if not args.dataset_dir:
            raise ConfigError("--dataset-dir is required: a folder of audio clips of the target voice")
        options = TrainingOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingOptions)})
        summary = Trainer(options).run()
    except UserError as e:   # setup: arguments, config, dataset, checkpoint, run directory
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SaveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command to continue from the newest checkpoint", file=sys.stderr)
        return 130
    if summary.exported:
        print(f"done: step {summary.step}, epoch {summary.epoch}; model {summary.exported}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
