"""Bad inputs fail at the door, with a message that names the argument.

Two parts:

1. the faults found so far, each reproduced (integer attention masks, empty batches in convolutions);
2. a table-driven fuzz test: every row is ``(callable, kwargs, expected exception, word)``; the call
   ``callable(**kwargs)`` must raise the exception (``ValueError`` or ``TypeError``) with a message that
   contains ``word`` as a whole word (``"x|input"``: either one). Rows come from a good call of each public
   function with one argument spoiled at a time (a list or an array for a tensor, a bool or a float for an
   int, ...), plus hand-written rows for what a spoiled argument cannot express (a wrong-shaped mask).

To cover another module, build its rows with :func:`row` (or :func:`spoiled_rows` from a :class:`Spec`) and
append them to ``CASES``; ``test_bad_input_is_refused`` runs every row, ``test_good_call_works`` every spec.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from companion import images, ops


def _t(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------------------------
# 1. the faults, reproduced
# ----------------------------------------------------------------------------------------------


def _qkv(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _t(2, 3, 5, 4, seed=1, dtype=dtype), _t(2, 3, 7, 4, seed=2, dtype=dtype), _t(2, 3, 7, 6, seed=3, dtype=dtype)


def test_integer_mask_is_refused_not_added_to_the_scores():
    """A 0/1 int mask used to be *added* to the scores (up to 0.77 off PyTorch's boolean-mask result)."""
    q, k, v = _qkv()
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(4)) > 0.5
    mask[:, 0] = True
    for dtype in (torch.int64, torch.int32, torch.uint8):
        with pytest.raises(TypeError, match=r"attn_mask.*\.bool\(\)"):
            ops.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(dtype))
        with pytest.raises(TypeError, match="attn_mask"):
            ops.attention_weights(q, k, attn_mask=mask.to(dtype))
    with pytest.raises(RuntimeError):  # PyTorch refuses it too
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask.long())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (3, 1, 7)])
def test_bool_and_float_masks_match_torch(dtype, mask_shape):
    q, k, v = _qkv(dtype)
    keep = torch.rand(mask_shape, generator=torch.Generator().manual_seed(5)) > 0.4
    keep[..., 0] = True
    additive = torch.randn(mask_shape, generator=torch.Generator().manual_seed(6), dtype=dtype)
    additive = additive.masked_fill(~keep, float("-inf"))
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    for mask in (keep, additive):
        ours = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **tol)
        weights = ops.attention_weights(q, k, attn_mask=mask)
        torch.testing.assert_close(weights @ v, ours, **tol)


def test_float_mask_of_another_dtype_and_mixed_qkv_dtypes_are_refused():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match=r"attn_mask.*torch\.float64.*attn_mask\.to\(torch\.float32\)"):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(5, 7, dtype=torch.float64))
    for args, named in [((q, k.double(), v), "k torch.float64"), ((q, k, v.double()), "v torch.float64"),
                        ((q.half(), k, v), "q torch.float16")]:
        with pytest.raises(TypeError, match=rf"q, k and v must share one dtype.*{named}"):
            ops.scaled_dot_product_attention(*args)


def test_mask_that_would_grow_the_batch_is_refused_like_torch():
    q, k, v = _qkv()
    mask = torch.ones(4, 2, 3, 5, 7, dtype=torch.bool)  # broadcasts with the scores, but to a larger shape
    with pytest.raises(RuntimeError):
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with pytest.raises(ValueError, match=re.escape("attn_mask [4, 2, 3, 5, 7]")):
        ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)


