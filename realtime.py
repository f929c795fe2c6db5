"""Live voice conversion between local sound devices: speak into the microphone, hear the reference's voice.

    python realtime.py --list-devices
    python realtime.py --reference voice.wav --input-device 1 --output-device 3
    python realtime.py --reference voice.wav --config my.yml --checkpoint my.pth --diffusion-steps 6

The default model is the XLS-R tiny preset (22.05 kHz, HiFT vocoder) the live path is tuned for. Model flags
are inference.py's; the live settings are modules/live.py's LiveSettings. Latency figures are printed once a
second; Ctrl-C stops cleanly. Use headphones: the output must not reach the microphone.
"""
from __future__ import annotations

import argparse
import logging
import sys

from modules.arguments import add_model_arguments
from modules.audio import FRONTEND_RATE, load_audio
from modules.config import ConfigError, preset_path
from modules.errors import UserError
from modules.live import LiveEngine, LiveSettings
from modules.live_devices import import_sounddevice, run_devices
from modules.pipeline import (
    REFERENCE_MIN_SECONDS,
    ConversionError,
    build_converter,
)

LIVE_PRESET = "config_dit_mel_seed_uvit_xlsr_tiny.yml"


def device(value: str) -> int | str:
    """A device index, or a substring of its name (as sounddevice accepts)."""
    return int(value) if value.isdigit() else value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-devices", action="store_true", help="list the sound devices and exit")
    p.add_argument("--reference", help="reference (target voice) audio, 1-25 s")
    p.add_argument("--input-device", type=device, default=None, help="microphone: index or name (default: system's)")
    p.add_argument("--output-device", type=device, default=None, help="speaker: index or name (default: system's)")
    add_model_arguments(p, config_help=f"model config (.yml); default: {LIVE_PRESET}", max_duration=None)
    defaults = LiveSettings()
    for name in LiveSettings.LIMITS:
        low, high = LiveSettings.LIMITS[name]
        kind = int if name == "diffusion_steps" else float
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name),
                       help=f"{low}..{high} (default {getattr(defaults, name)})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        if args.list_devices:
            print(import_sounddevice().query_devices())
            return 0
        if not args.reference:
            raise ConversionError("--reference is required: a clip of the target voice (1-25 s)")
        if args.checkpoint and not args.config:
            raise ConfigError("--checkpoint needs the --config it was trained with")
        settings = LiveSettings(**{name: getattr(args, name) for name in LiveSettings.LIMITS}).validate()
        import_sounddevice()     # fail on a missing PortAudio or a bad reference before the model is loaded
        load_audio(args.reference, FRONTEND_RATE, min_seconds=REFERENCE_MIN_SECONDS, role="reference")
        converter = build_converter(args.config or (None if args.run_name else preset_path(LIVE_PRESET)),
                                    checkpoint=args.checkpoint, run_name=args.run_name, device=args.device,
                                    fp16=args.fp16, f0_extractor=args.f0_extractor)
        engine = LiveEngine(converter, converter.load(args.reference, "reference"), settings)
        run_devices(engine, input_device=args.input_device, output_device=args.output_device,
                    report=lambda line: print(line, flush=True))
    except UserError as e:      # bad flags, files or devices: one line, exit status 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C while the model loads
        print("stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
