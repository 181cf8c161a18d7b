"""companion.vqvae against torch.cdist, autograd and closed forms; EMA as k-means; dead-code reset; the prior's
causality; bad inputs; the shipped checkpoints."""

import math

import pytest
import torch
import torch.nn.functional as F

from companion import train as trainlib
from companion import vqvae
from companion.train import count_parameters


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- functional core


@pytest.mark.parametrize(("n", "k", "d"), [(50, 7, 3), (1, 1, 5), (300, 512, 16), (4, 30, 1)])
def test_squared_distances_and_nearest_code_match_cdist(n, k, d):
    z, codebook = _randn(n, d, seed=1), _randn(k, d, seed=2)
    dist = vqvae.squared_distances(z, codebook)
    ref = torch.cdist(z.double(), codebook.double()) ** 2
    assert dist.shape == (n, k)
    assert torch.allclose(dist.double(), ref, atol=1e-4, rtol=1e-5)
    idx = vqvae.nearest_code(z, codebook)
    assert idx.dtype == torch.long and idx.shape == (n,)
    assert torch.equal(idx, ref.argmin(dim=1))


def test_nearest_code_on_codes_and_bad_shapes():
    codebook = _randn(6, 4)
    assert vqvae.nearest_code(codebook[[5, 0, 2]], codebook).tolist() == [5, 0, 2]
    with pytest.raises(ValueError, match=r"z \[3, 4\].*codebook \[6, 5\]"):
        vqvae.squared_distances(_randn(3, 4), _randn(6, 5))
    with pytest.raises(ValueError, match="z \\[N, D\\]"):
        vqvae.squared_distances(_randn(2, 3, 4), codebook)


def test_straight_through_value_and_gradients():
    z = _randn(2, 3, 4, 4, seed=1).requires_grad_(True)
    z_q = _randn(2, 3, 4, 4, seed=2).requires_grad_(True)
    out = vqvae.straight_through(z, z_q)
    assert torch.allclose(out, z_q, atol=1e-6)
    upstream = _randn(2, 3, 4, 4, seed=3)
    (out * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # the identity Jacobian: the upstream gradient passes unchanged
    assert z_q.grad is None
    with pytest.raises(ValueError, match="same shape"):
        vqvae.straight_through(_randn(2, 3), _randn(3, 2))


def test_ema_update_is_a_smoothed_running_mean():
    K, D = 4, 3
    size, total = torch.ones(K), _randn(K, D)
    z = _randn(20, D, seed=1)
    idx = torch.tensor([0, 1, 2] * 6 + [0, 1])  # code 3 unused
    new_size, new_sum, codebook = vqvae.ema_update(size, total, z, idx, decay=0.9, eps=1e-5)
    assert torch.equal(size, torch.ones(K))  # inputs untouched
    counts = torch.bincount(idx, minlength=K).float()
    assert torch.allclose(new_size, 0.9 + 0.1 * counts)
    assert torch.allclose(new_sum[3], 0.9 * total[3])
    n = new_size.sum()
    assert torch.allclose(codebook, new_sum / ((new_size + 1e-5) / (n + K * 1e-5) * n)[:, None])
    _, _, means = vqvae.ema_update(size, total, z, idx, decay=0.0, eps=1e-12)  # decay 0: the k-means M-step
    for k in range(3):
        assert torch.allclose(means[k], z[idx == k].mean(0), atol=1e-5)
    assert torch.isfinite(vqvae.ema_update(torch.zeros(K), torch.zeros(K, D), z, idx, 0.0, 1e-5)[2]).all()
    with pytest.raises(ValueError, match="decay"):
        vqvae.ema_update(size, total, z, idx, decay=1.0)


def test_ema_quantizer_converges_to_kmeans_centroids():
    """Online k-means: with assignments fixed, the EMA codebook converges to the means of the clusters."""
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    vq = vqvae.VectorQuantizer(3, 2, ema=True, decay=0.8).train()
    with torch.no_grad():
        vq.codebook.copy_(centres * 0.5)
        vq.embed_sum.copy_(centres * 0.5)
    sums, counts = torch.zeros(3, 2), torch.zeros(3)
    for _ in range(80):
        labels = torch.randint(0, 3, (64,), generator=g)
        pts = centres[labels] + 0.3 * torch.randn(64, 2, generator=g)
        _, idx, _ = vq(pts.T.reshape(1, 2, 8, 8))  # [1, D, H, W] with 64 vectors
        assert torch.equal(idx.flatten(), labels)  # clusters far apart: assignments are the labels
        sums += F.one_hot(labels, 3).float().T @ pts
        counts += torch.bincount(labels, minlength=3)
    assert torch.allclose(vq.codebook, sums / counts[:, None], atol=0.15)
    assert (vq.codebook - centres).abs().max() < 0.2


# ----------------------------------------------------------------------------- the quantiser layer


@pytest.mark.parametrize("ema", [False, True])
def test_quantizer_forward_matches_cdist_and_its_loss(ema):
    torch.manual_seed(0)
    vq = vqvae.VectorQuantizer(16, 4, beta=0.25, ema=ema).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(16, 4))
    z = _randn(3, 4, 5, 6, seed=1)
    z_q, idx, loss = vq(z)
    assert z_q.shape == z.shape and idx.shape == (3, 5, 6) and idx.dtype == torch.long and loss.dim() == 0
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal(idx.flatten(), torch.cdist(flat, vq.codebook).argmin(1))
    assert torch.allclose(z_q, vq.codebook[idx].permute(0, 3, 1, 2), atol=1e-6)
    assert torch.allclose(vq.lookup(idx), z_q, atol=1e-6)
    mse = F.mse_loss(z, z_q).item()  # both terms have the value ||z - e||^2; the codebook term goes with EMA
    assert loss.item() == pytest.approx((0.25 if ema else 1.25) * mse, rel=1e-5)


