"""The opt-in speed modes (--precision, --compile) and the memory-saving load path, with tiny offline models."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modules import precision
from modules.checkpoint import load_model
from modules.config import load_config
from modules.pipeline import ConversionSettings, build_converter
from modules.precision import PrecisionError, autocast_dtype
from modules.vocoders import load_bigvgan
from modules.weights import has_meta_tensors, weights_nbytes
from tiny import AUDIO, dit_checkpoint, dit_config, models, write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ConversionSettings(diffusion_steps=3, seed=0)


def clips(sample_rate: int, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Short source and reference clips at the model's rate (short keeps these tests fast)."""
    from modules.audio import load_audio
    n = int(seconds * sample_rate)
    return tuple(load_audio(AUDIO / name, sample_rate)[:n] for name in ("s1p1.wav", "s2p1.wav"))


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - other) ** 2), 1e-30)))


def test_precision_is_refused_where_it_cannot_run(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    with pytest.raises(PrecisionError, match="AVX512-BF16 or AMX"):
        autocast_dtype("bf16", "cpu")
    with pytest.raises(PrecisionError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", "cpu")
    assert autocast_dtype(None, "cpu") is None and autocast_dtype("fp32", "cpu") is None
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16


def test_cli_refuses_fp16_on_cpu_before_loading(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "inference.py"), "--source", str(AUDIO / "s3p1.wav"),
                           "--target", str(AUDIO / "s2p1.wav"), "--output", str(tmp_path / "out"),
                           "--config", str(write_tiny_config(tmp_path)), "--device", "cpu", "--precision", "fp16"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "fp16 needs a CUDA device" in proc.stderr


@pytest.mark.skipif(not precision.cpu_bf16_flags(), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)")
def test_bf16_runs_the_dit_in_bf16_and_stays_close_to_fp32(tmp_path):
    config = write_tiny_config(tmp_path, "speech")
    fp32 = build_converter(config, device="cpu")
    source, reference = clips(fp32.sample_rate)
    expected = fp32.convert(source, reference, SETTINGS).wave
    del fp32
    bf16 = build_converter(config, device="cpu", precision="bf16")
    assert bf16.autocast_dtype is torch.bfloat16
    out = bf16.convert(source, reference, SETTINGS).wave
    fp32 = expected
    assert out.shape == fp32.shape and not np.array_equal(out, fp32)   # bf16 really ran
    assert snr_db(fp32, out) > 10.0


def _compiler_available() -> str | None:
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
        return None
    except Exception as e:  # no C++ toolchain, unsupported platform
        return f"torch.compile is unavailable here ({type(e).__name__}: {str(e)[:120]})"


def test_compiled_dit_and_vocoder_give_the_eager_output(tmp_path):
    reason = _compiler_available()
    if reason:
        pytest.skip(reason)
    config = write_tiny_config(tmp_path, "speech")
    eager = build_converter(config, device="cpu")
    source, reference = clips(eager.sample_rate, 2.0)
    expected = eager.convert(source, reference, SETTINGS).wave
    compiled = build_converter(config, device="cpu", compile=True)
    assert type(compiled.model.cfm.estimator).__name__ == "OptimizedModule"
    out = compiled.convert(source, reference, SETTINGS).wave
    eager = expected
    np.testing.assert_allclose(out, eager, atol=2e-4, rtol=0)


def test_models_hold_their_weights_once():
    """Built on the meta device and filled with the checkpoint's tensors: nothing left unfilled, nothing copied
    twice, and the same values as a normal build + load."""
    model = load_model(load_config(dit_config("f0_44k")), dit_checkpoint("f0_44k"))
    assert not has_meta_tensors(model)
    state = torch.load(dit_checkpoint("f0_44k"), weights_only=True)["net"]
    for part, module in model.parts().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, state[part][key]), key
    vocoder = load_bigvgan(models() / "bigvgan_44k")
    assert not has_meta_tensors(vocoder)
    assert not any(name.endswith(("weight_g", "weight_v")) for name, _ in vocoder.named_parameters())
    n_folded = sum(p.numel() for p in vocoder.parameters()) * 4 + sum(b.nbytes for b in vocoder.buffers())
    assert weights_nbytes(vocoder) == n_folded
