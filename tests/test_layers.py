"""companion.layers against torch.nn (BatchNorm2d over several steps, MultiheadAttention), F.batch_norm and closed
forms (positional encodings); the transformer block with and without a causal mask; input checks at the door."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import cnn, layers, mlp, ops, resnet, vit
from companion.layers import BatchNorm2d, batch_norm_2d
from companion.train import count_parameters

DTYPE = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(num_features: int = 3, **kwargs) -> tuple[BatchNorm2d, nn.BatchNorm2d]:
    """Ours and PyTorch's, with the same random affine parameters."""
    ours = BatchNorm2d(num_features, **kwargs).to(DTYPE)
    ref = nn.BatchNorm2d(num_features, **kwargs).to(DTYPE)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p_ours, p_ref in ((ours.weight, ref.weight), (ours.bias, ref.bias)):
            p_ref.copy_(torch.randn(num_features, generator=g, dtype=DTYPE))
            p_ours.copy_(p_ref)
    return ours, ref


def _assert_same_state(ours: BatchNorm2d, ref: nn.BatchNorm2d) -> None:
    torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
    torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_training_steps_match_torch(momentum):
    ours, ref = _pair(momentum=momentum)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        x = (torch.randn(4, 3, 5, 6, generator=g, dtype=DTYPE) * (step + 1) + step).requires_grad_()
        upstream = torch.randn(4, 3, 5, 6, generator=g, dtype=DTYPE)
        y_ours, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y_ours, y_ref, **TOL)
        grads_ours = torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], upstream)
        grads_ref = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], upstream)
        for a, b in zip(grads_ours, grads_ref):
            torch.testing.assert_close(a, b, **TOL)
        _assert_same_state(ours, ref)


def test_eval_uses_running_statistics():
    ours, ref = _pair()
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # collect some statistics
        x = torch.randn(8, 3, 4, 4, generator=g, dtype=DTYPE) * 2 + 1
        ours(x), ref(x)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=DTYPE).requires_grad_()
    y_ours, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    _assert_same_state(ours, ref)  # eval does not update the statistics
    assert int(ours.num_batches_tracked) == 3
    upstream = torch.randn_like(y_ref)
    for a, b in zip(
        torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], upstream),
        torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], upstream),
    ):
        torch.testing.assert_close(a, b, **TOL)
    # in eval one image's output does not depend on the rest of the batch
    torch.testing.assert_close(ours(x[:1]), y_ours[:1], **TOL)


def test_running_var_is_unbiased():
    bn = BatchNorm2d(1, momentum=1.0).to(DTYPE)  # momentum 1: running stats = last batch's
    x = torch.arange(8, dtype=DTYPE).view(2, 1, 2, 2)
    bn(x)
    torch.testing.assert_close(bn.running_mean, x.mean().view(1))
    torch.testing.assert_close(bn.running_var, x.var(correction=1).view(1))


def test_state_dict_is_interchangeable_with_torch():
    ours, ref = _pair(4)
    ref.train()
    ref(torch.randn(3, 4, 2, 2, dtype=DTYPE))
    ours.load_state_dict(ref.state_dict())
    _assert_same_state(ours, ref)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_gradcheck():
    bn = BatchNorm2d(2).to(DTYPE)
    x = torch.randn(3, 2, 2, 2, dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(bn, (x,))


def test_errors():
    bn = BatchNorm2d(3)
    with pytest.raises(ValueError, match=re.escape("[3, 4, 4]")):
        bn(torch.zeros(3, 4, 4))  # missing the batch dimension
    with pytest.raises(ValueError, match=re.escape("[2, 5, 4, 4]") + ".*3"):
        bn(torch.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- batch_norm_2d (functional)


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 7, 7), (16, 1, 1, 1), (2, 5, 1, 3)])
def test_batch_norm_2d_matches_torch_values_and_gradients(shape):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2).requires_grad_()
    gamma = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    beta = torch.randn(shape[1], generator=g, dtype=torch.float64).requires_grad_()
    ours = batch_norm_2d(x, gamma, beta, eps=1e-5)
    ref = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    upstream = torch.randn(shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(ours, [x, gamma, beta], upstream),
                    torch.autograd.grad(ref, [x, gamma, beta], upstream)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_batch_norm_2d_equals_the_training_step_of_the_layer():
    g = torch.Generator().manual_seed(1)
    layer = BatchNorm2d(4)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(4, generator=g))
        layer.bias.copy_(torch.randn(4, generator=g))
    x = torch.randn(8, 4, 6, 6, generator=g) * 5 - 1
    torch.testing.assert_close(batch_norm_2d(x, layer.weight, layer.bias, layer.eps), layer(x))


