"""``companion.dit``: patchify round trip, RoPE's relative positions, adaLN-Zero's identity at init, shapes, errors."""

import pytest
import torch

from companion import dit
from companion.dit import DiT, DiTBlock, DiTConfig, modulate
from companion.layers import apply_rotary, rope_angles_2d
from companion.vit import patchify, unpatchify


@pytest.mark.parametrize(("c", "size", "p"), [(4, 7, 1), (4, 8, 2), (1, 28, 7), (3, 6, 3)])
def test_patchify_unpatchify_round_trip(c, size, p):
    x = torch.randn(2, c, size, size)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (size // p) ** 2, c * p * p)
    assert torch.equal(unpatchify(tokens, p, c, size, size), x)
    # token n is the patch at grid row n // (size/p), column n % (size/p)
    g = size // p
    n = g + 1 if g > 1 else 0
    r, col = divmod(n, g)
    assert torch.equal(tokens[0, n], x[0, :, r * p:(r + 1) * p, col * p:(col + 1) * p].reshape(-1))


def test_rope_scores_depend_only_on_the_offset():
    """<R(m) q, R(n) k> is a function of (row, column) offsets: shifting both tokens by one step changes nothing."""
    torch.manual_seed(0)
    h = w = 7
    d = 16
    angles = rope_angles_2d(h, w, d, base=100.0)  # [49, 8]
    q, k = torch.randn(d), torch.randn(d)
    qs = apply_rotary(q.expand(h * w, d), angles)  # the same query at every position
    ks = apply_rotary(k.expand(h * w, d), angles)
    scores = (qs @ ks.T).reshape(h, w, h, w)  # [row_q, col_q, row_k, col_k]
    for dr, dc in [(0, 1), (1, 0), (2, -3), (-1, -1)]:
        pairs = [(a, b, a + dr, b + dc) for a in range(h) for b in range(w) if 0 <= a + dr < h and 0 <= b + dc < w]
        vals = torch.stack([scores[p] for p in pairs])
        assert torch.allclose(vals, vals[0].expand_as(vals), atol=1e-4), (dr, dc)
    # rotations keep norms, and the offset (0, 0) is the plain dot product
    assert torch.allclose(qs.norm(dim=-1), q.norm().expand(h * w), atol=1e-5)
    assert torch.allclose(scores[3, 3, 3, 3], q @ k, atol=1e-5)
    # rows and columns turn different planes: a row offset and the same column offset score differently
    assert not torch.allclose(scores[0, 0, 1, 0], scores[0, 0, 0, 1])


@pytest.mark.parametrize("parallel", [False, True])
def test_adaln_zero_block_is_the_identity_at_init(parallel):
    torch.manual_seed(0)
    block = DiTBlock(32, 4, parallel=parallel)
    x, c = torch.randn(3, 10, 32), torch.randn(3, 32)
    assert torch.equal(block(x, c), x)
    # the gates are regressed from c: once the modulation is non-zero the block does something, per example
    torch.nn.init.normal_(block.ada.weight, std=0.1)
    y = block(x, c)
    assert not torch.allclose(y, x)
    assert torch.allclose(block(x[:1], c[:1]), y[:1], atol=1e-6)


def test_untrained_dit_predicts_zero_and_has_the_input_shape():
    torch.manual_seed(0)
    for cfg in (DiTConfig.tiny(), DiTConfig.tiny(position="sincos", parallel=True, num_classes=None),
                DiTConfig.tiny(in_channels=1, input_size=28, patch_size=4)):
        net = DiT(cfg)
        x = torch.randn(2, cfg.in_channels, cfg.input_size, cfg.input_size)
        y = torch.tensor([1, 2]) if cfg.num_classes else None
        out = net(x, torch.tensor([0.2, 0.9]), y)
        assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))


def test_trained_dit_reads_time_label_and_position():
    torch.manual_seed(0)
    net = DiT(DiTConfig.tiny())
    for p in net.parameters():  # leave adaLN-Zero: random weights everywhere
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 4, 7, 7)
    t = torch.tensor([0.3, 0.3])
    base = net(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(base, net(x, t + 0.2, torch.tensor([1, 1])))
    assert not torch.allclose(base, net(x, t, torch.tensor([2, 2])))
    assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([10, 10])))  # None is "no label"
    assert torch.allclose(net(x, 0.3, torch.tensor([1, 1])), base)  # a scalar time is broadcast
    # the positions matter: the net is not equivariant to a cyclic shift of the latent grid
    shifted = net(x.roll(1, dims=-1), t, torch.tensor([1, 1])).roll(-1, dims=-1)
    assert not torch.allclose(shifted, base, atol=1e-4)


def test_modulate_is_layer_norm_affine_with_one_plus_scale():
    x = torch.randn(2, 5, 8)
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.allclose(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])
    assert torch.equal(modulate(x, torch.zeros(2, 8), torch.zeros(2, 8)), x)


def test_bad_inputs_are_refused():
    net = DiT(DiTConfig.tiny())
    with pytest.raises(ValueError, match=r"4 channel"):
        net(torch.randn(2, 3, 7, 7), torch.zeros(2))
    with pytest.raises(ValueError, match=r"7x7"):
        net(torch.randn(2, 4, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match=r"one time per example"):
        net(torch.randn(2, 4, 7, 7), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must lie in 0..10"):
        net(torch.randn(2, 4, 7, 7), torch.zeros(2), torch.tensor([0, 11]))
    with pytest.raises(ValueError, match=r"integer labels"):
        net(torch.randn(2, 4, 7, 7), torch.zeros(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"unconditional"):
        DiT(DiTConfig.tiny(num_classes=None))(torch.randn(2, 4, 7, 7), torch.zeros(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"divide input_size"):
        DiTConfig(patch_size=2)
    with pytest.raises(ValueError, match=r"divisible by 4"):
        DiTConfig(dim=36, heads=6)
    with pytest.raises(ValueError, match=r"position must be one of"):
        DiTConfig(position="learned")
    assert dit.POSITIONS == ("rope", "sincos")
