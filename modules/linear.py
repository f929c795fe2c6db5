"""Linear layers whose fp32 products on AMD CPUs run on oneDNN instead of the BLAS torch calls by default.

torch sends an fp32 `F.linear` on the CPU to MKL's sgemm. On AMD CPUs MKL is slow: on this project's AMD EPYC
(2 threads) it reaches 130-150 GFLOP/s on the DiT's shapes ([2584, 768] x [768, 2304] and the like) where
oneDNN's matmul, which torch already uses for its convolutions and for bf16, reaches 180-200. On Intel CPUs
MKL is the faster of the two (436 against 405 GFLOP/s on a 2-thread Xeon with AMX), so the oneDNN route is
taken on AMD CPUs only (benchmarks/bench_e2e.py prints both rates). Both are exact fp32 arithmetic; only the
summation order differs (|error| against float64 of the same order, ~1e-6 relative).

`Linear` is `nn.Linear` with the same parameters and state-dict keys; it takes the oneDNN route only for fp32
CPU tensors outside autocast and torch.compile, and keeps autograd (the input's gradient also runs on oneDNN;
the weight's stays on the BLAS, which is faster for that transposed product). Everything else, including
every GPU, goes to `F.linear` unchanged. The route is fixed by the machine and the tensors alone, never by
timing, so a run and its resume use the same arithmetic. SEEDVC_CPU_LINEAR=onednn or =blas forces a route.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.devices import cpu_info, cpu_route_from_environment, eager_fp32_cpu

BACKEND_ENV = "SEEDVC_CPU_LINEAR"
BACKENDS = ("auto", "onednn", "blas")
ONEDNN_VENDORS = ("AuthenticAMD",)   # /proc/cpuinfo vendor_id of the CPUs where MKL's sgemm is the slower


def machine_backend(requested: str, vendor: str | None) -> str:
    """The route for fp32 CPU products: `requested` unless "auto", which picks oneDNN on the CPUs of
    ONEDNN_VENDORS and torch's BLAS elsewhere (Intel, Apple, unknown)."""
    if requested != "auto":
        return requested
    return "onednn" if vendor in ONEDNN_VENDORS else "blas"


def _onednn_linear_op():
    """The oneDNN linear kernel torch ships (the one inductor uses), or None when this build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    try:  # the op is internal to torch: check it works before relying on it
        probe = op(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4), "none", [], "")
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return None
    return op if probe.shape == (2, 4) and bool((probe == 3).all()) else None


ONEDNN_LINEAR = _onednn_linear_op()   # the op, or None where this torch build lacks it
ROUTE = machine_backend(cpu_route_from_environment(BACKEND_ENV, BACKENDS,
                                                   "unset it for this CPU's faster route, or set it to onednn or blas"),
                        cpu_info().get("vendor_id"))
_USE_ONEDNN = ROUTE == "onednn" and ONEDNN_LINEAR is not None   # fixed at import (tests may force it)


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return ONEDNN_LINEAR(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad_y, weight.t(), None)                     # [..., N] x [N, K] -> [..., K]
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            grad_y2 = grad_y.reshape(-1, grad_y.shape[-1])                 # [M, N]
            if ctx.needs_input_grad[1]:
                grad_w = grad_y2.t().mm(x.reshape(-1, x.shape[-1]))        # [N, M] x [M, K] -> [N, K]
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = grad_y2.sum(0)
        return grad_x, grad_w, grad_b


def uses_onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether `linear(x, weight, bias)` takes the oneDNN route (fp32 CPU tensors, no autocast, not compiling)."""
    return _USE_ONEDNN and eager_fp32_cpu(x, weight, bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, x [..., K], weight [N, K], bias [N] -> [..., N], through oneDNN where `uses_onednn`."""
    if not uses_onednn(x, weight, bias):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters and keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
