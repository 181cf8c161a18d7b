"""Checks for chapter 01 · Images as tensors.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with ``companion.images`` via ``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from companion import images
from companion.exercises import exercise, expect_close


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@exercise("01.1", "RGB to grayscale luma", reference=images.rgb_to_gray)
def check_to_grayscale(fn: Callable[..., torch.Tensor]) -> str:
    primaries = torch.eye(3)[:, :, None, None]  # [3 images, 3 channels, 1, 1]: pure red, green, blue
    out = fn(primaries)
    expect_close("luma of pure red, green, blue", out, images.rgb_to_gray(primaries))
    grey = torch.full((3, 4, 5), 0.4)
    expect_close("luma of a neutral grey (R = G = B = 0.4)", fn(grey), images.rgb_to_gray(grey))
    err = 0.0
    for seed, shape in enumerate([(3, 6, 7), (2, 3, 5, 4), (3, 1, 1)]):
        x = _rand(*shape, seed=seed)
        err = max(err, expect_close(f"luma of a random image {list(shape)}", fn(x), images.rgb_to_gray(x)))
    k = out[:, 0, 0, 0].tolist()
    return f"red, green, blue → {k[0]:.3f}, {k[1]:.3f}, {k[2]:.3f}; 5 images, max error {err:.1e}"


@exercise("01.2", "Area downsampling with a reshape", reference=images.downsample_area)
def check_downsample_area(fn: Callable[..., torch.Tensor]) -> str:
    x = torch.arange(16.0).reshape(1, 4, 4)
    expect_close("4x4 ramp downsampled by 2", fn(x, 2), images.downsample_area(x, 2))
    err = 0.0
    for seed, (shape, f) in enumerate([((1, 6, 6), 3), ((2, 3, 8, 12), 4), ((3, 10, 4), 2), ((2, 1, 5, 5), 1)]):
        x = _rand(*shape, seed=seed)
        ref = F.avg_pool2d(x, f) if len(shape) == 4 else F.avg_pool2d(x[None], f)[0]
        err = max(err, expect_close(f"{list(shape)} downsampled by {f}", fn(x, f), ref))
    return f"matches F.avg_pool2d on 5 inputs (factors 1-4, batched and not), max error {err:.1e}"


@exercise("01.3", "A normalised Gaussian kernel", reference=images.gaussian_kernel)
def check_gaussian_kernel(fn: Callable[..., torch.Tensor]) -> str:
    k = fn(1.0, 5)
    expect_close("gaussian_kernel(1.0, 5)", k, images.gaussian_kernel(1.0, 5))
    for sigma, size in [(0.5, 3), (2.0, 9), (1.5, 7), (3.0, 1), (0.8, 11)]:
        k2 = fn(sigma, size)
        expect_close(f"sum of gaussian_kernel({sigma}, {size})", float(k2.sum()), 1.0)
        expect_close(f"gaussian_kernel({sigma}, {size})", k2, images.gaussian_kernel(sigma, size), atol=1e-6)
    return f"6 (σ, size) pairs match; centre of (1.0, 5) = {k[2, 2].item():.4f}, every kernel sums to 1"


@exercise("01.4", "Sobel gradient magnitude", reference=images.sobel_magnitude)
def check_sobel_magnitude(fn: Callable[..., torch.Tensor]) -> str:
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(9.0), indexing="ij")
    ramp = (0.03 * cols + 0.04 * rows)[None]  # |∇| = 0.05 away from the border
    out = fn(ramp)
    expect_close("magnitude on the ramp 0.03·col + 0.04·row", out, images.sobel_magnitude(ramp))
    step = (cols >= 4).float()[None, None]
    expect_close("magnitude on a vertical step edge", fn(step), images.sobel_magnitude(step))
    flat = torch.full((1, 5, 5), 0.7)
    expect_close("magnitude on a flat image", fn(flat), torch.zeros(1, 5, 5))
    for seed, shape in enumerate([(2, 1, 6, 7), (3, 5, 6)]):
        x = _rand(*shape, seed=seed)
        expect_close(f"magnitude of a random image {list(shape)}", fn(x), images.sobel_magnitude(x))
    return f"ramp interior |∇| = {out[0, 4, 4].item():.4f} (exact 0.05); step, flat and random images match"
