"""companion.autoencoder against PyTorch, scikit-learn and closed forms; bad inputs; determinism."""

import math

import pytest
import torch
from sklearn.decomposition import PCA as SkPCA
from torch import nn

from companion import autoencoder as ae
from companion import batching, losses, ops
from companion import train as trainlib


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size,target,k,s,p", [(4, 7, 3, 2, 1), (7, 14, 3, 2, 1), (14, 28, 3, 2, 1),
                                               (14, 28, 4, 2, 1), (5, 15, 3, 3, 0)])
def test_output_padding_for_matches_conv_transpose(size, target, k, s, p):
    op = ae.output_padding_for(size, target, k, s, p)
    layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op)
    assert layer(torch.zeros(1, 1, size, size)).shape[-1] == target


def test_output_padding_for_rejects_unreachable_sizes():
    with pytest.raises(ValueError, match="never to"):
        ae.output_padding_for(4, 12, 3, 2, 1)


def test_config_shapes_and_bad_configs():
    cfg = ae.AEConfig()
    assert cfg.map_sizes() == [28, 14, 7, 4]
    assert cfg.output_paddings() == [0, 1, 1]
    assert cfg.flat_features == 64 * 16
    assert ae.AEConfig.tiny().latent_dim == 8
    for bad in [dict(latent_dim=0), dict(channels=()), dict(kernel_size=4)]:
        with pytest.raises(ValueError):
            ae.AEConfig(**bad)


@pytest.mark.parametrize("latent", [2, 16])
def test_conv_autoencoder_shapes(latent):
    m = ae.ConvAutoencoder(ae.AEConfig.tiny(latent_dim=latent))
    x = _rand(3, 1, 28, 28)
    z = m.encode(x)
    assert z.shape == (3, latent)
    assert m.decode(z).shape == (3, 1, 28, 28)
    r = m.reconstruct(x)
    assert r.shape == x.shape and 0 < r.min() and r.max() < 1
    with pytest.raises(ValueError):
        m.encode(_rand(3, 28, 28))
    with pytest.raises(ValueError):
        m.decode(_rand(3, latent + 1))


def test_decoder_matches_from_scratch_conv_transpose():
    torch.manual_seed(0)
    m = ae.ConvAutoencoder(ae.AEConfig.tiny())
    z = _randn(2, 8)
    ref = m.decoder(z)
    mine = m.decoder.forward_with(z, ops.conv_transpose2d)
    assert (mine - ref).abs().max() < 1e-5


# ----------------------------------------------------------------------------- PCA


def test_pca_matches_sklearn_up_to_sign():
    x = _randn(60, 12, seed=1) @ _randn(12, 12, seed=2)  # correlated features
    mine = ae.PCA(5).fit(x)
    ref = SkPCA(5, svd_solver="full").fit(x.double().numpy())
    comp = torch.from_numpy(ref.components_).float()
    signs = torch.sign((mine.components_ * comp).sum(1, keepdim=True))
    assert torch.allclose(mine.components_, signs * comp, atol=1e-5)
    assert torch.allclose(mine.explained_variance_, torch.from_numpy(ref.explained_variance_).float(), rtol=1e-5)
    assert torch.allclose(mine.explained_variance_ratio_, torch.from_numpy(ref.explained_variance_ratio_).float(),
                          rtol=1e-5)
    assert torch.allclose(mine.mean_, torch.from_numpy(ref.mean_).float(), atol=1e-6)
    codes = torch.from_numpy(ref.transform(x.double().numpy())).float()
    assert torch.allclose(mine.encode(x), codes * signs.T, atol=1e-4)
    assert torch.allclose(mine.decode(mine.encode(x)),
                          torch.from_numpy(ref.inverse_transform(ref.transform(x.double().numpy()))).float(), atol=1e-4)


def test_pca_error_is_the_sum_of_discarded_variances():
    x = _randn(200, 10, seed=3) * torch.linspace(3, 0.1, 10)
    pca = ae.PCA().fit(x)
    n = x.shape[0]
    for k in [1, 4, 9]:
        err = losses.mse_per_image(pca.reconstruct(x, k), x).mean()
        assert torch.isclose(err, pca.all_variances_[k:].sum() * (n - 1) / n, rtol=1e-4)
    assert torch.allclose(pca.reconstruct(x, 10), x, atol=1e-5)  # all components: exact
    assert torch.allclose(ae.pca_reconstruct(x, 4), pca.reconstruct(x, 4), atol=1e-4)


def test_pca_bad_inputs():
    with pytest.raises(ValueError):
        ae.PCA(0)
    with pytest.raises(ValueError):
        ae.PCA(20).fit(_randn(10, 5))
    with pytest.raises(RuntimeError):
        ae.PCA().encode(_randn(3, 4))
    with pytest.raises(ValueError):
        ae.pca_reconstruct(_randn(10, 5), 6)


