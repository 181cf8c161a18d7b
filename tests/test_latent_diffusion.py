"""``companion.latent_diffusion``: the KL autoencoder, the latent scale, the latent flow model, the shipped pair."""

import pytest
import torch

from companion import diffusion as D
from companion import latent_diffusion as L
from companion.dit import DiT, DiTConfig
from companion.losses import bce_per_image, gaussian_kl


def _ae(**changes):
    torch.manual_seed(0)
    return L.LatentAutoencoder(L.LatentAEConfig(widths=(8, 16), **changes))


def test_autoencoder_shapes_and_loss_terms():
    ae = _ae(kl_weight=0.01)
    x = torch.rand(3, 1, 28, 28)
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (3, 4, 7, 7) == (3, *ae.config.latent_shape)
    assert ae.decode(mean).shape == x.shape
    g = torch.Generator().manual_seed(1)
    loss = ae.loss(x, g)
    logits, m, lv, z = ae(x, torch.Generator().manual_seed(1))
    expected = (bce_per_image(logits, x) + 0.01 * gaussian_kl(m, lv)).mean()
    assert torch.allclose(loss, expected, atol=1e-4)
    # kl_weight 0 is a plain (stochastic) autoencoder: only the reconstruction term
    ae0 = _ae(kl_weight=0.0)
    logits, *_ = ae0(x, torch.Generator().manual_seed(1))
    assert torch.allclose(ae0.loss(x, torch.Generator().manual_seed(1)), bce_per_image(logits, x).mean(), atol=1e-4)


def test_encode_decode_helpers_batch_and_skip_gradients():
    ae = _ae()
    x = torch.rand(7, 1, 28, 28)
    z = L.encode_latents(ae, x, batch_size=3)
    assert torch.allclose(z, ae.encode(x)[0], atol=1e-6) and not z.requires_grad
    img = L.decode_latents(ae, z, batch_size=2)
    assert img.shape == x.shape and 0 <= float(img.min()) and float(img.max()) <= 1


def test_latent_scale_gives_unit_variance():
    z = 5.0 * torch.randn(400, 4, 7, 7, generator=torch.Generator().manual_seed(0)) + 2.0
    mean, std = L.latent_statistics(z)
    assert abs(mean - 2.0) < 0.05 and abs(std - 5.0) < 0.05
    s = L.latent_scale(z)
    assert abs(float((z * s).std()) - 1.0) < 1e-5
    with pytest.raises(ValueError, match="N >= 2"):
        L.latent_statistics(torch.randn(1, 4))


def _model(scale=2.0, shift=0.1):
    torch.manual_seed(0)
    return L.LatentDiffusion(_ae(), DiT(DiTConfig.tiny()), scale=scale, shift=shift)


def test_latent_diffusion_loss_is_flow_matching_on_the_latents():
    model = _model()
    model.label_dropout = 0.0
    z0 = torch.randn(4, 4, 7, 7)
    y = torch.tensor([0, 1, 2, 3])
    t, noise = torch.rand(4), torch.randn(4, 4, 7, 7)
    ours = model.loss(z0, y, t=t, noise=noise)
    ref = D.flow_matching_loss(model.net, z0, cond={"y": y}, t=t, noise=noise)
    assert torch.allclose(ours, ref)
    ours.backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())  # the first stage is frozen
    assert model.net.embed.weight.grad is not None


def test_normalisation_round_trips_and_sampling_decodes():
    model = _model(scale=3.0, shift=0.5)
    x = torch.rand(5, 1, 28, 28)
    z = model.to_latent(x)
    raw = L.encode_latents(model.autoencoder, x)
    assert torch.allclose(z, (raw - 0.5) * 3.0, atol=1e-5)
    assert torch.allclose(model.from_latent(z), L.decode_latents(model.autoencoder, raw), atol=1e-5)
    noise = torch.randn(5, 4, 7, 7)
    imgs = model.sample(noise, 3, steps=2, guidance=1.5)
    assert imgs.shape == (5, 1, 28, 28)
    # the untrained DiT predicts zero velocity: the sample is the decoded starting noise
    assert torch.allclose(model.sample(noise, 3, steps=2, images=False), noise)
    model.set_normalisation(1.0)
    assert float(model.scale) == 1.0 and float(model.shift) == 0.0
    model.train()
    assert not model.autoencoder.training and model.net.training


def test_bad_inputs_are_refused():
    model = _model()
    with pytest.raises(ValueError, match="sampler must be one of"):
        model.sample(torch.randn(2, 4, 7, 7), 0, sampler="rk4")
    with pytest.raises(ValueError, match="4 channel"):
        model.sample(torch.randn(2, 1, 28, 28), 0)
    with pytest.raises(ValueError, match="28x28"):
        model.autoencoder.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="divisible by 4"):
        L.LatentAEConfig(image_size=30)
    with pytest.raises(ValueError, match="kl_weight"):
        L.LatentAEConfig(kl_weight=-1.0)
    with pytest.raises(ValueError, match="time_sampling"):
        L.LatentDiffusion(_ae(), DiT(DiTConfig.tiny()), time_sampling="beta")


def test_shipped_latent_autoencoder_reconstructs_held_out_digits():
    """The shipped autoencoder on 200 held-out digits: its card's reconstruction error and latent scale, re-measured."""
    from companion import hub

    try:
        x, _ = hub.heldout("latent_ae_mnist", 200)
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    card = hub.card("latent_ae_mnist")["metrics"]
    ae = hub.load_model("latent_ae_mnist")
    z = L.encode_latents(ae, x)
    mse = float((L.decode_latents(ae, z) - x).square().mean())
    assert mse < 1.5 * card["mse"] + 1e-3
    assert abs(L.latent_scale(z) / card["scale_factor"] - 1) < 0.15


def test_shipped_latent_dit_draws_the_asked_digits():
    """The shipped DiT at its card's sampler, steps and guidance on fresh noise: class agreement and FLD (N = 200)."""
    from companion import evaluation, hub
    from companion.recipes import latent

    try:
        hub.heldout("latent_dit_mnist")
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    card = hub.card("latent_dit_mnist")["metrics"]
    model = hub.load_model("latent_dit_mnist")
    assert abs(float(model.scale) - card["scale_factor"]) < 1e-3
    x, labels = latent.card_samples(model, 200, sampler=card["sampler"], steps=card["sampling_steps"],
                                    guidance=card["guidance"], seed=7)
    assert latent.class_agreement(x, labels) > card["class_agreement"] - 0.08
    reference, _ = latent.reference_sets(200)
    assert evaluation.fld(x, reference) < 3 * card["fld"] + 1.5
