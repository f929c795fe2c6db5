"""Finding the pretrained files a config needs: a local path, or a file fetched from the Hugging Face hub.

Every asset key takes the same kinds of value, so a fully offline model is just a YAML file of local paths:
  an existing local path   a file, or a directory holding the expected file name(s); used as is
  "owner/repo/dir/file"    that file of that hub repo
  "owner/repo"             that hub repo, with the asset's usual file name(s)
  "file.pth"               that file in the asset's official repo (how the presets name their files)

Keys (defaults in the table below):
  pretrained_model (top level; CLI --checkpoint)   DiT checkpoint; an official preset's value maps to its file
  model_params.speech_tokenizer.name               content encoder: transformers model directory or hub id
  model_params.style_encoder.campplus_path         CAM++ speaker encoder
  model_params.f0_extractor: {type, path}          F0 model (optional key, added by this project): type rmvpe
                                                   (default; lj1995/VoiceConversionWebUI rmvpe.pt) or fcpe
                                                   (weights bundled in the torchfcpe package; path optional)
  model_params.vocoder.name                        BigVGAN: directory or hub repo with config.json and
                                                   bigvgan_generator.pt; with `vocoder.type: hifigan`: HiFT hift.pt
                                                   (optional; default FunAudioLLM/CosyVoice-300M)

Hub files are downloaded with huggingface_hub into checkpoints/ (its cache layout). A cached file is reused
without any network request. HF_HUB_OFFLINE and HF_ENDPOINT are honoured, read at every call; this module never
sets them. A file that is neither local, nor cached, nor downloadable raises one AssetUnavailableError naming the
repo, the file and the key (or flag) that takes a local path instead.
"""
from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import constants, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, RemoteEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from modules.config import ConfigError, ModelConfig, get, load_config
from modules.errors import UserError

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
HIFIGAN_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "hifigan.yml"


@dataclass(frozen=True)
class Asset:
    """One pretrained file on the hub, and the config key (and CLI flag) that points to a local copy instead."""
    repo: str
    filename: str
    key: str
    flag: str | None = None
    local: str = "PATH"  # what a local value looks like, for error messages


SEED_VC_REPO = "Plachta/Seed-VC"
_DIT_KEY, _DIT_FLAG = "pretrained_model", "--checkpoint"  # --checkpoint as in the original's inference.py

# DiT checkpoint per official preset (configs/presets/<name>).
DIT_CHECKPOINTS = {
    "config_dit_mel_seed_uvit_whisper_small_wavenet.yml":
        Asset(SEED_VC_REPO, "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth", _DIT_KEY, _DIT_FLAG),
    # The original's singing apps (app_svc.py, inference.py --f0-condition) download this `_v2` file. The preset's
    # own `pretrained_model` names an earlier upload without `_v2` ("..._ft_ema.pth", used by the original's
    # seed_vc_wrapper, app.py V1 tab and train.py); it is mapped here to `_v2`. Ask for the older file explicitly
    # with "Plachta/Seed-VC/DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema.pth".
    "config_dit_mel_seed_uvit_whisper_base_f0_44k.yml":
        Asset(SEED_VC_REPO, "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema_v2.pth", _DIT_KEY, _DIT_FLAG),
    "config_dit_mel_seed_uvit_xlsr_tiny.yml":
        Asset(SEED_VC_REPO, "DiT_uvit_tat_xlsr_ema.pth", _DIT_KEY, _DIT_FLAG),
}
# `pretrained_model` values of the presets -> the file each resolves to.
_DIT_BY_PRESET_VALUE = {a.filename: a for a in DIT_CHECKPOINTS.values()} | {
    "DiT_seed_v2_uvit_whisper_base_f0_44k_bigvgan_pruned_ft_ema.pth":
        DIT_CHECKPOINTS["config_dit_mel_seed_uvit_whisper_base_f0_44k.yml"],
}

