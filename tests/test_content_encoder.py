"""Content encoders and resampling beyond the parity cases: windowing arithmetic, errors, odd rates, and this
project's Whisper encoder against transformers' one."""
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modules.content_encoder import load_content_encoder
from modules.resample import resample
from tiny import models


@pytest.fixture(scope="module")
def whisper():
    return load_content_encoder({"type": "whisper", "name": "tiny"}, models() / "whisper_tiny")


def test_frames_follow_the_audio_length(whisper):
    for seconds in (1.0, 7.3, 30.0):
        n = int(seconds * 16000)
        assert whisper(torch.randn(n) * 0.1).shape == (1, min(n // 320 + 1, 1500), 32)  # 1500 = a full window


def transformers_whisper_features(folder, wave: torch.Tensor) -> torch.Tensor:
    """transformers' own WhisperModel encoder on one window: the reference for WhisperEncoder."""
    from transformers import WhisperFeatureExtractor, WhisperModel
    model = WhisperModel.from_pretrained(folder).eval()
    inputs = WhisperFeatureExtractor.from_pretrained(folder)([wave.numpy()], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model.encoder(inputs.input_features).last_hidden_state[:, : wave.shape[-1] // 320 + 1]


@pytest.mark.parametrize("seconds", [0.5, 7.3, 30.0])
def test_whisper_encoder_matches_transformers(whisper, seconds):
    # the last block computes only the audio's frames; those must equal the full computation's
    wave = torch.randn(int(seconds * 16000)) * 0.1
    expected = transformers_whisper_features(models() / "whisper_tiny", wave)
    got = whisper(wave)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_whisper_without_safetensors_loads_through_transformers(tmp_path):
    # a pytorch_model.bin folder (older exports) takes transformers' loading, into the same encoder
    from transformers import WhisperModel
    folder = tmp_path / "whisper_bin"
    shutil.copytree(models() / "whisper_tiny", folder)
    torch.save(WhisperModel.from_pretrained(folder).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    encoder = load_content_encoder({"type": "whisper", "name": "tiny"}, folder)
    wave = torch.randn(16000) * 0.1
    torch.testing.assert_close(encoder(wave), transformers_whisper_features(models() / "whisper_tiny", wave),
                               atol=2e-5, rtol=1e-4)


def test_whisper_from_safetensors_never_imports_transformers_modelling():
    # transformers' modelling code costs ~0.14 GiB of RSS; only its feature extractor and config are used
    code = ("import sys; from modules.content_encoder import load_content_encoder; "
            f"load_content_encoder({{'type': 'whisper', 'name': 'tiny'}}, {str(models() / 'whisper_tiny')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('transformers.models.whisper.modeling')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "[]", out.stdout


def test_long_audio_windows_keep_one_frame_per_20ms(whisper):
    n = 16000 * 62 + 1234  # three windows: 30 s, then 25 s new + 5 s context, then the rest
    out = whisper(torch.randn(n) * 0.1)
    first, second = 1500, 1500 - 250
    third_new = (16000 * 5 + (n - 16000 * 55)) // 320 + 1 - 250
    assert out.shape[1] == first + second + third_new


def test_unknown_type_names_the_key_and_the_choices():
    with pytest.raises(ValueError, match=r"speech_tokenizer.type 'hubert'.*whisper, xlsr"):
        load_content_encoder({"type": "hubert", "name": "x"})


@pytest.mark.parametrize("orig, new", [(44100, 16000), (22050, 16000), (16000, 22050), (48000, 44100), (11025, 16000), (16000, 16000)])
def test_resample_lengths_for_any_rates(orig, new):
    wave = torch.randn(2, 12345)
    out = resample(wave, orig, new)
    g = math.gcd(orig, new)
    assert out.shape == (2, math.ceil((new // g) * 12345 / (orig // g)))


def test_resample_keeps_a_tone_and_removes_what_is_above_the_new_nyquist():
    t = torch.arange(44100) / 44100
    tone = torch.sin(2 * torch.pi * 440 * t)
    alias = torch.sin(2 * torch.pi * 15000 * t)  # above 8 kHz: must vanish at 16 kHz
    out = resample(tone + alias, 44100, 16000)
    ref = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000)
    assert (out[200:-200] - ref[200:-200]).abs().max() < 0.02
