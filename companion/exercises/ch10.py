"""Checks for chapter 10 · Variational autoencoders.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares via ``expect_close`` with ``companion`` and with
``torch.distributions`` (an independent reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from companion import losses, vae
from companion.exercises import exercise, expect_close


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@exercise("10.1", "The reparameterisation trick", reference=vae.reparameterize)
def check_reparameterize(fn: Callable[..., torch.Tensor]) -> str:
    mu, logvar, eps = _randn(4, 3, seed=0), _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    z = fn(mu=mu, logvar=logvar, eps=eps)
    expect_close("z for mu, logvar, eps of shape [4, 3]", z, mu + torch.exp(0.5 * logvar) * eps)
    cases = [
        ("logvar = 0 (sigma = 1): z = mu + eps", _randn(2, 5, seed=3), torch.zeros(2, 5), _randn(2, 5, seed=4)),
        ("logvar = log 4 (sigma = 2, not 4)", torch.zeros(3, 2), torch.full((3, 2), math.log(4.0)),
         torch.ones(3, 2)),
        ("logvar = -40 (a point mass: z = mu)", _randn(2, 2, seed=5), torch.full((2, 2), -40.0),
         _randn(2, 2, seed=6)),
        ("one example, one latent", torch.tensor([[0.5]]), torch.tensor([[-1.0]]), torch.tensor([[-2.0]])),
    ]
    for name, m, lv, e in cases:
        expect_close(name, fn(mu=m, logvar=lv, eps=e), vae.reparameterize(m, lv, eps=e))
    # gradients must flow into mu and logvar: dz/dmu = 1, dz/dlogvar = sigma * eps / 2
    m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    out = fn(mu=m, logvar=lv, eps=eps)
    if not out.requires_grad:
        raise AssertionError("your z does not depend differentiably on mu and logvar (did you detach or use .data?)")
    out.sum().backward()
    expect_close("dz/dmu (should be 1 everywhere)", m.grad, torch.ones_like(mu))
    expect_close("dz/dlogvar (should be sigma * eps / 2)", lv.grad, 0.5 * torch.exp(0.5 * logvar) * eps)
    return (f"z = mu + exp(logvar/2) * eps on 5 inputs (sigma = 1, sigma = 2, a point mass, a single latent), "
            f"with the right gradients; e.g. z[0] = {[round(v, 3) for v in z[0].tolist()]}")


@exercise("10.2", "The KL divergence to the prior in closed form", reference=losses.gaussian_kl)
def check_gaussian_kl(fn: Callable[..., torch.Tensor]) -> str:
    worst = 0.0
    cases = [((5, 4), 0), ((2, 32), 1), ((1, 1), 2), ((3, 2, 4, 4), 3)]
    for shape, seed in cases:
        mu, logvar = _randn(*shape, seed=seed, dtype=torch.float64), _randn(*shape, seed=seed + 10,
                                                                           dtype=torch.float64)
        q = Normal(mu, torch.exp(0.5 * logvar))
        ref = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).reshape(shape[0], -1).sum(1)
        worst = max(worst, expect_close(f"KL per example for mu, logvar of shape {list(shape)}",
                                        fn(mu, logvar), ref))
    zero = torch.zeros(3, 6)
    expect_close("KL at the prior itself (mu = 0, logvar = 0) is exactly 0", fn(zero, zero), torch.zeros(3),
                 atol=1e-7)
    mu = torch.tensor([[2.0, 0.0]])
    lv = torch.tensor([[0.0, math.log(0.25)]])
    # 0.5 * (4 + 1 - 0 - 1) + 0.5 * (0 + 0.25 - log 0.25 - 1) = 2 + 0.318147...
    expect_close("KL of N((2, 0), diag(1, 0.25))", fn(mu, lv), torch.tensor([2.0 + 0.5 * (0.25 + math.log(4) - 1)]))
    return f"matches torch.distributions.kl_divergence on 4 shapes (incl. [B, C, H, W]) and 2 hand values, max error {worst:.1e}"


@exercise("10.3", "The importance-weighted bound: log-mean-exp", reference=losses.log_mean_exp)
def check_log_mean_exp(fn: Callable[..., torch.Tensor]) -> str:
    log_w = _randn(10, 3, seed=0, dtype=torch.float64)
    expect_close("log mean exp over k = 10 weights for 3 images", fn(log_w), log_w.exp().mean(0).log())
    one = _randn(1, 4, seed=1)
    expect_close("k = 1: the bound is the single log weight (the ELBO estimate)", fn(one), one[0])
    same = torch.full((5, 2), -3.0)
    expect_close("k equal weights: log mean exp equals that value", fn(same), torch.full((2,), -3.0))
    # realistic IWAE log weights: log p(x, z) - log q(z | x) of a 784-pixel image is about -100 nats
    realistic = -100.0 + 3.0 * _randn(5000, 2, seed=2, dtype=torch.float64)
    ref = torch.logsumexp(realistic, 0) - math.log(5000)
    yours = fn(realistic)
    if not torch.isfinite(yours).all():
        raise AssertionError("with log weights around -100 your value is not finite: exp(-800) underflows to 0 "
                             "(subtract the maximum before exponentiating)")
    expect_close("k = 5000 log weights around -100 nats", yours, ref)
    huge = torch.tensor([[-1000.0], [-1000.0 + math.log(3.0)]], dtype=torch.float64)
    expect_close("two log weights near -1000 (naive exp underflows to 0)", fn(huge),
                 torch.tensor([-1000.0 + math.log(2.0)], dtype=torch.float64))
    return f"stable log-mean-exp on 5 inputs (k = 1 to 5000, weights near -100 and -1000); bound at k = 5000 = {yours[0].item():.2f}"


@exercise("10.4", "The ELBO of a Bernoulli decoder", reference=losses.bernoulli_elbo)
def check_bernoulli_elbo(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for b, d, beta, scale in [(3, 4, 1.0, 3.0), (2, 16, 0.8, 5.0), (1, 2, 4.0, 1.0), (4, 8, 0.0, 2.0)]:
        logits = scale * torch.randn(b, 1, 28, 28, generator=g, dtype=torch.float64)
        x = (torch.rand(b, 1, 28, 28, generator=g) > 0.6).double()
        mu = torch.randn(b, d, generator=g, dtype=torch.float64)
        logvar = torch.randn(b, d, generator=g, dtype=torch.float64)
        rec = Independent(Bernoulli(logits=logits), 3).log_prob(x)
        kl = kl_divergence(Independent(Normal(mu, torch.exp(0.5 * logvar)), 1),
                           Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1))
        worst = max(worst, expect_close(f"ELBO with {b} images, D = {d}, beta = {beta}",
                                        fn(logits, x, mu, logvar, beta), rec - beta * kl))
    # confident decoder: logits of +-60; naive log(sigmoid(-60)) is log(8.7e-27), log(1 - sigmoid(60)) is log(0)
    logits = torch.tensor([[[[60.0, -60.0], [-60.0, 60.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # one wrong pixel: log p = -60 (about)
    z0 = torch.zeros(1, 2)
    expect_close("a confident decoder with logits +-60 (use softplus, not log(sigmoid))", fn(logits, x, z0, z0, 1.0),
                 losses.bernoulli_elbo(logits, x, z0, z0, 1.0), atol=1e-3)
    return f"matches torch.distributions on 4 batches (beta = 0, 0.8, 1, 4) and logits of +-60, max error {worst:.1e}"
