"""Images as tensors, section 4: resampling.

Keeping every ``factor``-th pixel (``decimate``), nearest and bilinear resizing, averaging blocks
(``downsample_area``) and integer upsampling. Introduced in chapter 01.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import _shape
from .dtypes import _check_factor, _check_image, _check_size

# ----------------------------------------------------------------------------------------------
# 4. resampling
# ----------------------------------------------------------------------------------------------


def decimate(img: Tensor, factor: int) -> Tensor:
    """Keep every ``factor``-th pixel in each direction: ``y[i, j] = x[f·i, f·j]`` (no filtering at all).

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``.
        factor: integer step ``f >= 1``.

    Returns:
        ``[..., ceil(H/f), ceil(W/f)]`` — a strided view, no copy.

    Introduced in chapter 01.
    """
    _check_image("decimate", img, float_only=False)
    f = _check_factor("decimate", factor)
    return img[..., ::f, ::f]


def resize_nearest(img: Tensor, size: int | Sequence[int]) -> Tensor:
    """Nearest-neighbour resize to ``size = (H', W')``, as ``F.interpolate(mode="nearest")``.

    Output pixel ``i`` copies input pixel ``floor(i · H / H')`` (and likewise along W).

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``.
        size: ``H'`` (square) or ``(H', W')``.

    Returns:
        ``[..., H', W']``.

    Introduced in chapter 01.
    """
    _check_image("resize_nearest", img, float_only=False)
    ho, wo = _check_size("resize_nearest", size)
    h, w = img.shape[-2:]
    rows = (torch.arange(ho, dtype=torch.float64) * (h / ho)).floor().long().clamp(max=h - 1)
    cols = (torch.arange(wo, dtype=torch.float64) * (w / wo)).floor().long().clamp(max=w - 1)
    return img[..., rows[:, None].to(img.device), cols[None, :].to(img.device)]


def _bilinear_taps(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
    """For each output index: the two input indices and the weight of the second (align_corners=False).

    Pixel centres line up as ``src = (dst + 1/2) · n_in / n_out - 1/2`` (clamped at 0); the output mixes
    ``x[i0]`` and ``x[i0 + 1]`` with weights ``1 - t`` and ``t``, ``t = src - i0``.
    """
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, src - i0


def resize_bilinear(img: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinear resize to ``size = (H', W')``, as ``F.interpolate(mode="bilinear", align_corners=False)``.

    Separable linear interpolation between the two nearest input pixel centres (see ``_bilinear_taps``).
    Downsampling by more than 2 this way *skips* pixels: it only ever looks at 2 per output — no anti-aliasing.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        size: ``H'`` or ``(H', W')``.

    Returns:
        ``[..., H', W']``.

    Introduced in chapter 01.
    """
    _check_image("resize_bilinear", img)
    ho, wo = _check_size("resize_bilinear", size)
    h, w = img.shape[-2:]
    r0, r1, tr = (t.to(img.device) for t in _bilinear_taps(h, ho))
    c0, c1, tc = (t.to(img.device) for t in _bilinear_taps(w, wo))
    tr, tc = tr.to(img.dtype)[:, None], tc.to(img.dtype)
    rows = img[..., r0, :] * (1 - tr) + img[..., r1, :] * tr  # [..., H', W]: interpolate along H
    return rows[..., c0] * (1 - tc) + rows[..., c1] * tc  # [..., H', W']: then along W


def downsample_area(img: Tensor, factor: int) -> Tensor:
    """Average each ``f x f`` block ("area" or box downsampling), as ``F.avg_pool2d(x, f)``.

    ``y[i, j] = (1/f²) Σ_{a,b < f} x[f·i + a, f·j + b]``, computed with one reshape:
    ``[..., H, W] → [..., H/f, f, W/f, f]`` and a mean over the two ``f`` axes.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float; ``H`` and ``W`` divisible by ``f``.
        factor: block size ``f``.

    Returns:
        ``[..., H/f, W/f]``.

    Introduced in chapter 01.
    """
    _check_image("downsample_area", img)
    f = _check_factor("downsample_area", factor)
    h, w = img.shape[-2:]
    if h % f or w % f:
        raise ValueError(f"downsample_area: H and W must be divisible by factor {f}, got shape {_shape(img)}; "
                         f"crop to {h - h % f}x{w - w % f} first")
    blocks = img.reshape(*img.shape[:-2], h // f, f, w // f, f)  # [..., H/f, f, W/f, f]
    return blocks.mean(dim=(-3, -1))


def upsample(img: Tensor, factor: int, mode: str = "nearest") -> Tensor:
    """Enlarge by an integer ``factor``: ``"nearest"`` (pixel replication) or ``"bilinear"``.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``.
        factor: ``f >= 1``.
        mode: ``"nearest"`` or ``"bilinear"``.

    Returns:
        ``[..., f·H, f·W]``.

    Introduced in chapter 01.
    """
    _check_image("upsample", img, float_only=(mode == "bilinear"))
    f = _check_factor("upsample", factor)
    size = (img.shape[-2] * f, img.shape[-1] * f)
    if mode == "nearest":
        return resize_nearest(img, size)
    if mode == "bilinear":
        return resize_bilinear(img, size)
    raise ValueError(f"upsample: mode must be 'nearest' or 'bilinear', got {mode!r}")