def test_subspace_overlap_limits():
    v = torch.linalg.qr(_randn(20, 20, seed=4))[0].T  # orthonormal rows
    assert math.isclose(ae.subspace_overlap(v[:3].T @ _randn(3, 3, seed=5), v[:3]), 1.0, abs_tol=1e-6)
    assert math.isclose(ae.subspace_overlap(v[3:6].T, v[:3]), 0.0, abs_tol=1e-6)


def test_linear_autoencoder_approaches_pca():
    x = _randn(300, 10, seed=6) * torch.linspace(3, 0.1, 10)
    pca = ae.PCA().fit(x)
    pca_err = losses.mse_per_image(pca.reconstruct(x, 3), x).mean().item()
    torch.manual_seed(0)
    m = ae.LinearAutoencoder(10, 3)
    trainlib.train_autoencoder(m, x, ae.reconstruction_loss("mse"), steps=400, batch_size=300, lr=0.02, progress=False)
    with torch.no_grad():
        err = losses.mse_per_image(m(x), x).mean().item()
    assert pca_err * (1 - 1e-3) <= err < 1.05 * pca_err  # Eckart-Young: never better; Baldi-Hornik: reaches it
    assert ae.subspace_overlap(m.decoder.weight.detach(), pca.components_[:3]) > 0.95


# ----------------------------------------------------------------------------- losses and noise