def test_batch_norm_2d_normalises_each_channel_and_handles_a_constant_channel():
    x = torch.randn(6, 3, 4, 4) * torch.tensor([1.0, 10.0, 0.1])[None, :, None, None] + 7
    x[:, 2] = 3.0  # a constant channel: variance 0, eps keeps the division finite
    y = batch_norm_2d(x, torch.ones(3), torch.zeros(3))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, :2].var(dim=(0, 2, 3), correction=0), torch.ones(2), atol=1e-3, rtol=0)
    assert torch.equal(y[:, 2], torch.zeros_like(y[:, 2]))


def test_batch_norm_2d_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        batch_norm_2d(torch.zeros(2, 3), torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="gamma"):
        batch_norm_2d(torch.zeros(2, 3, 4, 4), torch.ones(4), torch.zeros(3))


# ----------------------------------------------------------------------------- position encodings


def test_sinusoidal_closed_form_values():
    pe = layers.sinusoidal_encoding(5, 4)
    assert pe.shape == (5, 4) and pe.dtype == torch.float32
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    m = torch.arange(5.0)
    torch.testing.assert_close(pe[:, 0], torch.sin(m))  # w_0 = 1
    torch.testing.assert_close(pe[:, 3], torch.cos(m / 100.0))  # w_1 = 10000^(-2/4) = 1/100
    torch.testing.assert_close(layers.sincos_1d(torch.arange(5), 4), pe)


def test_sinusoidal_dot_product_depends_only_on_offset():
    pe = layers.sinusoidal_encoding(64, 32).double()
    gram = pe @ pe.T
    for offset in (0, 1, 5, 17):
        diag = torch.diagonal(gram, offset)
        torch.testing.assert_close(diag, torch.full_like(diag, diag[0].item()), atol=1e-4, rtol=0)
    assert torch.allclose(torch.diagonal(gram), torch.full((64,), 16.0, dtype=torch.float64), atol=1e-4)  # |PE|^2 = dim/2


