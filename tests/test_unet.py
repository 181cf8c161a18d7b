"""companion.unet: shapes, an independent parameter count, the attention it uses, conditioning, gradients."""

from __future__ import annotations

import pytest
import torch

from companion import diffusion, layers, unet


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n, seed=0):
    return torch.randn(n, 1, 28, 28, generator=_gen(seed))


@pytest.mark.parametrize("config", [
    unet.UNetConfig.tiny(),
    unet.UNetConfig.tiny(blocks=2),
    unet.UNetConfig.tiny(widths=(8, 16), attention_levels=(1,)),
    unet.UNetConfig.tiny(num_classes=10),
], ids=["tiny", "two-blocks", "two-levels", "conditional"])
def test_output_is_shaped_like_the_input(config):
    torch.manual_seed(0)
    model = unet.UNet(config)
    x = _images(3)
    y = torch.tensor([0, 5, 9]) if config.num_classes else None
    assert model(x, torch.tensor([0, 500, 999]), y=y).shape == x.shape
    assert model(x, 7, y=y).shape == x.shape  # a scalar timestep is broadcast


def _conv(k, i, o):
    return k * k * i * o + o


def _lin(i, o):
    return i * o + o


def _res(i, o, e):
    return 2 * i + _conv(3, i, o) + _lin(e, o) + 2 * o + _conv(3, o, o) + (_conv(1, i, o) if i != o else 0)


def _attn(c):
    return 2 * c + _lin(c, 3 * c) + _lin(c, c)


def expected_parameters(widths, blocks, attention_levels, e, channels=1, num_classes=None):
    """The count written out from the architecture, block by block."""
    n = 2 * _lin(e, e) + _conv(3, channels, widths[0]) + (e * (num_classes + 1) if num_classes else 0)
    skips, ch = [widths[0]], widths[0]
    for i, w in enumerate(widths):
        for _ in range(blocks):
            n += _res(ch, w, e) + (_attn(w) if i in attention_levels else 0)
            ch = w
            skips.append(w)
        if i < len(widths) - 1:
            n += _conv(3, w, w)
            skips.append(w)
    n += 2 * _res(ch, ch, e) + _attn(ch)
    for i, w in reversed(list(enumerate(widths))):
        for _ in range(blocks + 1):
            n += _res(ch + skips.pop(), w, e) + (_attn(w) if i in attention_levels else 0)
            ch = w
        if i > 0:
            n += _conv(3, w, w)
    return n + 2 * ch + _conv(3, ch, channels)


@pytest.mark.parametrize("changes", [{}, {"blocks": 2}, {"num_classes": 10}, {"widths": (8, 16), "attention_levels": (1,)}])
def test_parameter_count_matches_the_architecture(changes):
    config = unet.UNetConfig.tiny(**changes)
    model = unet.UNet(config)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(config.widths, config.blocks, config.attention_levels, config.embedding_dim,
                                        num_classes=config.num_classes)


def test_default_config_size():
    """The default (widths 32, 64, 128) is a few million parameters: small enough to train on a CPU for MNIST."""
    config = unet.UNetConfig()
    count = sum(p.numel() for p in unet.UNet(config).parameters())
    assert count == expected_parameters(config.widths, config.blocks, config.attention_levels, config.embedding_dim)
    assert 1_000_000 < count < 5_000_000


def test_attention_is_the_layers_module_at_two_scales():
    model = unet.UNet(unet.UNetConfig.tiny())
    sizes = {}

    def hook(module, inputs, output):
        sizes.setdefault(inputs[0].shape[2], 0)
        sizes[inputs[0].shape[2]] += 1

    blocks = [m for m in model.modules() if isinstance(m, unet.AttentionBlock)]
    assert blocks and all(isinstance(b.attn, layers.MultiHeadAttention) for b in blocks)
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    for b in blocks:
        b.register_forward_hook(hook)
    model(_images(2), torch.tensor([1, 2]))
    assert set(sizes) == {14, 7}  # feature maps 14x14 and 7x7: 196 and 49 tokens
    assert sizes == {14: 1 + 2, 7: 1 + 1 + 2}  # down, (middle), up


def test_output_depends_on_time_and_label():
    torch.manual_seed(0)
    model = unet.UNet(unet.UNetConfig.tiny(num_classes=3)).eval()
    x = _images(2)
    t = torch.tensor([10, 10])
    out = model(x, t, y=torch.tensor([0, 0]))
    assert not torch.allclose(out, model(x, torch.tensor([900, 900]), y=torch.tensor([0, 0])))
    assert not torch.allclose(out, model(x, t, y=torch.tensor([1, 1])))
    torch.testing.assert_close(model(x, t, y=None), model(x, t, y=torch.tensor([3, 3])))  # None = "no label"
    # classifier-free guidance wraps it as the samplers expect
    guided = diffusion.classifier_free_guidance(model, 1.0, uncond={"y": None})
    torch.testing.assert_close(guided(x, t, y=torch.tensor([0, 0])), out)


def test_flow_times_are_scaled():
    e = unet.timestep_embedding(torch.tensor([0.5, 0.25]), 8, scale=1000.0)
    torch.testing.assert_close(e, layers.sincos_1d(torch.tensor([500.0, 250.0]), 8))
    model = unet.UNet(unet.UNetConfig.tiny(time_scale=1000.0))
    assert model(_images(2), torch.tensor([0.3, 0.9])).shape == (2, 1, 28, 28)


def test_every_parameter_gets_a_gradient_from_the_denoising_loss():
    """One backward pass of the ε-prediction loss reaches every weight: no block is left disconnected."""
    torch.manual_seed(0)
    model = unet.UNet(unet.UNetConfig.tiny(num_classes=3))
    ab = diffusion.alpha_bar(diffusion.betas(1000, "cosine"))
    x0 = _images(2, seed=1).clamp(-1, 1)
    g = _gen(2)
    t, eps = torch.randint(0, 1000, (2,), generator=g), torch.randn(2, 1, 28, 28, generator=g)
    loss = (model(diffusion.q_sample(x0, t, ab, eps), t, y=torch.tensor([0, 3])) - eps).square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="must be divisible by 2 \\*\\* \\(len\\(widths\\) - 1\\) = 8"):
        unet.UNetConfig(widths=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="groups 8 must divide every width"):
        unet.UNetConfig(widths=(12, 24, 48))
    with pytest.raises(ValueError, match="attention_levels must index widths"):
        unet.UNetConfig(attention_levels=(3,))
    with pytest.raises(ValueError, match="heads 3 must divide"):
        unet.UNetConfig(heads=3)
    model = unet.UNet(unet.UNetConfig.tiny())
    with pytest.raises(ValueError, match=r"UNet: x must be 28x28 images"):
        model(torch.zeros(2, 1, 32, 32), 3)
    with pytest.raises(ValueError, match=r"one timestep per image, \[B\] with B = 2, got shape \[3\]"):
        model(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="the model is unconditional"):
        model(torch.zeros(2, 1, 28, 28), 3, y=torch.tensor([1, 2]))
    cond = unet.UNet(unet.UNetConfig.tiny(num_classes=3))
    with pytest.raises(ValueError, match=r"labels must lie in 0..3"):
        cond(torch.zeros(2, 1, 28, 28), 3, y=torch.tensor([1, 7]))
