"""Chapter 16: the projection discriminator and conditional batch norm, BigGAN's tricks, modulation/demodulation and
the style generator, the fade-in, the alias-free filters, ADA's controller, the CycleGAN and VQGAN loops, and the
shipped cgan_mnist, stylegan_mnist and vqgan_mnist re-measured on fresh samples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from companion import cond_gan as cg
from companion import data, evaluation, hub
from companion.generation import generate
from companion.train import train_cyclegan, train_gan, train_vqgan


def _mnist():
    try:
        return data.mnist("test").tensors
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")


# ---------------------------------------------------------------- conditional pieces


def test_projection_discriminator_is_psi_plus_inner_product():
    torch.manual_seed(0)
    D = cg.ProjectionDiscriminator(cg.CondGANConfig.tiny()).eval()
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 3, 3, 9, 1])
    with torch.no_grad():
        phi = D.features(x)
        assert torch.allclose(D(x, y), D.psi(phi).squeeze(-1) + (D.embed(y) * phi).sum(1), atol=1e-5)
    phi, psi, emb = torch.randn(4, 3), torch.randn(4), torch.randn(4, 3)
    assert torch.allclose(cg.projection_logit(phi, psi, emb), psi + (phi * emb).sum(1))
    with pytest.raises(ValueError):
        cg.projection_logit(phi, psi, emb[:, :2])


def test_conditional_batch_norm_starts_as_batch_norm_and_is_per_class():
    cbn, bn = cg.ConditionalBatchNorm2d(3, 4), torch.nn.BatchNorm2d(3, affine=False)
    h, y = torch.randn(8, 3, 4, 4), torch.arange(8) % 4
    assert torch.allclose(cbn(h, y), bn(h), atol=1e-6)
    with torch.no_grad():
        cbn.gamma.weight[2] = 3.0
    diff = (cbn(h, y) - bn(h)).abs().flatten(1).max(1).values > 1e-6
    assert diff.tolist() == [bool(v == 2) for v in y.tolist()]


def test_biggan_tricks():
    g = torch.Generator().manual_seed(0)
    z = cg.truncated_normal(5000, 4, 0.5, g)
    assert z.abs().max() <= 0.5 and z.shape == (5000, 4)
    assert cg.truncated_normal(10, 3, None, g).shape == (10, 3)
    with pytest.raises(ValueError):
        cg.truncated_normal(2, 2, 0.0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    lin = torch.nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(q[:4] * 5)
    assert cg.orthogonal_penalty(lin, 1.0).item() < 1e-20
    w = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    lin2 = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin2.weight.copy_(w)
    assert math.isclose(cg.orthogonal_penalty(lin2, 1.0).item(), 2.0)  # off-diagonal of W W^T: 1 and 1
    tall = torch.nn.Linear(5, 40, bias=False).double()  # more rows than columns: the small-Gram form
    gram = tall.weight @ tall.weight.T
    direct = (gram - torch.diag_embed(torch.diagonal(gram))).pow(2).sum()
    assert torch.allclose(cg.orthogonal_penalty(tall, 1.0), direct, rtol=1e-10)
    attn = cg.SelfAttention(8)
    h = torch.randn(2, 8, 5, 5)
    assert torch.equal(attn(h), h)
    assert torch.allclose(attn.attention(h).sum(-1), torch.ones(2, 25))


def test_conditional_generator_shapes_and_label_dependence():
    torch.manual_seed(0)
    G = cg.CondGenerator(cg.CondGANConfig.tiny(attention=True)).eval()
    z = torch.randn(3, 16)
    a, b = G(z, torch.tensor([1, 1, 1])), G(z, torch.tensor([2, 2, 2]))
    assert a.shape == (3, 1, 28, 28) and 0 <= a.min() and a.max() <= 1
    with torch.no_grad():
        G.bn1.gamma.weight[2] += 1.0
    assert not torch.allclose(G(z, torch.tensor([2, 2, 2])), b)
    assert torch.allclose(G(z, torch.tensor([1, 1, 1])), a)


# ---------------------------------------------------------------- style-based


def test_modulated_conv_matches_a_loop_and_demodulates():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 6, 9, 9, generator=g), torch.randn(5, 6, 3, 3, generator=g)
    s = torch.rand(4, 6, generator=g) + 0.5
    for demod in (True, False):
        loop = []
        for b in range(4):
            wb = w * s[b][None, :, None, None]
            if demod:
                wb = wb / (wb.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8).sqrt()
            loop.append(F.conv2d(x[b:b + 1], wb, padding=1)[0])
        assert torch.allclose(cg.modulated_conv2d(x, w, s, demod, padding=1), torch.stack(loop), atol=1e-5)
    big = torch.randn(128, 16, 10, 10, generator=g)
    var = cg.modulated_conv2d(big, torch.randn(8, 16, 3, 3, generator=g), torch.rand(128, 16, generator=g) * 5).var((0, 2, 3))
    assert ((var - 1).abs() < 0.1).all(), var
    with pytest.raises(ValueError):
        cg.modulated_conv2d(x, w, s[:, :3])
    layer = cg.ModulatedConv2d(6, 5, 3, w_dim=7)
    lat = torch.randn(4, 7, generator=g)
    with torch.no_grad():
        ref = F.leaky_relu(cg.modulated_conv2d(x, layer.weight, layer.affine(lat), padding=1)
                           + layer.bias[None, :, None, None], 0.2)
        assert torch.allclose(layer(x, lat, noise=torch.zeros(4, 1, 9, 9)), ref, atol=1e-5)


def test_style_generator_truncation_mixing_and_determinism():
    torch.manual_seed(0)
    G = cg.StyleGenerator(cg.StyleConfig.tiny()).eval()
    z = torch.randn(4, 16)
    x = G(z)
    assert x.shape == (4, 1, 28, 28) and torch.equal(G(z), x)  # eval: constant noise
    at_mean = G(z, psi=0.0)
    assert torch.allclose(at_mean, at_mean[:1].expand_as(at_mean), atol=1e-6)
    w = torch.randn(3, 16)
    assert torch.allclose(G.truncate(w, 0.5), G.w_avg + 0.5 * (w - G.w_avg))
    mixed = G.mix(z, z, crossover=3)
    assert torch.allclose(mixed, x, atol=1e-6)  # mixing a latent with itself changes nothing
    with pytest.raises(ValueError):
        G.synthesis(torch.randn(2, 3, 16))
    G.train()
    G(z)
    assert G.w_avg.abs().sum() > 0  # the running mean of w moved


def test_mapping_initialisation_keeps_w_spread_and_the_multiplier_slows_adam():
    """He-initialised layers keep w's spread near 1 (the default nn.Linear init would shrink it ~2.5x per layer);
    with lr_multiplier m one Adam step moves the effective weights m times as far as with m = 1."""
    torch.manual_seed(0)
    m = cg.MappingNetwork(64, 64, 3)
    w = m(torch.randn(2048, 64))
    assert 0.4 < w.std(0).mean().item() < 2.0
    moves = {}
    for mult in (1.0, 0.01):
        torch.manual_seed(0)
        net = cg.MappingNetwork(8, 8, 1, lr_multiplier=mult)
        before = (net.weights[0] * mult).detach().clone()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        net(torch.randn(16, 8, generator=torch.Generator().manual_seed(1))).sum().backward()
        opt.step()
        moves[mult] = ((net.weights[0] * mult).detach() - before).abs().max().item()
    assert moves[0.01] == pytest.approx(0.01 * moves[1.0], rel=1e-3)
    with pytest.raises(ValueError, match="lr_multiplier"):
        cg.MappingNetwork(8, 8, 1, lr_multiplier=0.0)


def test_default_initialisation_helper_collapses_the_styles_and_the_record_has_both_runs():
    import json

    from companion.recipes import cond_gans as R

    torch.manual_seed(0)
    G = R.build_stylegan_mnist()
    z = torch.randn(512, G.latent_dim)
    he = G.mapping(z).std(0).mean().item()
    with torch.no_grad():
        R.pytorch_default_init_(G)
    default = G.mapping(z).std(0).mean().item()
    assert default < 0.2 < 0.5 < he, (default, he)
    record = json.loads((Path(__file__).resolve().parents[1] / "book" / "_static" / "stylegan_init.json").read_text())
    runs = {r["variant"]: r for r in record["runs"]}
    assert set(runs) == {"he", "default"} and runs["he"]["steps"] == runs["default"]["steps"]
    assert all({"fld", "recall", "min_class_share"} <= set(r) for r in runs.values()) and record["hardware"]


def test_minibatch_std_and_style_discriminator():
    x = torch.randn(8, 3, 5, 5)
    out = cg.MinibatchStd(4)(x)
    assert out.shape == (8, 4, 5, 5) and torch.equal(out[:, :3], x)
    # example i sits in group i % 2: the appended channel is that group's mean feature std
    for i in range(8):
        group = x[i % 2::2]
        assert torch.allclose(out[i, 3], group.std(0, unbiased=False).mean().expand(5, 5), atol=1e-5)
    copies = cg.MinibatchStd(4)(x[:1].expand(4, -1, -1, -1))
    assert copies[:, 3].abs().max() < 1e-3  # a batch of copies has no spread
    with pytest.raises(ValueError, match="multiple"):
        cg.MinibatchStd(4)(torch.randn(6, 3, 5, 5))
    D = cg.StyleDiscriminator(8)
    assert D(torch.rand(8, 1, 28, 28)).shape == (8,)
    with pytest.raises(ValueError):
        D(torch.rand(8, 1, 14, 14))


# ---------------------------------------------------------------- fade-in, alias-free, ADA


def test_fade_in_endpoints():
    low, high = torch.rand(2, 1, 7, 7), torch.rand(2, 1, 14, 14)
    assert torch.equal(cg.fade_in(low, high, 1.0), high)
    assert torch.equal(cg.fade_in(low, high, 0.0), F.interpolate(low, scale_factor=2, mode="nearest"))
    with pytest.raises(ValueError):
        cg.fade_in(low, high, 1.5)


def test_fourier_shift_and_filtered_equivariance():
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(cg.fourier_shift(x, 2, -1), torch.roll(x, (-1, 2), (-2, -1)), atol=1e-4)
    k = cg.lowpass_kernel()
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-5)
    const = torch.ones(1, 2, 8, 8)
    assert torch.allclose(cg.downsample2(cg.upsample2(const, k), k), const, atol=1e-5)
    H = 32
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(H).float(), indexing="ij")
    inp = torch.stack([torch.sin(2 * math.pi * (f * xx + 2 * yy) / H) for f in (1, 2, 3, -2)])[None]
    # a band-limited signal (no energy at Nyquist) shifts back exactly
    assert torch.allclose(cg.fourier_shift(cg.fourier_shift(inp, 0.3, 0), -0.3, 0), inp, atol=1e-4)
    psnr = {}
    for af in (False, True):
        torch.manual_seed(0)
        net = cg.ToySynthesis(4, depth=3, alias_free=af)
        psnr[af] = cg.translation_psnr(net, inp, 0.5)
        assert cg.translation_psnr(net, inp, 1.0) > 100
    assert psnr[True] > psnr[False] + 10, psnr


def test_ada_controller_and_augmentations():
    assert math.isclose(cg.ADAugment.update(0.0, 0.9, 0.6, 64, 4, 20000), 64 * 4 / 20000)
    assert cg.ADAugment.update(0.01, -1.0, 0.6, 64, 4, 20000) == 0.0
    assert cg.ADAugment.update(0.9999, 1.0, 0.6, 64, 4, 20000) < 1.0
    assert cg.ADAugment.update(0.3, 0.6, 0.6, 64, 4, 20000) == 0.3
    ada = cg.ADAugment(interval=2, speed=1000)
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(ada(x), x)  # p = 0: the identity
    for _ in range(4):
        ada.observe(torch.ones(16))  # a discriminator sure of every real: r_t = 1
    assert len(ada.log) == 2 and ada.p > 0 and ada.log[-1][0] == 1.0
    ada.p = 0.9
    xg = x.clone().requires_grad_(True)
    out = ada(xg)
    out.sum().backward()
    assert out.shape == x.shape and xg.grad is not None and not torch.equal(out, x)
    fixed = cg.ADAugment(adaptive=False, interval=1)
    fixed.observe(torch.ones(4))
    assert fixed.p == 0.0 and fixed.log == [(1.0, 0.0)]


# ---------------------------------------------------------------- loops


def test_train_gan_conditional_with_ada_and_r1():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(10, (64,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    cfg = cg.CondGANConfig.tiny()
    torch.manual_seed(0)
    G, D = cg.CondGenerator(cfg), cg.ProjectionDiscriminator(cfg)
    ada = cg.ADAugment(interval=1, speed=100)
    h = train_gan(G, D, ds, steps=3, conditional=True, batch_size=16, progress=False, log_every=1, augment=ada,
                  penalty="r1", penalty_weight=1.0)
    assert len(h.series("d_loss")[1]) == 3 and h.train[-2]["penalty"] > 0 and len(ada.log) == 3
    with pytest.raises(ValueError):
        train_gan(G, D, x, steps=1, conditional=True, progress=False)


def test_hinge_loss_closed_form_and_pairing():
    from companion import losses

    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.0])
    # max(0, 1 - r): 0, 0.5, 2 -> mean 5/6; max(0, 1 + f): 0, 1, 2 -> mean 1
    assert math.isclose(losses.hinge_discriminator_loss(real, fake).item(), 5 / 6 + 1, rel_tol=1e-6)
    assert losses.DISCRIMINATOR_LOSSES["hinge"] is losses.hinge_discriminator_loss
    assert losses.GENERATOR_LOSSES["hinge"](fake).item() == pytest.approx(2 / 3)


def test_train_gan_generator_penalty_and_weight_average():
    """``g_penalty`` reaches the generator's loss (a huge orthogonal penalty shrinks the off-diagonal Gram terms),
    and ``ema`` leaves the generator holding the running average: with decay 0.5 over two steps it equals
    0.25 w0 + 0.25 w1 + 0.5 w2 of the live weights after steps 0, 1, 2."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(10, (32,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    cfg = cg.CondGANConfig.tiny()

    def pair():
        torch.manual_seed(0)
        return cg.CondGenerator(cfg), cg.ProjectionDiscriminator(cfg)

    G, D = pair()
    before = cg.orthogonal_penalty(G, 1.0).item()
    train_gan(G, D, ds, steps=5, conditional=True, batch_size=16, progress=False, loss="hinge", lr=1e-2,
              g_penalty=lambda m: cg.orthogonal_penalty(m, 10.0))
    assert cg.orthogonal_penalty(G, 1.0).item() < 0.5 * before
    live = []
    G, D = pair()
    live.append([p.detach().clone() for p in G.parameters()])
    train_gan(G, D, ds, steps=2, conditional=True, batch_size=16, progress=False,
              on_step=lambda step, m: live.append([p.detach().clone() for p in m.parameters()]))
    G2, D2 = pair()
    train_gan(G2, D2, ds, steps=2, conditional=True, batch_size=16, progress=False, ema=0.5)
    for p, w0, w1, w2 in zip(G2.parameters(), *live):
        torch.testing.assert_close(p, 0.25 * w0 + 0.25 * w1 + 0.5 * w2)
    with pytest.raises(ValueError, match="ema"):
        train_gan(G2, D2, ds, steps=1, conditional=True, progress=False, ema=1.5)


