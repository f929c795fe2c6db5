"""modules/host_memory.py: with the policy on, a repeated call reuses its large buffers instead of page
faulting fresh memory in again, and hands it back when told; the environment's own malloc settings win. Each case runs in its own
process, since the policy is process-wide."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the policy is for glibc's malloc (Linux)")

PROBE = """
import json, resource, sys
import torch
import torch.nn.functional as F
from modules.host_memory import keep_freed_host_memory, return_freed_host_memory
applied = keep_freed_host_memory() if sys.argv[1] == "on" else False
torch.set_grad_enabled(False)
def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
x = torch.randn(1, 96, 110250)            # 42 MB, a BigVGAN-44k stage's size
w = torch.randn(96, 96, 3) * 0.05
faults, kept = [], []
for _ in range(6):                        # one "call": four residual conv layers, fresh buffers each
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x
    for _ in range(4):
        y = F.conv1d(torch.sin(y), w, padding=1).add_(y)
    del y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    kept.append(rss_mib())
return_freed_host_memory()
print(json.dumps({"applied": applied, "faults": faults, "kept": kept, "returned": rss_mib()}))
"""


def probe(mode: str, **env: str) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_with_the_policy_on_a_repeated_call_reuses_its_buffers_and_the_memory_is_returned_after():
    tensor_pages = 96 * 110250 * 4 // 4096
    off, on = probe("off"), probe("on")
    assert not off["applied"] and on["applied"]
    # glibc unmaps blocks above 32 MiB on free: every call faults its buffers in again
    assert min(off["faults"]) > 4 * tensor_pages, off
    # kept in the heap: once the heap has settled (a call or two) calls fault next to nothing (the heap may
    # still grow once by a buffer where freed blocks were split); the process keeps the buffers between calls ...
    assert on["faults"][0] > tensor_pages and sorted(on["faults"][-3:])[1] < tensor_pages // 10, on
    assert sum(on["faults"][-3:]) < 1.5 * tensor_pages, on
    assert sum(on["faults"][1:]) < sum(off["faults"][1:]) / 5, (on, off)
    assert min(on["kept"]) > max(off["kept"]) + 2 * tensor_pages * 4096 / 2 ** 20, (on, off)
    # ... until return_freed_host_memory() hands them back
    assert on["returned"] < off["returned"] + 32, (on, off)


def test_the_opt_out_and_malloc_settings_from_the_environment_win():
    for name, value in [("SEEDVC_RELEASE_FREED_MEMORY", "1"), ("SEEDVC_RELEASE_FREED_MEMORY", "True"),
                        ("MALLOC_TRIM_THRESHOLD_", "131072"), ("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")]:
        assert probe("on", **{name: value})["applied"] is False, (name, value)
    assert probe("on", SEEDVC_RELEASE_FREED_MEMORY="0")["applied"] is True


def test_a_cpu_converter_turns_the_policy_on(tmp_path, monkeypatch):
    from modules import pipeline
    from tiny import write_tiny_config

    calls = []
    monkeypatch.setattr(pipeline, "keep_freed_host_memory", lambda: calls.append("cpu") or True)
    pipeline.build_converter(write_tiny_config(tmp_path), device="cpu")
    assert calls == ["cpu"]


MAPPED = """
import json, sys
import torch
from modules.host_memory import release_mapped_weights
from modules.weights import read_weights
def rss_file_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssFile")) / 1024
layer = torch.nn.Linear(4096, 4096, bias=False)          # 64 MiB of weights
layer.load_state_dict(read_weights(sys.argv[1]), assign=True)   # memory-mapped, as checkpoints are read
expected = float(layer.weight.double().sum())            # reads every page
paged_in = rss_file_mib()
if sys.argv[2] == "write":
    layer.weight.data[0, 0] += 1.0                       # one page copied on write: the mapping must be kept
    expected = float(layer.weight.double().sum())
released = release_mapped_weights([layer])
after = rss_file_mib()
print(json.dumps({"released_mib": released / 2 ** 20, "paged_in": paged_in, "after": after,
                  "same": float(layer.weight.double().sum()) == expected, "again": rss_file_mib()}))
"""


@pytest.mark.parametrize("mode", ["read", "write"])
def test_released_weight_pages_leave_rss_and_read_back_the_same(tmp_path, mode):
    import torch
    torch.manual_seed(0)
    torch.save({"weight": torch.randn(4096, 4096)}, tmp_path / "w.pth")
    run = subprocess.run([sys.executable, "-c", MAPPED, str(tmp_path / "w.pth"), mode], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["same"], r              # the values read after the release are the file's (or the written ones)
    if mode == "read":
        assert r["released_mib"] >= 64 and r["paged_in"] - r["after"] > 60, r
        assert r["again"] - r["after"] > 60, r      # reading them again faulted them back in
    else:
        assert r["released_mib"] == 0 and r["paged_in"] - r["after"] < 4, r


def test_a_cpu_conversion_releases_each_stages_mapped_weights_before_the_next(tmp_path, monkeypatch):
    # a real tiny conversion: the front-ends' pages go before the DiT runs, the DiT's before the vocoder
    import numpy as np

    from modules import pipeline
    from tiny import write_tiny_config

    engine = pipeline.build_converter(write_tiny_config(tmp_path), device="cpu")
    events = []
    released = lambda modules: events.append(sorted(type(m).__name__ for m in modules)) or 0
    monkeypatch.setattr(pipeline, "release_mapped_weights", released)
    estimator = engine.model.cfm.estimator
    estimator.register_forward_pre_hook(lambda *a: events.append("dit") if events[-1] != "dit" else None)
    engine.frontends.vocoder.register_forward_pre_hook(lambda *a: events.append("vocoder"))
    wave = (np.sin(np.arange(engine.sample_rate) / 9) * 0.3).astype(np.float32)
    engine.convert(wave, wave, pipeline.ConversionSettings(diffusion_steps=2, seed=0))
    frontends = sorted(type(m).__name__ for role, m in engine.frontends.modules().items() if role != "vocoder")
    assert events == [frontends, "dit", [type(engine.model).__name__], "vocoder"], events
