"""Loading and validating Seed-VC v1 YAML configs.

A config written for the original project loads unchanged: the result is the plain nested dict that
`yaml.safe_load` gives. Validation only checks what this project reads, and a bad file fails here, at
load time, with an error that names the file and the dotted key, instead of deep inside model code.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, get_type_hints

import yaml

from modules.errors import UserError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs" / "presets"

DIT_TYPES = ("DiT",)
VOCODER_TYPES = ("bigvgan", "hifigan")
CONTENT_ENCODER_TYPES = ("whisper", "xlsr")
FINAL_LAYER_TYPES = ("mlp", "wavenet")
LOSS_TYPES = ("l1", "l2")


class ConfigError(UserError, ValueError):
    """A config file is missing a key, has a value of the wrong type, or names an unknown component."""


# One rule per key this project reads: (dotted key, expected type(s), required, allowed values or None).
# `bool` is checked before `int` because YAML booleans are ints in Python. The network's own sections
# (DiT, wavenet, length_regulator) are described once, by the config views below, and their rules derived
# from them.
_NUMBER = (int, float)
_RULES: list[tuple[str, tuple[type, ...] | type, bool, tuple | None]] = [
    ("preprocess_params.sr", int, True, None),
    ("preprocess_params.spect_params.n_fft", int, True, None),
    ("preprocess_params.spect_params.win_length", int, True, None),
    ("preprocess_params.spect_params.hop_length", int, True, None),
    ("preprocess_params.spect_params.n_mels", int, True, None),
    ("preprocess_params.spect_params.fmin", _NUMBER, False, None),
    ("preprocess_params.spect_params.fmax", (int, float, str, type(None)), False, None),
    ("model_params.dit_type", str, True, DIT_TYPES),
    ("model_params.reg_loss_type", str, True, LOSS_TYPES),
    ("model_params.vocoder.type", str, True, VOCODER_TYPES),
    ("model_params.speech_tokenizer.type", str, True, CONTENT_ENCODER_TYPES),
    ("model_params.speech_tokenizer.name", str, False, None),
    ("model_params.speech_tokenizer.output_layer", int, False, None),
    ("model_params.style_encoder.dim", int, True, None),
    ("model_params.style_encoder.campplus_path", str, False, None),
]
_BIGVGAN_RULES = [("model_params.vocoder.name", str, True, None)]


def _lookup(cfg: Mapping, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _type_ok(value: Any, expected: tuple[type, ...] | type) -> bool:
    expected = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in expected:
        return False  # YAML `true` must not pass as a number
    return isinstance(value, expected)


def validate_config(cfg: Any, source: str = "<config>") -> dict:
    """Check every key this project reads; raise ConfigError naming `source` and the key."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(cfg).__name__}")
    rules = list(_RULES) + _view_rules(DiTConfig, "DiT") + _view_rules(LengthRegulatorConfig, "length_regulator")
    if _lookup(cfg, "model_params.DiT.final_layer_type")[1] == "wavenet":
        rules += _view_rules(WaveNetConfig, "wavenet")
    if _lookup(cfg, "model_params.vocoder.type")[1] == "bigvgan":
        rules += _BIGVGAN_RULES
    for key, expected, required, allowed in rules:
        present, value = _lookup(cfg, key)
        if not present:
            if required:
                raise ConfigError(f"{source}: missing required key '{key}'")
            continue
        if not _type_ok(value, expected):
            names = "/".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise ConfigError(f"{source}: key '{key}' must be {names}, got {type(value).__name__} ({value!r})")
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{source}: key '{key}' is {value!r}; supported values: {', '.join(map(repr, allowed))}")
    dit = cfg["model_params"]["DiT"]
    if dit["hidden_dim"] % dit["num_heads"]:
        raise ConfigError(f"{source}: key 'model_params.DiT.hidden_dim' ({dit['hidden_dim']}) "
                          f"must be divisible by 'model_params.DiT.num_heads' ({dit['num_heads']})")
    ModelConfig.from_config(cfg)  # every view builds: a config that validates also constructs
    return dict(cfg)