def test_quantizer_gradients_straight_through_codebook_and_commitment():
    torch.manual_seed(0)
    vq = vqvae.VectorQuantizer(8, 3, beta=0.5)
    z = _randn(2, 3, 4, 4, seed=1).requires_grad_(True)
    z_q, idx, _ = vq(z)
    upstream = _randn(2, 3, 4, 4, seed=2)
    (z_q * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # straight through: the decoder's gradient reaches the encoder unchanged
    assert vq.codebook.grad is None  # ... and the codebook learns nothing from it

    z.grad = None
    _, idx, loss = vq(z)
    loss.backward()
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    e = vq.codebook.detach()[idx.flatten()]
    n = flat.numel()
    # commitment: d/dz beta * mean ||z - sg[e]||^2 = 2 beta (z - e) / n
    assert torch.allclose(z.grad.permute(0, 2, 3, 1).reshape(-1, 3), 2 * 0.5 * (flat - e) / n, atol=1e-7)
    # codebook: d/de_k mean ||sg[z] - e||^2 = 2 sum_{i in S_k} (e_k - z_i) / n
    expected = torch.zeros(8, 3).index_add_(0, idx.flatten(), 2 * (e - flat) / n)
    assert torch.allclose(vq.codebook.grad, expected, atol=1e-7)


def test_ema_codebook_updates_in_training_only_and_is_not_a_parameter():
    torch.manual_seed(0)
    vq = vqvae.VectorQuantizer(8, 2, ema=True)
    assert count_parameters(vq) == 0 and "codebook" in vq.state_dict()
    z = _randn(4, 2, 3, 3, seed=1)
    before = vq.codebook.clone()
    vq.eval()
    vq(z)
    assert torch.equal(vq.codebook, before)
    vq.train()
    _, idx, _ = vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    _, _, expected = vqvae.ema_update(torch.ones(8), before, flat, idx.flatten(), 0.99, 1e-5)
    assert torch.allclose(vq.codebook, expected, atol=1e-6)


@pytest.mark.parametrize("ema", [False, True])
def test_dead_codes_are_reset_to_batch_vectors(ema):
    torch.manual_seed(0)
    vq = vqvae.VectorQuantizer(4, 2, ema=ema, reset_dead=True, dead_threshold=3)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0], [-50.0, 50.0]]))  # 2 and 3 far away
        if ema:
            vq.embed_sum.copy_(vq.codebook)  # the running sums (counts are 1) must agree with the codebook
    z = (0.1 * _randn(2, 2, 4, 4, seed=1)).clamp(-0.3, 0.3)
    z[1] += 1.0  # image 0's vectors sit near code 0, image 1's near code 1; codes 2 and 3 are never chosen
    vq.eval()
    for _ in range(5):
        vq(z)
    assert int(vq.resets) == 0 and int(vq.unused_steps.max()) == 0  # eval mode: no bookkeeping at all
    vq.train()
    for step in range(1, 3):
        vq(z)
        assert int(vq.unused_steps[2]) == step and int(vq.resets) == 0
    vq(z)  # third batch without codes 2 and 3: both are re-initialised
    assert int(vq.resets) == 2 and vq.unused_steps[2:].tolist() == [0, 0]
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for k in (2, 3):
        assert (flat - vq.codebook[k]).abs().sum(1).min() < 1e-6  # a vector of the batch
    if ema:
        assert vq.cluster_size[2:].tolist() == [1.0, 1.0] and torch.equal(vq.embed_sum[2:], vq.codebook[2:])
    no_reset = vqvae.VectorQuantizer(4, 2, reset_dead=False, dead_threshold=1).train()
    for _ in range(3):
        no_reset(z)
    assert int(no_reset.resets) == 0


