"""Checks for chapter 03 · Convolution from first principles.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with PyTorch itself (``F.conv2d`` shapes, ``F.unfold``,
autograd) as well as with the companion reference via ``expect_close``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from companion import conv_viz, ops
from companion.exercises import exercise, expect_close


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _expect_int(name: str, yours: object, expected: int) -> None:
    if isinstance(yours, bool) or not isinstance(yours, int):
        raise AssertionError(f"{name}: your value {yours!r} is a {type(yours).__name__}, expected the int {expected}")
    expect_close(name, yours, expected)


@exercise("03.1", "Output size of a convolution", reference=ops.conv_output_size)
def check_conv_output_size(fn: Callable[..., int]) -> str:
    first = fn(28, 5)
    _expect_int("conv_output_size(28, 5)", first, 24)
    cases = 0
    # a grid of settings, each compared with the shape F.conv2d actually produces
    for size, k, s, p, d in itertools.product((1, 5, 8, 28), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        if size + 2 * p < d * (k - 1) + 1:
            continue  # the dilated kernel does not fit: PyTorch raises, nothing to compare
        torch_out = F.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                             padding=(p, 0), dilation=(d, 1)).shape[2]
        _expect_int(f"conv_output_size({size}, {k}, stride={s}, padding={p}, dilation={d})",
                    fn(size, k, stride=s, padding=p, dilation=d), torch_out)
        cases += 1
    return f"conv_output_size(28, 5) = {first}; {cases} (size, kernel, stride, padding, dilation) settings match F.conv2d"


@exercise("03.2", "im2col for stride 1, no padding", reference=conv_viz.im2col)
def check_im2col(fn: Callable[..., torch.Tensor]) -> str:
    x = torch.arange(16.0).reshape(1, 4, 4)
    cols = fn(x, 3)
    expect_close("im2col(arange(16).reshape(1, 4, 4), 3)", cols, F.unfold(x[None], 3)[0])
    err = 0.0
    for seed, (shape, k) in enumerate([((3, 5, 6), 2), ((2, 7, 4), 3), ((1, 5, 5), 1), ((2, 4, 6), 4), ((4, 3, 3), 3)]):
        x = _rand(*shape, seed=seed)
        err = max(err, expect_close(f"im2col of a random {list(shape)} image, kernel {k}", fn(x, k),
                                    F.unfold(x[None], k)[0]))
    w = _rand(5, 2, 3, 3, seed=9)
    x = _rand(2, 7, 4, seed=1)
    y = (w.reshape(5, -1) @ fn(x, 3)).reshape(5, 5, 2)
    expect_close("W @ im2col(x) reshaped, versus F.conv2d(x, W)", y, F.conv2d(x[None], w)[0])
    return f"a 4×4 image with a 3×3 kernel gives a {tuple(cols.shape)} matrix; 6 inputs match F.unfold (max error {err:.1e}), and W @ cols = F.conv2d"


@exercise("03.3", "The weight gradient of a one-channel convolution", reference=conv_viz.weight_grad_2d)
def check_conv2d_weight_grad(fn: Callable[..., torch.Tensor]) -> str:
    err = 0.0
    for seed, (size, k) in enumerate([((5, 5), (3, 3)), ((6, 8), (2, 3)), ((4, 4), (1, 1)), ((3, 5), (3, 5)), ((9, 7), (4, 4))]):
        x = _rand(*size, seed=seed, dtype=torch.float64)
        w = _rand(*k, seed=seed + 10, dtype=torch.float64).requires_grad_()
        y = F.conv2d(x[None, None], w[None, None])[0, 0]
        g = _rand(*y.shape, seed=seed + 20, dtype=torch.float64)
        (autograd,) = torch.autograd.grad((y * g).sum(), w)  # PyTorch's own dL/dW for L = <y, g>
        err = max(err, expect_close(f"dL/dW for x {list(size)}, kernel {list(k)}", fn(x, g), autograd, atol=1e-8, rtol=1e-6))
    ones = fn(torch.ones(4, 4, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64))
    expect_close("x = ones(4, 4), grad_out = ones(2, 2): every tap saw 4 ones", ones, torch.full((3, 3), 4.0, dtype=torch.float64))
    return f"5 (input, kernel) shapes match autograd through F.conv2d, max error {err:.1e}"


@exercise("03.4", "Output size of a transposed convolution", reference=ops.conv_transpose_output_size)
def check_conv_transpose_output_size(fn: Callable[..., int]) -> str:
    first = fn(7, 4, stride=2, padding=1)
    _expect_int("conv_transpose_output_size(7, 4, stride=2, padding=1)", first, 14)
    cases = 0
    for size, k, s, p, d in itertools.product((1, 4, 7), (1, 2, 3, 4), (1, 2, 3), (0, 1), (1, 2)):
        for op in range(max(s, d)):
            out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            if out < 1:
                continue
            torch_out = F.conv_transpose2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                                           padding=(p, 0), output_padding=(op, 0), dilation=(d, 1)).shape[2]
            _expect_int(f"conv_transpose_output_size({size}, {k}, stride={s}, padding={p}, output_padding={op}, "
                        f"dilation={d})", fn(size, k, stride=s, padding=p, output_padding=op, dilation=d), torch_out)
            cases += 1
    return f"conv_transpose_output_size(7, 4, stride=2, padding=1) = {first} (doubles the size); {cases} settings match F.conv_transpose2d"
