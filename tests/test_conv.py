"""modules/conv.py: the DFT-domain conv gives torch's conv numbers, and `Conv1d` takes it only where it says."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import modules.conv as conv
from modules.conv import Conv1d, dft_conv1d, transforms, uses_dft
from modules.vocoders.bigvgan import BigVGAN
from op_recorder import OpRecorder
from tiny import bigvgan_config

ROOT = Path(__file__).resolve().parents[1]
DFT = os.environ.get(conv.ROUTE_ENV, "dft") == "dft"


def _max_error(y: torch.Tensor, reference: torch.Tensor) -> float:
    return (y.double() - reference).abs().max().item()


# kernel, dilation, padding (None: "same"), batch, length; lengths that leave a short last block, a single
# block, dilations whose phases have unequal lengths, no padding and more padding than "same"
@pytest.mark.parametrize("kernel,dilation,padding,batch,length", [
    (11, 1, None, 1, 300), (11, 5, None, 2, 301), (7, 3, None, 1, 97), (7, 1, 0, 2, 64), (5, 2, 9, 1, 40),
    (3, 1, None, 1, 5), (11, 3, 0, 1, 31), (7, 5, None, 3, 1000)])
def test_dft_conv_equals_torch_conv(kernel, dilation, padding, batch, length):
    torch.manual_seed(kernel * 100 + length)
    padding = (kernel - 1) * dilation // 2 if padding is None else padding
    x = torch.randn(batch, 24, length)
    w = torch.randn(40, 24, kernel) / (24 * kernel) ** 0.5
    b = torch.randn(40)
    reference = F.conv1d(x.double(), w.double(), b.double(), padding=padding, dilation=dilation)
    y = dft_conv1d(x, w, b, padding, dilation)
    direct = F.conv1d(x, w, b, padding=padding, dilation=dilation)
    assert y.shape == direct.shape and y.is_contiguous()
    # the same order of error against float64 as torch's own conv (both are fp32 sums)
    assert _max_error(y, reference) < max(4 * _max_error(direct, reference), 2e-6)
    torch.testing.assert_close(dft_conv1d(x, w, None, padding, dilation), y - b[:, None], atol=1e-5, rtol=1e-5)


def test_dft_conv_reads_a_strided_input_and_wide_layers():
    """A slice of a longer signal, as BigVGAN's chunked stages pass, with a full-size stage's width."""
    torch.manual_seed(0)
    signal = torch.randn(1, 256, 3000)
    x = signal[..., 200:2700]
    w = torch.randn(256, 256, 11) / (256 * 11) ** 0.5
    reference = F.conv1d(x.double(), w.double(), padding=5)
    error, torch_error = _max_error(dft_conv1d(x, w, None, 5), reference), _max_error(F.conv1d(x, w, padding=5),
                                                                                       reference)
    assert error < max(4 * torch_error, 2e-6), (error, torch_error)


def test_too_short_input_is_refused_by_length():
    with pytest.raises(ValueError, match="shorter than the kernel's reach 21"):
        dft_conv1d(torch.randn(1, 2, 8), torch.randn(2, 2, 11), None, 0, 2)


def test_transforms_are_the_dft_of_a_correlation():
    """The three matrices alone reproduce a correlation of one block: y = G^T ((s Fx) * (w Fw))."""
    fx, fw, g = transforms(32, 7, torch.float64)
    assert fx.shape == (32, 47) and fw.shape == (7, 47) and g.shape == (47, 26)
    s, w = torch.randn(32, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    y = ((s @ fx) * (w @ fw)) @ g
    expected = torch.stack([(s[m:m + 7] * w).sum() for m in range(26)])
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)


def _wide_conv(kernel: int = 11, channels: int = 256, dilation: int = 1, **kwargs) -> Conv1d:
    torch.manual_seed(1)
    return Conv1d(channels, channels, kernel, dilation=dilation, padding=(kernel - 1) * dilation // 2,
                  **kwargs).eval()


@pytest.mark.skipif(not DFT, reason=f"{conv.ROUTE_ENV}=direct in the environment")
def test_conv1d_takes_the_dft_route_for_wide_long_inference():
    layer = _wide_conv(dilation=3)
    x = torch.randn(1, 256, 4096)
    with torch.inference_mode():
        assert uses_dft(layer, x)
        with OpRecorder() as ops:
            y = layer(x)
        reference = F.conv1d(x.double(), layer.weight.double(), layer.bias.double(), padding=15, dilation=3)
        direct = nn.Conv1d.forward(layer, x)
    assert not any("convolution" in name for name in ops.names) and any("aten.mm" in name for name in ops.names)
    assert _max_error(y, reference) < max(4 * _max_error(direct, reference), 2e-6)


def test_conv1d_keeps_torch_conv_elsewhere():
    x = torch.randn(1, 256, 4096)
    with torch.no_grad():
        assert not uses_dft(_wide_conv(kernel=3), x)                  # small kernel
        assert not uses_dft(_wide_conv(kernel=7, channels=192), torch.randn(1, 192, 4096))   # 7 x 192 < 2048
        assert not uses_dft(_wide_conv(), x[..., :1000])              # short input
        assert not uses_dft(_wide_conv(stride=2), x)
        assert not uses_dft(_wide_conv(groups=2), x)
        assert not uses_dft(_wide_conv(padding_mode="reflect"), x)
        assert not uses_dft(_wide_conv().double(), x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not uses_dft(_wide_conv(), x)
    assert not uses_dft(_wide_conv(), x)                              # autograd records: weight requires grad
    layer = _wide_conv().requires_grad_(False)
    assert DFT == uses_dft(layer, x)                                  # frozen weights, plain input: no graph
    assert not uses_dft(layer, x.requires_grad_())
    y = layer(x)
    y.sum().backward()
    assert x.grad is not None


def test_conv1d_keeps_the_state_dict_of_nn_conv1d():
    reference = nn.Conv1d(8, 8, 7, padding=3)
    ours = Conv1d(8, 8, 7, padding=3)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())


@pytest.mark.skipif(not DFT, reason=f"{conv.ROUTE_ENV}=direct in the environment")
def test_wide_bigvgan_gives_the_same_audio_on_both_routes(monkeypatch):
    """A BigVGAN whose first stage is wide enough for the DFT route (256 channels, 2048+ samples), against the
    same model with torch's conv everywhere."""
    h = bigvgan_config("bigvgan_v2_22khz_80band_256x", upsample_initial_channel=512, upsample_rates=[8, 2],
                       upsample_kernel_sizes=[16, 4])
    torch.manual_seed(0)
    model = BigVGAN(h).eval()
    for module in model.modules():
        if isinstance(module, nn.Conv1d) and hasattr(module, "weight_v"):
            nn.utils.remove_weight_norm(module)
    mel = torch.randn(1, h["num_mels"], 300) * 0.5 - 4
    with torch.inference_mode():
        routed = [m for m in model.modules() if isinstance(m, Conv1d) and uses_dft(m, torch.empty(1, m.in_channels,
                                                                                                     2400))]
        assert len(routed) == 6                       # the K = 11 block of the first stage (7 x 256 < 2048)
        y = model(mel, clamp=False)
        monkeypatch.setattr(conv, "ROUTE", "direct")
        y_direct = model(mel, clamp=False)
    scale = y_direct.abs().max().item()
    assert (y - y_direct).abs().max().item() < 1e-5 * scale


def _run(code: str, value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, conv.ROUTE_ENV: value, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_direct_route_by_environment():
    done = _run("import torch, modules.conv as c\n"
                "layer = c.Conv1d(256, 256, 11, padding=5)\n"
                "print(c.ROUTE, c.uses_dft(layer, torch.randn(1, 256, 4096)))", "direct")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["direct", "False"]


def test_unknown_route_in_environment_is_named():
    done = _run("import modules.conv", "fft")
    assert done.returncode != 0
    assert "SEEDVC_CPU_CONV='fft'" in done.stderr and "dft, direct" in done.stderr