@pytest.mark.parametrize(("z", "error", "match"), [
    (torch.zeros(2, 5, 3, 3), ValueError, r"z must be \[B, 4, \*, \*\], got \[2, 5, 3, 3\]"),
    (torch.zeros(2, 4, 3), ValueError, r"z must be \[B, 4, \*, \*\], got \[2, 4, 3\]"),
    (torch.zeros(2, 4, 3, 3, dtype=torch.long), TypeError, "floating-point"),
    (torch.zeros(2, 4, 3, 3, dtype=torch.float64), TypeError, "float64 but the model's parameters are torch.float32"),
    ([[0.0]], TypeError, "z must be a tensor"),
])
def test_quantizer_rejects_bad_inputs(z, error, match):
    with pytest.raises(error, match=match):
        vqvae.VectorQuantizer(8, 4)(z)


_VQ = vqvae.VQVAE(vqvae.VQVAEConfig.tiny(num_codes=16, hidden=16))


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: _VQ.decode_indices(torch.zeros(2, 6, 6, dtype=torch.long)), ValueError, r"\[B, 7, 7\].*got \[2, 6, 6\]"),
    (lambda: _VQ.decode_indices(torch.zeros(2, 49, dtype=torch.long)), ValueError, r"got \[2, 49\]"),
    (lambda: _VQ.decode_indices(torch.zeros(2, 7, 7)), TypeError, "integer tensor"),
    (lambda: _VQ.decode_indices(torch.full((1, 7, 7), 16)), ValueError, r"\[0, 16\)"),
    (lambda: _VQ.encode(torch.zeros(2, 1, 32, 32)), ValueError, r"x must be \[B, 1, 28, 28\]"),
    (lambda: _VQ(torch.zeros(2, 1, 28, 28, dtype=torch.float64)), TypeError, "float64"),
    (lambda: _VQ.quantizer.lookup(torch.zeros(1, 7, 7)), TypeError, "integer tensor"),
    (lambda: vqvae.nearest_code(torch.rand(3, 4, dtype=torch.float64), torch.rand(5, 4)), TypeError, "float64"),
])
def test_vqvae_rejects_bad_inputs_at_the_door(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(("kwargs", "match"), [(dict(num_codes=0), "num_codes"), (dict(beta=-1.0), "beta"),
                                               (dict(decay=1.0), "decay"), (dict(eps=0.0), "eps"),
                                               (dict(dead_threshold=0), "dead_threshold"),
                                               (dict(init_range=0.0), "init_range")])
def test_quantizer_rejects_bad_arguments(kwargs, match):
    args = {"num_codes": 8, "code_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        vqvae.VectorQuantizer(**args)


def test_codebook_init_range():
    """The default range is [-1/K, 1/K]; an explicit init_range gives every K the same range."""
    for K in (16, 512):
        torch.manual_seed(0)
        default = vqvae.VectorQuantizer(K, 4).codebook
        assert default.abs().max() <= 1.0 / K and default.abs().max() > 0.5 / K
        torch.manual_seed(0)
        fixed = vqvae.VectorQuantizer(K, 4, init_range=0.1).codebook
        assert fixed.abs().max() <= 0.1 and fixed.abs().max() > 0.05
    torch.manual_seed(0)
    a = vqvae.VQVAE(vqvae.VQVAEConfig.tiny()).quantizer.codebook
    torch.manual_seed(0)
    b = vqvae.VQVAE(vqvae.VQVAEConfig.tiny(init_range=1.0 / 128)).quantizer.codebook
    assert torch.equal(a, b)  # init_range=None is exactly 1/K


def test_lookup_rejects_bad_indices():
    vq = vqvae.VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.lookup(torch.full((1, 2, 2), 8))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        vq.lookup(torch.zeros(4, dtype=torch.long))


# ----------------------------------------------------------------------------- the VQ-VAE


def test_vqvae_shapes_and_token_round_trip():
    torch.manual_seed(0)
    model = vqvae.VQVAE(vqvae.VQVAEConfig.tiny(num_codes=32)).eval()
    x = torch.rand(3, 1, 28, 28)
    logits, idx, loss = model(x)
    assert logits.shape == (3, 1, 28, 28) and idx.shape == (3, 7, 7) and loss.dim() == 0
    assert torch.equal(model.encode_indices(x), idx)
    assert torch.allclose(model.decode_indices(idx), logits, atol=1e-5)
    assert model.reconstruct(x).min() >= 0 and model.reconstruct(x).max() <= 1
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\], got \[3, 1, 32, 32\]"):
        model(torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="even"):
        vqvae.VQVAEConfig(hidden=15)


def test_vqvae_trains_a_few_steps():
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    x = (torch.rand(64, 1, 28, 28) > 0.8).float()
    model = vqvae.VQVAE(vqvae.VQVAEConfig.tiny(num_codes=16, hidden=16))
    history = trainlib.train_vqvae(model, TensorDataset(x, torch.zeros(64)), vqvae.vqvae_loss, steps=12,
                                   batch_size=32, lr=3e-3, progress=False, log_every=1)
    losses = history.series("loss")[1]
    assert losses[-1] < losses[0]
    assert {"recon", "vq", "usage", "perplexity"} <= set(history.train[0])
    metrics = vqvae.evaluate_vqvae(model, x[:10])
    assert set(metrics) == {"mse", "bce", "usage", "perplexity"} and 0 < metrics["usage"] <= 1
    tokens = vqvae.tokenize(model, x[:10], batch_size=3)
    assert tokens.shape == (10, 7, 7) and torch.equal(tokens, model.encode_indices(x[:10]))


# ----------------------------------------------------------------------------- the prior


def test_prior_is_causal():
    torch.manual_seed(0)
    prior = vqvae.CodePrior(vqvae.PriorConfig.tiny(num_codes=10)).eval()
    idx = torch.randint(0, 10, (2, 7, 7))
    logits = prior(idx)
    assert logits.shape == (2, 49, 10)
    changed = idx.clone().reshape(2, 49)
    changed[:, 20] = (changed[:, 20] + 1) % 10
    new = prior(changed)
    assert torch.allclose(new[:, :21], logits[:, :21], atol=1e-6)  # logits[:, t] sees only tokens < t
    assert (new[:, 21:] - logits[:, 21:]).abs().amax() > 1e-4
    assert torch.allclose(prior(idx.reshape(2, 49)), logits)


def test_prior_sampling_is_reproducible_and_greedy_at_low_temperature():
    torch.manual_seed(0)
    prior = vqvae.CodePrior(vqvae.PriorConfig.tiny(num_codes=12, height=3, width=3)).eval()
    a = prior.sample(5, torch.Generator().manual_seed(1))
    b = prior.sample(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 3) and a.dtype == torch.long and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 12
    greedy = prior.sample(1, torch.Generator().manual_seed(2), temperature=1e-4).flatten()
    logits = prior(greedy[None])[0]  # teacher-forced logits of the sampled sequence
    assert torch.equal(logits.argmax(-1), greedy)  # every token was the most likely one
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match=r"\[B, 9\]"):
        prior(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        prior(torch.full((1, 9), 12))


def test_prior_learns_a_repeated_grid():
    torch.manual_seed(0)
    prior = vqvae.CodePrior(vqvae.PriorConfig.tiny(num_codes=8, height=2, width=3))
    grids = torch.tensor([[0, 1, 2], [3, 4, 5]]).repeat(32, 1, 1)  # [32, 2, 3]
    history = trainlib.train_prior(prior, grids, vqvae.prior_loss, steps=40, batch_size=16, lr=1e-2, progress=False)
    assert history.series("loss")[1][-1] < 0.2 * math.log(8)
    assert vqvae.evaluate_prior(prior, grids[:4])["nats_per_token"] < 0.2 * math.log(8)
    assert torch.equal(prior.sample(1, torch.Generator().manual_seed(0), temperature=0.1)[0], grids[0])
