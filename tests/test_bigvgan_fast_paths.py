"""BigVGAN's fast paths equal the direct definitions they replace: the phase-split anti-aliased activation (up 2x,
SnakeBeta, low-pass + down 2x) and the polyphase transposed conv of the up-sampling layers."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from modules.vocoders.bigvgan import AntiAliasedActivation, BigVGAN, PolyphaseConvTranspose1d, SnakeBeta
from tiny import bigvgan_config


def reference_activation(act: AntiAliasedActivation, x: torch.Tensor) -> torch.Tensor:
    """The textbook form: replicate-pad, zero-stuff and filter with a transposed conv, crop, SnakeBeta on the
    interleaved signal, replicate-pad, filter with stride 2."""
    C, h, g = x.shape[1], act.upsample.filter, act.downsample.lowpass.filter
    pad, K = h.shape[-1] // 2 - 1, h.shape[-1]
    u = 2 * F.conv_transpose1d(F.pad(x, (pad, pad), mode="replicate"), h.expand(C, -1, -1), stride=2, groups=C)
    u = u[..., 2 * pad + (K - 2) // 2: -(2 * pad + (K - 1) // 2)]
    alpha, beta = act.act.alpha.exp()[None, :, None], act.act.beta.exp()[None, :, None]
    v = u + torch.sin(alpha * u) ** 2 / (beta + 1e-9)
    v = F.pad(v, (K // 2 - 1, K // 2), mode="replicate")
    return F.conv1d(v, g.expand(C, -1, -1), stride=2, groups=C)


def random_activation(channels: int, seed: int) -> AntiAliasedActivation:
    torch.manual_seed(seed)
    act = AntiAliasedActivation(SnakeBeta(channels))
    with torch.no_grad():
        act.act.alpha.normal_(0.0, 0.5)
        act.act.beta.normal_(0.0, 0.5)
    return act


def ramp_input(batch: int, channels: int, length: int) -> torch.Tensor:
    """A ramp plus noise: edges that differ from the interior, so a wrong edge column shows."""
    return torch.linspace(-3, 3, length) + torch.randn(batch, channels, length)


# tile sizes: whole tensor, several channel blocks, single channels cut into time pieces (a short last one)
@pytest.mark.parametrize("tile", [1 << 18, 40, 7])
@pytest.mark.parametrize("batch,channels,length", [(1, 3, 1), (1, 3, 2), (2, 5, 3), (1, 4, 6), (3, 8, 7),
                                                   (2, 16, 64), (1, 6, 1001)])
def test_phase_split_activation_equals_the_direct_form(batch, channels, length, tile):
    act = random_activation(channels, length)
    x = ramp_input(batch, channels, length)
    with torch.no_grad():
        direct = reference_activation(act, x)
        tiled, grouped = act.tiled(x, tile), act.grouped_conv(x)
    assert tiled.shape == grouped.shape == (batch, channels, length)
    torch.testing.assert_close(tiled, direct, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped, direct, atol=1e-5, rtol=1e-5)


def test_activation_takes_the_autograd_path_when_grad_is_recorded():
    act = random_activation(4, 0)
    x = ramp_input(1, 4, 50).requires_grad_()
    out = act(x)  # grad mode: grouped convs, differentiable
    out.sum().backward()
    assert x.grad is not None and act.act.alpha.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(out, act(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rate,length,batch,bias", [(8, 1, 1, True), (8, 9, 2, True), (4, 5, 1, False),
                                                    (2, 2, 3, True), (2, 31, 1, True), (3, 5, 1, True)])
def test_polyphase_transposed_conv_equals_torch(rate, length, batch, bias):
    """Kernel 2r, padding r/2 as in BigVGAN's layers; r = 3 takes torch's own path."""
    torch.manual_seed(rate * length)
    kernel = 2 * rate
    ref = nn.ConvTranspose1d(6, 4, kernel, rate, padding=(kernel - rate) // 2, bias=bias)
    fast = PolyphaseConvTranspose1d(6, 4, kernel, rate, padding=(kernel - rate) // 2, bias=bias)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(batch, 6, length)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), atol=1e-6, rtol=1e-5)


def test_activation_weights_follow_a_loaded_filter():
    """The phase weights are derived from the `filter` buffers at every call: a changed buffer is used."""
    act = AntiAliasedActivation(SnakeBeta(2))
    x = torch.randn(1, 2, 20)
    with torch.no_grad():
        before = act(x)
        act.upsample.filter.mul_(0.5)
        act.downsample.lowpass.filter.mul_(1.5)
        for path in (act.tiled, act.grouped_conv):
            torch.testing.assert_close(path(x), reference_activation(act, x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(before, act(x))


def test_state_dict_keys_are_the_released_ones():
    with torch.device("meta"):
        model = BigVGAN(bigvgan_config("bigvgan_v2_22khz_80band_256x", upsample_initial_channel=128))
    keys = set(model.state_dict())
    assert {"ups.0.0.weight_g", "ups.0.0.weight_v", "ups.0.0.bias", "resblocks.0.activations.0.act.alpha",
            "resblocks.0.activations.0.upsample.filter", "resblocks.0.activations.0.downsample.lowpass.filter",
            "activation_post.act.beta"} <= keys


def random_bigvgan() -> BigVGAN:
    """A tiny BigVGAN (weight norm folded) with random convs and random SnakeBeta coefficients."""
    from modules.weight_norm import fold_weight_norm
    torch.manual_seed(3)
    model = fold_weight_norm(BigVGAN(bigvgan_config("bigvgan_v2_22khz_80band_256x", upsample_initial_channel=128)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta")):
                p.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("length", [29, 400, 1199, 1200])
def test_stage_in_chunks_equals_the_whole_stage(length):
    """Each block widened by its halo: chunk edges are invisible, however the chunks fall."""
    model = random_bigvgan()
    blocks = model.resblocks[: model.n_resblocks]
    x = torch.randn(1, blocks[0].convs1[0].in_channels, 1200)
    with torch.no_grad():
        whole = model.fuse(blocks, x)
        chunked = model.fuse_in_chunks(blocks, x, length)
        torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
        # the halo is what makes it exact: without it the chunk edges show
        halos = [b.halo for b in blocks]
        for b in blocks:
            b.halo = 0
        if length < 1200:
            assert (model.fuse_in_chunks(blocks, x, length) - whole).abs().max() > 1e-3
        for b, h in zip(blocks, halos):
            b.halo = h


def test_vocoder_output_is_the_same_with_and_without_chunks(monkeypatch):
    model = random_bigvgan()
    mel = torch.randn(1, 80, 40) * 0.5 - 4
    with torch.no_grad():
        monkeypatch.setattr(BigVGAN, "MIN_CHUNK", 10 ** 9)
        whole = model(mel)
        monkeypatch.setattr(BigVGAN, "MIN_CHUNK", 300)
        monkeypatch.setattr(BigVGAN, "CHUNK_ELEMENTS", 1)
        chunked = model(mel)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
