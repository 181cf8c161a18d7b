"""companion.losses against torch.softmax / F.cross_entropy / autograd, torch.distributions and F.binary_cross_entropy_with_logits; bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from companion import losses


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- classification: softmax family


def _logits(seed=0, b=16, k=10, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=dtype) * scale, torch.randint(0, k, (b,), generator=g)


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_and_log_softmax_match_torch(scale):
    z, _ = _logits(scale=scale)
    torch.testing.assert_close(losses.softmax(z), torch.softmax(z, -1))
    torch.testing.assert_close(losses.log_softmax(z), torch.log_softmax(z, -1))
    assert torch.isfinite(losses.log_softmax(z)).all()


def test_softmax_other_dim_and_sums_to_one():
    z = torch.randn(3, 5, 7)
    torch.testing.assert_close(losses.softmax(z, dim=1), torch.softmax(z, 1))
    torch.testing.assert_close(losses.log_softmax(z, dim=0), torch.log_softmax(z, 0))
    torch.testing.assert_close(losses.softmax(z).sum(-1), torch.ones(3, 5))


def test_log_softmax_survives_where_naive_overflows():
    z = torch.tensor([[1000.0, 0.0, -1000.0]])
    naive = z.exp() / z.exp().sum(-1, keepdim=True)
    assert torch.isnan(naive).any()
    torch.testing.assert_close(losses.log_softmax(z), torch.tensor([[0.0, -1000.0, -2000.0]]))


def test_log_softmax_gradient_matches_torch():
    z, _ = _logits(dtype=torch.float64)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    w = torch.randn_like(z)
    (losses.log_softmax(a) * w).sum().backward()
    (torch.log_softmax(b, -1) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_softmax_rejects_integer_logits():
    with pytest.raises(TypeError, match="floating-point"):
        losses.softmax(torch.tensor([[1, 2]]))
    with pytest.raises(TypeError, match="floating-point"):
        losses.log_softmax(torch.tensor([[1, 2]]))


# ----------------------------------------------------------------------------- classification: cross-entropy


@pytest.mark.parametrize("scale", [1.0, 1000.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(scale, reduction):
    z, y = _logits(scale=scale)
    torch.testing.assert_close(losses.cross_entropy(z, y, reduction=reduction),
                               F.cross_entropy(z, y, reduction=reduction))


def test_cross_entropy_closed_form_uniform_logits():
    z = torch.zeros(4, 10)
    assert losses.cross_entropy(z, torch.tensor([0, 3, 5, 9])).item() == pytest.approx(math.log(10))


def test_cross_entropy_grad_matches_autograd():
    for scale in (1.0, 1000.0):
        z, y = _logits(scale=scale, dtype=torch.float64)
        leaf = z.clone().requires_grad_()
        F.cross_entropy(leaf, y).backward()
        g = losses.cross_entropy_grad(z, y)
        torch.testing.assert_close(g, leaf.grad)
        torch.testing.assert_close(g.sum(1), torch.zeros(len(z), dtype=torch.float64))


@pytest.mark.parametrize("fn", [losses.cross_entropy, losses.cross_entropy_grad])
def test_cross_entropy_bad_inputs_name_shapes(fn):
    with pytest.raises(ValueError, match=r"logits \(4, 10\) and targets \(3,\)"):
        fn(torch.zeros(4, 10), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must be \[B, K\].*\(10,\)"):
        fn(torch.zeros(10), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="0..9"):
        fn(torch.zeros(2, 10), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer class indices"):
        fn(torch.zeros(2, 10), torch.tensor([0.0, 1.0]))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        losses.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), reduction="avg")


# ----------------------------------------------------------------------------- likelihoods and divergences


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3, 3), (1, 1)])
def test_gaussian_kl_matches_torch_distributions(shape):
    mu, logvar = _randn(*shape, seed=1), _randn(*shape, seed=2)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu)))
    ours = losses.gaussian_kl(mu, logvar)
    assert ours.shape == (shape[0],)
    torch.testing.assert_close(ours, ref.reshape(shape[0], -1).sum(1))


def test_gaussian_kl_is_zero_at_the_prior_and_positive_elsewhere():
    z = torch.zeros(4, 8)
    assert torch.equal(losses.gaussian_kl(z, z), torch.zeros(4))
    assert (losses.gaussian_kl(_randn(4, 8), _randn(4, 8, seed=3)) > 0).all()


def test_gaussian_kl_gradient_matches_closed_form():
    mu, logvar = _randn(3, 4).requires_grad_(), _randn(3, 4, seed=5).requires_grad_()
    losses.gaussian_kl(mu, logvar).sum().backward()
    torch.testing.assert_close(mu.grad, mu.detach())
    torch.testing.assert_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1))


def test_gaussian_kl_between_matches_torch_and_reduces_to_gaussian_kl():
    a, b, c, d = (_randn(6, 5, seed=s) for s in range(4))
    ref = kl_divergence(Normal(a, (0.5 * b).exp()), Normal(c, (0.5 * d).exp())).sum(1)
    torch.testing.assert_close(losses.gaussian_kl_between(a, b, c, d), ref)
    zero = torch.zeros_like(a)
    torch.testing.assert_close(losses.gaussian_kl_between(a, b, zero, zero), losses.gaussian_kl(a, b))


def test_log_normal_and_standard_normal_match_torch():
    z, mu, logvar = _randn(7, 3, seed=1), _randn(7, 3, seed=2), _randn(7, 3, seed=3)
    torch.testing.assert_close(losses.log_normal(z, mu, logvar), Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(1))
    torch.testing.assert_close(losses.log_standard_normal(z), Normal(0.0, 1.0).log_prob(z).sum(1))


def test_bernoulli_log_likelihood_matches_bce_and_distribution():
    logits = _randn(4, 1, 5, 5) * 4
    x = (torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    ours = losses.bernoulli_log_likelihood(logits, x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(ours, -bce)
    torch.testing.assert_close(ours, Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)))


def test_bernoulli_log_likelihood_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4]])
    out = losses.bernoulli_log_likelihood(logits, torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(out).all() and abs(out.item()) < 1e-6


def test_gaussian_log_likelihood_fixed_and_learned_variance():
    x, mean, logvar = _randn(3, 6, seed=1), _randn(3, 6, seed=2), _randn(3, 6, seed=3)
    torch.testing.assert_close(losses.gaussian_log_likelihood(x, mean, logvar),
                               Normal(mean, (0.5 * logvar).exp()).log_prob(x).sum(1))
    torch.testing.assert_close(losses.gaussian_log_likelihood(x, mean), Normal(mean, 1.0).log_prob(x).sum(1))


@pytest.mark.parametrize(("fn", "args", "match"), [
    (losses.gaussian_kl, (torch.zeros(2, 3), torch.zeros(2, 4)), r"shapes must match.*\(2, 3\).*\(2, 4\)"),
    (losses.gaussian_kl, (torch.zeros(0, 3), torch.zeros(0, 3)), "batch dimension"),
    (losses.gaussian_kl, (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)), "floating"),
    (losses.gaussian_kl, ([0.0], torch.zeros(1)), "must be tensors"),
    (losses.bernoulli_log_likelihood, (torch.zeros(2, 3), torch.full((2, 3), 2.0)), r"\[0, 1\]"),
    (losses.log_normal, (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3)), "shapes must match"),
])
def test_bad_inputs_raise_clear_errors(fn, args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fn(*args)


def test_log_mean_exp_matches_the_naive_formula_and_is_stable():
    a = _randn(5, 3)
    torch.testing.assert_close(losses.log_mean_exp(a, dim=0), a.exp().mean(0).log())
    torch.testing.assert_close(losses.log_mean_exp(a, dim=1), a.exp().mean(1).log())
    big = torch.tensor([[1000.0, 1000.0], [-1000.0, 1000.0 + math.log(4.0)]], dtype=torch.float64)
    out = losses.log_mean_exp(big, dim=0)  # exp(1000) overflows; the log-sum-exp does not
    expected = torch.tensor([1000.0 + math.log(0.5), 1000.0 + math.log(2.5)], dtype=torch.float64)  # (1 + 4) / 2
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(losses.log_mean_exp(a[:1], dim=0), a[0])  # k = 1: the value itself
    with pytest.raises(ValueError, match="at least one"):
        losses.log_mean_exp(torch.zeros(0, 3))
    with pytest.raises(TypeError, match="floating"):
        losses.log_mean_exp(torch.zeros(2, dtype=torch.long))


def test_gaussian_kl_mc_converges_to_the_closed_form():
    mu, logvar = _randn(4, 3, seed=7), _randn(4, 3, seed=8)
    exact = losses.gaussian_kl(mu, logvar)
    g = torch.Generator().manual_seed(0)
    est = losses.gaussian_kl_mc(mu, logvar, 40_000, generator=g)
    assert est.shape == (4,)
    # the per-sample log-ratio has variance ~ a few nats^2: 40,000 samples give a standard error < 0.03
    torch.testing.assert_close(est, exact, atol=0.08, rtol=0)
    zero = torch.zeros(2, 5, dtype=torch.float64)
    assert torch.equal(losses.gaussian_kl_mc(zero, zero, 3), torch.zeros(2, dtype=torch.float64))  # q = p exactly
    with pytest.raises(ValueError, match="n_samples"):
        losses.gaussian_kl_mc(mu, logvar, 0)


# ----------------------------------------------------------------------------- reconstruction, ELBO, VQ terms


def test_reconstruction_losses_match_pytorch():
    logits, x = _randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1),
                                                 dtype=torch.float64)
    ref = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(losses.bce_per_image(logits, x), ref)
    ref = F.mse_loss(torch.sigmoid(logits), x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(losses.mse_per_image(torch.sigmoid(logits), x), ref)
    with pytest.raises(ValueError, match="shapes must match"):
        losses.mse_per_image(logits, x[:, :, :5])


def test_bernoulli_elbo_is_log_likelihood_minus_beta_kl():
    logits, mu, logvar = _randn(3, 1, 4, 4, seed=1), _randn(3, 5, seed=2), _randn(3, 5, seed=3)
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(4)) < 0.5).double()
    rec = Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    torch.testing.assert_close(losses.bernoulli_elbo(logits, x, mu, logvar), rec - kl)
    torch.testing.assert_close(losses.bernoulli_elbo(logits, x, mu, logvar, beta=4.0), rec - 4.0 * kl)


def test_vq_terms_have_the_value_of_the_squared_distance_and_stop_gradients():
    z = _randn(6, 3, seed=5).requires_grad_(True)
    e = _randn(6, 3, seed=6).requires_grad_(True)
    ref = (z - e).pow(2).mean()
    book, commit = losses.codebook_loss(z, e), losses.commitment_loss(z, e)
    torch.testing.assert_close(book, ref)
    torch.testing.assert_close(commit, ref)
    (gz_book, ge_book) = torch.autograd.grad(book, (z, e), allow_unused=True)
    (gz_commit, ge_commit) = torch.autograd.grad(commit, (z, e), allow_unused=True)
    assert gz_book is None and ge_commit is None  # sg[z] in the codebook term, sg[e] in the commitment term
    torch.testing.assert_close(ge_book, 2 * (e - z).detach() / z.numel())
    torch.testing.assert_close(gz_commit, 2 * (z - e).detach() / z.numel())
    with pytest.raises(ValueError, match="shapes must match"):
        losses.commitment_loss(z, e[:, :2])