CAMPPLUS = Asset("funasr/campplus", "campplus_cn_common.bin", "model_params.style_encoder.campplus_path")
RMVPE = Asset("lj1995/VoiceConversionWebUI", "rmvpe.pt", "model_params.f0_extractor.path")
FCPE = Asset("", "fcpe_c_v001.pt", "model_params.f0_extractor.path")  # normally read from the torchfcpe wheel
HIFT = Asset("FunAudioLLM/CosyVoice-300M", "hift.pt", "model_params.vocoder.name")
BIGVGAN_FILES = {"config": "config.json", "weights": "bigvgan_generator.pt"}
CONTENT_ENCODERS = {"whisper": "openai/whisper-small", "xlsr": "facebook/wav2vec2-xls-r-300m"}
# A transformers model directory: its config, the feature extractor's config, then the first weights file found.
_TRANSFORMERS_CONFIGS = ("config.json", "preprocessor_config.json")
_TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class AssetUnavailableError(UserError, RuntimeError):
    """A pretrained file is neither at the given local path, nor in the download cache, nor downloadable."""

    def __init__(self, message: str, repo: str | None = None, filename: str | None = None, missing_on_hub=False):
        super().__init__(message)
        self.repo, self.filename, self.missing_on_hub = repo, filename, missing_on_hub


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, now or when huggingface_hub was imported."""
    now = any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"}
              for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return now or constants.HF_HUB_OFFLINE


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


PROBE_TIMEOUT_S = 5.0
_unreachable: dict[str, str] = {}   # endpoint -> why it could not be reached, remembered for this process


def _unreachable_reason(url: str, endpoint: str) -> str | None:
    """One short request (no retries) before a download: why the hub cannot be reached, or None if it answers.

    huggingface_hub retries a failed connection five times with a growing back-off (about half a minute per
    file); a machine without network should hear so at once, and only once per process."""
    if endpoint in _unreachable:
        return _unreachable[endpoint]
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None          # it answered (404, 401, ...): huggingface_hub reports what that means
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        _unreachable[endpoint] = f"{endpoint} cannot be reached: {getattr(reason, 'strerror', None) or reason}"
        return _unreachable[endpoint]
    return None


def _how_to_go_local(asset: Asset) -> str:
    if asset.key.startswith("--"):  # a command-line setting only, no config key
        return f"To use a copy you already have, pass {asset.key} {asset.local}."
    flag = f"pass {asset.flag} {asset.local} or " if asset.flag else ""
    return f"To use a copy you already have, {flag}set `{asset.key}: {asset.local}` in the config."


def download(asset: Asset, *, cache_dir: str | Path = CHECKPOINTS_DIR, revision: str | None = None) -> Path:
    """The hub file `asset`: from the cache if there (no network at all), else downloaded into `cache_dir`."""
    cached = try_to_load_from_cache(asset.repo, asset.filename, cache_dir=str(cache_dir), revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    url = hf_hub_url(asset.repo, asset.filename, revision=revision, endpoint=_endpoint())

    def unavailable(reason: str, missing_on_hub: bool = False) -> AssetUnavailableError:
        return AssetUnavailableError(
            f"Cannot get '{asset.filename}' from the Hugging Face repo '{asset.repo}': {reason}. It is not in the "
            f"download cache ({cache_dir}) either. {_how_to_go_local(asset)} (Download: {url})",
            asset.repo, asset.filename, missing_on_hub)

    if cached is not None:  # the hub said earlier that this file does not exist (cached "no such file")
        raise unavailable("the repo has no such file", missing_on_hub=True)
    if hub_offline():
        raise unavailable("offline mode is on (HF_HUB_OFFLINE)")
    unreachable_reason = _unreachable_reason(url, _endpoint())
    if unreachable_reason:
        raise unavailable(f"the download failed ({unreachable_reason}; check the network, or set "
                          f"HF_HUB_OFFLINE=1 and use local files)")
    log.info("downloading %s into %s", url, cache_dir)
    try:
        path = hf_hub_download(asset.repo, asset.filename, revision=revision, cache_dir=str(cache_dir),
                               endpoint=_endpoint())
    except RemoteEntryNotFoundError as e:
        raise unavailable(f"the repo has no such file ({type(e).__name__})", missing_on_hub=True) from e
    except Exception as e:  # no network, hub down, repo missing or gated: one error that says what to do
        cause = e.__cause__ or e  # for a network failure the hub wraps the useful error (e.g. connection refused)
        raise unavailable(f"the download failed ({type(cause).__name__}: {str(cause).splitlines()[0]})") from e
    return Path(path)


def _explicitly_local(spec: str) -> bool:
    return os.path.isabs(spec) or spec.startswith(("./", "../", "~", ".\\", "..\\")) or spec.endswith(("/", "\\"))


def _hub_asset(spec: str, default: Asset) -> Asset:
    """Read a hub reference: "file", "owner/repo" or "owner/repo/path/file" (see the module docstring)."""
    parts = spec.split("/")
    if len(parts) == 1:
        asset = replace(default, filename=spec)
    elif len(parts) == 2:
        asset = replace(default, repo=spec)
    else:
        asset = replace(default, repo="/".join(parts[:2]), filename="/".join(parts[2:]))
    if not asset.filename:
        raise AssetUnavailableError(f"'{spec}' ({default.key}) is no existing local path; as a hub reference it "
                                    f"must name the file: 'owner/repo/file'", asset.repo)
    try:
        validate_repo_id(asset.repo)
    except HFValidationError as e:
        raise AssetUnavailableError(f"'{spec}' ({default.key}) is neither an existing local path nor a hub "
                                    f"reference 'owner/repo[/file]': {e}", asset.repo, asset.filename) from e
    return asset


def resolve_file(spec: str | Path | None, default: Asset, *, cache_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """Path of one pretrained file given by `spec` (local path or hub reference); None or "" means `default`.

    A local path wins whenever it exists; a local directory must hold `default.filename`.
    """
    if spec is None or str(spec).strip() == "":
        return download(default, cache_dir=cache_dir)
    local = Path(spec).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        if (local / default.filename).is_file():
            return local / default.filename
        raise AssetUnavailableError(f"{local} ({default.key}) is a directory without '{default.filename}'",
                                    None, default.filename)
    if isinstance(spec, Path) or _explicitly_local(str(spec)):
        raise AssetUnavailableError(f"{local} ({default.key}): no such local file", None, default.filename)
    return download(_hub_asset(str(spec), default), cache_dir=cache_dir)


def _as_config(config: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """(config dict, its file name if it came from a file)."""
    if isinstance(config, Mapping):
        return config, None
    return load_config(config), Path(config).name


def resolve_dit_checkpoint(config: str | Path | Mapping[str, Any], checkpoint: str | Path | None = None, *,
                           cache_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """The DiT checkpoint: `checkpoint` (CLI --checkpoint) if given, else the config's `pretrained_model`
    (an official name maps to the table above), else the official file of a preset config file."""
    cfg, file_name = _as_config(config)
    default = DIT_CHECKPOINTS.get(file_name or "", Asset(SEED_VC_REPO, "", _DIT_KEY, _DIT_FLAG))
    if checkpoint is not None and str(checkpoint).strip():
        return resolve_file(checkpoint, default, cache_dir=cache_dir)
    named = str(cfg.get("pretrained_model") or "").strip()
    if named:
        if named in _DIT_BY_PRESET_VALUE and not Path(named).expanduser().exists():
            return download(_DIT_BY_PRESET_VALUE[named], cache_dir=cache_dir)
        return resolve_file(named, default, cache_dir=cache_dir)
    if default.filename:
        return download(default, cache_dir=cache_dir)
    raise AssetUnavailableError(f"{file_name or 'the config'} names no DiT checkpoint. {_how_to_go_local(default)}")


def resolve_campplus(cfg: Mapping[str, Any], *, cache_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """CAM++ weights (`model_params.style_encoder.campplus_path`)."""
    return resolve_file(get(cfg, CAMPPLUS.key), CAMPPLUS, cache_dir=cache_dir)


F0_EXTRACTOR_TYPES = ("rmvpe", "fcpe")


def f0_extractor_type(cfg: Mapping[str, Any], override: str | None = None) -> str:
    """The F0 extractor to use: `override` (CLI/UI choice), else the config's, else rmvpe."""
    entry = get(cfg, "model_params.f0_extractor") or {}
    if not isinstance(entry, Mapping):
        raise ConfigError(f"model_params.f0_extractor must be a mapping {{type: ..., path: ...}}, got {entry!r}")
    kind = override or entry.get("type", "rmvpe")
    if kind not in F0_EXTRACTOR_TYPES:
        raise ConfigError(f"model_params.f0_extractor.type {kind!r} is not supported; choose one of {', '.join(F0_EXTRACTOR_TYPES)}")
    return kind


