"""Images as tensors, section 1: dtypes and layouts (and the argument checks every image function uses).

``to_float`` / ``to_uint8`` are the only doors between 8-bit images (``torch.uint8``, ``0..255``) and float images
in ``[0, 1]``; ``hwc_to_chw`` / ``chw_to_hwc`` move the channel axis between the file layout and PyTorch's.
Introduced in chapter 01.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import _check_tensor, _shape

# ----------------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------------


def _check_image(fn: str, img: Tensor, channels: int | None = None, float_only: bool = True) -> None:
    """An image is ``[C, H, W]`` or ``[N, C, H, W]``; optionally with exactly ``channels`` channels."""
    _check_tensor(fn, img, "img", "a torch.Tensor image [C, H, W] or [N, C, H, W]")
    if img.dim() not in (3, 4):
        raise ValueError(f"{fn}: expected an image [C, H, W] or a batch [N, C, H, W], got shape {_shape(img)}")
    if channels is not None and img.shape[-3] != channels:
        raise ValueError(
            f"{fn}: expected {channels} channel(s) in dimension -3 ([..., {channels}, H, W]), got shape "
            f"{_shape(img)}" + (" — is it [H, W, C]? use hwc_to_chw first" if img.shape[-1] == channels else "")
        )
    if float_only and not img.is_floating_point():
        raise ValueError(f"{fn}: expected a floating-point image in [0, 1], got dtype {img.dtype}; use to_float first")


def _check_factor(fn: str, factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"{fn}: factor must be a positive int, got {factor!r}")
    return factor


def _check_size(fn: str, size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s >= 1 for s in pair):
        raise ValueError(f"{fn}: size must be a positive int or a pair (H, W) of positive ints, got {size!r}")
    return pair  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# 1. dtypes and layouts
# ----------------------------------------------------------------------------------------------


def to_float(img: Tensor) -> Tensor:
    """An 8-bit image (``uint8``, 0..255) as float32 in [0, 1]: ``x = v / 255``.

    Args:
        img: ``uint8`` tensor of any shape (``[H, W]``, ``[C, H, W]``, ``[N, C, H, W]`` ...).

    Returns:
        float32 tensor of the same shape, values ``v / 255`` (exact: 0 → 0.0, 255 → 1.0).

    Raises:
        ValueError: ``img`` is not ``uint8`` (a float image is already converted; other integer types have
            a different range).

    Introduced in chapter 01.
    """
    _check_tensor("to_float", img, "img")
    if img.dtype != torch.uint8:
        raise ValueError(f"to_float: expected a uint8 image (values 0..255), got dtype {img.dtype} "
                         f"with shape {_shape(img)}")
    return img.to(torch.float32) / 255.0


def to_uint8(img: Tensor, clamp: bool = False) -> Tensor:
    """A float image in [0, 1] as 8-bit: ``v = round(255 x)``, the inverse of :func:`to_float`.

    Rounding (not truncation) makes ``to_uint8(to_float(v)) == v`` for every byte. Values outside [0, 1]
    would wrap around in a plain ``.to(torch.uint8)`` (256 → 0, -1 → 255): that is the overflow pitfall this
    function refuses, unless ``clamp=True`` says to clip them on purpose.

    Args:
        img: floating-point tensor of any shape with values in [0, 1].
        clamp: clip values to [0, 1] instead of raising.

    Returns:
        ``uint8`` tensor of the same shape.

    Raises:
        ValueError: ``img`` is not floating point, or has values outside [0, 1] (NaN included) and
            ``clamp`` is False.

    Introduced in chapter 01.
    """
    _check_tensor("to_uint8", img, "img")
    if not img.is_floating_point():
        raise ValueError(f"to_uint8: expected a floating-point image in [0, 1], got dtype {img.dtype} "
                         f"with shape {_shape(img)}")
    if clamp:
        img = img.nan_to_num(0.0).clamp(0.0, 1.0)
    elif img.numel() and (bool(img.isnan().any()) or img.min() < 0 or img.max() > 1):
        raise ValueError(
            f"to_uint8: values must lie in [0, 1], got min {img.min().item():.4g} and max {img.max().item():.4g} "
            f"(shape {_shape(img)}); pass clamp=True to clip them"
        )
    return (img * 255).round().to(torch.uint8)


def hwc_to_chw(img: Tensor) -> Tensor:
    """``[H, W, C]`` (NumPy, PIL, matplotlib) → ``[C, H, W]`` (PyTorch); also ``[N,H,W,C]`` → ``[N,C,H,W]``.

    A ``permute``: no copy, the result is a view with different strides. Introduced in chapter 01.
    """
    _check_tensor("hwc_to_chw", img, "img")
    if img.dim() not in (3, 4) or img.shape[-1] not in (1, 3, 4):
        raise ValueError(f"hwc_to_chw: expected [H, W, C] or [N, H, W, C] with C in (1, 3, 4), got {_shape(img)}")
    return img.movedim(-1, -3)


def chw_to_hwc(img: Tensor) -> Tensor:
    """``[C, H, W]`` → ``[H, W, C]`` (for ``plt.imshow``); also ``[N,C,H,W]`` → ``[N,H,W,C]``. Chapter 01."""
    _check_tensor("chw_to_hwc", img, "img")
    if img.dim() not in (3, 4) or img.shape[-3] not in (1, 3, 4):
        raise ValueError(f"chw_to_hwc: expected [C, H, W] or [N, C, H, W] with C in (1, 3, 4), got {_shape(img)}")
    return img.movedim(-3, -1)