def test_sincos_2d_splits_rows_and_columns():
    h, w, dim = 3, 5, 8
    pe = layers.sincos_2d(h, w, dim)
    assert pe.shape == (15, 8)
    rows = layers.sinusoidal_encoding(h, dim // 2)
    cols = layers.sinusoidal_encoding(w, dim // 2)
    for t in range(h * w):
        torch.testing.assert_close(pe[t], torch.cat([rows[t // w], cols[t % w]]))
    with pytest.raises(ValueError, match="divisible by 4"):
        layers.sincos_2d(2, 2, 6)
    with pytest.raises(ValueError, match="even dim"):
        layers.sinusoidal_encoding(4, 3)


def test_rotary_preserves_norms_and_matches_complex_multiplication():
    x = _randn(3, 10, 8, dtype=torch.float64)
    angles = layers.rope_angles_1d(torch.arange(10), 8).double()
    y = layers.apply_rotary(x, angles)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    z = torch.view_as_complex(x.reshape(3, 10, 4, 2).contiguous()) * torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(y, torch.view_as_real(z).reshape(3, 10, 8))
    with pytest.raises(ValueError, match="needs angles"):
        layers.apply_rotary(x, angles[:, :3])


def test_rope_2d_scores_depend_only_on_the_2d_offset():
    h = w = 6
    q, k = _randn(1, 16, dtype=torch.float64), _randn(1, 16, seed=1, dtype=torch.float64)
    rq = layers.apply_rope_2d(q.expand(h * w, 16), h, w)  # the same query placed at every grid cell
    rk = layers.apply_rope_2d(k.expand(h * w, 16), h, w)
    scores = (rq @ rk.T).reshape(h, w, h, w)  # scores[r1, c1, r2, c2]
    for dr, dc in [(0, 0), (1, 2), (-2, 1), (3, -3)]:
        vals = torch.stack([scores[r, c, r + dr, c + dc] for r in range(h) for c in range(w)
                            if 0 <= r + dr < h and 0 <= c + dc < w])
        torch.testing.assert_close(vals, torch.full_like(vals, vals[0].item()), atol=1e-6, rtol=1e-6)  # float32 angles
    assert scores[0, 0, 0, 1] != pytest.approx(scores[0, 0, 1, 0].item())  # rows and columns are told apart


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("heads", [1, 4])
def test_multi_head_attention_equals_torch(heads):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(32, heads, batch_first=True)
    ours = layers.MultiHeadAttention(32, heads).load_torch(theirs)
    assert count_parameters(ours) == count_parameters(theirs) == 4 * 32 * 32 + 4 * 32
    x = _randn(3, 11, 32)
    out, attn = ours(x, return_attention=True)
    ref, ref_attn = theirs(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn, ref_attn, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)
    mask = torch.rand(11, 11, generator=torch.Generator().manual_seed(1)) > 0.3
    mask.fill_diagonal_(True)
    ref_masked, _ = theirs(x, x, x, attn_mask=~mask, need_weights=False)  # torch: True = may NOT attend
    torch.testing.assert_close(ours(x, attn_mask=mask), ref_masked, atol=1e-5, rtol=1e-5)


def test_load_torch_rejects_a_mismatch():
    with pytest.raises(ValueError, match="need nn.MultiheadAttention"):
        layers.MultiHeadAttention(32, 4).load_torch(nn.MultiheadAttention(32, 2))


def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = layers.MultiHeadAttention(16, 2)
    x = _randn(2, 9, 16)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(mha(x[:, perm]), mha(x)[:, perm], atol=1e-6, rtol=1e-5)



def test_ops_attention_is_what_the_module_uses():
    torch.manual_seed(0)
    mha = layers.MultiHeadAttention(16, 2)
    x = _randn(1, 5, 16)
    q, k, v = mha.qkv(x).reshape(1, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
    heads = ops.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 5, 16)
    torch.testing.assert_close(mha(x), mha.proj(heads))


# ----------------------------------------------------------------------------- the transformer block


def test_transformer_block_is_pre_layernorm_residual():
    torch.manual_seed(0)
    block = layers.TransformerBlock(16, 2, mlp_ratio=2.0)
    assert [name for name, _ in block.named_children()] == ["ln1", "attn", "ln2", "mlp"]  # checkpoint keys
    assert isinstance(block.mlp, layers.FeedForward) and block.mlp.fc1.out_features == 32
    z = _randn(2, 7, 16)
    a = z + block.attn(block.ln1(z))
    torch.testing.assert_close(block(z), a + block.mlp.fc2(F.gelu(block.mlp.fc1(block.ln2(a)))))
    out, attn = block(z, return_attention=True)
    torch.testing.assert_close(out, block(z))
    assert attn.shape == (2, 2, 7, 7)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, 7))


def test_causal_mask_makes_the_block_autoregressive():
    torch.manual_seed(0)
    block = layers.TransformerBlock(16, 4)
    mask = layers.causal_mask(9)
    assert torch.equal(mask, torch.ones(9, 9).tril().bool())
    z = _randn(3, 9, 16)
    full = block(z, mask=mask)
    for t in (1, 4, 9):  # the output at t depends only on tokens 0..t: the prefix alone gives the same
        torch.testing.assert_close(block(z[:, :t], mask=layers.causal_mask(t)), full[:, :t], atol=1e-6, rtol=1e-5)
    _, attn = block(z, mask=mask, return_attention=True)
    assert (attn.masked_select(~mask) == 0).all()
    z2 = z.clone()
    z2[:, 5:] += 1.0  # changing later tokens leaves earlier outputs untouched
    torch.testing.assert_close(block(z2, mask=mask)[:, :5], full[:, :5])


# ----------------------------------------------------------------------------- input checks at the door


@pytest.mark.parametrize(
    ("make", "x", "error", "match"),
    [
        (lambda: vit.ViT(vit.ViTConfig.tiny()), torch.rand(2, 3, 28, 28), ValueError, r"images.*\[B, 1, 28, 28\].*\[2, 3, 28, 28\]"),
        (lambda: vit.ViT(vit.ViTConfig.tiny()), torch.rand(2, 1, 32, 32), ValueError, r"28x28.*\[2, 1, 32, 32\]"),
        (lambda: vit.ViT(vit.ViTConfig.tiny()), torch.rand(1, 28, 28), ValueError, r"\[B, 1, 28, 28\].*\[1, 28, 28\]"),
        (lambda: vit.ViT(vit.ViTConfig.tiny()), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "floating"),
        (lambda: vit.ViT(vit.ViTConfig.tiny()), [[0.0]], TypeError, "torch.Tensor"),
        (lambda: vit.SmallCNN(), torch.rand(2, 1, 32, 32), ValueError, r"SmallCNN.*28x28"),
        (lambda: layers.MultiHeadAttention(16, 2), torch.rand(2, 5, 12), ValueError, r"\[B, T, 16\].*\[2, 5, 12\]"),
        (lambda: layers.MultiHeadAttention(16, 2), torch.rand(5, 16), ValueError, r"\[B, T, 16\].*\[5, 16\]"),
        (lambda: layers.MultiHeadAttention(16, 2), torch.zeros(2, 5, 16, dtype=torch.long), TypeError, "floating"),
        (lambda: mlp.MLP((784, 32, 10)), torch.rand(2, 1, 32, 32), ValueError, r"784 features.*1024"),
        (lambda: mlp.MLP((784, 32, 10)), torch.zeros(2, 784, dtype=torch.uint8), TypeError, "floating"),
        (lambda: mlp.SoftmaxRegression(), torch.rand(2, 3, 28, 28), ValueError, "784 features"),
        (lambda: cnn.LeNet(), torch.rand(2, 3, 28, 28), ValueError, r"LeNet.*1 channel.*\[B, 1, 28, 28\]"),
        (lambda: cnn.LeNet(), torch.rand(2, 1, 32, 32), ValueError, r"LeNet.*28x28.*\[2, 1, 32, 32\]"),
        (lambda: cnn.LeNet(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "floating"),
        (lambda: cnn.ShallowCNN(), torch.rand(2, 1, 32, 32), ValueError, "ShallowCNN.*28x28"),
        (lambda: resnet.ResNet(resnet.ResNetConfig.tiny()), torch.rand(2, 3, 28, 28), ValueError, r"ResNet.*1 channel"),
        (lambda: resnet.ResNet(resnet.ResNetConfig.tiny()), torch.rand(2, 28, 28, 1), ValueError, r"permute"),
        (lambda: resnet.ResNet(resnet.ResNetConfig.tiny()), torch.zeros(2, 1, 8, 8, dtype=torch.uint8), TypeError,
         "floating"),
        (lambda: BatchNorm2d(3), torch.rand(2, 4, 5, 5), ValueError, r"4 channels, expected 3"),
    ],
)
def test_models_check_their_inputs_at_the_door(make, x, error, match):
    with pytest.raises(error, match=match):
        make()(x)


def test_models_accept_what_they_promise():
    assert vit.ViT(vit.ViTConfig.tiny())(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert resnet.ResNet(resnet.ResNetConfig.tiny())(torch.rand(2, 1, 12, 12)).shape == (2, 10)  # any size: GAP
    assert mlp.MLP((784, 8, 10))(torch.rand(2, 784)).shape == (2, 10)
    assert cnn.LeNet()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
