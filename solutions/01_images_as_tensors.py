"""Solutions · 01 Images as tensors

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def to_grayscale(img: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of an RGB image: Y' = 0.299 R + 0.587 G + 0.114 B.

    Args:
        img: float RGB image [3, H, W] or batch [N, 3, H, W], values in [0, 1].

    Returns:
        [1, H, W] or [N, 1, H, W]: the channel dimension is kept, with size 1.
    """
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device)
    # broadcast the weights along channels: [3] -> [3, 1, 1] lines up with [..., 3, H, W]
    return (img * weights[:, None, None]).sum(dim=-3, keepdim=True)


def downsample_area(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Average every factor x factor block of pixels (no loops: use one reshape and a mean).

    Args:
        img: float image [C, H, W] or batch [N, C, H, W]; H and W are divisible by factor.
        factor: block size f >= 1.

    Returns:
        [..., H // f, W // f]
    """
    *lead, h, w = img.shape
    # split each spatial axis into (blocks, pixels within a block): [..., H/f, f, W/f, f]
    blocks = img.reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(dim=(-3, -1))


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """A size x size Gaussian kernel with standard deviation sigma (pixels), entries summing to 1.

    G[i, j] is proportional to exp(-((i - c)^2 + (j - c)^2) / (2 sigma^2)), with centre c = (size - 1) / 2.

    Args:
        sigma: standard deviation in pixels, > 0.
        size: odd side length.

    Returns:
        float32 [size, size]
    """
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2  # offsets from the centre
    g = torch.exp(-(i**2) / (2 * sigma**2))  # 1-D Gaussian
    kernel = g[:, None] * g[None, :]  # exp(-a) exp(-b) = exp(-(a + b)): the 2-D kernel is an outer product
    return (kernel / kernel.sum()).float()


def sobel_magnitude(img: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude sqrt(g_x^2 + g_y^2), every channel on its own.

    g_x correlates the image with K_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] / 8 (what F.conv2d computes) and
    g_y with K_y = K_x transposed; pad by one pixel with mode "reflect" so the output keeps the input's size.

    Args:
        img: float image [C, H, W] or batch [N, C, H, W].

    Returns:
        same shape as img, >= 0.
    """
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=img.dtype, device=img.device) / 8
    weight = torch.stack([kx, kx.T])[:, None]  # [2, 1, 3, 3]: two output channels, g_x and g_y
    h, w = img.shape[-2:]
    x = img.reshape(-1, 1, h, w)  # every channel becomes its own one-channel image
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    g = F.conv2d(x, weight)  # [N*C, 2, H, W]
    return torch.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2).reshape(img.shape)


EXERCISES = {
    "01.1": to_grayscale,
    "01.2": downsample_area,
    "01.3": gaussian_kernel,
    "01.4": sobel_magnitude,
}
