"""companion.vae against torch.distributions, closed forms and an exact marginal likelihood by quadrature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from companion import estimators, losses, vae
from companion import train as trainlib


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _binary(n, shape=(1, 28, 28), seed=0):
    return (torch.rand(n, *shape, generator=_gen(seed)) > 0.7).float()


# ----------------------------------------------------------------------------- pieces


def test_reparameterize_moments_gradients_and_seed():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(0.25)]])
    z = vae.reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2), _gen())
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01, rtol=0)
    assert torch.equal(vae.reparameterize(mu, logvar, _gen(3)), vae.reparameterize(mu, logvar, _gen(3)))
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    z = vae.reparameterize(m, lv, _gen(1))
    z.sum().backward()
    eps = torch.randn(1, 2, generator=_gen(1))
    torch.testing.assert_close(m.grad, torch.ones(1, 2))  # dz/dmu = 1
    torch.testing.assert_close(lv.grad, 0.5 * torch.exp(0.5 * logvar) * eps)  # dz/dlogvar = sigma * eps / 2
    with pytest.raises(ValueError, match="same shape"):
        vae.reparameterize(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("config", [
    vae.VAEConfig.tiny(),
    vae.VAEConfig(latent_dim=4, hidden=(8, 16), arch="conv"),
    vae.VAEConfig.tiny(likelihood="gaussian"),
    vae.VAEConfig.tiny(likelihood="gaussian", decoder_variance="learned"),
], ids=["mlp-bernoulli", "conv-bernoulli", "gaussian-fixed", "gaussian-learned"])
def test_shapes_and_elbo_equals_torch_distributions(config):
    torch.manual_seed(0)
    model = vae.VAE(config)
    x = _binary(3)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, config.latent_dim)
    out, z, mu2, _ = model(x, _gen(5))
    assert out.shape == x.shape and z.shape == mu.shape and torch.equal(mu, mu2)
    elbo, rec, kl = model.elbo(x, beta=0.5, generator=_gen(5))
    assert elbo.shape == rec.shape == kl.shape == (3,)
    torch.testing.assert_close(elbo, rec - 0.5 * kl)
    # the same computation with torch.distributions
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p_z = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p_z))
    if config.likelihood == "bernoulli":
        p_x = Independent(Bernoulli(logits=out), 3)
    else:
        std = torch.exp(0.5 * torch.as_tensor(model.decoder_logvar())).expand_as(out)
        p_x = Independent(Normal(out, std), 3)
    torch.testing.assert_close(rec, p_x.log_prob(x), rtol=1e-5, atol=1e-4)
    assert model.sample(4, _gen(1)).shape == (4, *config.image_shape)
    assert torch.equal(model.sample(4, _gen(1)), model.sample(4, _gen(1)))
    draws = model.sample(4, _gen(1), mean=False)
    assert draws.shape == (4, *config.image_shape)
    if config.likelihood == "bernoulli":
        assert set(draws.unique().tolist()) <= {0.0, 1.0}


def test_bernoulli_rec_is_minus_bce_and_mean_image_is_sigmoid():
    torch.manual_seed(1)
    model = vae.VAE(vae.VAEConfig.tiny())
    x = _binary(4, seed=2)
    _, rec, _ = model.elbo(x, generator=_gen(7))
    out, _, _, _ = model(x, _gen(7))
    torch.testing.assert_close(rec, -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum((1, 2, 3)))
    z = torch.randn(2, 2)
    torch.testing.assert_close(model.decode_mean(z), torch.sigmoid(model.decode(z)))


def test_learned_gaussian_variance_has_a_floor_and_gradients():
    cfg = vae.VAEConfig.tiny(likelihood="gaussian", decoder_variance="learned")
    model = vae.VAE(cfg)
    assert model.raw_logvar.shape == cfg.image_shape
    with torch.no_grad():
        model.raw_logvar.fill_(-50.0)
    assert model.decoder_logvar().min().item() >= cfg.min_logvar - 1e-6
    x = torch.rand(2, 1, 28, 28)
    (-model.elbo(x)[0].mean()).backward()
    assert model.raw_logvar.grad is not None
    fixed = vae.VAE(vae.VAEConfig.tiny(likelihood="gaussian"))
    assert fixed.raw_logvar is None and fixed.decoder_logvar() == pytest.approx(2 * math.log(0.1))


@pytest.mark.parametrize(("changes", "match"), [
    ({"latent_dim": 0}, "latent_dim"), ({"hidden": ()}, "hidden"), ({"arch": "rnn"}, "arch"),
    ({"likelihood": "poisson"}, "likelihood"), ({"decoder_variance": "both"}, "decoder_variance"),
    ({"arch": "conv", "hidden": (8, 8, 8)}, "conv"),
])
def test_bad_configs(changes, match):
    with pytest.raises(ValueError, match=match):
        vae.VAEConfig(**changes)


# ----------------------------------------------------------------------------- training helpers


def test_dynamic_binarize_is_bernoulli_of_the_intensity():
    x = torch.tensor([0.0, 0.25, 1.0]).repeat(40_000, 1)
    b = vae.dynamic_binarize(x, _gen())
    assert set(b.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(b.mean(0), torch.tensor([0.0, 0.25, 1.0]), atol=0.01, rtol=0)
    assert torch.equal(vae.dynamic_binarize(x[:5], _gen(4)), vae.dynamic_binarize(x[:5], _gen(4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.dynamic_binarize(torch.tensor([1.5]))


def test_beta_schedules():
    assert [vae.beta_anneal(s, 10, 0.8) for s in (0, 5, 10, 99)] == pytest.approx([0.0, 0.4, 0.8, 0.8])
    assert vae.beta_anneal(0, 0, 4.0) == 4.0
    assert [vae.beta_cyclical(s, 10, 1.0, 0.5) for s in (0, 2, 5, 9, 10, 12)] == pytest.approx(
        [0.0, 0.4, 1.0, 1.0, 0.0, 0.4])
    with pytest.raises(ValueError):
        vae.beta_anneal(-1, 10)
    with pytest.raises(ValueError):
        vae.beta_cyclical(0, 0)


def test_train_vae_lowers_the_loss_and_early_stopping_restores_the_best():
    torch.manual_seed(0)
    x = torch.rand(300, 1, 28, 28) * (torch.rand(1, 1, 28, 28) > 0.5)  # a fixed "digit" mask
    model = vae.VAE(vae.VAEConfig.tiny(latent_dim=4, hidden=(32,)))
    seen = []
    hist = trainlib.train_vae(model, x[:250], epochs=6, batch_size=50, lr=3e-3, warmup_steps=10, val=x[250:], patience=2,
                         progress=False, on_epoch=lambda e, m: seen.append(e))
    losses_ = hist.series("loss")[1]
    assert losses_[-1] < losses_[0] - 50
    assert hist.series("beta")[1][0] == 0.0 and seen == list(range(1, len(seen) + 1))
    best = max(r["val_elbo"] for r in hist.eval)
    assert hist.train[-1]["best_epoch"] == next(r["epoch"] for r in hist.eval if r["val_elbo"] == best)
    assert not model.training
    capped = trainlib.train_vae(vae.VAE(vae.VAEConfig.tiny()), x, epochs=5, batch_size=50, max_steps=7, progress=False,
                           log_every=1)
    assert capped.train[-1]["step"] == 7


# ----------------------------------------------------------------------------- evaluation


def _quadrature_nll(model, x, n=4001, half_width=8.0):
    """-log p(x) = -log ∫ p(x|z) p(z) dz for a 1-D latent, by the trapezoid rule."""
    z = torch.linspace(-half_width, half_width, n, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_px_z = torch.stack([model.log_likelihood(xi.expand(n, *xi.shape), model.decode(z)) for xi in x])
    log_joint = log_px_z + Normal(0.0, 1.0).log_prob(z[:, 0])  # [B, n]
    dz = z[1, 0] - z[0, 0]
    return -(torch.logsumexp(log_joint, dim=1) + torch.log(dz))


def test_iwae_bound_tightens_to_the_exact_marginal_likelihood():
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig(latent_dim=1, hidden=(16,), image_shape=(1, 4, 4))).double().eval()
    x = _binary(3, shape=(1, 4, 4), seed=3).double()
    exact = _quadrature_nll(model, x)
    k1 = torch.stack([vae.iwae_nll(model, x, k=1, generator=_gen(s)) for s in range(400)]).mean(0)
    k5000 = vae.iwae_nll(model, x, k=5000, generator=_gen(1), max_samples=1000)  # chunked: 5 chunks
    assert (k1 > exact).all()  # the ELBO is a bound ...
    assert (k1 - exact).max() > 0.05  # ... that is loose for this posterior
    torch.testing.assert_close(k5000, exact, atol=0.02, rtol=0)  # ... and k = 5000 closes the gap
    # the k = 1 IWAE estimate is the ELBO with a sampled (not closed-form) KL: equal in expectation
    elbo = torch.stack([model.elbo(x, generator=_gen(s))[0] for s in range(400)]).mean(0)
    torch.testing.assert_close(k1, -elbo, atol=0.15, rtol=0)
    with pytest.raises(ValueError, match="k must be"):
        vae.iwae_nll(model, x, k=0)


def test_differentiable_iwae_bound_matches_the_evaluation_bound_and_trains():
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig(latent_dim=1, hidden=(16,), image_shape=(1, 4, 4))).double().eval()
    x = _binary(3, shape=(1, 4, 4), seed=3).double()
    # same noise as iwae_log_weights (one chunk, sample-major) -> the same bound, but with gradients
    bound, rec, kl = model.iwae_bound(x, 6, generator=_gen(5))
    torch.testing.assert_close(-bound.detach(), vae.iwae_nll(model, x, k=6, generator=_gen(5)))
    assert bound.shape == rec.shape == kl.shape == (3,)
    bound.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # k = 1 is the one-sample ELBO with a sampled KL; a larger k gives a tighter (higher) bound on average
    b1 = torch.stack([model.iwae_bound(x, 1, generator=_gen(s))[0] for s in range(300)]).mean(0)
    b50 = torch.stack([model.iwae_bound(x, 50, generator=_gen(s))[0] for s in range(30)]).mean(0)
    assert (b50 > b1).all()
    with torch.no_grad():  # beta = 0 drops the KL term: the bound is then log mean_i p(x | z_i)
        b0, rec0, _ = model.iwae_bound(x, 1, beta=0.0, generator=_gen(1))
    torch.testing.assert_close(b0, rec0)
    with pytest.raises(ValueError, match="k must be"):
        model.iwae_bound(x, 0)
    xs = torch.rand(200, 1, 28, 28) * (torch.rand(1, 1, 28, 28) > 0.5)
    hist = trainlib.train_vae(vae.VAE(vae.VAEConfig.tiny(latent_dim=4, hidden=(32,))), xs, epochs=3, batch_size=50,
                         lr=3e-3, iwae_k=4, progress=False, log_every=1)
    losses_ = hist.series("loss")[1]
    assert losses_[-1] < losses_[0] - 50
    with pytest.raises(ValueError, match="iwae_k"):
        trainlib.train_vae(vae.VAE(vae.VAEConfig.tiny()), xs, iwae_k=0, progress=False)


def test_iwae_log_weights_shape_and_formula():
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig.tiny(latent_dim=3)).eval()
    x = _binary(2)
    log_w = vae.iwae_log_weights(model, x, k=7, generator=_gen(2), max_samples=4)  # chunks of 2 samples x 2 images
    assert log_w.shape == (7, 2)
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(2, 3, generator=_gen(2))  # the first chunk's first sample
    expected = (model.log_likelihood(x, model.decode(z)) + losses.log_standard_normal(z)
                - losses.log_normal(z, mu, logvar))
    torch.testing.assert_close(log_w[0], expected.detach(), rtol=1e-5, atol=1e-4)


def test_activity_active_units_and_kl_per_dimension():
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig.tiny(latent_dim=4)).eval()
    with torch.no_grad():  # dimensions 1 and 3: mean fixed at 0 whatever x is, variance 1 -> the prior
        head = model.encoder.head
        for j in (1, 3):
            head.weight[j].zero_()
            head.bias[j] = 0.0
            head.weight[4 + j].zero_()
            head.bias[4 + j] = 0.0
        head.weight[:4] *= 20  # the others move a lot with x
    x = torch.rand(64, 1, 28, 28, generator=_gen(1))
    a = vae.activity(model, x)
    mu, logvar = vae.encode_means(model, x)
    torch.testing.assert_close(a, mu.var(0))
    assert a[1] == 0 and a[3] == 0 and (a[[0, 2]] > 1e-2).all()
    assert vae.active_units(model, x) == 2
    kl_d = vae.kl_per_dimension(*vae.encode_means(model, torch.utils.data.TensorDataset(x, torch.zeros(64))))
    assert kl_d[1] == 0 and kl_d[3] == 0
    torch.testing.assert_close(kl_d.sum(), losses.gaussian_kl(mu, logvar).mean())
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).mean(0)
    torch.testing.assert_close(kl_d, ref)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        vae.kl_per_dimension(mu, logvar[:, :3])


def test_latent_space_helpers():
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig.tiny()).eval()
    grid = vae.latent_grid(model, n=5)
    assert grid.shape == (25, 1, 28, 28)
    torch.testing.assert_close(grid[12], model.decode_mean(torch.zeros(1, 2))[0])  # the centre is z = 0
    a, b = _binary(2)
    path = vae.interpolate(model, a, b, steps=6)
    mu, _ = model.encode(torch.stack([a, b]))
    torch.testing.assert_close(path[[0, -1]], model.decode_mean(mu).detach())
    s = vae.slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(s[[0, 2]], torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    torch.testing.assert_close(s[1], torch.tensor([1.0, 2.0]) * math.sqrt(0.5))  # sin(pi/4) (a + b) at 90 degrees
    with pytest.raises(ValueError, match="mode"):
        vae.interpolate(model, a, b, mode="cubic")
    mean, std = vae.posterior_pixel_std(model, _binary(3), n_samples=16, generator=_gen(1))
    assert mean.shape == std.shape == (3, 1, 28, 28) and (std >= 0).all() and std.max() > 0
    with torch.no_grad():  # a point-mass posterior: every sample decodes to the same image
        model.encoder.head.bias[2:] = -60.0
    assert vae.posterior_pixel_std(model, _binary(2), n_samples=8)[1].max() < 1e-6
    trav = vae.traverse(model.decode_mean, torch.zeros(2), dims=[0, 1], values=[-1.0, 0.0, 1.0])
    assert trav.shape == (2, 3, 1, 28, 28)  # [dims, values, C, H, W]
    torch.testing.assert_close(trav[0, 1], trav[1, 1])  # both are z = 0
    torch.testing.assert_close(trav[1, 2], model.decode_mean(torch.tensor([[0.0, 1.0]]))[0])
    codes = vae.traversal_codes(torch.tensor([0.5, -0.5]), dims=[1], values=[2.0, 3.0])
    torch.testing.assert_close(codes, torch.tensor([[0.5, 2.0], [0.5, 3.0]]))
    with pytest.raises(ValueError, match="out of range"):
        vae.traverse(model.decode_mean, torch.zeros(2), dims=[2], values=[0.0])


def test_score_function_and_reparameterisation_are_unbiased_with_different_variance():
    f = lambda z: z**2  # d/dmu E[z^2] = d/dmu (mu^2 + sigma^2) = 2 mu
    score = estimators.toy_gradient_samples(f, 1.5, 1.0, 100_000, "score", _gen(0))
    reparam = estimators.toy_gradient_samples(f, 1.5, 1.0, 100_000, "reparam", _gen(0))
    for est in (score, reparam):
        assert abs(est.mean().item() - 3.0) < 4 * est.std().item() / math.sqrt(len(est))
    assert score.var() > 5 * reparam.var()
    torch.testing.assert_close(reparam.var(), torch.tensor(4.0, dtype=torch.float64), rtol=0.03, atol=0)  # 4 sigma^2
    with pytest.raises(ValueError, match="estimator"):
        estimators.toy_gradient_samples(f, 0.0, 1.0, 2, "pathwise")


def test_train_vae_polyak_averaging():
    x = torch.rand(200, 1, 28, 28, generator=_gen(3))
    trained = {}
    for ema in (None, 1e-7, 0.9):
        torch.manual_seed(0)
        model = vae.VAE(vae.VAEConfig.tiny(latent_dim=3, hidden=(16,)))
        trainlib.train_vae(model, x, epochs=2, batch_size=50, lr=3e-3, ema=ema, progress=False)
        trained[ema] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(trained[1e-7], trained[None])  # a vanishing average is the last iterate
    assert (trained[0.9] - trained[None]).abs().max() > 1e-3  # a real average lags behind it
    with pytest.raises(ValueError, match="ema"):
        trainlib.train_vae(vae.VAE(vae.VAEConfig.tiny()), x, epochs=1, ema=1.5, progress=False)


_MLP = vae.VAE(vae.VAEConfig.tiny())  # 2 latents, 28x28 images
_CONV = vae.VAE(vae.VAEConfig(latent_dim=4, hidden=(8, 16), arch="conv"))


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: _MLP.decode(torch.zeros(3, 5)), ValueError, r"VAE.decode: z must be \[B, 2\], got \[3, 5\]"),
    (lambda: _MLP.decode(torch.zeros(2)), ValueError, r"z must be \[B, 2\], got \[2\]"),
    (lambda: _MLP.decode(torch.zeros(3, 2, dtype=torch.float64)), TypeError, "float64"),
    (lambda: _MLP.decode(torch.zeros(3, 2, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: _MLP.encode(torch.zeros(3, 784)), ValueError, r"VAE.encode: x must be \[B, 1, 28, 28\], got \[3, 784\]"),
    (lambda: _MLP.encode(torch.zeros(3, 3, 28, 28)), ValueError, r"got \[3, 3, 28, 28\]"),
    (lambda: _MLP.elbo(torch.zeros(3, 1, 32, 32)), ValueError, r"x must be \[B, 1, 28, 28\]"),
    (lambda: _MLP(torch.zeros(3, 1, 28, 28, dtype=torch.float64)), TypeError, "float64"),
    (lambda: _CONV.decode(torch.zeros(3, 2)), ValueError, r"z must be \[B, 4\]"),
    (lambda: _CONV.encode(torch.zeros(3, 1, 27, 27)), ValueError, r"x must be \[B, 1, 28, 28\]"),
    (lambda: vae.iwae_nll(_MLP, torch.zeros(2, 1, 28, 28), k=0), ValueError, "k must be >= 1"),
    (lambda: vae.kl_per_dimension([0.0], torch.zeros(2, 2)), TypeError, "tensors"),
    (lambda: vae.latent_grid(_MLP, n=3, dims=(0, 5)), ValueError, "two different dimensions in 0..1"),
])
def test_vae_rejects_bad_inputs_at_the_door(call, error, match):
    with pytest.raises(error, match=match):
        call()