def test_add_noise_kinds():
    x = _rand(8, 1, 28, 28)
    for kind in ae.NOISE_KINDS:
        assert torch.equal(ae.add_noise(x, kind, 0.0), x)
        y = ae.add_noise(x, kind, 0.3, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        assert torch.equal(y, ae.add_noise(x, kind, 0.3, torch.Generator().manual_seed(0)))  # deterministic
    masked = ae.add_noise(torch.ones(100, 100), "masking", 0.3, torch.Generator().manual_seed(1))
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.02
    assert set(masked.unique().tolist()) <= {0.0, 1.0}
    sp = ae.add_noise(torch.full((100, 100), 0.5), "salt_pepper", 0.4, torch.Generator().manual_seed(2))
    assert abs((sp != 0.5).float().mean().item() - 0.4) < 0.02
    assert abs((sp == 1).float().mean().item() - 0.2) < 0.02
    g = ae.add_noise(torch.full((200, 200), 0.5), "gaussian", 0.1, torch.Generator().manual_seed(3))
    assert abs(g.std().item() - 0.1) < 0.005
    u = torch.rand((4, 5), generator=torch.Generator().manual_seed(7))
    assert torch.equal(ae.mask_pixels(torch.ones(4, 5), 0.5, torch.Generator().manual_seed(7)), (u >= 0.5).float())
    with pytest.raises(ValueError):
        ae.add_noise(x, "speckle", 0.1)
    with pytest.raises(ValueError):
        ae.add_noise(x, "masking", 1.5)
    with pytest.raises(ValueError):
        ae.add_noise(x, "gaussian", -0.1)


def test_denoising_loss_uses_clean_target():
    torch.manual_seed(0)
    m = ae.ConvAutoencoder(ae.AEConfig.tiny())
    x = _rand(4, 1, 28, 28)
    plain = ae.denoising_loss(m, x, "masking", 0.0)
    assert torch.isclose(plain, losses.bce_per_image(m(x), x).mean())
    noisy = ae.denoising_loss(m, x, "masking", 0.5, torch.Generator().manual_seed(0))
    x_t = ae.add_noise(x, "masking", 0.5, torch.Generator().manual_seed(0))
    assert torch.isclose(noisy, losses.bce_per_image(m(x_t), x).mean())


# ----------------------------------------------------------------------------- training and latent space


def test_train_autoencoder_reduces_loss_and_is_deterministic():
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centres = _rand(64, 2) * 16 + 6  # a bright disc at a random place: a 2-parameter family of images
    x = (((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) < 20).float()[:, None]

    def run(noise=None):
        torch.manual_seed(0)
        m = ae.ConvAutoencoder(ae.AEConfig.tiny())
        h = trainlib.train_autoencoder(m, x, ae.reconstruction_loss(noise=noise), steps=30, batch_size=32, lr=1e-2,
                                       progress=False, log_every=1)
        return m, [r["loss"] for r in h.train if "loss" in r]

    m1, l1 = run()
    _, l2 = run()
    assert l1 == l2
    assert l1[-1] < 0.7 * l1[0]
    _, l3 = run(("masking", 0.3))
    assert l3 != l1
    with pytest.raises(ValueError):
        trainlib.train_autoencoder(m1, x, ae.reconstruction_loss(), steps=0)
    with pytest.raises(ValueError):
        ae.reconstruction_loss("l1")
    with pytest.raises(ValueError, match="denoising"):
        ae.reconstruction_loss("mse", noise=("masking", 0.1))


def test_gaussian_fit_and_sampling():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    mean = torch.tensor([1.0, -2.0])
    z = ae.sample_gaussian(mean, cov, 20000, g)
    m, c = ae.fit_gaussian(z)
    assert torch.allclose(m, mean, atol=0.03) and torch.allclose(c, cov, atol=0.05)
    assert torch.allclose(ae.fit_gaussian(z[:50])[1], torch.cov(z[:50].T), atol=1e-5)
    singular = ae.sample_gaussian(torch.zeros(3), torch.diag(torch.tensor([1.0, 0.0, 0.0])), 10, g)
    assert singular[:, 1:].abs().max() == 0  # a degenerate covariance is fine
    with pytest.raises(ValueError):
        ae.fit_gaussian(torch.zeros(1, 3))


def test_encode_decode_dataset_batches():
    torch.manual_seed(0)
    m = ae.ConvAutoencoder(ae.AEConfig.tiny())
    x = _rand(7, 1, 28, 28)
    z = ae.encode_dataset(m, x, batch_size=3)
    assert torch.allclose(z, m.encode(x), atol=1e-6)
    assert torch.allclose(ae.decode_images(m, z, batch_size=2), torch.sigmoid(m.decode(z)), atol=1e-6)


# ----------------------------------------------------------------------------- batched passes, bad inputs


def test_map_batches_matches_one_pass_and_restores_the_mode():
    torch.manual_seed(0)
    m = ae.ConvAutoencoder(ae.AEConfig.tiny()).train()
    x = _rand(7, 1, 28, 28)
    assert torch.equal(batching.map_batches(m, m.encode, x, batch_size=3), torch.cat([m.encode(x[:3]), m.encode(x[3:6]),
                                                                                m.encode(x[6:])]).detach())
    assert m.training  # given back as found
    both = batching.map_batches(m, lambda xb, yb: (xb.sum((1, 2, 3)), yb * 2), x, torch.arange(7), batch_size=2)
    assert torch.equal(both[1], torch.arange(7) * 2) and both[0].shape == (7,)
    assert torch.equal(batching.map_batches(m, lambda xb, yb: xb[:, 0, 0, 0] + (yb is None), x, None), x[:, 0, 0, 0] + 1)
    assert batching.as_images(torch.utils.data.TensorDataset(x, torch.zeros(7))) is x
    assert batching.model_device(nn.Identity()) == torch.device("cpu")
    with pytest.raises(TypeError, match="TensorDataset"):
        batching.as_images([x])


_AE = ae.ConvAutoencoder(ae.AEConfig.tiny())
_LIN = ae.LinearAutoencoder(784, 4)
_PCA = ae.PCA(3).fit(torch.rand(10, 784, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("call, error, match", [
    (lambda: _AE.encode(torch.rand(2, 3, 28, 28)), ValueError, r"x must be \[B, 1, 28, 28\], got \[2, 3, 28, 28\]"),
    (lambda: _AE.encode(torch.rand(1, 28, 28)), ValueError, r"got \[1, 28, 28\]"),
    (lambda: _AE.encode(torch.rand(2, 1, 32, 32)), ValueError, r"x must be \[B, 1, 28, 28\]"),
    (lambda: _AE.encode(torch.rand(2, 1, 28, 28, dtype=torch.float64)), TypeError, "float64.*float32"),
    (lambda: _AE.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)), TypeError, "floating-point.*uint8"),
    (lambda: _AE.encode([[0.0]]), TypeError, "x must be a tensor"),
    (lambda: _AE.decode(torch.rand(2, 7)), ValueError, r"z must be \[B, 8\], got \[2, 7\]"),
    (lambda: _AE.decode(torch.rand(8)), ValueError, r"z must be \[B, 8\]"),
    (lambda: _AE(torch.rand(2, 2, 28, 28)), ValueError, "ConvAutoencoder.encode: x"),
    (lambda: _LIN(torch.rand(2, 1, 27, 27)), ValueError, r"x \(flattened\) must be \[B, 784\], got \[2, 729\]"),
    (lambda: _LIN.decode(torch.rand(2, 5)), ValueError, r"z must be \[B, 4\], got \[2, 5\]"),
    (lambda: _LIN(torch.rand(2, 784, dtype=torch.float64)), TypeError, "float64"),
    (lambda: _PCA.encode(torch.rand(2, 780)), ValueError, "780 features.*fitted to 784"),
    (lambda: ae.add_noise([0.5]), TypeError, "add_noise: x must be a floating-point tensor"),
    (lambda: ae.mask_pixels(torch.zeros(2, 3, dtype=torch.long), 0.5), TypeError, "int64"),
])
def test_conv_autoencoder_rejects_bad_inputs_at_the_door(call, error, match):
    with pytest.raises(error, match=match):
        call()
