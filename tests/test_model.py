"""Behaviour of the model core beyond the parity numbers: CFG batching, reproducibility, the prompt,
masking of padded batches, memory use, and the log-mel against the original's."""
import librosa
import torch

from modules.audio import mel_spectrogram, n_mel_frames
from modules.checkpoint import load_model_weights
from modules.config import MelParams, load_config
from modules.model import build_model
from parity_kinds._common import load_pt, needs_fixture
from tiny import dit_checkpoint, dit_config


def _model(sub="xlsr_tiny"):
    model = build_model(load_config(dit_config(sub)))
    load_model_weights(model, dit_checkpoint(sub))
    return model.eval()


def _inputs(model, T=40, P=12):
    g = torch.Generator().manual_seed(0)
    C = model.cfm.in_channels
    mu = torch.randn(1, T, model.length_regulator.content_in_proj.out_features, generator=g)
    return mu, torch.tensor([T]), torch.randn(1, C, P, generator=g), torch.randn(1, 192, generator=g)


def test_cfg_batched_pass_equals_two_separate_passes():
    model = _model()
    mu, lens, prompt, style = _inputs(model)
    calls = []
    model.cfm.estimator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    noise = torch.randn(1, model.cfm.in_channels, mu.shape[1])
    r = 0.7
    batched = model.cfm.inference(mu, lens, prompt, style, n_timesteps=3, inference_cfg_rate=r, noise=noise)
    assert calls == [2, 2, 2]  # one batched call per step

    # The same Euler steps with the conditional and null velocities computed separately.
    est, x, P = model.cfm.estimator, noise.clone(), prompt.shape[-1]
    prompt_x = torch.zeros_like(x)
    prompt_x[..., :P] = prompt
    x[..., :P] = 0
    t = torch.tensor(0.0)
    for _ in range(3):
        with torch.no_grad():
            v_c = est(x, prompt_x, lens, t[None], style, mu)
            v_n = est(x, torch.zeros_like(x), lens, t[None], torch.zeros_like(style), torch.zeros_like(mu))
        x = x + (1 / 3) * ((1 + r) * v_c - r * v_n)
        t = t + 1 / 3
        x[..., :P] = 0
    torch.testing.assert_close(batched, x, atol=1e-5, rtol=1e-5)


def test_single_pass_without_cfg_and_prompt_frames_stay_zero():
    model = _model()
    mu, lens, prompt, style = _inputs(model)
    calls = []
    model.cfm.estimator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = model.cfm.inference(mu, lens, prompt, style, n_timesteps=4, inference_cfg_rate=0.0,
                              generator=torch.Generator().manual_seed(1))
    assert calls == [1, 1, 1, 1]
    assert torch.count_nonzero(out[..., :prompt.shape[-1]]) == 0
    assert torch.count_nonzero(out[..., prompt.shape[-1]:]) > 0


def test_seeded_generator_is_reproducible_and_noise_is_not_mutated():
    model = _model("f0_44k")
    mu, lens, prompt, style = _inputs(model)
    run = lambda seed: model.cfm.inference(mu, lens, prompt, style, 2, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    noise = torch.randn(1, model.cfm.in_channels, mu.shape[1])
    kept = noise.clone()
    model.cfm.inference(mu, lens, prompt, style, 2, noise=noise)
    assert torch.equal(noise, kept)


def test_padding_in_a_batch_does_not_change_the_valid_frames():
    for sub in ("f0_44k", "wavenet_22k", "xlsr_tiny"):
        model = _model(sub)
        est = model.cfm.estimator
        g = torch.Generator().manual_seed(0)
        C, D = est.in_channels, model.length_regulator.content_in_proj.out_features
        x, prompt, mu = torch.randn(1, C, 30, generator=g), torch.zeros(1, C, 30), torch.randn(1, 30, D, generator=g)
        style, t = torch.randn(1, 192, generator=g), torch.tensor([0.4])
        alone = est(x, prompt, torch.tensor([30]), t, style, mu)
        pad = lambda a, dim: torch.cat([a, torch.randn(*a.shape[:dim], 11, *a.shape[dim + 1:], generator=g)], dim)
        batch = est(torch.cat([pad(x, 2), torch.randn(1, C, 41, generator=g)]), torch.zeros(2, C, 41),
                    torch.tensor([30, 41]), t.repeat(2), style.repeat(2, 1),
                    torch.cat([pad(mu, 1), torch.randn(1, 41, D, generator=g)]))
        if sub == "wavenet_22k":
            # As in the original, the WaveNet head's first conv sees unmasked padding: frames within its
            # receptive field (3 layers x 2 frames on each side here) of the edge may differ.
            torch.testing.assert_close(batch[:1, :, :24], alone[..., :24], atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(batch[:1, :, :30], alone, atol=1e-5, rtol=1e-5)


def test_no_buffer_is_sized_by_the_maximum_context():
    model = build_model(load_config(dit_config("f0_44k")))
    sizes = {name: b.numel() for name, b in model.named_buffers()}
    # Only the official `input_pos` (16384 int64, needed for strict key compatibility) is context-sized.
    assert sizes.pop("cfm.estimator.input_pos") == 16384
    assert max(sizes.values()) < 1024


@needs_fixture
def test_mel_matches_the_original_on_real_audio():
    inputs = load_pt("e2e_f0_44k/inputs.pt")
    frontend = load_pt("e2e_f0_44k/frontend.pt")
    params = MelParams.from_config(load_config(dit_config("f0_44k")))
    mel = mel_spectrogram(inputs["ref_audio"], params)
    assert mel.shape == frontend["mel2"].shape
    assert (mel - frontend["mel2"]).abs().max() < 8e-3  # index.json's mel2 tolerance (near-silent bins)
    assert n_mel_frames(inputs["source_audio"].shape[-1], params) == frontend["mel_n_frames"]


def test_mel_at_22k_takes_its_parameters_from_the_config():
    params = MelParams.from_config(load_config(dit_config("wavenet_22k")))
    wave = torch.sin(torch.arange(22050) * 2 * torch.pi * 440 / 22050)[None] * 0.5
    mel = mel_spectrogram(wave, params)
    assert mel.shape == (1, 80, n_mel_frames(22050, params))
    centres = librosa.mel_frequencies(n_mels=82, fmin=0, fmax=11025)[1:-1]
    assert mel[0, :, 40].argmax().item() == abs(centres - 440).argmin()
