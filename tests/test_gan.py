"""companion.gan and the adversarial losses against closed forms; mode counting on synthetic samples; the toy
mixtures; train_gan's determinism and its k discriminator steps."""

import math

import pytest
import torch
import torch.nn.functional as F

from companion import gan, losses, toys
from companion import train as trainlib
from companion.train import count_parameters


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- the losses


def test_losses_equal_binary_cross_entropy_and_closed_forms():
    real, fake = _randn(50, seed=1) * 3, _randn(70, seed=2) * 3
    bce = F.binary_cross_entropy_with_logits
    d = losses.discriminator_loss(real, fake)
    assert torch.allclose(d, bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)), atol=1e-6)
    assert torch.allclose(losses.generator_loss_non_saturating(fake), bce(fake, torch.ones_like(fake)), atol=1e-6)
    p = torch.sigmoid(fake.double())
    assert torch.allclose(losses.generator_loss_minimax(fake.double()), torch.log1p(-p).mean(), atol=1e-10)
    zero = torch.zeros(8)
    assert math.isclose(losses.discriminator_loss(zero, zero).item(), 2 * math.log(2), rel_tol=1e-6)
    assert math.isclose(losses.generator_loss_minimax(zero).item(), -math.log(2), rel_tol=1e-6)
    assert math.isclose(losses.generator_loss_non_saturating(zero).item(), math.log(2), rel_tol=1e-6)
    assert {"non_saturating", "minimax"} <= set(losses.GENERATOR_LOSSES)


def test_generator_loss_gradients_with_respect_to_the_logit():
    logits = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    n = logits.numel()
    (g_mm,) = torch.autograd.grad(losses.generator_loss_minimax(logits) * n, logits)
    (g_ns,) = torch.autograd.grad(losses.generator_loss_non_saturating(logits) * n, logits)
    d = torch.sigmoid(logits.detach())
    assert torch.allclose(g_mm, -d, atol=1e-12)  # saturating: vanishes as D(G(z)) -> 0
    assert torch.allclose(g_ns, -(1 - d), atol=1e-12)  # non-saturating: -> -1 there
    assert abs(g_mm[0].item()) < 1e-3 and abs(g_ns[0].item() + 1) < 1e-3


def test_losses_are_stable_for_extreme_logits_and_check_inputs():
    big = torch.tensor([-200.0, 200.0])
    for value in (losses.discriminator_loss(big, big), losses.generator_loss_minimax(big),
                  losses.generator_loss_non_saturating(big)):
        assert torch.isfinite(value)
    assert math.isclose(losses.generator_loss_non_saturating(torch.tensor([-200.0])).item(), 200.0, rel_tol=1e-6)
    with pytest.raises(TypeError, match="floating-point"):
        losses.discriminator_loss(torch.tensor([1, 2]), torch.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        losses.generator_loss_minimax(torch.zeros(0))


# ----------------------------------------------------------------------------- the game's closed forms


def test_optimal_discriminator_maximises_the_value_and_gives_the_js_link():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(6, generator=g, dtype=torch.float64)
    q = torch.rand(6, generator=g, dtype=torch.float64)
    p, q = p / p.sum(), q / q.sum()
    d_star = gan.optimal_discriminator(p, q)
    assert torch.allclose(d_star, p / (p + q))

    def value(d):
        return (p * d.log() + q * (1 - d).log()).sum()

    for _ in range(20):  # any other discriminator does worse
        other = (d_star + 0.05 * torch.randn(6, generator=g, dtype=torch.float64)).clamp(1e-3, 1 - 1e-3)
        assert value(other) <= value(d_star) + 1e-12
    js = gan.js_divergence(p, q)
    assert torch.allclose(value(d_star), 2 * js - math.log(4))
    assert torch.allclose(gan.js_divergence(p, p), torch.zeros((), dtype=torch.float64), atol=1e-12)
    disjoint = gan.js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert math.isclose(disjoint.item(), math.log(2), rel_tol=1e-6)
    assert gan.optimal_discriminator(torch.zeros(2), torch.zeros(2)).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match=">= 0"):
        gan.optimal_discriminator(torch.tensor([-1.0]), torch.tensor([1.0]))


# ----------------------------------------------------------------------------- models


