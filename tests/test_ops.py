"""companion.ops against torch.nn.functional: values, gradients, errors (float64, small shapes)."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
import torch.nn.functional as F

from companion import ops

# PyTorch's own F.conv2d warns about padding="same" with even kernels; that is the reference, not us.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

DTYPE = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def _randn(*shape: int, seed: int = 0, requires_grad: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DTYPE).requires_grad_(requires_grad)


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 123) -> tuple[torch.Tensor, ...]:
    upstream = _randn(*out.shape, seed=seed, requires_grad=False)
    return torch.autograd.grad(out, inputs, upstream)


def _check_same(ours_fn, ref_fn, inputs: list[torch.Tensor]) -> None:
    """Forward values and gradients w.r.t. every input agree."""
    ours, ref = ours_fn(*inputs), ref_fn(*inputs)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, **TOL)
    for g_ours, g_ref in zip(_grads(ours, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(g_ours, g_ref, **TOL)


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------

STRIDES = [1, 2, (2, 1)]
PADDINGS = [0, 1, (2, 0), "valid", "same"]
DILATIONS = [1, (2, 1)]
GROUPS = [1, 2]
CONV_GRID = [
    (s, p, d, g)
    for s, p, d, g in itertools.product(STRIDES, PADDINGS, DILATIONS, GROUPS)
    if not (p == "same" and s != 1)  # PyTorch rejects 'same' with stride > 1
]


@pytest.mark.parametrize("stride,padding,dilation,groups", CONV_GRID)
def test_conv2d_matches_torch(stride, padding, dilation, groups):
    x = _randn(2, 4, 9, 8, seed=1)
    w = _randn(6, 4 // groups, 3, 2, seed=2)  # non-square kernel
    b = _randn(6, seed=3)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    _check_same(lambda x, w, b: ops.conv2d(x, w, b, **kw), lambda x, w, b: F.conv2d(x, w, b, **kw), [x, w, b])


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (4, 2), (5, 5)])
def test_conv2d_kernel_shapes_no_bias(kernel):
    x, w = _randn(3, 3, 10, 11, seed=4), _randn(5, 3, *kernel, seed=5)
    _check_same(lambda x, w: ops.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), [x, w])


def test_conv2d_same_padding_even_kernel_is_asymmetric_like_torch():
    x, w = _randn(1, 2, 7, 7, seed=6), _randn(3, 2, 4, 2, seed=7)
    for dilation in (1, 2, 3):
        _check_same(
            lambda x, w, d=dilation: ops.conv2d(x, w, padding="same", dilation=d),
            lambda x, w, d=dilation: F.conv2d(x, w, padding="same", dilation=d),
            [x, w],
        )


def test_conv2d_depthwise_and_unbatched():
    x, w, b = _randn(2, 4, 6, 6, seed=8), _randn(8, 1, 3, 3, seed=9), _randn(8, seed=10)
    _check_same(
        lambda x, w, b: ops.conv2d(x, w, b, padding=1, groups=4),
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=4),
        [x, w, b],
    )
    xu = _randn(4, 6, 6, seed=11)  # [C, H, W]
    wu = _randn(8, 4, 3, 3, seed=12)
    _check_same(lambda x, w: ops.conv2d(x, w, stride=2), lambda x, w: F.conv2d(x, w, stride=2), [xu, wu])


def test_conv2d_batch_blocks_give_the_same_result(monkeypatch):
    """The im2col is done a few images at a time; forcing one image per block changes nothing."""
    x, w, b = _randn(5, 3, 7, 7, seed=12), _randn(4, 3, 3, 3, seed=13), _randn(4, seed=14)
    monkeypatch.setattr(ops.im2col, "_CPU_BLOCK_ELEMENTS", 1)
    _check_same(
        lambda x, w, b: ops.conv2d(x, w, b, stride=2, padding=1),
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        [x, w, b],
    )
    xt, wt = _randn(5, 4, 4, 4, seed=15), _randn(4, 3, 3, 3, seed=16)
    _check_same(
        lambda x, w: ops.conv_transpose2d(x, w, stride=2, output_padding=1),
        lambda x, w: F.conv_transpose2d(x, w, stride=2, output_padding=1),
        [xt, wt],
    )


def test_conv2d_non_contiguous_input():
    x = _randn(2, 8, 3, 9, seed=17).transpose(1, 3)  # [2, 9, 3, 8], not contiguous
    w = _randn(4, 9, 3, 3, seed=18)
    _check_same(lambda x, w: ops.conv2d(x, w, padding=1), lambda x, w: F.conv2d(x, w, padding=1), [x, w])


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(stride=2, padding=1), dict(dilation=2, padding=(1, 0), groups=2), dict(padding="same")],
)
def test_conv2d_gradcheck(kw):
    x, w, b = (
        _randn(1, 2, 5, 5, seed=19),
        _randn(2, 2 // kw.get("groups", 1), 3, 3, seed=20),
        _randn(2, seed=21),
    )
    assert torch.autograd.gradcheck(lambda x, w, b: ops.conv2d(x, w, b, **kw), (x, w, b))


def test_conv2d_double_backward():
    """The hand-written backward is itself differentiable (gradient penalties need this)."""
    x, w, b = _randn(1, 2, 4, 4, seed=22), _randn(2, 2, 3, 2, seed=23), _randn(2, seed=24)
    assert torch.autograd.gradgradcheck(lambda x, w, b: ops.conv2d(x, w, b, stride=2, padding=1), (x, w, b))


def test_conv2d_uses_no_torch_convolution(monkeypatch):
    """The implementation is from scratch: no F.conv2d / F.unfold / F.fold under the hood."""

    def forbidden(*args, **kwargs):
        raise AssertionError("built-in convolution called")

    x, w = _randn(2, 3, 6, 6, seed=25), _randn(4, 3, 3, 3, seed=26)
    expected = F.conv2d(x, w, padding=1)
    for name in ("conv2d", "unfold", "fold", "conv_transpose2d"):
        monkeypatch.setattr(F, name, forbidden)
    monkeypatch.setattr(torch, "conv2d", forbidden)
    out = ops.conv2d(x, w, padding=1)
    out.sum().backward()
    torch.testing.assert_close(out, expected, **TOL)
    ops.conv_transpose2d(x, w.transpose(0, 1).contiguous(), stride=2).sum().backward()


# ----------------------------------------------------------------------------------------------
# conv_transpose2d
# ----------------------------------------------------------------------------------------------

TRANSPOSE_GRID = [
    (s, p, op, d, g)
    for s, p, op, d, g in itertools.product([1, 2, (3, 2)], [0, 1], [0, 1], [1, 2], [1, 2])
    if op < (s if isinstance(s, int) else min(s)) or op < d  # PyTorch: output_padding < stride or dilation
]


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups", TRANSPOSE_GRID)
def test_conv_transpose2d_matches_torch(stride, padding, output_padding, dilation, groups):
    x = _randn(2, 4, 4, 5, seed=30)
    w = _randn(4, 6 // groups, 3, 2, seed=31)  # [C_in, C_out/groups, kH, kW]
    b = _randn(6, seed=32)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    _check_same(
        lambda x, w, b: ops.conv_transpose2d(x, w, b, **kw),
        lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
        [x, w, b],
    )


def test_conv_transpose2d_unbatched_and_gradcheck():
    x, w = _randn(3, 4, 4, seed=33), _randn(3, 2, 3, 3, seed=34)
    _check_same(
        lambda x, w: ops.conv_transpose2d(x, w, stride=2, padding=1),
        lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
        [x, w],
    )
    xs, ws, bs = _randn(1, 2, 3, 3, seed=35), _randn(2, 1, 3, 3, seed=36), _randn(1, seed=37)
    fn = lambda x, w, b: ops.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert torch.autograd.gradcheck(fn, (xs, ws, bs))
    assert torch.autograd.gradgradcheck(fn, (xs, ws, bs))


def test_conv_transpose2d_is_the_adjoint_of_conv2d():
    """<conv2d(z, W), x> == <z, conv_transpose2d(x, W)> for every z, x."""
    w = _randn(3, 2, 3, 3, seed=38, requires_grad=False)  # conv2d: 2 -> 3 channels
    z = _randn(2, 2, 9, 9, seed=39, requires_grad=False)
    y = ops.conv2d(z, w, stride=2, padding=1)  # [2, 3, 5, 5]
    x = _randn(*y.shape, seed=40, requires_grad=False)
    back = ops.conv_transpose2d(x, w, stride=2, padding=1)  # [2, 2, 9, 9]
    assert back.shape == z.shape
    torch.testing.assert_close((y * x).sum(), (z * back).sum(), **TOL)


# ----------------------------------------------------------------------------------------------
# conv2d_loops and shape helpers
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 0), (2, 2), (3, 1)])
def test_conv2d_loops_matches_torch(stride, padding):
    x, w, b = _randn(2, 3, 7, 6, seed=41), _randn(4, 3, 3, 2, seed=42), _randn(4, seed=43)
    _check_same(
        lambda x, w, b: ops.conv2d_loops(x, w, b, stride=stride, padding=padding),
        lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
        [x, w, b],
    )


def test_conv2d_loops_unbatched():
    x, w = _randn(3, 5, 5, seed=44), _randn(2, 3, 3, 3, seed=45)
    torch.testing.assert_close(ops.conv2d_loops(x, w, padding=1), F.conv2d(x, w, padding=1), **TOL)


@pytest.mark.parametrize(
    "size,kernel,stride,padding,dilation",
    [(28, 5, 1, 0, 1), (32, 3, 2, 1, 1), (17, 3, 3, 2, 2), (9, 4, 2, 0, 1)],
)
def test_conv_output_size(size, kernel, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel, kernel)
    expected = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    assert ops.conv_output_size(size, kernel, stride, padding, dilation) == expected


@pytest.mark.parametrize(
    "size,kernel,stride,padding,output_padding,dilation",
    [(7, 4, 2, 1, 0, 1), (7, 3, 2, 1, 1, 1), (5, 3, 3, 0, 2, 2)],
)
def test_conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel, kernel)
    ref = F.conv_transpose2d(
        x, w, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation
    )
    got = ops.conv_transpose_output_size(size, kernel, stride, padding, output_padding, dilation)
    assert got == ref.shape[-1]
    # conv2d maps the transposed size back to the original one
    assert ops.conv_output_size(got, kernel, stride, padding, dilation) == size


# ----------------------------------------------------------------------------------------------
# conv errors: ValueErrors that name the shapes involved
# ----------------------------------------------------------------------------------------------


def _names_both(a: torch.Tensor, b: torch.Tensor) -> str:
    """A regex that needs both shapes, in either order."""
    sa, sb = re.escape(str(list(a.shape))), re.escape(str(list(b.shape)))
    return f"({sa}.*{sb}|{sb}.*{sa})"


def test_conv2d_channel_mismatch_names_both_shapes():
    x, w = torch.zeros(2, 3, 8, 8), torch.zeros(4, 2, 3, 3)
    with pytest.raises(ValueError, match=_names_both(x, w)):
        ops.conv2d(x, w)
    with pytest.raises(ValueError, match="groups=2"):
        ops.conv2d(torch.zeros(2, 3, 8, 8), torch.zeros(4, 3, 3, 3), groups=2)


def test_conv2d_other_errors():
    x, w = torch.zeros(2, 4, 8, 8), torch.zeros(6, 2, 3, 3)
    with pytest.raises(ValueError, match=_names_both(x, torch.zeros(5, 2, 3, 3))):
        ops.conv2d(x, torch.zeros(5, 2, 3, 3), groups=2)  # 5 output channels, 2 groups
    with pytest.raises(ValueError, match=r"bias \[4\]"):
        ops.conv2d(x, w, torch.zeros(4), groups=2)
    with pytest.raises(ValueError, match=r"\[8, 8\]"):
        ops.conv2d(torch.zeros(8, 8), w)
    with pytest.raises(ValueError, match=_names_both(torch.zeros(1, 4, 2, 2), torch.zeros(6, 4, 3, 3))):
        ops.conv2d(torch.zeros(1, 4, 2, 2), torch.zeros(6, 4, 3, 3))  # kernel larger than the input
    with pytest.raises(ValueError, match="strided"):
        ops.conv2d(x, w, padding="same", stride=2, groups=2)
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d(x, w, padding="full", groups=2)
    with pytest.raises(ValueError, match="stride"):
        ops.conv2d(x, w, stride=0, groups=2)
    with pytest.raises(ValueError, match="padding"):
        ops.conv2d(x, w, padding=-1, groups=2)
    with pytest.raises(TypeError, match="float64"):
        ops.conv2d(x, w.double(), groups=2)


def test_conv_transpose2d_errors():
    x, w = torch.zeros(2, 3, 4, 4), torch.zeros(4, 2, 3, 3)
    with pytest.raises(ValueError, match=_names_both(x, w)):
        ops.conv_transpose2d(x, w)
    with pytest.raises(ValueError, match="output_padding"):
        ops.conv_transpose2d(torch.zeros(2, 4, 4, 4), w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"bias \[3\]"):
        ops.conv_transpose2d(torch.zeros(2, 4, 4, 4), w, torch.zeros(3))


# ----------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------


def _qkv(batch=(2, 3), L=5, S=7, E=4, Ev=6, seed=50):
    return (
        _randn(*batch, L, E, seed=seed),
        _randn(*batch, S, E, seed=seed + 1),
        _randn(*batch, S, Ev, seed=seed + 2),
    )


def _check_attention(q, k, v, **kw):
    _check_same(
        lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, **kw),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kw),
        [q, k, v],
    )


def test_sdpa_no_mask_and_scale():
    _check_attention(*_qkv())
    _check_attention(*_qkv(), scale=0.3)
    _check_attention(*_qkv(batch=()))  # unbatched [L, E]


@pytest.mark.parametrize("L,S", [(5, 5), (5, 7), (7, 4)])
def test_sdpa_causal(L, S):
    _check_attention(*_qkv(L=L, S=S), is_causal=True)


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (1, 3, 1, 7), (1, 7)])
def test_sdpa_boolean_mask_broadcasts(mask_shape):
    g = torch.Generator().manual_seed(60)
    mask = torch.rand(mask_shape, generator=g) > 0.3
    mask[..., 0] = True  # keep every row non-empty here (empty rows: next test)
    _check_attention(*_qkv(), attn_mask=mask)


def test_sdpa_float_mask():
    g = torch.Generator().manual_seed(61)
    mask = torch.randn(2, 1, 5, 7, generator=g, dtype=DTYPE)
    mask[0, 0, 1, 3] = float("-inf")
    _check_attention(*_qkv(), attn_mask=mask)


def test_sdpa_fully_masked_rows_give_zeros_not_nan():
    q, k, v = _qkv()
    bool_mask = torch.ones(5, 7, dtype=torch.bool)
    bool_mask[2] = False
    float_mask = torch.zeros(5, 7, dtype=DTYPE).masked_fill(~bool_mask, float("-inf"))
    for mask in (bool_mask, float_mask):
        out = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        assert torch.all(out[..., 2, :] == 0)
        grads = _grads(out, [q, k, v])
        assert all(torch.isfinite(g).all() for g in grads)
        _check_attention(q, k, v, attn_mask=mask)


def test_sdpa_broadcast_batch_dims():
    q = _randn(3, 5, 4, seed=62)  # [heads, L, E], shared over the batch
    k, v = _randn(2, 3, 7, 4, seed=63), _randn(2, 3, 7, 6, seed=64)
    _check_attention(q, k, v)


def test_attention_weights():
    q, k, v = _qkv()
    weights = ops.attention_weights(q, k, is_causal=True)
    assert weights.shape == (2, 3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5, dtype=DTYPE), **TOL)
    assert torch.all(weights.triu(diagonal=1) == 0)  # no peeking at later keys
    torch.testing.assert_close(weights @ v, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL)


def test_sdpa_gradcheck():
    q, k, v = _qkv(batch=(1,), L=3, S=4, E=2, Ev=2)
    mask = torch.tensor([[True, False, True, True]] * 3)
    assert torch.autograd.gradcheck(
        lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, attn_mask=mask), (q, k, v)
    )


def test_sdpa_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="not both"):
        ops.scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.bool), is_causal=True
        )
    k_bad = _randn(2, 3, 7, 3, seed=70)
    with pytest.raises(ValueError, match=_names_both(q, k_bad)):
        ops.scaled_dot_product_attention(q, k_bad, v)
    v_bad = _randn(2, 3, 6, 6, seed=71)
    with pytest.raises(ValueError, match=_names_both(k, v_bad)):
        ops.scaled_dot_product_attention(q, k, v_bad)
    with pytest.raises(ValueError, match=re.escape("[5, 6]")):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="broadcast"):
        ops.attention_weights(_randn(4, 5, 4, seed=72), _randn(3, 7, 4, seed=73))