def load_config(path: str | Path) -> dict:
    """Read a YAML config (an original Seed-VC file loads unchanged) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    return validate_config(cfg, str(path))


def preset_path(name: str) -> Path:
    """Path of an official preset, given its file name with or without `.yml`."""
    name = name if name.endswith(".yml") else f"{name}.yml"
    return PRESETS_DIR / name


@dataclass(frozen=True)
class MelParams:
    """Log-mel settings, always read from the config (never hard-coded per preset)."""
    sampling_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float | None

    @classmethod
    def from_config(cls, cfg: Mapping) -> "MelParams":
        sp = cfg["preprocess_params"]["spect_params"]
        fmax = sp.get("fmax")
        # The original writes "None" as a string for "up to Nyquist".
        fmax = None if fmax is None or (isinstance(fmax, str) and fmax.strip().lower() == "none") else float(fmax)
        return cls(sampling_rate=cfg["preprocess_params"]["sr"], n_fft=sp["n_fft"], win_length=sp["win_length"],
                   hop_length=sp["hop_length"], n_mels=sp["n_mels"], fmin=float(sp.get("fmin", 0)), fmax=fmax)

    @property
    def frame_rate(self) -> float:
        return self.sampling_rate / self.hop_length


def get(cfg: Mapping, dotted: str, default: Any = None) -> Any:
    """Read an optional nested key with a default."""
    present, value = _lookup(cfg, dotted)
    return value if present else default



# ------------------------------------------------------------------------------------------- typed views
# Frozen views of the sections the network is built from: each key's type, whether it is required (no default)
# and its default live here once; `validate_config` checks a file against them (errors name the dotted key)
# and the constructors take the views instead of digging in dicts. `allowed` restricts the values.

def _allowed(*values: Any, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"allowed": values})


@dataclass(frozen=True)
class WaveNetConfig:
    """`model_params.wavenet`: the WaveNet head of the DiT (only read when final_layer_type is wavenet)."""
    hidden_dim: int
    num_layers: int
    kernel_size: int
    dilation_rate: int
    p_dropout: float
    style_condition: bool


@dataclass(frozen=True)
class DiTConfig:
    """`model_params.DiT`: the diffusion transformer."""
    hidden_dim: int
    num_heads: int
    depth: int
    class_dropout_prob: float
    in_channels: int
    style_condition: bool
    content_dim: int
    content_codebook_size: int
    long_skip_connection: bool
    final_layer_type: str = _allowed(*FINAL_LAYER_TYPES)
    is_causal: bool = _allowed(False, default=False)
    zero_prompt_speech_token: bool = False
    time_as_token: bool = False
    style_as_token: bool = False
    uvit_skip_connection: bool = False


@dataclass(frozen=True)
class LengthRegulatorConfig:
    """`model_params.length_regulator`: content projection to mel length, plus the F0 embedding."""
    channels: int
    in_channels: int
    content_codebook_size: int
    sampling_ratios: list
    is_discrete: bool = _allowed(False)
    f0_condition: bool = False
    n_f0_bins: int = 512

    @property
    def n_conv_blocks(self) -> int:
        return len(self.sampling_ratios)


def _key_types(annotation: Any) -> tuple[type, ...]:
    return _NUMBER if annotation is float else (annotation,)


def _view_rules(view: type, section: str) -> list[tuple[str, tuple[type, ...], bool, tuple | None]]:
    hints = get_type_hints(view)
    return [(f"model_params.{section}.{f.name}", _key_types(hints[f.name]),
             f.default is MISSING and f.default_factory is MISSING, f.metadata.get("allowed"))
            for f in fields(view)]


def _view(view: type, block: Mapping) -> Any:
    return view(**{f.name: block[f.name] for f in fields(view) if f.name in block})


@dataclass(frozen=True)
class ModelConfig:
    """What building and running the network needs from a config, read once."""
    dit: DiTConfig
    wavenet: WaveNetConfig | None
    length_regulator: LengthRegulatorConfig
    style_dim: int
    reg_loss_type: str
    mel: MelParams

    @property
    def f0_condition(self) -> bool:
        return self.length_regulator.f0_condition

    @property
    def sample_rate(self) -> int:
        return self.mel.sampling_rate

    @classmethod
    def from_config(cls, cfg: Mapping) -> "ModelConfig":
        """From a validated config dict (load_config's result)."""
        mp = cfg["model_params"]
        dit = _view(DiTConfig, mp["DiT"])
        return cls(dit=dit, wavenet=_view(WaveNetConfig, mp["wavenet"]) if dit.final_layer_type == "wavenet" else None,
                   length_regulator=_view(LengthRegulatorConfig, mp["length_regulator"]),
                   style_dim=mp["style_encoder"]["dim"], reg_loss_type=mp["reg_loss_type"],
                   mel=MelParams.from_config(cfg))
