"""Checks for chapter 09 · Autoencoders.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with PyTorch itself or ``companion.autoencoder`` via
``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from companion import autoencoder
from companion.exercises import exercise, expect_close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _low_rank(n: int, d: int, rank: int, seed: int) -> torch.Tensor:
    """``[n, d]`` data near a ``rank``-dimensional affine subspace, plus a little noise and an offset."""
    g = _gen(seed)
    a, b = torch.randn(n, rank, generator=g), torch.randn(rank, d, generator=g)
    return a @ b + 0.01 * torch.randn(n, d, generator=g) + torch.randn(d, generator=g)


@exercise("09.1", "PCA reconstruction via the SVD", reference=autoencoder.pca_reconstruct)
def check_pca_reconstruct(fn: Callable[..., torch.Tensor]) -> str:
    x = _low_rank(40, 12, 3, seed=0)
    out = fn(x, 3)
    expect_close("pca_reconstruct(x [40, 12], k=3)", out, autoencoder.pca_reconstruct(x, 3), atol=1e-4)
    for seed, (n, d, k) in enumerate([(30, 8, 1), (50, 20, 7), (9, 16, 4)], start=1):
        x = _low_rank(n, d, 5, seed=seed)
        expect_close(f"pca_reconstruct(x [{n}, {d}], k={k})", fn(x, k), autoencoder.pca_reconstruct(x, k), atol=1e-4)
    x = _low_rank(10, 6, 6, seed=7)
    expect_close("k = D keeps everything: the reconstruction is x itself", fn(x, 6), x, atol=1e-4)
    x = _low_rank(200, 10, 2, seed=8)
    shift = torch.full((1, 10), 100.0)
    expect_close("shifting the data shifts the reconstruction (did you centre?)", fn(x + shift, 2),
                 autoencoder.pca_reconstruct(x, 2) + shift, atol=1e-3)
    err = (out - _low_rank(40, 12, 3, seed=0)).pow(2).mean()  # what the 3 components leave out: only the noise
    return f"matches on 6 inputs (k = 1 to D, N < D, a large offset); rank-3 data, k = 3: MSE {err.item():.1e}"


@exercise("09.2", "Output padding of a transposed convolution", reference=autoencoder.output_padding_for)
def check_output_padding(fn: Callable[..., int]) -> str:
    cases = [(4, 7, 3, 2, 1), (7, 14, 3, 2, 1), (14, 28, 3, 2, 1), (7, 14, 4, 2, 1), (5, 16, 3, 3, 0),
             (5, 17, 3, 3, 0), (10, 10, 3, 1, 1), (3, 8, 2, 3, 0)]
    for size, target, k, s, p in cases:
        yours = fn(size, target, k, s, p)
        expected = autoencoder.output_padding_for(size, target, k, s, p)
        expect_close(f"output_padding for {size} -> {target} (kernel {k}, stride {s}, padding {p})", yours, expected)
        layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=int(yours))
        got = layer(torch.zeros(1, 1, size, size)).shape[-1]
        expect_close(f"nn.ConvTranspose2d with your output_padding maps {size} to", got, target)
    try:
        fn(4, 9, 3, 2, 1)  # 4 -> 7 or 8 only
    except ValueError:
        pass
    else:
        raise AssertionError("4 -> 9 with kernel 3, stride 2, padding 1 is impossible (only 7 or 8): "
                             "your function should raise ValueError")
    return "8 (size, target) pairs reach their target in nn.ConvTranspose2d (e.g. 4 -> 7: 0, 7 -> 14: 1); 4 -> 9 raises"


@exercise("09.3", "Masking noise", reference=autoencoder.mask_pixels)
def check_mask_pixels(fn: Callable[..., torch.Tensor]) -> str:
    x = torch.rand(2, 1, 5, 5, generator=_gen(0))
    out = fn(x, 0.3, _gen(1))
    expect_close("mask_pixels(x [2, 1, 5, 5], 0.3, seed 1)", out, autoencoder.mask_pixels(x, 0.3, _gen(1)), atol=0.0,
                 rtol=0.0)
    for seed, (shape, level) in enumerate([((4, 1, 28, 28), 0.5), ((3, 7), 0.9), ((1, 3, 4, 4), 0.25)], start=2):
        x = torch.rand(*shape, generator=_gen(seed)) + 0.1  # no exact zeros: every zero comes from the mask
        expect_close(f"mask_pixels(x {list(shape)}, {level})", fn(x, level, _gen(seed)),
                     autoencoder.mask_pixels(x, level, _gen(seed)), atol=0.0, rtol=0.0)
    x = torch.rand(3, 10, generator=_gen(9)) + 0.1
    expect_close("level 0 changes nothing", fn(x, 0.0, _gen(3)), x, atol=0.0, rtol=0.0)
    expect_close("level 1 masks everything", fn(x, 1.0, _gen(3)), torch.zeros_like(x), atol=0.0, rtol=0.0)
    big = fn(torch.ones(100_000), 0.3, _gen(4))
    frac = 1.0 - big.mean().item()
    expect_close("fraction of masked pixels at level 0.3", frac, 0.3, atol=0.01)
    return f"identical to the reference on 6 inputs (level 0 to 1); level 0.3 masked {frac:.1%} of 100,000 pixels"
