"""Configs: the official presets (and the fixture's original-format files) load unchanged; bad files fail
at load time with an error that names the file and the key."""
from pathlib import Path

import pytest
import yaml

from modules.config import ConfigError, MelParams, ModelConfig, load_config, preset_path
from parity_kinds._common import PARITY_DIR, needs_fixture

PRESETS = ["config_dit_mel_seed_uvit_whisper_base_f0_44k", "config_dit_mel_seed_uvit_whisper_small_wavenet",
           "config_dit_mel_seed_uvit_xlsr_tiny"]


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_with_the_original_values(name):
    raw = yaml.safe_load(preset_path(name).read_text())
    assert load_config(preset_path(name)) == raw


@needs_fixture
def test_original_format_files_load_unchanged():
    for sub in ("f0_44k", "wavenet_22k", "xlsr_tiny"):
        path = PARITY_DIR / sub / "config.yml"
        assert load_config(path) == yaml.safe_load(path.read_text())


def test_mel_params_come_from_the_config():
    singing = MelParams.from_config(load_config(preset_path(PRESETS[0])))
    assert (singing.sampling_rate, singing.n_fft, singing.hop_length, singing.n_mels, singing.fmax) == (44100, 2048, 512, 128, None)
    speech = MelParams.from_config(load_config(preset_path(PRESETS[1])))
    assert (speech.sampling_rate, speech.hop_length, speech.n_mels, speech.fmax) == (22050, 256, 80, None)
    realtime = MelParams.from_config(load_config(preset_path(PRESETS[2])))
    assert realtime.fmax == 8000.0


def test_model_view_is_read_once_with_the_defaults():
    singing = ModelConfig.from_config(load_config(preset_path(PRESETS[0])))
    assert singing.f0_condition and singing.sample_rate == 44100 and singing.wavenet is None
    assert (singing.dit.hidden_dim, singing.dit.final_layer_type, singing.length_regulator.n_f0_bins) == (768, "mlp", 256)
    speech = ModelConfig.from_config(load_config(preset_path(PRESETS[1])))
    assert not speech.f0_condition and speech.wavenet.num_layers == 8 and speech.mel.hop_length == 256
    realtime = ModelConfig.from_config(load_config(preset_path(PRESETS[2])))
    assert realtime.dit.time_as_token and realtime.dit.style_as_token and not realtime.dit.zero_prompt_speech_token
    with pytest.raises(AttributeError):
        speech.dit.depth = 3  # frozen


def _write_modified(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(preset_path(PRESETS[1]).read_text())
    edit(cfg)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("edit, key, words", [
    (lambda c: c["model_params"]["DiT"].pop("depth"), "model_params.DiT.depth", "missing"),
    (lambda c: c["model_params"]["DiT"].__setitem__("hidden_dim", "512"), "model_params.DiT.hidden_dim", "must be int"),
    (lambda c: c["model_params"]["DiT"].__setitem__("long_skip_connection", 1), "model_params.DiT.long_skip_connection", "must be bool"),
    (lambda c: c["model_params"].__setitem__("dit_type", "uDiT"), "model_params.dit_type", "supported values"),
    (lambda c: c["model_params"]["vocoder"].__setitem__("type", "vocos"), "model_params.vocoder.type", "supported values"),
    (lambda c: c["model_params"]["speech_tokenizer"].__setitem__("type", "hubert"), "model_params.speech_tokenizer.type", "supported values"),
    (lambda c: c["model_params"]["wavenet"].pop("kernel_size"), "model_params.wavenet.kernel_size", "missing"),
    (lambda c: c["preprocess_params"]["spect_params"].__setitem__("hop_length", True), "preprocess_params.spect_params.hop_length", "must be int"),
    (lambda c: c["model_params"]["DiT"].__setitem__("num_heads", 7), "model_params.DiT.num_heads", "divisible"),
])
def test_bad_config_names_file_and_key(tmp_path, edit, key, words):
    path = _write_modified(tmp_path, edit)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and key in message and words in message


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("model_params: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