EMPTY_CASES = [
    ("conv2d", ops.conv2d, F.conv2d, (0, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
    ("conv2d-strided-grouped", ops.conv2d, F.conv2d, (0, 4, 9, 7), (6, 2, 3, 2),
     dict(stride=2, dilation=(2, 1), groups=2)),
    ("conv2d-same", ops.conv2d, F.conv2d, (0, 3, 8, 8), (4, 3, 5, 3), dict(padding="same")),
    ("conv_transpose2d", ops.conv_transpose2d, F.conv_transpose2d, (0, 4, 5, 5), (4, 3, 3, 3),
     dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d-grouped", ops.conv_transpose2d, F.conv_transpose2d, (0, 4, 5, 5), (4, 3, 3, 3),
     dict(groups=2)),
    ("conv2d_loops", ops.conv2d_loops, F.conv2d, (0, 3, 8, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("ours,theirs,x_shape,w_shape,kw", [c[1:] for c in EMPTY_CASES],
                         ids=[c[0] for c in EMPTY_CASES])
def test_empty_batch_gives_the_empty_result_pytorch_gives(ours, theirs, x_shape, w_shape, kw):
    """A batch of 0 images used to crash in a reshape; PyTorch returns [0, C_out, Ho, Wo]."""
    results = []
    for fn in (ours, theirs):
        x = torch.zeros(x_shape, requires_grad=True)
        w = _t(*w_shape, seed=7).requires_grad_()
        channels = w_shape[0] if fn in (ops.conv2d, ops.conv2d_loops, F.conv2d) else w_shape[1] * kw.get("groups", 1)
        b = _t(channels, seed=8).requires_grad_()
        y = fn(x, w, b, **kw)
        y.sum().backward()
        results.append((y, x.grad, w.grad, b.grad))
    (y, gx, gw, gb), (y_ref, gx_ref, gw_ref, gb_ref) = results
    assert y.shape == y_ref.shape and y.dtype == y_ref.dtype
    assert gx.shape == gx_ref.shape
    torch.testing.assert_close(gw, gw_ref)  # zeros: no image, no gradient
    torch.testing.assert_close(gb, gb_ref)


# ----------------------------------------------------------------------------------------------
# 2. the table
# ----------------------------------------------------------------------------------------------


def row(id: str, fn: Callable[..., Any], kwargs: dict[str, Any], exc: type[Exception], word: str):
    """One row: ``fn(**kwargs)`` raises ``exc`` with ``word`` (or one of ``"a|b"``) in the message."""
    return pytest.param(fn, kwargs, exc, word, id=id)


@dataclass
class Spec:
    """A good call of ``fn`` and which of its arguments are tensors, ints or int pairs.

    ``tensors``: float tensor arguments (``optional`` ones may be None); ``ints`` / ``pairs``: argument name ->
    its minimum (None: any int). ``skip``: ``(argument, spoiler label)`` pairs that are legal for this function.
    """

    name: str
    fn: Callable[..., Any]
    good: dict[str, Any]
    tensors: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    ints: dict[str, int | None] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    skip: tuple[tuple[str, str], ...] = ()


def _tensor_spoilers(t: torch.Tensor) -> list[tuple[str, object, type[Exception]]]:
    return [
        ("list", t.tolist(), TypeError),
        ("ndarray", t.numpy(), TypeError),
        ("bool-tensor", t > 0, TypeError),
        ("int64-tensor", t.long(), TypeError),
        ("float64-tensor", t.double(), TypeError),  # the other tensors stay float32
        ("string", "x", TypeError),
    ]


def _int_spoilers(minimum: int | None) -> list[tuple[str, object, type[Exception]]]:
    spoilers: list[tuple[str, object, type[Exception]]] = [
        ("float", 1.5, TypeError),
        ("bool", True, TypeError),
        ("string", "2", TypeError),
        ("none", None, TypeError),
        ("tensor", torch.tensor(2), TypeError),
    ]
    if minimum is not None:
        spoilers.append(("below-minimum", minimum - 1, ValueError))
    return spoilers


def _pair_spoilers(minimum: int) -> list[tuple[str, object, type[Exception]]]:
    return _int_spoilers(minimum) + [
        ("triple", (1, 1, 1), ValueError),
        ("empty-tuple", (), ValueError),
        ("pair-with-float", (1, 1.5), TypeError),
        ("pair-with-bool", (1, True), TypeError),
        ("pair-below-minimum", (minimum, minimum - 1), ValueError),
    ]


def spoiled_rows(spec: Spec) -> list:
    """Every row ``spec`` yields: its good call with one argument spoiled."""
    rows = []
    spoil: list[tuple[str, list[tuple[str, object, type[Exception]]]]] = []
    for name in spec.tensors:
        spoilers = _tensor_spoilers(spec.good[name])
        if name not in spec.optional:
            spoilers.append(("none", None, TypeError))
        spoil.append((name, spoilers))
    spoil += [(name, _int_spoilers(minimum)) for name, minimum in spec.ints.items()]
    spoil += [(name, _pair_spoilers(minimum)) for name, minimum in spec.pairs.items()]
    for name, spoilers in spoil:
        for label, value, exc in spoilers:
            if (name, label) not in spec.skip:
                rows.append(row(f"{spec.name}-{name}-{label}", spec.fn, {**spec.good, name: value}, exc, name))
    return rows


X, W, B = _t(2, 3, 8, 8, seed=10), _t(4, 3, 3, 3, seed=11), _t(4, seed=12)
XT, BT = _t(2, 4, 5, 5, seed=13), _t(3, seed=14)  # conv_transpose2d: W is [C_in 4, C_out 3, 3, 3]
Q, K, V = _t(2, 5, 4, seed=15), _t(2, 7, 4, seed=16), _t(2, 7, 6, seed=17)

OPS_SPECS = [
    Spec("conv2d", ops.conv2d, dict(x=X, weight=W, bias=B, stride=1, padding=1, dilation=1, groups=1),
         tensors=("x", "weight", "bias"), optional=("bias",), ints={"groups": 1},
         pairs={"stride": 1, "padding": 0, "dilation": 1},
         skip=(("padding", "string"),)),  # a string padding is "valid"/"same": its own row below
    Spec("conv_transpose2d", ops.conv_transpose2d,
         dict(x=XT, weight=W, bias=BT, stride=2, padding=1, output_padding=1, groups=1, dilation=1),
         tensors=("x", "weight", "bias"), optional=("bias",), ints={"groups": 1},
         pairs={"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1}),
    Spec("conv2d_loops", ops.conv2d_loops, dict(x=X, weight=W, bias=B, stride=1, padding=1),
         tensors=("x", "weight", "bias"), optional=("bias",), ints={"stride": 1, "padding": 0}),
    Spec("conv_output_size", ops.conv_output_size, dict(size=8, kernel=3, stride=2, padding=1, dilation=1),
         ints={"size": None, "kernel": 1, "stride": 1, "padding": 0, "dilation": 1}),
    Spec("conv_transpose_output_size", ops.conv_transpose_output_size,
         dict(size=4, kernel=3, stride=2, padding=1, output_padding=1, dilation=1),
         ints={"size": None, "kernel": 1, "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1}),
    Spec("attention_weights", ops.attention_weights, dict(q=Q, k=K, attn_mask=None, is_causal=False, scale=None),
         tensors=("q", "k")),
    Spec("scaled_dot_product_attention", ops.scaled_dot_product_attention,
         dict(q=Q, k=K, v=V, attn_mask=None, is_causal=False, scale=None), tensors=("q", "k", "v")),
]

_BOOL_MASK = torch.ones(5, 7, dtype=torch.bool)
OPS_CASES = [r for spec in OPS_SPECS for r in spoiled_rows(spec)]
for _name, _fn, _good in [("attention_weights", ops.attention_weights, dict(q=Q, k=K)),
                          ("sdpa", ops.scaled_dot_product_attention, dict(q=Q, k=K, v=V))]:
    OPS_CASES += [
        row(f"{_name}-attn_mask-int64", _fn, {**_good, "attn_mask": _BOOL_MASK.long()}, TypeError, "attn_mask"),
        row(f"{_name}-attn_mask-uint8", _fn, {**_good, "attn_mask": _BOOL_MASK.to(torch.uint8)}, TypeError,
            "attn_mask"),
        row(f"{_name}-attn_mask-float64", _fn, {**_good, "attn_mask": _BOOL_MASK.double()}, TypeError, "attn_mask"),
        row(f"{_name}-attn_mask-list", _fn, {**_good, "attn_mask": _BOOL_MASK.tolist()}, TypeError, "attn_mask"),
        row(f"{_name}-attn_mask-ndarray", _fn, {**_good, "attn_mask": _BOOL_MASK.numpy()}, TypeError, "attn_mask"),
        row(f"{_name}-attn_mask-wrong-keys", _fn, {**_good, "attn_mask": torch.ones(5, 6, dtype=torch.bool)},
            ValueError, "attn_mask"),
        row(f"{_name}-attn_mask-wrong-batch", _fn, {**_good, "attn_mask": torch.ones(3, 5, 7, dtype=torch.bool)},
            ValueError, "attn_mask"),
        row(f"{_name}-attn_mask-grows-batch", _fn,
            {**_good, "attn_mask": torch.ones(4, 2, 5, 7, dtype=torch.bool)}, ValueError, "attn_mask"),
        row(f"{_name}-attn_mask-with-is_causal", _fn, {**_good, "attn_mask": _BOOL_MASK, "is_causal": True},
            ValueError, "attn_mask"),
        row(f"{_name}-is_causal-string", _fn, {**_good, "is_causal": "yes"}, TypeError, "is_causal"),
        row(f"{_name}-is_causal-int", _fn, {**_good, "is_causal": 1}, TypeError, "is_causal"),
        row(f"{_name}-scale-string", _fn, {**_good, "scale": "0.5"}, TypeError, "scale"),
        row(f"{_name}-scale-bool", _fn, {**_good, "scale": True}, TypeError, "scale"),
        row(f"{_name}-scale-inf", _fn, {**_good, "scale": math.inf}, ValueError, "scale"),
        row(f"{_name}-scale-nan", _fn, {**_good, "scale": math.nan}, ValueError, "scale"),
        row(f"{_name}-k-embedding-size", _fn, {**_good, "k": _t(2, 7, 3)}, ValueError, "k"),
        row(f"{_name}-q-1d", _fn, {**_good, "q": _t(4)}, ValueError, "q"),
    ]
OPS_CASES += [
    row("sdpa-v-keys", ops.scaled_dot_product_attention, dict(q=Q, k=K, v=_t(2, 6, 6)), ValueError, "v"),
    row("conv2d-padding-unknown-string", ops.conv2d, dict(x=X, weight=W, padding="full"), ValueError, "padding"),
    row("conv2d-same-strided", ops.conv2d, dict(x=X, weight=W, padding="same", stride=2), ValueError, "padding"),
    row("conv2d-x-2d", ops.conv2d, dict(x=_t(8, 8), weight=W), ValueError, "x|input"),
    row("conv2d-channels", ops.conv2d, dict(x=_t(2, 2, 8, 8), weight=W), ValueError, "weight"),
    row("conv2d-groups-split", ops.conv2d, dict(x=X, weight=W, groups=2), ValueError, "groups"),
    row("conv2d-kernel-too-large", ops.conv2d, dict(x=_t(1, 3, 2, 2), weight=W), ValueError, "weight"),
    row("conv2d-bias-shape", ops.conv2d, dict(x=X, weight=W, bias=_t(3)), ValueError, "bias"),
    row("conv2d-weight-3d", ops.conv2d, dict(x=X, weight=_t(4, 3, 3)), ValueError, "weight"),
    row("conv_transpose2d-channels", ops.conv_transpose2d, dict(x=X, weight=W), ValueError, "weight"),
    row("conv_transpose2d-output_padding-too-big", ops.conv_transpose2d,
        dict(x=XT, weight=W, stride=2, output_padding=2), ValueError, "output_padding"),
    row("conv2d_loops-kernel-too-large", ops.conv2d_loops, dict(x=_t(1, 3, 2, 2), weight=W), ValueError, "weight"),
    row("conv2d_loops-channels", ops.conv2d_loops, dict(x=_t(2, 2, 8, 8), weight=W), ValueError, "weight"),
]

# images.py, lightly: a non-tensor image for every function that takes one, and the non-tensor arguments.
IMG, IMG1 = _t(3, 8, 8, seed=20).sigmoid(), _t(1, 8, 8, seed=21).sigmoid()
IMAGE_FUNCTIONS = [
    (images.to_float, {}), (images.to_uint8, {}), (images.hwc_to_chw, {}), (images.chw_to_hwc, {}),
    (images.rgb_to_gray, {}), (images.rgb_to_hsv, {}), (images.hsv_to_rgb, {}), (images.rgb_to_ycbcr, {}),
    (images.ycbcr_to_rgb, {}), (images.histogram, {}), (images.equalize, {}), (images.decimate, {"factor": 2}),
    (images.resize_nearest, {"size": 4}), (images.resize_bilinear, {"size": 4}),
    (images.downsample_area, {"factor": 2}), (images.upsample, {"factor": 2}),
    (images.filter2d, {"kernel": torch.ones(3, 3) / 9}), (images.filter2d_direct, {"kernel": torch.ones(3, 3) / 9}),
    (images.blur, {"sigma": 1.0}), (images.sobel, {}), (images.sobel_magnitude, {}),
    (images.downsample, {"factor": 2}), (images.ideal_lowpass, {"cutoff": 0.25}),
    (images.aliased_fraction, {"factor": 2}), (images.aliasing_error, {"factor": 2}),
]
IMAGES_CASES = [
    row(f"images.{fn.__name__}-img-{label}", fn, {"img": bad, **kw}, TypeError, "img|image|Tensor")
    for fn, kw in IMAGE_FUNCTIONS
    for label, bad in [("ndarray", np.zeros((3, 8, 8), dtype=np.float32)), ("list", [[[0.0]]])]
]
IMAGES_CASES += [
    row("images.to_float-float-image", images.to_float, dict(img=IMG), ValueError, "uint8"),
    row("images.to_uint8-int-image", images.to_uint8, dict(img=torch.zeros(3, 4, 4, dtype=torch.int64)), ValueError,
        "floating"),
    row("images.to_uint8-out-of-range", images.to_uint8, dict(img=IMG + 1), ValueError, "clamp"),
    row("images.rgb_to_gray-one-channel", images.rgb_to_gray, dict(img=IMG1), ValueError, "channel"),
    row("images.rgb_to_gray-hwc", images.rgb_to_gray, dict(img=IMG.permute(1, 2, 0)), ValueError, "hwc_to_chw"),
    row("images.rgb_to_gray-standard", images.rgb_to_gray, dict(img=IMG, standard="2020"), ValueError, "standard"),
    row("images.rgb_to_ycbcr-standard", images.rgb_to_ycbcr, dict(img=IMG, standard=709), ValueError, "standard"),
    row("images.luma_weights-missing-keys", images.luma_weights, dict(primaries={"r": (0.6, 0.3)}), ValueError,
        "primaries"),
    row("images.histogram-bins-0", images.histogram, dict(img=IMG, bins=0), ValueError, "bins"),
    row("images.histogram-bins-float", images.histogram, dict(img=IMG, bins=2.5), ValueError, "bins"),
    row("images.equalize-bins-1", images.equalize, dict(img=IMG, bins=1), ValueError, "bins"),
    row("images.decimate-factor-0", images.decimate, dict(img=IMG, factor=0), ValueError, "factor"),
    row("images.decimate-factor-bool", images.decimate, dict(img=IMG, factor=True), ValueError, "factor"),
    row("images.decimate-factor-float", images.decimate, dict(img=IMG, factor=1.5), ValueError, "factor"),
    row("images.resize_nearest-size-0", images.resize_nearest, dict(img=IMG, size=0), ValueError, "size"),
    row("images.resize_bilinear-size-triple", images.resize_bilinear, dict(img=IMG, size=(2, 2, 2)), ValueError,
        "size"),
    row("images.downsample_area-indivisible", images.downsample_area, dict(img=IMG, factor=3), ValueError, "factor"),
    row("images.upsample-mode", images.upsample, dict(img=IMG, factor=2, mode="cubic"), ValueError, "mode"),
    row("images.box_kernel-size-0", images.box_kernel, dict(size=0), ValueError, "size"),
    row("images.gaussian_kernel1d-sigma-0", images.gaussian_kernel1d, dict(sigma=0.0), ValueError, "sigma"),
    row("images.gaussian_kernel1d-sigma-string", images.gaussian_kernel1d, dict(sigma="1"), ValueError, "sigma"),
    row("images.gaussian_kernel-size-even", images.gaussian_kernel, dict(sigma=1.0, size=4), ValueError, "size"),
    row("images.filter2d-kernel-even", images.filter2d, dict(img=IMG, kernel=torch.ones(2, 2)), ValueError,
        "kernel"),
    row("images.filter2d-kernel-ndarray", images.filter2d, dict(img=IMG, kernel=np.ones((3, 3))), TypeError,
        "kernel|Tensor"),
    row("images.filter2d-padding", images.filter2d, dict(img=IMG, kernel=torch.ones(3, 3), padding="wrap"),
        ValueError, "padding"),
    row("images.blur-sigma-negative", images.blur, dict(img=IMG, sigma=-1.0), ValueError, "sigma"),
    row("images.zone_plate-size-1", images.zone_plate, dict(size=1), ValueError, "size"),
    row("images.zone_plate-f_max-0", images.zone_plate, dict(f_max=0.0), ValueError, "f_max"),
    row("images.zone_plate-f_max-string", images.zone_plate, dict(f_max="0.5"), TypeError, "f_max"),
    row("images.gaussian_frequency_response-sigma-string", images.gaussian_frequency_response,
        dict(sigma="1", freq=0.1), TypeError, "sigma"),
    row("images.antialias_sigma-factor-0", images.antialias_sigma, dict(factor=0), ValueError, "factor"),
    row("images.antialias_sigma-attenuation-1", images.antialias_sigma, dict(factor=2, attenuation=1.0), ValueError,
        "attenuation"),
    row("images.antialias_sigma-attenuation-string", images.antialias_sigma, dict(factor=2, attenuation="half"),
        TypeError, "attenuation"),
    row("images.downsample-sigma-string", images.downsample, dict(img=IMG, factor=2, sigma="wide"), ValueError,
        "sigma"),
    row("images.downsample-sigma-list", images.downsample, dict(img=IMG, factor=2, sigma=[1.0]), TypeError, "sigma"),
    row("images.aliased_fraction-sigma-string", images.aliased_fraction, dict(img=IMG, factor=2, sigma="wide"),
        ValueError, "sigma"),
    row("images.ideal_lowpass-cutoff-1", images.ideal_lowpass, dict(img=IMG, cutoff=1.0), ValueError, "cutoff"),
    row("images.ideal_lowpass-cutoff-string", images.ideal_lowpass, dict(img=IMG, cutoff="low"), TypeError,
        "cutoff"),
    row("images.aliasing_error-factor-1", images.aliasing_error, dict(img=IMG, factor=1), ValueError, "factor"),
]

#: Every row; other modules append theirs (``CASES += [row(...), ...]`` or ``spoiled_rows(Spec(...))``).
CASES = OPS_CASES + IMAGES_CASES


@pytest.mark.parametrize("fn,kwargs,exc,word", CASES)
def test_bad_input_is_refused(fn, kwargs, exc, word):
    with pytest.raises(exc) as info:
        fn(**kwargs)
    assert info.type in (ValueError, TypeError), f"{info.type.__name__} is neither a ValueError nor a TypeError"
    message = str(info.value)
    assert re.search(rf"\b({word})\b", message), f"the message does not name {word!r}: {message}"


@pytest.mark.parametrize("spec", OPS_SPECS, ids=[s.name for s in OPS_SPECS])
def test_good_call_works(spec):
    """The unspoiled call of every spec runs, so each spoiled row fails because of its one change."""
    spec.fn(**spec.good)


#: The autograd Functions behind conv2d / conv_transpose2d take arguments those two have already checked.
ENGINES = {ops.Conv2dFunction, ops.ConvTranspose2dFunction}


def test_every_public_op_has_a_spec():
    covered = {spec.fn for spec in OPS_SPECS}
    public = {getattr(ops, name) for name in ops.__all__} - ENGINES
    assert public <= covered, f"no Spec for {sorted(f.__name__ for f in public - covered)}"


def test_every_public_image_function_has_a_row():
    called = {p.values[0] for p in IMAGES_CASES}
    public = {getattr(images, name) for name in images.__all__ if callable(getattr(images, name))}
    assert public <= called, f"no row for {sorted(f.__name__ for f in public - called)}"