def test_train_cyclegan_and_vqgan_run():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, 1, 28, 28, generator=g)
    nets = [cg.Translator(4, 1), cg.Translator(4, 1), cg.PatchDiscriminator(4), cg.PatchDiscriminator(4)]
    h = train_cyclegan(*nets, a, cg.thicken(a.flip(0)), steps=2, batch_size=8, progress=False, log_every=1)
    assert {"d_loss", "g_loss", "cycle"} <= set(h.train[0])
    assert nets[2](a[:2]).shape == (2, 7, 7)
    assert torch.allclose(cg.cycle_loss(torch.nn.Identity(), torch.nn.Identity(), a, a), torch.zeros(()))
    from companion.recipes.vqvae import build_vqvae_mnist

    torch.manual_seed(0)
    vq = build_vqvae_mnist()
    codebook = vq.quantizer.codebook.detach().clone()
    enc = [p.detach().clone() for p in vq.encoder.parameters()]
    feats = torch.nn.Conv2d(1, 2, 3)
    h = train_vqgan(vq, cg.PatchDiscriminator(4), feats, a, steps=2, batch_size=8, progress=False, log_every=1)
    assert torch.equal(vq.quantizer.codebook, codebook)
    assert all(torch.equal(p, q) for p, q in zip(vq.encoder.parameters(), enc))
    assert h.train[0]["lambda"] >= 0
    s = cg.sharpness(torch.rand(3, 1, 28, 28))
    assert s.shape == (3,) and cg.sharpness(torch.ones(2, 1, 28, 28)).abs().max() == 0