def resolve_f0_model(cfg: Mapping[str, Any], kind: str | None = None, *,
                     cache_dir: str | Path = CHECKPOINTS_DIR) -> Path | None:
    """F0 model weights (`model_params.f0_extractor: {type: rmvpe|fcpe, path: ...}`). RMVPE comes from the hub by
    default; FCPE's weights ship inside the torchfcpe package, so it needs no file unless a path is given."""
    entry = get(cfg, "model_params.f0_extractor") or {}
    kind = f0_extractor_type(cfg, kind)
    same_kind = isinstance(entry, Mapping) and entry.get("type", "rmvpe") == kind
    path = entry.get("path") if same_kind else None
    if kind == "fcpe":
        return resolve_file(path, FCPE, cache_dir=cache_dir) if path else None
    return resolve_file(path, RMVPE, cache_dir=cache_dir)


def resolve_vocoder(cfg: Mapping[str, Any], *, cache_dir: str | Path = CHECKPOINTS_DIR) -> dict[str, Path]:
    """{'config': Path, 'weights': Path} of the vocoder: BigVGAN's config.json + bigvgan_generator.pt (local
    directory or hub repo in `vocoder.name`), or with `vocoder.type: hifigan` configs/hifigan.yml + HiFT hift.pt."""
    kind, name = get(cfg, "model_params.vocoder.type"), get(cfg, "model_params.vocoder.name")
    if kind == "hifigan":
        return {"config": HIFIGAN_CONFIG, "weights": resolve_file(name, HIFT, cache_dir=cache_dir)}
    if kind != "bigvgan":
        raise ConfigError(f"model_params.vocoder.type: {kind!r} is not supported (bigvgan, hifigan)")
    if not name:
        raise ConfigError("model_params.vocoder.name is required for a BigVGAN vocoder (a hub repo or a directory)")
    asset = Asset(name, "", "model_params.vocoder.name", local="DIR (holding config.json and bigvgan_generator.pt)")
    if Path(name).expanduser().is_dir() or _explicitly_local(name) or name.count("/") != 1:
        # A directory (the only local form: BigVGAN is two files); resolve_file explains what is missing.
        return {role: resolve_file(Path(name).expanduser(), replace(asset, filename=f), cache_dir=cache_dir)
                for role, f in BIGVGAN_FILES.items()}
    return {role: download(replace(asset, filename=f), cache_dir=cache_dir) for role, f in BIGVGAN_FILES.items()}


