"""companion.vit against PyTorch's own modules and closed forms; bad inputs; determinism."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from companion import train as trainlib
from companion import vit
from companion.train import count_parameters


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- config


def test_config_derived_sizes_and_tiny_preset():
    cfg = vit.ViTConfig(patch_size=4)
    assert (cfg.grid, cfg.num_patches, cfg.num_tokens) == (7, 49, 50)
    assert vit.ViTConfig(patch_size=4, pool="mean").num_tokens == 49
    tiny = vit.ViTConfig.tiny()
    assert (tiny.patch_size, tiny.dim, tiny.depth, tiny.num_tokens) == (7, 32, 2, 17)
    assert vit.ViTConfig.tiny(pos="rope").pos == "rope"
    assert cfg.replace(patch_size=2).num_patches == 196


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(patch_size=5), "does not divide image_size"),
    (dict(dim=30, heads=4), "does not divide dim"),
    (dict(pos="alibi"), "pos must be one of"),
    (dict(pool="max"), "pool must be one of"),
    (dict(pos="sincos", dim=18, heads=2), "divisible by 4"),
    (dict(pos="rope", dim=24, heads=4), "head size divisible by 4"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vit.ViTConfig(**kwargs)


# ----------------------------------------------------------------------------- patches


@pytest.mark.parametrize(("shape", "p"), [((2, 3, 8, 12), 4), ((1, 1, 28, 28), 7), ((2, 2, 6, 6), 1), ((1, 3, 5, 5), 5)])
def test_patchify_equals_unfold_and_unpatchify_inverts(shape, p):
    x = _randn(*shape)
    patches = vit.patchify(x, p)
    assert torch.equal(patches, F.unfold(x, p, stride=p).transpose(1, 2))
    assert torch.equal(vit.unpatchify(patches, p, shape[1], shape[2], shape[3]), x)


def test_patchify_order_is_row_major():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert vit.patchify(x, 2)[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_patchify_rejects_bad_shapes():
    with pytest.raises(ValueError, match="must be >= 1 and divide"):
        vit.patchify(torch.zeros(1, 1, 28, 28), 5)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        vit.patchify(torch.zeros(28, 28), 4)
    with pytest.raises(ValueError, match="do not tile"):
        vit.unpatchify(torch.zeros(1, 5, 16), 4, 1, 8, 8)


@pytest.mark.parametrize("p", [2, 4, 7, 14])
def test_patch_embedding_equals_strided_conv(p):
    torch.manual_seed(0)
    pe = vit.PatchEmbedding(p, 3, 16)
    x = _randn(2, 3, 28, 28)
    w, b = pe.conv_weight()
    conv = F.conv2d(x, w, b, stride=p).flatten(2).transpose(1, 2)  # [B, D, gh, gw] -> [B, N, D]
    torch.testing.assert_close(pe(x), conv, atol=1e-5, rtol=1e-5)
    assert pe(x).shape == (2, (28 // p) ** 2, 16)


# ----------------------------------------------------------------------------- the ViT


@pytest.mark.parametrize("pos", ["learned", "sincos", "rope", "none"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_shapes_initial_loss_and_attention(pos, pool):
    torch.manual_seed(0)
    cfg = vit.ViTConfig.tiny(pos=pos, pool=pool)
    model = vit.ViT(cfg)
    x = torch.rand(4, 1, 28, 28)
    logits, maps = model(x, return_attention=True)
    assert logits.shape == (4, 10)
    assert len(maps) == cfg.depth and maps[0].shape == (4, cfg.heads, cfg.num_tokens, cfg.num_tokens)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(4, cfg.heads, cfg.num_tokens))
    torch.testing.assert_close(model(x), logits)
    loss = F.cross_entropy(logits, torch.arange(4))
    assert loss.item() == pytest.approx(math.log(10), abs=1e-6)  # zero-initialised head
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_vit_parameter_count_closed_form():
    cfg = vit.ViTConfig(patch_size=4, dim=64, depth=4, heads=4, mlp_ratio=2.0)
    D, N, P, r = 64, 49, 16, 128
    block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * r + r) + (r * D + D)
    expected = (P * D + D) + D + N * D + cfg.depth * block + 2 * D + (D * 10 + 10)
    assert count_parameters(vit.ViT(cfg)) == expected
    assert count_parameters(vit.ViT(cfg.replace(pos="sincos"))) == expected - N * D  # fixed: no parameters
    assert count_parameters(vit.ViT(cfg.replace(pool="mean"))) == expected - D


def test_positions_break_permutation_invariance():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))

    def shuffled(img):  # permute the 7x7 patches of each image
        return vit.unpatchify(vit.patchify(img, 7)[:, perm], 7, 1, 28, 28)

    for pos, invariant in [("none", True), ("learned", False), ("sincos", False), ("rope", False)]:
        model = vit.ViT(vit.ViTConfig.tiny(pos=pos))
        nn.init.normal_(model.head.weight)  # a non-zero head so the logits depend on the tokens
        same = torch.allclose(model(x), model(shuffled(x)), atol=1e-5)
        assert same == invariant, pos


def test_vit_flops_count_attention_quadratically():
    cfg = vit.ViTConfig(patch_size=4, dim=64, depth=4)
    f = vit.vit_flops(cfg)
    assert f["total"] == sum(v for k, v in f.items() if k != "total")
    assert f["attention"] == 4 * 2 * 50 * 50 * 64
    f2 = vit.vit_flops(cfg.replace(patch_size=2))
    assert f2["attention"] / f["attention"] == pytest.approx((197 / 50) ** 2)
    assert f2["projections"] / f["projections"] == pytest.approx(197 / 50)


# ----------------------------------------------------------------------------- rollout and maps


def test_attention_rollout_closed_forms():
    B, T = 2, 5
    uniform = torch.full((B, 3, T, T), 1.0 / T)
    eye = torch.eye(T).expand(B, 1, T, T)
    torch.testing.assert_close(vit.attention_rollout([eye, eye]), torch.eye(T).expand(B, T, T))
    r = vit.attention_rollout([uniform], residual=0.0)
    torch.testing.assert_close(r, torch.full((B, T, T), 1.0 / T))
    a1, a2 = torch.softmax(_randn(B, 2, T, T), -1), torch.softmax(_randn(B, 2, T, T, seed=1), -1)
    m1, m2 = 0.5 * a1.mean(1) + 0.5 * torch.eye(T), 0.5 * a2.mean(1) + 0.5 * torch.eye(T)
    torch.testing.assert_close(vit.attention_rollout([a1, a2]), m2 @ m1)
    torch.testing.assert_close(vit.attention_rollout([a1, a2]).sum(-1), torch.ones(B, T))
    with pytest.raises(ValueError, match="at least one"):
        vit.attention_rollout([])
    with pytest.raises(ValueError, match="residual"):
        vit.attention_rollout([a1], residual=1.5)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_attention_maps_shape_and_scale(pool):
    torch.manual_seed(0)
    model = vit.ViT(vit.ViTConfig.tiny(pool=pool, patch_size=4))
    maps = vit.attention_maps(model, torch.rand(3, 1, 28, 28))
    assert maps.shape == (3, 7, 7)
    torch.testing.assert_close(maps.amax(dim=(1, 2)), torch.ones(3))
    assert vit.attention_maps(model, torch.rand(3, 1, 28, 28), layer=1).shape == (3, 7, 7)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_tokens_depth_zero_is_the_embedding_and_full_depth_the_last_block(pool):
    torch.manual_seed(0)
    model = vit.ViT(vit.ViTConfig.tiny(pool=pool, patch_size=4))
    x = torch.rand(5, 1, 28, 28)
    p = model.n_prefix
    torch.testing.assert_close(vit.patch_tokens(model, x, depth=0), model.tokens(x)[:, p:])
    z = model.tokens(x)
    for block in model.blocks:
        z = block(z, rope_angles=model.rope_angles, n_prefix=p)
    out = vit.patch_tokens(model, x, batch_size=2)  # chunked: same numbers as one batch
    assert out.shape == (5, 49, 32)
    torch.testing.assert_close(out, z[:, p:].detach())
    assert model.training  # left as it was found
    with pytest.raises(ValueError, match="depth must be in"):
        vit.patch_tokens(model, x, depth=3)


# ----------------------------------------------------------------------------- experiments and training


def test_small_cnn_shapes_and_size():
    cnn = vit.SmallCNN()
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(cnn) == 20_490


def test_train_classifier_learns_a_toy_problem_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 28, 28, generator=g) * 0.1
    y = torch.randint(0, 2, (256,), generator=g)
    x[y == 1, :, :14] += 0.8  # class 1: bright top half
    ds = TensorDataset(x, y)

    def run():
        torch.manual_seed(0)
        model = vit.ViT(vit.ViTConfig.tiny(num_classes=2))
        history, acc = trainlib.train_classifier(model, ds, ds, steps=30, batch_size=64, lr=3e-3, weight_decay=0.05,
                                                 schedule="warmup_cosine", warmup=3, shuffle_seed=True,
                                                 drop_last=True, eval_every=None, progress=False)
        return model, history, acc

    m1, h1, acc = run()
    assert acc > 0.95
    assert h1.train[-1]["step"] == 30 and "wall_s" in h1.train[-1]
    m2, _, _ = run()
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="steps"):
        trainlib.train_classifier(m1, ds, steps=0)