def test_adaptive_weight_balances_gradients():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    rec, adv = (3 * w).sum(), (w ** 2).sum()  # gradients (3, 3) and (2, 4)
    lam = cg.adaptive_weight(rec, adv, w)
    assert math.isclose(lam.item(), math.sqrt(18) / (math.sqrt(20) + 1e-4), rel_tol=1e-6)


def test_generate_knows_the_new_families():
    torch.manual_seed(0)
    G = cg.CondGenerator(cg.CondGANConfig.tiny())
    x = generate(G, 6, labels=3, progress=False)
    assert x.shape == (6, 1, 28, 28)
    with pytest.raises(ValueError):
        generate(G, 2, progress=False)
    S = cg.StyleGenerator(cg.StyleConfig.tiny())
    assert torch.equal(generate(S, 4, seed=1, progress=False), generate(S, 4, seed=1, progress=False))


# ---------------------------------------------------------------- shipped checkpoints


def test_shipped_cgan_draws_the_digit_asked_for():
    """Fresh samples at the card's N (z seed 7, labels i % 10): the chapter-04 LeNet reads about as many as their
    label as the card says, and FLD against the held-out reference is near the card's and above the floor (FLD is
    biased by 1/N, so it is compared at the same N)."""
    from companion.recipes.cond_gans import class_agreement

    x_test, _ = _mnist()
    G = hub.load_model("cgan_mnist")
    card = hub.card("cgan_mnist")["metrics"]
    n = card["eval_n"]
    labels = torch.arange(n) % 10
    xs = cg.sample_conditional(G, labels, seed=7)
    assert class_agreement(xs, labels) >= card["class_agreement"] - 0.02
    fld = evaluation.fld(xs, x_test[evaluation.REFERENCE][:n])
    assert card["fld_real_floor"] < fld <= card["fld"] * 1.3 + 0.1, (fld, card["fld"])


