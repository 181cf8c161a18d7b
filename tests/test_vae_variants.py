"""companion.vae_variants against torch.distributions, scikit-learn and closed forms; synthetic MIG cases; bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

from companion import data, metrics, toys, vae
from companion import train as trainlib
from companion import vae_variants as vv
from companion.losses import gaussian_kl
from companion.recipes.vaes import SHAPES_CONFIG
from companion.train import count_parameters


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- config and building blocks


def test_config_tiny_and_validation():
    tiny = vv.CondVAEConfig.tiny()
    assert (tiny.input_dim, tiny.latent_dim, tiny.num_classes) == (64, 3, 0)
    # encoder 64 -> 16 -> 6, decoder 3 -> 16 -> 64
    assert count_parameters(vv.BetaVAE(tiny)) == (64 * 16 + 16 + 16 * 6 + 6) + (3 * 16 + 16 + 16 * 64 + 64)
    assert count_parameters(vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4))) == count_parameters(vv.BetaVAE(tiny)) + 2 * 4 * 16
    for bad in (dict(latent_dim=0), dict(hidden=()), dict(hidden=(8, 0)), dict(num_classes=-1), dict(image_size=2.5)):
        with pytest.raises(ValueError):
            vv.CondVAEConfig(**bad)
    with pytest.raises(ValueError, match="beta"):
        vv.BetaVAE(tiny, beta=-1)
    with pytest.raises(ValueError, match="num_classes >= 1"):
        vv.CVAE(tiny)


def test_one_hot_and_bad_labels():
    assert torch.equal(vv.one_hot(torch.tensor([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="0..2"):
        vv.one_hot(torch.tensor([3]), 3)
    with pytest.raises(ValueError, match="1-D integer"):
        vv.one_hot(torch.tensor([0.0, 1.0]), 3)


def test_reparameterize_is_mu_plus_sigma_eps_and_differentiable():
    mu = torch.randn(4, 3, requires_grad=True)
    logvar = torch.randn(4, 3, requires_grad=True)
    eps = torch.randn(4, 3)
    z = vv.reparameterize(mu, logvar, eps=eps)
    assert torch.allclose(z, mu + logvar.mul(0.5).exp() * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(4, 3)) and torch.allclose(logvar.grad, 0.5 * logvar.mul(0.5).exp() * eps)
    a = vv.reparameterize(mu, logvar, generator=_gen(1))
    assert torch.equal(a, vv.reparameterize(mu, logvar, generator=_gen(1)))


# ----------------------------------------------------------------------------- β-VAE


def test_beta_vae_loss_matches_torch_distributions():
    torch.manual_seed(0)
    model = vv.BetaVAE(vv.CondVAEConfig.tiny(), beta=4.0).double()
    x = (torch.rand(5, 1, 8, 8, generator=_gen(0)) > 0.5).double()
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3)
    z = vv.reparameterize(mu, logvar, generator=_gen(3))
    logits = model.decode(z)
    assert logits.shape == (5, 1, 8, 8)
    rec_ref = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    kl_ref = kl_divergence(Normal(mu, logvar.mul(0.5).exp()), Normal(0.0, 1.0)).sum(1)
    rec, kl = model.elbo_terms(x, generator=_gen(3))
    assert torch.allclose(rec, rec_ref) and torch.allclose(kl, kl_ref)
    torch.manual_seed(5)
    loss, metrics = model.loss(x)
    torch.manual_seed(5)
    rec, kl = model.elbo_terms(x)
    assert torch.allclose(loss, -(rec - 4.0 * kl).mean())
    assert set(metrics) == {"rec", "kl"}


def test_chapter_10s_traversal_sweeps_one_coordinate_of_a_beta_vae():
    torch.manual_seed(0)
    model = vv.BetaVAE(vv.CondVAEConfig.tiny())
    z = torch.tensor([0.5, -1.0, 2.0])
    vals = torch.linspace(-2, 2, 5)
    grid = vae.traverse(model.decode_mean, z, dims=[2, 0], values=vals)
    assert grid.shape == (2, 5, 1, 8, 8)
    codes = z.repeat(5, 1)
    codes[:, 0] = vals
    with torch.no_grad():
        assert torch.allclose(grid[1], torch.sigmoid(model.decode(codes)))
    with pytest.raises(ValueError, match="out of range"):
        vae.traverse(model.decode_mean, z, dims=[3], values=vals)


def test_conditioning_is_enforced():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="unconditional"):
        vv.BetaVAE(vv.CondVAEConfig.tiny()).encode(x, torch.tensor([0, 1]))
    cvae = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=3))
    with pytest.raises(ValueError, match="pass the labels"):
        cvae.encode(x)
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 8, 8\]"):
        cvae.encode(torch.rand(2, 1, 7, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample\\(labels"):
        vv.BetaVAE.sample(cvae, 3)


# ----------------------------------------------------------------------------- the CVAE


def test_cvae_elbo_equals_the_model_and_the_label_matters():
    torch.manual_seed(0)
    model = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4)).double()
    x = torch.rand(6, 1, 8, 8, generator=_gen(1), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    eps = torch.randn(6, 3, generator=_gen(2), dtype=torch.float64)
    elbo = vv.cvae_elbo(x, y, model.encoder, model.decoder, eps, 4)
    mu, logvar = model.encode(x, y)
    rec = Bernoulli(logits=model.decode(mu + logvar.mul(0.5).exp() * eps, y), validate_args=False).log_prob(x).flatten(1).sum(1)
    kl = kl_divergence(Normal(mu, logvar.mul(0.5).exp()), Normal(0.0, 1.0)).sum(1)
    assert elbo.shape == (6,) and torch.allclose(elbo, rec - kl)
    assert not torch.allclose(elbo, vv.cvae_elbo(x, (y + 1) % 4, model.encoder, model.decoder, eps, 4))


def test_cvae_sample_and_style_transfer():
    torch.manual_seed(0)
    model = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4))
    labels = torch.tensor([0, 1, 2, 3])
    a = model.sample(labels, generator=_gen(0))
    assert a.shape == (4, 1, 8, 8) and torch.equal(a, model.sample(labels, generator=_gen(0)))
    assert 0 <= a.min() and a.max() <= 1
    # same z, different labels -> different images
    z = torch.randn(4, 3, generator=_gen(0))
    assert torch.allclose(a, torch.sigmoid(model.decode(z, labels)).detach())
    assert not torch.allclose(a, torch.sigmoid(model.decode(z, torch.zeros(4, dtype=torch.long))).detach())
    x = torch.rand(2, 1, 8, 8)
    y = torch.tensor([1, 3])
    st = vv.style_transfer(model, x, y, targets=[0, 2, 3])
    assert st.shape == (2, 3, 1, 8, 8)
    with torch.no_grad():
        mu, _ = model.encode(x, y)
        assert torch.allclose(st[1, 1], torch.sigmoid(model.decode(mu[1:2], torch.tensor([2])))[0])


def test_conditional_accuracy_with_a_known_classifier():
    torch.manual_seed(0)
    model = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4))

    class Always2(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return F.one_hot(torch.full((x.shape[0],), 2), 4).float() + 0 * self.w

    acc, per = vv.conditional_accuracy(model, Always2(), n_per_class=5)
    assert acc == pytest.approx(0.25) and per.tolist() == [0.0, 0.0, 1.0, 0.0]


# ----------------------------------------------------------------------------- information and MIG


def test_mig_one_latent_and_categorical_factors():
    f = toys.shapes(600, size=16, seed=0)[1]
    mat = vv.shapes_factor_matrix(f, ["shape", "pos_x"])
    assert mat.shape == (600, 2)
    r = metrics.mig(mat[:, 1:2] * 3.0, mat)  # a single latent equal to pos_x: its gap is all of I(z; v)
    assert r.per_factor[1] == pytest.approx(1.0) and r.per_factor[0] < 0.05
    assert r.entropy[0] == pytest.approx(metrics.entropy(f["shape"]))  # the 3 shape ids are used as categories
    with pytest.raises(ValueError, match="constant"):
        metrics.mig(torch.randn(10, 2), torch.zeros(10, 1))
    with pytest.raises(KeyError):
        vv.shapes_factor_matrix(f, ["colour"])


# ----------------------------------------------------------------------------- anomaly scores


def test_negative_elbo_and_iwae_bounds():
    torch.manual_seed(0)
    model = vv.BetaVAE(vv.CondVAEConfig.tiny(), beta=3.0).double()
    x = (torch.rand(40, 1, 8, 8, generator=_gen(0)) > 0.6).double()
    one = vv.negative_elbo(model, x, generator=_gen(4))
    rec, kl = model.elbo_terms(x, generator=_gen(4))  # the same draw of z; β plays no role in the score
    assert one.shape == (40,) and torch.allclose(one, (kl - rec).detach())
    many = vv.negative_elbo(model, x, n_samples=200, generator=_gen(5), batch_size=16)
    k1 = torch.stack([vae.iwae_nll(model, x, k=1, generator=_gen(s)) for s in range(200)]).mean(0)
    assert (k1 - many).abs().mean() < 0.25  # E[IWAE_1] = -ELBO
    k64 = vae.iwae_nll(model, x, k=64, generator=_gen(6), batch_size=7)
    assert bool((k64 <= many + 0.05).all())  # tighter: IWAE_k <= -ELBO
    with pytest.raises(ValueError):
        vv.negative_elbo(model, x, n_samples=0)
    with pytest.raises(ValueError):
        vae.iwae_nll(model, x, k=0)


def test_training_lowers_the_loss_and_anomaly_scores_run():
    digits = data.digits()
    x, y = digits.tensors
    x = x.clamp(0, 1)
    torch.manual_seed(0)
    model = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=10))
    hist = trainlib.train_vae(model, x[:600], y[:600], objective="loss", epochs=3, batch_size=64, progress=False,
                              log_every=1)
    losses = hist.series("loss")[1]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    with pytest.raises(ValueError, match="labels"):
        trainlib.train_vae(model, x[:10], objective="loss")
    with pytest.raises(ValueError, match="objective"):
        trainlib.train_vae(model, x[:10], y[:10], objective="loss", val=x[:10])
    torch.manual_seed(0)
    plain = vv.BetaVAE(vv.CondVAEConfig.tiny())
    trainlib.train_vae(plain, x[:600][y[:600] != 0], objective="loss", epochs=2, batch_size=128, progress=False)
    out = vv.anomaly_scores(plain, 0, x[600:900], y[600:900])
    assert set(out) == {"digit", "auroc", "scores", "is_anomaly"}
    with pytest.raises(ValueError, match="no digit"):
        vv.anomaly_scores(plain, 0, x[600:900][y[600:900] != 0], y[600:900][y[600:900] != 0])
    assert 0.0 <= out["auroc"] <= 1.0 and out["scores"].shape == (300,)
    assert out["is_anomaly"].sum() == (y[600:900] == 0).sum()
    assert out["auroc"] == pytest.approx(roc_auc_score(out["is_anomaly"].numpy(), out["scores"].numpy()))


# ----------------------------------------------------------------------------- the convolutional β-VAE


def test_conv_config_validation_and_parameter_count():
    tiny = vv.CondVAEConfig.conv_tiny()
    # encoder: conv 1->4 (4x4), conv 4->8 (4x4), linear 8 -> 6; decoder: linear 3 -> 8, convT 8->4, convT 4->1
    enc = (16 * 4 + 4) + (4 * 16 * 8 + 8) + (8 * 6 + 6)
    dec = (3 * 8 + 8) + (8 * 16 * 4 + 4) + (4 * 16 * 1 + 1)
    assert count_parameters(vv.BetaVAE(tiny)) == enc + dec
    # a condition adds K inputs to the encoder's head and to the decoder's first layer
    assert count_parameters(vv.CVAE(vv.CondVAEConfig.conv_tiny(num_classes=5))) == enc + dec + 5 * 6 + 5 * 8
    assert count_parameters(vv.BetaVAE(SHAPES_CONFIG)) == 134357
    for bad in (dict(arch="resnet"), dict(arch="conv", hidden=(8,)), dict(arch="conv", hidden=(4, 8), image_size=16)):
        with pytest.raises(ValueError):
            vv.CondVAEConfig(**{"image_size": 8, "latent_dim": 3, **bad})
    with pytest.raises(ValueError, match="conv"):
        vv.CondConvEncoder(vv.CondVAEConfig.tiny())


def test_conv_encoder_decoder_shapes_match_the_docstring():
    torch.manual_seed(0)
    model = vv.BetaVAE(SHAPES_CONFIG)
    shapes = []
    hook = lambda m, i, o: shapes.append(tuple(o.shape[1:]))  # noqa: E731
    for layer in [*model.encoder.body, *model.decoder.body]:
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            layer.register_forward_hook(hook)
    logits, mu, logvar = model(torch.rand(2, 1, 32, 32))
    assert shapes == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (64, 1, 1), (32, 4, 4), (32, 8, 8), (32, 16, 16),
                      (1, 32, 32)]
    assert logits.shape == (2, 1, 32, 32) and mu.shape == logvar.shape == (2, 10)


def test_conv_vae_elbo_matches_torch_distributions_and_trains():
    torch.manual_seed(0)
    model = vv.BetaVAE(vv.CondVAEConfig.conv_tiny(), beta=2.0).double()
    x = (torch.rand(6, 1, 8, 8, generator=_gen(0)) > 0.5).double()
    rec, kl = model.elbo_terms(x, generator=_gen(1))
    mu, logvar = model.encode(x)
    logits = model.decode(vv.reparameterize(mu, logvar, generator=_gen(1)))
    assert torch.allclose(rec, Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1))
    assert torch.allclose(kl, kl_divergence(Normal(mu, logvar.mul(0.5).exp()), Normal(0.0, 1.0)).sum(1))
    xs, _ = toys.shapes(256, size=8, seed=0)
    m = vv.BetaVAE(vv.CondVAEConfig.conv_tiny(), beta=1.0)
    hist = trainlib.train_vae(m, xs, objective="loss", epochs=6, batch_size=32, lr=3e-3, progress=False, log_every=1)
    losses = hist.series("loss")[1]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_beta_sweep_shares_initial_weights_and_indexes_by_beta():
    sweep = vv.BetaSweep(vv.CondVAEConfig.conv_tiny(), betas=(1, 4))
    assert len(sweep) == 2 and sweep.betas == (1.0, 4.0) and sweep[4].beta == 4.0
    a, b = sweep[1].state_dict(), sweep[4.0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # only β differs
    with pytest.raises(KeyError):
        sweep[2]
    with pytest.raises(ValueError):
        vv.BetaSweep(vv.CondVAEConfig.conv_tiny(), betas=(1, 1))


def test_measure_disentanglement_reports_rate_distortion_and_mig():
    torch.manual_seed(0)
    model = vv.BetaVAE(vv.CondVAEConfig.conv_tiny()).eval()
    x, f = toys.shapes(300, size=8, seed=0)
    v = vv.shapes_factor_matrix(f)
    r = vv.measure_disentanglement(model, x, v)
    mu, logvar = model.encode(x)
    assert torch.allclose(r["mu"], mu.detach(), atol=1e-6)
    assert r["kl_dims"].shape == (3,) and r["rate"] == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
    assert torch.allclose(r["z"], vv.reparameterize(mu, logvar, generator=_gen(0)).detach(), atol=1e-6)
    nelbo = vv.negative_elbo(model, x, generator=_gen(0))  # the same z draws: -ELBO = distortion + rate
    assert r["distortion"] + r["rate"] == pytest.approx(nelbo.mean().item(), rel=1e-5)
    assert r["mig"].mi.shape == r["mig_sampled"].mi.shape == (3, 5) and 0 <= r["mig"].score <= 1
    assert r["active"] == int((r["kl_dims"] > 0.1).sum())


def test_chapter_10s_iwae_nll_serves_a_cvae_with_labels():
    torch.manual_seed(0)
    model = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4)).double().eval()
    x = (torch.rand(6, 1, 8, 8, generator=_gen(0)) > 0.5).double()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ours = vae.iwae_nll(model, x, k=5, batch_size=4, generator=_gen(1), y=y)
    # by hand, batch by batch, noise drawn sample-major as VAE.sampled_terms does
    g, ref = _gen(1), []
    for sl in (slice(0, 4), slice(4, 6)):
        xb, yb = x[sl], y[sl]
        mu, lv = model.encode(xb, yb)
        eps = torch.randn(5 * len(xb), 3, generator=g, dtype=torch.float64)
        z = mu.repeat(5, 1) + (0.5 * lv.repeat(5, 1)).exp() * eps
        log_p = Bernoulli(logits=model.decode(z, yb.repeat(5))).log_prob(xb.repeat(5, 1, 1, 1)).sum((1, 2, 3))
        log_w = (log_p + Normal(0.0, 1.0).log_prob(z).sum(1)
                 - Normal(mu.repeat(5, 1), (0.5 * lv.repeat(5, 1)).exp()).log_prob(z).sum(1)).view(5, -1)
        ref.append(-(torch.logsumexp(log_w, 0) - math.log(5)))
    torch.testing.assert_close(ours, torch.cat(ref).detach())
    assert not torch.allclose(ours, vae.iwae_nll(model, x, k=5, batch_size=4, generator=_gen(1), y=(y + 1) % 4))


_BETA = vv.BetaVAE(vv.CondVAEConfig.tiny())  # 8x8 images, 3 latents
_CVAE = vv.CVAE(vv.CondVAEConfig.tiny(num_classes=4))
_CONV = vv.BetaVAE(vv.CondVAEConfig.conv_tiny())
_X = torch.rand(2, 1, 8, 8)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: _BETA.decode(torch.zeros(2, 4)), ValueError, r"BetaVAE.decode: z must be \[B, 3\], got \[2, 4\]"),
    (lambda: _BETA.encode(torch.rand(2, 64)), ValueError, r"BetaVAE.encode: x must be \[B, 1, 8, 8\], got \[2, 64\]"),
    (lambda: _BETA.encode(_X.double()), TypeError, "float64"),
    (lambda: _BETA.loss(_X[:, :, :4]), ValueError, r"x must be \[B, 1, 8, 8\]"),
    (lambda: _CONV.decode(torch.zeros(2, 2)), ValueError, r"z must be \[B, 3\]"),
    (lambda: _CONV.encode(torch.rand(2, 2, 8, 8)), ValueError, r"got \[2, 2, 8, 8\]"),
    (lambda: _CVAE.encode(_X, torch.tensor([0, 4])), ValueError, r"labels y must lie in 0..3, got range \[0, 4\]"),
    (lambda: _CVAE.encode(_X, torch.tensor([-1, 0])), ValueError, "0..3"),
    (lambda: _CVAE.encode(_X, torch.tensor([0, 1, 2])), ValueError, r"labels y must have shape \[2\], got \[3\]"),
    (lambda: _CVAE.encode(_X, torch.tensor([[0, 1]])), ValueError, r"shape \[2\]"),
    (lambda: _CVAE.encode(_X, torch.tensor([0.0, 1.0])), TypeError, "integer tensor"),
    (lambda: _CVAE.encode(_X, [0, 1]), TypeError, "integer tensor"),
    (lambda: _CVAE.decode(torch.zeros(2, 3), torch.tensor([1, 9])), ValueError, "0..3"),
    (lambda: _CVAE.sample(torch.tensor([5])), ValueError, "0..3"),
    (lambda: _CVAE.sample(torch.tensor([0.5])), TypeError, "integer"),
    (lambda: _CVAE.loss(_X, torch.tensor([0, 1, 1])), ValueError, r"shape \[2\]"),
])
def test_beta_vae_and_cvae_reject_bad_inputs_at_the_door(call, error, match):
    with pytest.raises(error, match=match):
        call()