def resolve_content_encoder(cfg: Mapping[str, Any], *, cache_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """A local transformers model directory for `model_params.speech_tokenizer.name` (see resolve_transformers_dir)."""
    kind = get(cfg, "model_params.speech_tokenizer.type")
    name = get(cfg, "model_params.speech_tokenizer.name") or CONTENT_ENCODERS.get(kind)
    key = "model_params.speech_tokenizer.name"
    if not name:
        raise ConfigError(f"{key} is required for a content encoder of type {kind!r}")
    return resolve_transformers_dir(name, key, cache_dir=cache_dir)


def resolve_transformers_dir(name: str, key: str, *, cache_dir: str | Path = CHECKPOINTS_DIR) -> Path:
    """A local transformers model directory: `name` itself when it is one, else the hub snapshot of the model id
    `name` in `cache_dir` holding config.json, preprocessor_config.json and the weights (safetensors preferred,
    else pytorch_model.bin). Load it with `from_pretrained(path)`; no further network access. `key` is the
    setting (config key or flag) that takes a local directory instead, for the error message."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if _explicitly_local(name) or name.count("/") != 1:
        raise AssetUnavailableError(f"{name} ({key}): no such local directory, nor a hub id 'owner/model'")
    asset = Asset(name, _TRANSFORMERS_CONFIGS[0], key, local="DIR (a transformers model directory)")
    snapshot = download(asset, cache_dir=cache_dir).parent
    revision = snapshot.name  # pin the commit, so every file comes from the same snapshot folder
    for filename in _TRANSFORMERS_CONFIGS[1:]:
        download(replace(asset, filename=filename), cache_dir=cache_dir, revision=revision)
    failures = []
    for filename in _TRANSFORMERS_WEIGHTS:  # the first one there is enough
        try:
            download(replace(asset, filename=filename), cache_dir=cache_dir, revision=revision)
            return snapshot
        except AssetUnavailableError as e:
            failures.append(e)
    real = [e for e in failures if not e.missing_on_hub]  # offline or network trouble, not "no such file"
    if real:
        raise real[0]
    raise AssetUnavailableError(f"The hub repo '{name}' has none of {', '.join(_TRANSFORMERS_WEIGHTS)}. "
                                f"{_how_to_go_local(asset)}", name, _TRANSFORMERS_WEIGHTS[0], missing_on_hub=True)


@dataclass(frozen=True)
class ResolvedAssets:
    dit_checkpoint: Path
    content_encoder: Path
    campplus: Path
    vocoder: dict[str, Path]
    f0_model: Path | None  # only when the config conditions on F0


def resolve_assets(config: str | Path | Mapping[str, Any], checkpoint: str | Path | None = None, *,
                   cache_dir: str | Path = CHECKPOINTS_DIR) -> ResolvedAssets:
    """Every file a config needs for inference, local or fetched (F0 model only for F0-conditioned configs)."""
    cfg, _ = _as_config(config)
    needs_f0 = ModelConfig.from_config(cfg).f0_condition
    return ResolvedAssets(
        dit_checkpoint=resolve_dit_checkpoint(config, checkpoint, cache_dir=cache_dir),
        content_encoder=resolve_content_encoder(cfg, cache_dir=cache_dir),
        campplus=resolve_campplus(cfg, cache_dir=cache_dir),
        vocoder=resolve_vocoder(cfg, cache_dir=cache_dir),
        f0_model=resolve_f0_model(cfg, cache_dir=cache_dir) if needs_f0 else None,
    )
