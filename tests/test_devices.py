"""The CUDA and Apple MPS code paths, run for real on the CPU through the simulated accelerator (fake_device.py).

A real device refuses a CPU tensor meeting a device tensor, a CPU generator drawing for a device tensor,
.numpy() of a device tensor and (MPS) float64; the simulation raises on the same, and records host syncs
and host-to-device copies with the project line that made them. On a machine with a real GPU these tests
are what benchmarks/device_check.sh runs first.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from device_models import (
    KINDS,
    rmvpe_from_random_weights,
    short_clip,
    write_device_configs,
)
from fake_device import SimTensor, simulated_device

from modules.frontends import build_frontends
from modules.pipeline import (
    ConversionError,
    ConversionSettings,
    VoiceConverter,
    build_converter,
)

DEVICES = ("cuda", "mps")
STEPS = 2
SECONDS = 1.2   # source and reference length: the shortest reference accepted is 1 s


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict:
    return write_device_configs(tmp_path_factory.mktemp("device_models"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("device_clips")
    return {"speech": short_clip(folder, "source_s1.wav", SECONDS),
            "singing": short_clip(folder, "singing_technopolis_14s.wav", SECONDS, 3.0),
            "reference": short_clip(folder, "s1p1.wav", SECONDS)}


def on_device(tensor: torch.Tensor) -> bool:
    """On the (simulated or, with SEEDVC_REAL_DEVICE=1, real) accelerator."""
    return isinstance(tensor, SimTensor) or tensor.device.type != "cpu"


def off_device_tensors(converter: VoiceConverter) -> list[str]:
    """Names of every parameter and buffer of the DiT and of every front-end that is not on the device."""
    modules = {"model": converter.model, **converter.frontends.modules()}
    return [f"{role}.{name}" for role, module in modules.items()
            for name, t in [*module.named_parameters(), *module.named_buffers()] if not on_device(t)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", DEVICES)
def test_conversion_on_simulated_device(device, kind, configs, clips, monkeypatch):
    rmvpe_from_random_weights(monkeypatch)
    source = clips["singing" if kind.startswith("singing") else "speech"]
    snapshots = {}

    def progress(fraction: float, text: str) -> None:
        if text.endswith(f"step 1/{STEPS}") or text.endswith(f"step {STEPS}/{STEPS}"):
            snapshots[text.rsplit(" ", 1)[-1]] = Counter(sim.events)

    from modules import pipeline
    released = []   # mapped-weight release is for host memory: never on a GPU, whose weights are not mapped
    monkeypatch.setattr(pipeline, "release_mapped_weights", lambda modules: released.append(list(modules)) or 0)
    with simulated_device(device) as sim:
        converter = build_converter(configs[kind], device=device)
        assert converter.device.type == device
        assert off_device_tensors(converter) == []
        result = converter.convert(source, clips["reference"], ConversionSettings(STEPS, seed=0), progress=progress)
    assert result.wave.dtype == np.float32 and np.isfinite(result.wave).all() and np.abs(result.wave).max() > 0
    # Between the end of the first Euler step and the end of the last one: no host sync, no copy to the device.
    during = snapshots[f"{STEPS}/{STEPS}"] - snapshots[f"1/{STEPS}"]
    assert not [event for event in during if event[0].startswith(("sync", "D2H", "H2D"))], sim.report()
    fp16_autocast = [what for what, _ in sim.events if what.startswith(f"autocast({device}, float16, enabled=True")]
    assert bool(fp16_autocast) == (device == "cuda"), sim.report()
    assert released == []


def test_engine_moves_its_model_and_names_a_front_end_off_its_device(configs):
    from modules.config import load_config
    from modules.model import build_model

    cfg = load_config(configs["speech"])
    with simulated_device("cuda"):
        model = build_model(cfg)                                   # on the CPU, as a library user builds it
        frontends, _ = build_frontends(cfg, torch.device("cuda"))
        converter = VoiceConverter(cfg, model, frontends, device="cuda")
        assert all(on_device(p) for p in converter.model.parameters())
        cpu_frontends, _ = build_frontends(cfg, torch.device("cpu"))
        with pytest.raises(ConversionError, match=r"content encoder.*cpu.*cuda"):
            VoiceConverter(cfg, model, cpu_frontends, device="cuda")
        mixed = frontends
        mixed.vocoder = cpu_frontends.vocoder
        with pytest.raises(ConversionError, match=r"vocoder.*cpu.*cuda"):
            VoiceConverter(cfg, model, mixed, device="cuda")


# ---------------------------------------------------------------------------------------------- training

@pytest.fixture
def accelerate_state():
    """accelerate keeps one process-wide state; each in-process Trainer starts from a clean one."""
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("device, precision, kind", [("cuda", "fp16", "speech"), ("mps", "bf16", "singing_fcpe")])
def test_one_mixed_precision_training_step(device, precision, kind, configs, clips, tmp_path, monkeypatch,
                                           accelerate_state):
    import yaml

    from modules.checkpoint import read_checkpoint, training_checkpoints
    from modules.training.trainer import Trainer, TrainingOptions

    # What `accelerate launch --mixed_precision ...` or an `accelerate config` file sets: it must not count.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16" if precision == "fp16" else "no")
    data = tmp_path / "data"
    data.mkdir()
    for name in ("s1p1.wav", "s2p1.wav"):
        short_clip(data, name, 1.5)
    cfg = yaml.safe_load(configs[kind].read_text())
    cfg["log_dir"] = str(tmp_path / "runs")
    config = tmp_path / "train.yml"
    config.write_text(yaml.safe_dump(cfg))
    options = TrainingOptions(config=str(config), dataset_dir=str(data), run_name="sim", batch_size=2, max_steps=1,
                              save_every=1, seed=0, mixed_precision=precision, device=device, show_progress=False)
    with simulated_device(device) as sim:
        trainer = Trainer(options)
        assert trainer.accelerator.mixed_precision == precision
        summary = trainer.run()
    assert summary.step == 1
    dtype = {"fp16": "float16", "bf16": "bfloat16"}[precision]
    assert any(what.startswith(f"autocast({device}, {dtype}, enabled=True") for what, _ in sim.events), sim.report()
    state = read_checkpoint(training_checkpoints(summary.run_dir)[-1])
    assert np.isfinite(state["loss_avg"])
    if device == "cuda":
        assert "cuda" in state["rng"][0]
        assert state["scaler"] is not None and state["scaler"]["scale"] > 0


# ---------------------------------------------------------------------------------------------- the app

def test_singing_app_stream_and_batch_endpoints_on_simulated_cuda(configs, clips, tmp_path):
    from modules import ui

    args = ui.parse_args(ui.SINGING, ["--config", str(configs["singing_fcpe"]), "--device", "cuda"])
    source, reference = str(clips["singing"]), str(clips["reference"])
    settings = ("default", 2, 1.0, 0.7, True, 0, "default", 0)
    with simulated_device("cuda") as sim:
        registry = ui.ModelRegistry(args, ui.SINGING)
        demo = ui.build_demo(registry, ui.SINGING, tmp_path / "out", args.concurrency)
        endpoints = {fn.api_name: fn.fn for fn in demo.fns.values() if fn.api_name}
        streamed = list(endpoints["convert_stream"](source, reference, *settings, progress=None))
        files, rows = endpoints["batch_convert"]([source], reference, *settings, progress=lambda *a, **k: None)
    assert registry.get("default").device.type == "cuda"
    assert streamed[-1][2] is not None and all(chunk is not None for _, chunk, _ in streamed[:-1])
    assert [row[1] for row in rows] == ["ok"] and len(files) == 1
    assert any(what.startswith("autocast(cuda, float16, enabled=True") for what, _ in sim.events)


@pytest.mark.parametrize("kind", ["speech", "xlsr_hift"])
def test_fp16_false_keeps_the_content_encoder_in_float32_on_cuda(kind, configs):
    with simulated_device("cuda"):
        converter = build_converter(configs[kind], device="cuda", fp16=False)
    assert not converter.fp16
    assert {p.dtype for p in converter.frontends.content.parameters()} == {torch.float32}