def test_shipped_stylegan_rescored():
    """Fresh samples at the card's N (z seed 7) at psi = 1: FLD near the card's value and above the floor, and every
    digit about as common as the card's rarest."""
    from companion.recipes.cond_gans import style_samples

    x_test, _ = _mnist()
    G = hub.load_model("stylegan_mnist")
    card = hub.card("stylegan_mnist")["metrics"]
    x = style_samples(G, card["eval_n"], seed=7)
    fld = evaluation.fld(x, x_test[evaluation.REFERENCE][:card["eval_n"]])
    assert card["fld_real_floor"] < fld <= card["fld"] * 1.3 + 0.2, (fld, card["fld"])
    share = torch.bincount(hub.load_model("lenet_mnist")(x).argmax(1), minlength=10).float() / len(x)
    assert share.min() >= card["min_class_share"] - 0.03, (share.tolist(), card["min_class_share"])


def test_shipped_vqgan_is_sharper_than_the_vqvae_with_the_same_codes():
    """300 held-out digits: the VQGAN decoder keeps more high-frequency energy than vqvae_mnist, as its card says, and
    encodes to exactly the same codes."""
    from companion.recipes.cond_gans import reconstruction_report

    x_test, _ = _mnist()
    x = x_test[evaluation.FLOOR][:300]
    ref = x_test[evaluation.REFERENCE][:300]
    vqgan, vqvae = hub.load_model("vqgan_mnist"), hub.load_model("vqvae_mnist")
    ours, plain = reconstruction_report(vqgan, x, ref), reconstruction_report(vqvae, x, ref)
    card = hub.card("vqgan_mnist")["metrics"]
    assert abs(ours["sharpness_ratio"] - card["sharpness_ratio"]) < 0.05
    assert (ours["sharpness_ratio"] > plain["sharpness_ratio"]) == (card["sharpness_ratio"] > card["vqvae_sharpness_ratio"])
    assert torch.equal(vqgan.encode_indices(x[:50]), vqvae.encode_indices(x[:50]))
