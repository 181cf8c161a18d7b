"""Images as tensors, section 5: filtering (a preview of chapter 03).

Box and Gaussian kernels, ``filter2d`` (a depthwise ``F.conv2d``, with a choice of border padding) and its
reference ``filter2d_direct`` (a loop over the kernel taps), Gaussian ``blur`` and the Sobel gradient. Introduced in chapter 01.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import _check_tensor, _shape
from .dtypes import _check_image

# ----------------------------------------------------------------------------------------------
# 5. filtering (a preview of chapter 03)
# ----------------------------------------------------------------------------------------------


def box_kernel(size: int) -> Tensor:
    """The ``size x size`` moving-average kernel, every entry ``1 / size²``. Introduced in chapter 01."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"box_kernel: size must be a positive int, got {size!r}")
    return torch.full((size, size), 1.0 / size**2)


def _gaussian_args(fn: str, sigma: float, size: int | None) -> int:
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0 or math.isinf(sigma):
        raise ValueError(f"{fn}: sigma must be a positive number, got {sigma!r}")
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1  # ±3σ holds 99.7% of the mass
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or size % 2 == 0:
        raise ValueError(f"{fn}: size must be a positive odd int (the kernel has a centre pixel), got {size!r}")
    return size


def gaussian_kernel1d(sigma: float, size: int | None = None) -> Tensor:
    """Sampled, normalised 1-D Gaussian: ``g[i] ∝ exp(-(i - c)² / (2σ²))``, ``c = (size - 1)/2``, ``Σ g = 1``.

    Args:
        sigma: standard deviation in pixels, > 0.
        size: odd length; default ``2·ceil(3σ) + 1``.

    Returns:
        float32 ``[size]``.

    Introduced in chapter 01.
    """
    size = _gaussian_args("gaussian_kernel1d", sigma, size)
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """Sampled, normalised 2-D Gaussian ``[size, size]``: ``G[i, j] ∝ exp(-((i-c)² + (j-c)²) / (2σ²))``.

    It is the outer product of two 1-D Gaussians (``G = g gᵀ``), which is why a Gaussian blur is separable.

    Args:
        sigma: standard deviation in pixels, > 0.
        size: odd side length; default ``2·ceil(3σ) + 1``.

    Returns:
        float32 ``[size, size]``, entries summing to 1.

    Introduced in chapter 01.
    """
    size = _gaussian_args("gaussian_kernel", sigma, size)
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).float()


_PAD_MODES = {"reflect": "reflect", "replicate": "replicate", "circular": "circular", "zeros": "constant"}