def test_dcgan_shapes_range_and_parameter_counts():
    c = gan.DCGANConfig.tiny()
    G, D = gan.Generator(c), gan.Discriminator(c)
    with torch.no_grad():
        x = G(_randn(5, c.latent_dim))
    assert x.shape == (5, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert D(x).shape == (5,)
    for cfg in (gan.DCGANConfig(), c):
        z, h, e = cfg.latent_dim, cfg.g_channels, cfg.d_channels
        g_params = z * 2 * h * 49 + 2 * (2 * h) + 2 * h * h * 16 + 2 * h + h * 16 + 1
        d_params = (16 * e + e) + (e * 2 * e * 16) + 2 * (2 * e) + (2 * e * 49 + 1)
        assert count_parameters(gan.Generator(cfg)) == g_params
        assert count_parameters(gan.Discriminator(cfg)) == d_params
    with pytest.raises(ValueError, match=r"\[B, 16\]"):
        G(_randn(2, 7))
    with pytest.raises(ValueError, match=r"28, 28"):
        D(_randn(2, 1, 32, 32))


def test_toy_models_and_init():
    c = gan.ToyGANConfig.tiny()
    G, D = gan.ToyGenerator(c), gan.ToyDiscriminator(c)
    assert G(_randn(4, c.latent_dim)).shape == (4, 2) and D(_randn(4, 2)).shape == (4,)
    h = c.hidden
    assert count_parameters(G) == (c.latent_dim * h + h) + (h * h + h) + (h * 2 + 2)
    assert count_parameters(D) == (2 * h + h) + (h * h + h) + (h + 1)
    w = gan.Generator(gan.DCGANConfig()).net[2].weight
    assert abs(w.std().item() - 0.02) < 0.002, "DCGAN init: N(0, 0.02)"
    with pytest.raises(ValueError):
        gan.ToyGANConfig(hidden=0)


def test_sample_is_reproducible_and_interpolate():
    G = gan.Generator(gan.DCGANConfig.tiny()).train()
    a, b = gan.sample(G, 7, seed=3), gan.sample(G, 7, seed=3)
    assert torch.equal(a, b) and a.shape == (7, 1, 28, 28) and G.training
    z0, z1 = _randn(64, seed=1), _randn(64, seed=2)
    path = gan.interpolate(z0, z1, 9)
    assert path.shape == (9, 64) and torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    line = gan.interpolate(z0, z1, 9, spherical=False)
    assert torch.allclose(line[4], (z0 + z1) / 2)
    assert path[4].norm() > line[4].norm(), "slerp keeps the norm that a straight line loses in the middle"
    with pytest.raises(ValueError):
        gan.interpolate(z0, z1, 1)


# ----------------------------------------------------------------------------- toys and mode counting


def test_ring_and_grid_centres_match_the_mixtures():
    ring = toys.ring_centres()
    pts, lab = toys.eight_gaussians(400, seed=1, std=0.0, return_labels=True)
    assert torch.allclose(pts, ring[lab], atol=1e-5)
    grid = toys.grid_centres()
    assert grid.shape == (25, 2) and sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    pts, lab = toys.grid_gaussians(1000, seed=2, return_labels=True)
    assert pts.shape == (1000, 2) and lab.max() == 24 and lab.min() == 0
    assert (pts - grid[lab]).std().item() == pytest.approx(0.05, rel=0.1)
    assert torch.equal(toys.grid_gaussians(10, seed=5), toys.grid_gaussians(10, seed=5))


def test_mode_counting_on_synthetic_samples():
    centres = toys.ring_centres()
    std = 0.02
    on = torch.cat([centres[k].expand(30, 2) for k in (0, 3, 5)])  # 30 samples on each of three modes
    near = centres[6] + torch.tensor([[2.5 * std, 0.0]]).expand(5, 2)  # 5 within 3 std of mode 6: too few
    off = torch.zeros(15, 2)  # the ring's centre: far from every mode
    samples = torch.cat([on, near, off])  # 110 samples
    report = gan.mode_report(samples, centres, std, min_count=20)
    assert report["modes"] == 3 and report["of"] == 8
    assert report["counts"] == [30, 0, 0, 30, 0, 30, 5, 0]
    assert report["high_quality"] == pytest.approx(95 / 110)
    assert gan.modes_covered(samples, centres, std, min_count=5) == 4
    assert gan.high_quality_share(samples, centres, std) == pytest.approx(95 / 110)
    assert gan.high_quality(samples, centres, std).sum() == 95
    perfect = toys.eight_gaussians(4000, seed=0, std=std)
    full = gan.mode_report(perfect, centres, std)
    assert full["modes"] == 8 and full["high_quality"] > 0.99 and full["js_to_uniform"] < 1e-3
    idx, dist = gan.nearest_mode(samples[:3], centres)
    assert idx.tolist() == [0, 0, 0] and float(dist.max()) < 1e-6
    with pytest.raises(ValueError, match="NaN"):
        gan.modes_covered(torch.full((3, 2), float("nan")), centres, std)
    with pytest.raises(ValueError, match="same d"):
        gan.modes_covered(torch.zeros(3, 3), centres, std)


def test_class_coverage_with_a_fixed_classifier():
    class Fixed(torch.nn.Module):  # predicts class (pixel sum mod 3) with confidence 0.9
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            k = x.flatten(1).sum(1).round().long() % 3
            logits = torch.full((len(x), 10), -30.0)
            logits[torch.arange(len(x)), k] = 0.0
            logits[torch.arange(len(x)), 9] = math.log(1 / 9)  # p(9) : p(k) = 1 : 9
            return logits

    x = torch.zeros(30, 1, 28, 28)
    x[10:20, 0, 0, 0] = 1
    x[20:, 0, 0, :2] = 1
    r = gan.class_coverage(x, Fixed())
    assert r["share"][:3] == pytest.approx([1 / 3] * 3) and r["classes_covered"] == 3 and r["min_share"] == 0
    assert r["confidence"] == pytest.approx(0.9, abs=1e-6) and r["n"] == 30


# ----------------------------------------------------------------------------- train_gan


def _toy_run(seed=0, d_steps=1, loss="non_saturating", steps=15):
    torch.manual_seed(0)
    c = gan.ToyGANConfig.tiny()
    G, D = gan.ToyGenerator(c), gan.ToyDiscriminator(c)
    x = toys.eight_gaussians(512, seed=0)
    h = trainlib.train_gan(G, D, x, steps=steps, d_steps=d_steps, loss=loss, lr=1e-3, batch_size=64, seed=seed,
                           progress=False, log_every=5)
    return G, D, h


def test_train_gan_is_deterministic_and_logs_both_players():
    G1, D1, h1 = _toy_run()
    G2, D2, h2 = _toy_run()
    for a, b in zip([*G1.parameters(), *D1.parameters()], [*G2.parameters(), *D2.parameters()]):
        assert torch.equal(a, b)
    assert [{k: v for k, v in r.items() if k != "wall_s"} for r in h1.train] == \
        [{k: v for k, v in r.items() if k != "wall_s"} for r in h2.train]
    steps, d_real = h1.series("d_real")
    assert steps == [1, 5, 10, 15] and all(0 < v < 1 for v in d_real)
    assert {"d_loss", "g_loss", "d_fake"} <= set(h1.train[0]) and "wall_s" in h1.train[-1]
    G3, _, _ = _toy_run(seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(G1.parameters(), G3.parameters()))
    assert not G1.training and not D1.training


def test_train_gan_takes_k_discriminator_steps_and_either_loss():
    calls = {"d": 0}
    c = gan.ToyGANConfig.tiny()
    G, D = gan.ToyGenerator(c), gan.ToyDiscriminator(c)
    D.register_forward_hook(lambda *_: calls.__setitem__("d", calls["d"] + 1))
    trainlib.train_gan(G, D, toys.eight_gaussians(256), steps=4, d_steps=3, batch_size=32, progress=False)
    assert calls["d"] == 4 * (3 * 2 + 1), "per step: k x (real + fake) discriminator passes, then one for G"
    _, _, h = _toy_run(loss="minimax")
    assert all(r["g_loss"] <= 0 for r in h.train[:-1]), "the minimax generator loss log(1 - D) is <= 0"
    _, _, h = _toy_run(loss=lambda logits: F.softplus(-logits).mean())
    _, _, ref = _toy_run()
    assert h.series("g_loss") == ref.series("g_loss"), "a function equal to the named loss trains the same"
    with pytest.raises(ValueError, match="loss must be one of"):
        _toy_run(loss="huber")
    with pytest.raises(ValueError, match="d_steps"):
        _toy_run(d_steps=0)
