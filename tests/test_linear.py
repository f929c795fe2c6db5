"""modules/linear.py: fp32 CPU linear layers on oneDNN give nn.Linear's numbers, gradients and keys; the route
is chosen by the CPU's vendor unless SEEDVC_CPU_LINEAR forces one."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import modules.linear as linear_module
from modules.linear import Linear, machine_backend, uses_onednn
from op_recorder import OpRecorder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def onednn(monkeypatch):
    """Every test here runs the oneDNN route, whichever route this machine's CPU gets by default."""
    if linear_module.ONEDNN_LINEAR is None:
        pytest.skip("this torch build has no working oneDNN linear kernel")
    monkeypatch.setattr(linear_module, "_USE_ONEDNN", True)


def _pair(in_features: int, out_features: int, bias: bool) -> tuple[nn.Linear, Linear]:
    torch.manual_seed(0)
    reference = nn.Linear(in_features, out_features, bias=bias)
    ours = Linear(in_features, out_features, bias=bias)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_nn_linear(bias):
    reference, ours = _pair(96, 160, bias)
    x = torch.randn(2, 37, 96, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = ours(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(y)
    y.backward(upstream)
    y_ref.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, atol=1e-4, rtol=1e-5)
    if bias:
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad, atol=1e-4, rtol=1e-5)


def test_frozen_input_or_frozen_weight_gradients():
    reference, ours = _pair(32, 48, True)
    ours.weight.requires_grad_(False)
    reference.weight.requires_grad_(False)
    x = torch.randn(5, 32, requires_grad=True)
    ours(x).sum().backward()
    expected = torch.autograd.grad(reference(x).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected, atol=1e-5, rtol=1e-5)
    assert ours.weight.grad is None and ours.bias.grad is not None
    # only the parameters need gradients (the first layer of a model): the input's is never computed
    ours.weight.requires_grad_(True)
    ours(torch.randn(5, 32)).sum().backward()
    assert ours.weight.grad is not None


def test_strided_input_and_repeatable_output():
    _, ours = _pair(64, 24, True)
    x = torch.randn(3, 64, 50).transpose(1, 2)              # [3, 50, 64], not contiguous
    with torch.no_grad():
        first = ours(x)
        torch.testing.assert_close(first, nn.functional.linear(x, ours.weight, ours.bias), atol=1e-5, rtol=1e-5)
        assert all(torch.equal(ours(x), first) for _ in range(3))


def test_route_onednn_for_fp32_cpu_and_default_under_autocast():
    _, ours = _pair(64, 64, True)
    x = torch.randn(8, 64)
    assert uses_onednn(x, ours.weight)
    with torch.no_grad(), OpRecorder() as ops:
        ours(x)
    assert any("mkldnn._linear_pointwise" in n for n in ops.names), ops.names
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_onednn(x, ours.weight)
        assert ours(x).dtype == torch.bfloat16                # autocast still applies
    with torch.no_grad():
        assert ours.double()(x.double()).dtype == torch.float64   # other dtypes: torch's own route

def test_auto_route_is_onednn_on_amd_only():
    assert machine_backend("auto", "AuthenticAMD") == "onednn"
    assert machine_backend("auto", "GenuineIntel") == "blas"
    assert machine_backend("auto", None) == "blas"                 # no /proc/cpuinfo: torch's default
    assert machine_backend("onednn", "GenuineIntel") == "onednn"   # the variable overrides the vendor
    assert machine_backend("blas", "AuthenticAMD") == "blas"


@pytest.mark.parametrize("route", ["blas", "onednn"])
def test_route_forced_by_environment(route):
    code = ("import torch\n"
            "from modules.linear import Linear, uses_onednn\n"
            "from op_recorder import OpRecorder\n"
            "layer = Linear(8, 4); x = torch.randn(3, 8)\n"
            "with torch.no_grad(), OpRecorder() as ops: layer(x)\n"
            "print(uses_onednn(x, layer.weight), any('mkldnn' in s for s in ops.names))\n")
    env = {**os.environ, "SEEDVC_CPU_LINEAR": route, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = "True True" if route == "onednn" else "False False"
    assert result.stdout.split()[-2:] == expected.split(), result.stdout


def test_keys_and_meta_build_as_nn_linear():
    reference, _ = _pair(16, 8, True)
    with torch.device("meta"):
        ours = Linear(16, 8)
    assert ours.state_dict().keys() == reference.state_dict().keys()
    ours.load_state_dict(reference.state_dict(), assign=True, strict=True)
    x = torch.randn(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=1e-6)
    assert isinstance(ours, nn.Linear)


def test_unknown_backend_in_environment_is_named():
    env = {**os.environ, "SEEDVC_CPU_LINEAR": "mkl", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", "import modules.linear"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "SEEDVC_CPU_LINEAR='mkl' is not one of auto, onednn, blas" in result.stderr, result.stderr