def _check_kernel(fn: str, img: Tensor, kernel: Tensor, padding: str) -> tuple[int, int]:
    _check_image(fn, img)
    _check_tensor(fn, kernel, "kernel")
    if kernel.dim() != 2:
        raise ValueError(f"{fn}: expected a 2-D kernel [kH, kW], got shape {_shape(kernel)}")
    kh, kw = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{fn}: kernel sides must be odd so the output is centred, got shape {_shape(kernel)}")
    if padding not in _PAD_MODES:
        raise ValueError(f"{fn}: padding must be one of {sorted(_PAD_MODES)}, got {padding!r}")
    h, w = img.shape[-2:]
    if padding == "reflect" and (kh // 2 >= h or kw // 2 >= w):
        raise ValueError(f"{fn}: reflect padding needs the kernel radius < image size: kernel {_shape(kernel)} "
                         f"on image {_shape(img)}; use a smaller kernel or padding='replicate'")
    return kh // 2, kw // 2


def filter2d(img: Tensor, kernel: Tensor, padding: str = "reflect") -> Tensor:
    """Filter every channel with the same 2-D kernel; the output has the input's size.

    ``y[c, i, j] = Σ_{a,b} k[a, b] · x̃[c, i + a - rH, j + b - rW]`` with radii ``rH = kH // 2``, ``rW = kW // 2``
    and ``x̃`` the padded image. This is *cross-correlation*, what ``F.conv2d`` and every CNN layer compute and
    call convolution; true convolution flips the kernel (``filter2d(x, k.flip(0, 1))``) and is the same for
    the symmetric kernels (box, Gaussian) used here. Implemented as a depthwise ``F.conv2d``.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        kernel: ``[kH, kW]`` with odd sides.
        padding: ``"reflect"`` (mirror without repeating the edge), ``"replicate"``, ``"circular"`` or ``"zeros"``.

    Returns:
        same shape as ``img``.

    Introduced in chapter 01 (convolution is chapter 03).
    """
    rh, rw = _check_kernel("filter2d", img, kernel, padding)
    shape = img.shape
    x = img.reshape(-1, 1, *shape[-2:])  # [N·C, 1, H, W]: every channel filtered alike
    x = F.pad(x, (rw, rw, rh, rh), mode=_PAD_MODES[padding])
    k = kernel.to(dtype=img.dtype, device=img.device)[None, None]  # [1, 1, kH, kW]
    return F.conv2d(x, k).reshape(shape)


def filter2d_direct(img: Tensor, kernel: Tensor, padding: str = "reflect") -> Tensor:
    """:func:`filter2d` straight from its definition: a Python loop over the ``kH·kW`` kernel taps.

    Each tap adds one shifted copy of the padded image, weighted by ``k[a, b]``. Slow for big kernels,
    obviously right, and independent of ``F.conv2d`` — the reference the fast version is checked against.

    Introduced in chapter 01.
    """
    rh, rw = _check_kernel("filter2d_direct", img, kernel, padding)
    h, w = img.shape[-2:]
    x = img.reshape(-1, 1, h, w)
    x = F.pad(x, (rw, rw, rh, rh), mode=_PAD_MODES[padding])[:, 0]  # [N·C, H + 2rH, W + 2rW]
    out = torch.zeros(x.shape[0], h, w, dtype=img.dtype, device=img.device)
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            out += kernel[a, b].item() * x[:, a:a + h, b:b + w]  # tap (a, b) sees pixel (i + a - rH, j + b - rW)
    return out.reshape(img.shape)


def blur(img: Tensor, sigma: float, size: int | None = None, padding: str = "reflect") -> Tensor:
    """Gaussian blur, separably: a ``[1, size]`` pass then a ``[size, 1]`` pass (``2·size`` instead of ``size²``
    multiplies per pixel), equal to ``filter2d(img, gaussian_kernel(sigma, size))``.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        sigma: standard deviation in pixels.
        size: odd kernel length; default ``2·ceil(3σ) + 1``.
        padding: as in :func:`filter2d`.

    Returns:
        same shape as ``img``.

    Introduced in chapter 01.
    """
    g = gaussian_kernel1d(sigma, size)
    return filter2d(filter2d(img, g[None, :], padding), g[:, None], padding)


#: Sobel kernels, normalised by 1/8 so that on a ramp ``x = a·col + b·row`` they return exactly ``(a, b)``.
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
SOBEL_Y = SOBEL_X.T.contiguous()


def sobel(img: Tensor, padding: str = "reflect") -> tuple[Tensor, Tensor]:
    """Image gradients with the Sobel kernels: ``(g_x, g_y)``, derivatives along W (columns) and H (rows).

    ``K_x = (1/8) [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` = a central difference ``[-1, 0, 1]/2`` along x times
    a smoothing ``[1, 2, 1]/4`` along y; ``K_y = K_xᵀ``. Applied with :func:`filter2d` (correlation), so
    ``g_x > 0`` where the image gets brighter to the right.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        padding: as in :func:`filter2d`.

    Returns:
        ``(g_x, g_y)``, each the shape of ``img``.

    Introduced in chapter 01.
    """
    return filter2d(img, SOBEL_X, padding), filter2d(img, SOBEL_Y, padding)


def sobel_magnitude(img: Tensor) -> Tensor:
    """Gradient magnitude ``|∇x| = sqrt(g_x² + g_y²)`` from :func:`sobel` (reflect padding).

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.

    Returns:
        same shape as ``img``, >= 0.

    Introduced in chapter 01.
    """
    gx, gy = sobel(img)
    return torch.sqrt(gx**2 + gy**2)
