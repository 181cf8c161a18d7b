"""Exercise checks for chapter 04 · CNNs: LeNet, pooling and receptive fields.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including edge cases,
and compares with PyTorch (``F.max_pool2d``, ``nn.Conv2d``'s own parameter count) or with
``companion.cnn`` and closed forms through :func:`expect_close`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import cnn
from . import exercise, expect_close


@exercise("04.1", "2×2 max pooling from scratch", reference=cnn.max_pool2d)
def check_max_pool2x2(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(41)
    negative = -torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # every value < 0: padding with 0 or a ReLU shows
    expect_close("max pooling of a 4x4 block of negative numbers", fn(negative.clone()), F.max_pool2d(negative, 2))
    cases = [
        ("a batch [2, 3, 6, 8]", torch.randn(2, 3, 6, 8, generator=g)),
        ("an odd-sized batch [1, 2, 5, 7] (the last row and column are dropped)", torch.randn(1, 2, 5, 7, generator=g)),
        ("one unbatched image [3, 4, 6]", torch.randn(3, 4, 6, generator=g)),
        ("the smallest input [1, 1, 2, 2]", torch.randn(1, 1, 2, 2, generator=g)),
    ]
    worst = 0.0
    for name, x in cases:
        expected = F.max_pool2d(x[None] if x.ndim == 3 else x, 2)
        expected = expected[0] if x.ndim == 3 else expected
        worst = max(worst, expect_close(f"max pooling of {name}", fn(x.clone()), expected))
    # The gradient: each output's gradient goes to the one input that won its window.
    x = torch.randn(2, 3, 6, 7, generator=g)
    weights = torch.randn(2, 3, 3, 3, generator=g)
    mine, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (fn(mine) * weights).sum().backward()
    (F.max_pool2d(ref, 2) * weights).sum().backward()
    if mine.grad is None:
        raise AssertionError("no gradient reached the input: keep the computation in torch (autograd)")
    expect_close("gradient of (max_pool2x2(x) * w).sum() w.r.t. x", mine.grad, ref.grad)
    return f"matches F.max_pool2d(x, 2) on 5 inputs incl. negatives and odd sizes, and its gradient " \
           f"(max error {worst:.1e})"


def _rf_cases() -> list[tuple[str, list[tuple[int, int, int]]]]:
    return [
        ("LeNet-5: conv5 pad 2, pool 2, conv5, pool 2", [(5, 1, 2), (2, 2, 0), (5, 1, 0), (2, 2, 0)]),
        ("one 3x3 convolution", [(3, 1, 1)]),
        ("VGG block: conv3, conv3, pool2, conv3, conv3, pool2",
         [(3, 1, 1), (3, 1, 1), (2, 2, 0), (3, 1, 1), (3, 1, 1), (2, 2, 0)]),
        ("ResNet stem: conv7 stride 2 pad 3, max-pool 3 stride 2 pad 1", [(7, 2, 3), (3, 2, 1)]),
        ("a 1x1 convolution after a strided 4x4 one", [(4, 2, 1), (1, 1, 0)]),
        ("no layers at all", []),
    ]


@exercise("04.2", "The receptive field of a layer stack", reference=cnn.receptive_field)
def check_receptive_field(fn: Callable[[list[tuple[int, int, int]]], list[tuple[int, int, float]]]) -> str:
    lenet = None
    for name, layers in _rf_cases():
        yours = fn(list(layers))
        expected = cnn.receptive_field(layers)
        if not isinstance(yours, (list, tuple)) or len(yours) != len(expected):
            n = len(yours) if isinstance(yours, (list, tuple)) else type(yours).__name__
            raise AssertionError(f"{name}: your result has {n} entries / expected one (r, j, start) per layer, "
                                 f"{len(expected)}")
        if expected:
            expect_close(f"(r, j, start) per layer for {name}", torch.tensor(yours, dtype=torch.float64),
                         torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0)
        if lenet is None:
            lenet = yours
    for depth in (1, 4, 10):
        r = fn([(3, 1, 1)] * depth)[-1][0]
        expect_close(f"receptive field of {depth} stacked 3x3 convolutions (closed form 2n + 1)", int(r), 2 * depth + 1)
    return f"6 stacks match; LeNet-5 after pool2 sees r = {lenet[-1][0]} pixels, units j = {lenet[-1][1]} apart; " \
           f"n stacked 3x3 convolutions see 2n + 1"


@exercise("04.3", "Parameters of a convolution layer", reference=cnn.conv2d_num_params)
def check_conv2d_num_params(fn: Callable[..., int]) -> str:
    cases = [((1, 6, 5), True), ((6, 16, 5), True), ((3, 64, (3, 5)), True), ((16, 32, 1), False),
             ((1, 1, 1), True), ((64, 128, 3), False)]
    found = []
    for (c_in, c_out, k), bias in cases:
        expected = sum(p.numel() for p in nn.Conv2d(c_in, c_out, k, bias=bias).parameters())
        yours = fn(c_in, c_out, k, bias)
        if isinstance(yours, torch.Tensor) and yours.numel() == 1:
            yours = yours.item()
        expect_close(f"conv2d_num_params({c_in}, {c_out}, {k}, bias={bias}) vs nn.Conv2d's parameter count",
                     yours, expected)
        found.append(yours)
    return f"6 layers match nn.Conv2d: LeNet's conv1 has {found[0]}, conv2 {found[1]:,} parameters"
