"""Command-line flags shared by inference.py and the apps (modules/ui.py): one declaration, strict parsing."""
from __future__ import annotations

import argparse

TRUE_WORDS, FALSE_WORDS = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def str2bool(value: str | bool) -> bool:
    """true/false, yes/no, 1/0 (any case); anything else is an error, so a typo never silently means False."""
    if isinstance(value, bool):
        return value
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_model_arguments(parser: argparse.ArgumentParser, *, config_help: str,
                        max_duration: float | None) -> None:
    """The flags that choose and run the model: --config --checkpoint --run-name --device --fp16 --f0-extractor
    --max-duration. `max_duration` is the default limit on source length in seconds (None: no limit)."""
    parser.add_argument("--config", default=None, help=config_help)
    parser.add_argument("--checkpoint", default=None,
                        help="DiT checkpoint (.pth) or hub reference; needs the matching --config")
    parser.add_argument("--run-name", default=None, help="use runs/<name>/ft_model.pth, else its newest checkpoint")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--fp16", type=str2bool, default=True, help="fp16 autocast for the DiT on CUDA (true/false)")
    parser.add_argument("--f0-extractor", default=None, choices=("rmvpe", "fcpe"),
                        help="F0 extractor for F0 models (default: the config's, else rmvpe)")
    parser.add_argument("--max-duration", type=float, default=max_duration,
                        help="refuse sources longer than this many seconds"
                             + (f" (default {max_duration:g})" if max_duration else " (default: no limit)"))
