"""Images as tensors: dtypes, layouts, colour spaces, histograms, resampling, filtering and aliasing.

Every function here is pure (no state, no in-place changes to its input) and works on float images laid out
the PyTorch way, channels first:

* one image ``[C, H, W]`` or a batch ``[N, C, H, W]`` (``C = 1`` grayscale, ``C = 3`` RGB), values in ``[0, 1]``;
* 8-bit images (``torch.uint8``, values ``0..255``) only enter and leave through :func:`to_float` /
  :func:`to_uint8`.

Sections, in the order chapter 01 uses them:

1. dtypes and layouts — ``to_float``, ``to_uint8``, ``hwc_to_chw``, ``chw_to_hwc``
2. colour spaces — ``luma_weights``, ``rgb_to_gray``, ``rgb_to_hsv`` / ``hsv_to_rgb``, ``rgb_to_ycbcr`` /
   ``ycbcr_to_rgb``
3. histograms — ``histogram``, ``equalize``
4. resampling — ``decimate``, ``resize_nearest``, ``resize_bilinear``, ``downsample_area``, ``upsample``
5. filtering — ``box_kernel``, ``gaussian_kernel1d``, ``gaussian_kernel``, ``filter2d``, ``filter2d_direct``,
   ``blur``, ``sobel``, ``sobel_magnitude``
6. aliasing — ``zone_plate``, ``gaussian_frequency_response``, ``antialias_sigma``, ``downsample``,
   ``ideal_lowpass``, ``aliased_fraction``, ``aliasing_error``

Only ``torch`` is imported. Introduced in chapter 01.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import _check_tensor, _shape

__all__ = [
    "LUMA_WEIGHTS",
    "PRIMARIES",
    "aliased_fraction",
    "aliasing_error",
    "antialias_sigma",
    "blur",
    "box_kernel",
    "chw_to_hwc",
    "decimate",
    "downsample",
    "downsample_area",
    "equalize",
    "filter2d",
    "filter2d_direct",
    "gaussian_frequency_response",
    "gaussian_kernel",
    "gaussian_kernel1d",
    "histogram",
    "hsv_to_rgb",
    "hwc_to_chw",
    "ideal_lowpass",
    "luma_weights",
    "resize_bilinear",
    "resize_nearest",
    "rgb_to_gray",
    "rgb_to_hsv",
    "rgb_to_ycbcr",
    "sobel",
    "sobel_magnitude",
    "to_float",
    "to_uint8",
    "upsample",
    "ycbcr_to_rgb",
    "zone_plate",
]

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


# ----------------------------------------------------------------------------------------------
# 2. colour spaces
# ----------------------------------------------------------------------------------------------

#: Chromaticities (x, y) of the red, green, blue primaries and the white point of two standards.
#: NTSC 1953 (whose luma weights Rec. 601 kept) and Rec. 709 / sRGB (ITU-R BT.709-6, table 1).
PRIMARIES: dict[str, dict[str, tuple[float, float]]] = {
    "601": {"r": (0.67, 0.33), "g": (0.21, 0.71), "b": (0.14, 0.08), "white": (0.310, 0.316)},  # white: Illuminant C
    "709": {"r": (0.64, 0.33), "g": (0.30, 0.60), "b": (0.15, 0.06), "white": (0.3127, 0.3290)},  # white: D65
}

#: The published luma weights (K_R, K_G, K_B): ITU-R BT.601 and ITU-R BT.709.
LUMA_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "601": (0.299, 0.587, 0.114),
    "709": (0.2126, 0.7152, 0.0722),
}


def luma_weights(primaries: dict[str, tuple[float, float]]) -> Tensor:
    """Derive the luminance weights ``(K_R, K_G, K_B)`` from the chromaticities of three primaries and white.

    Each primary ``p`` with chromaticity ``(x, y)`` has XYZ direction ``(x/y, 1, (1-x-y)/y)`` (luminance 1).
    Scale each by ``S_p`` so that R = G = B = 1 is the white point ``W`` (with ``Y_W = 1``):
    ``M S = W`` with ``M`` the 3x3 matrix of directions. The luminance of a colour ``(R, G, B)`` is the ``Y`` row:
    ``Y = S_R R + S_G G + S_B B``, so ``K = S`` and ``K_R + K_G + K_B = Y_W = 1``.

    Args:
        primaries: ``{"r": (x, y), "g": (x, y), "b": (x, y), "white": (x, y)}`` (see :data:`PRIMARIES`).

    Returns:
        float64 tensor ``[3]``: the weights, summing to 1.

    Introduced in chapter 01.
    """
    missing = {"r", "g", "b", "white"} - set(primaries)
    if missing:
        raise ValueError(f"luma_weights: primaries need keys r, g, b, white; missing {sorted(missing)}")

    def xyz(xy: tuple[float, float]) -> list[float]:
        x, y = xy
        if y <= 0:
            raise ValueError(f"luma_weights: chromaticity y must be > 0, got {xy}")
        return [x / y, 1.0, (1.0 - x - y) / y]

    m = torch.tensor([xyz(primaries[k]) for k in "rgb"], dtype=torch.float64).T  # columns: X, Y, Z of R, G, B
    white = torch.tensor(xyz(primaries["white"]), dtype=torch.float64)
    scale = torch.linalg.solve(m, white)  # S: how much of each primary makes white
    return scale  # the Y row of M·diag(S) is S itself, since every column has Y = 1


def _weights(fn: str, standard: str) -> tuple[float, float, float]:
    if standard not in LUMA_WEIGHTS:
        raise ValueError(f"{fn}: standard must be one of {sorted(LUMA_WEIGHTS)}, got {standard!r}")
    return LUMA_WEIGHTS[standard]


def rgb_to_gray(img: Tensor, standard: str = "601") -> Tensor:
    """Luma: the weighted sum ``Y' = K_R R' + K_G G' + K_B B'`` of the (gamma-encoded) RGB channels.

    Rec. 601 weights ``(0.299, 0.587, 0.114)`` (JPEG, PIL's ``convert("L")``) or Rec. 709
    ``(0.2126, 0.7152, 0.0722)``. The weights sum to 1, so a neutral grey ``R = G = B = v`` keeps value ``v``.

    Args:
        img: RGB image ``[3, H, W]`` or batch ``[N, 3, H, W]``, float.
        standard: ``"601"`` or ``"709"``.

    Returns:
        ``[1, H, W]`` or ``[N, 1, H, W]`` (the channel dimension is kept).

    Introduced in chapter 01.
    """
    _check_image("rgb_to_gray", img, channels=3)
    k = torch.tensor(_weights("rgb_to_gray", standard), dtype=img.dtype, device=img.device)
    return (img * k[:, None, None]).sum(dim=-3, keepdim=True)  # Σ_c K_c x_c


def rgb_to_hsv(img: Tensor) -> Tensor:
    """RGB → HSV (hue, saturation, value), all three in [0, 1] (matplotlib's convention; hue 1 = 360°).

    With ``V = max(R,G,B)``, chroma ``C = V - min(R,G,B)``:
    ``S = C / V`` (0 when V = 0) and the hue is the position on the colour hexagon,
    ``H = 1/6 · {(G-B)/C mod 6  if V = R;  (B-R)/C + 2  if V = G;  (R-G)/C + 4  if V = B}`` (0 when C = 0).

    Args:
        img: RGB ``[3, H, W]`` or ``[N, 3, H, W]``, float in [0, 1].

    Returns:
        HSV image of the same shape.

    Introduced in chapter 01.
    """
    _check_image("rgb_to_hsv", img, channels=3)
    r, g, b = img.unbind(dim=-3)
    v = torch.maximum(torch.maximum(r, g), b)
    c = v - torch.minimum(torch.minimum(r, g), b)
    safe_c = torch.where(c > 0, c, torch.ones_like(c))  # avoid 0/0; those pixels get hue 0 below
    h = torch.where(v == r, ((g - b) / safe_c) % 6,
                    torch.where(v == g, (b - r) / safe_c + 2, (r - g) / safe_c + 4))
    h = torch.where(c > 0, h / 6, torch.zeros_like(h)) % 1.0
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(img: Tensor) -> Tensor:
    """HSV → RGB, the inverse of :func:`rgb_to_hsv`.

    For channel ``n = 5, 3, 1`` (R, G, B): ``k = (n + 6H) mod 6`` and
    ``channel = V - V·S·clamp(min(k, 4 - k), 0, 1)`` — the hexagon read off as three piecewise-linear ramps.

    Args:
        img: HSV ``[3, H, W]`` or ``[N, 3, H, W]``, float, H/S/V in [0, 1].

    Returns:
        RGB image of the same shape.

    Introduced in chapter 01.
    """
    _check_image("hsv_to_rgb", img, channels=3)
    h, s, v = img.unbind(dim=-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6 * h) % 6
        out.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(out, dim=-3)


def _ycbcr_matrix(standard: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Rows: Y = K·RGB; Cb = (B - Y) / (2 (1 - K_B)); Cr = (R - Y) / (2 (1 - K_R))."""
    kr, kg, kb = _weights("ycbcr", standard)
    m = torch.tensor(
        [[kr, kg, kb],
         [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],   # (B - Y) / (2 (1 - K_B)): coefficient of B is 1/2
         [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))]],  # (R - Y) / (2 (1 - K_R))
        dtype=torch.float64,
    )
    return m.to(dtype=dtype, device=device)


def rgb_to_ycbcr(img: Tensor, standard: str = "601") -> Tensor:
    """RGB → YCbCr (full range, the JPEG/JFIF form), in [0, 1].

    ``Y = K_R R + K_G G + K_B B``, ``Cb = 1/2 + (B - Y) / (2 (1 - K_B))``, ``Cr = 1/2 + (R - Y) / (2 (1 - K_R))``:
    one luma channel and two colour differences scaled to [-1/2, 1/2] and offset by 1/2.

    Args:
        img: RGB ``[3, H, W]`` or ``[N, 3, H, W]``, float in [0, 1].
        standard: ``"601"`` (JPEG) or ``"709"``.

    Returns:
        YCbCr image of the same shape.

    Introduced in chapter 01.
    """
    _check_image("rgb_to_ycbcr", img, channels=3)
    m = _ycbcr_matrix(standard, img.dtype, img.device)
    out = torch.einsum("oc,...chw->...ohw", m, img)
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=img.dtype, device=img.device)
    return out + offset[:, None, None]


def ycbcr_to_rgb(img: Tensor, standard: str = "601") -> Tensor:
    """YCbCr → RGB, the inverse of :func:`rgb_to_ycbcr` (the 3x3 matrix inverted exactly, in float64).

    Args:
        img: YCbCr ``[3, H, W]`` or ``[N, 3, H, W]``, float.
        standard: ``"601"`` or ``"709"``.

    Returns:
        RGB image of the same shape (not clamped: out-of-gamut YCbCr gives values outside [0, 1]).

    Introduced in chapter 01.
    """
    _check_image("ycbcr_to_rgb", img, channels=3)
    m_inv = torch.linalg.inv(_ycbcr_matrix(standard, torch.float64, torch.device("cpu")))
    m_inv = m_inv.to(dtype=img.dtype, device=img.device)
    offset = torch.tensor([0.0, 0.5, 0.5], dtype=img.dtype, device=img.device)
    return torch.einsum("oc,...chw->...ohw", m_inv, img - offset[:, None, None])


# ----------------------------------------------------------------------------------------------
# 3. histograms
# ----------------------------------------------------------------------------------------------


def _levels(img: Tensor, bins: int) -> Tensor:
    """Bin index ``k = min(floor(x · bins), bins - 1)`` of every value (x = v/255, bins = 256 gives k = v)."""
    return (img * bins).floor().clamp(0, bins - 1).long()


def histogram(img: Tensor, bins: int = 256) -> Tensor:
    """Per-channel histogram of a float image with values in [0, 1]: ``bins`` equal bins, ``[0, 1/bins)``, ...

    The last bin also holds 1.0 (as ``numpy.histogram`` does). A batch is pooled: one histogram per channel.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float in [0, 1].
        bins: number of bins (256 gives one bin per 8-bit level).

    Returns:
        int64 counts ``[C, bins]``; each row sums to the number of pixels per channel (``N·H·W``).

    Introduced in chapter 01.
    """
    _check_image("histogram", img)
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"histogram: bins must be a positive int, got {bins!r}")
    c = img.shape[-3]
    k = _levels(img, bins).movedim(-3, 0).reshape(c, -1)  # [C, N·H·W]
    counts = torch.zeros(c, bins, dtype=torch.int64, device=img.device)
    return counts.scatter_add_(1, k, torch.ones_like(k))


def equalize(img: Tensor, bins: int = 256) -> Tensor:
    """Histogram equalisation, each channel (and each image of a batch) on its own.

    Map level ``k`` through the cumulative histogram: ``y = (cdf(k) - cdf_min) / (n - cdf_min)``, where
    ``n`` is the number of pixels and ``cdf_min`` the count of the darkest occupied level. The mapping is
    monotone, sends the darkest level to 0 and the brightest to 1, and makes the cumulative histogram of the
    output as close to a straight line as whole levels allow. A constant channel is returned unchanged.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float in [0, 1].
        bins: number of grey levels (256 for 8-bit images).

    Returns:
        float image of the same shape, in [0, 1].

    Introduced in chapter 01.
    """
    _check_image("equalize", img)
    if not isinstance(bins, int) or bins < 2:
        raise ValueError(f"equalize: bins must be an int >= 2, got {bins!r}")
    flat = img.reshape(-1, img.shape[-2] * img.shape[-1])  # [N·C, H·W], one row per channel image
    k = _levels(flat, bins)
    counts = torch.zeros(flat.shape[0], bins, dtype=torch.float64, device=img.device)
    counts.scatter_add_(1, k, torch.ones_like(k, dtype=torch.float64))
    cdf = counts.cumsum(dim=1)  # cdf[:, k] = number of pixels at level <= k
    n = cdf[:, -1:]
    cdf_min = torch.where(counts > 0, cdf, n).min(dim=1, keepdim=True).values  # count of the darkest level
    denom = n - cdf_min
    mapped = (cdf.gather(1, k) - cdf_min) / torch.where(denom > 0, denom, torch.ones_like(denom))
    out = torch.where(denom > 0, mapped, flat.double())  # constant channel: unchanged
    return out.to(img.dtype).reshape(img.shape)


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


# ----------------------------------------------------------------------------------------------
# 6. aliasing
# ----------------------------------------------------------------------------------------------


def _check_number(fn: str, name: str, value: object) -> None:
    """``value`` must be a real number (an int or a float, not a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r} ({type(value).__name__})")


def _check_sigma(fn: str, sigma: object) -> None:
    """A pre-filter: None, ``"auto"`` or a number (its sign is checked by the Gaussian kernel)."""
    if isinstance(sigma, str):
        if sigma != "auto":
            raise ValueError(f"{fn}: sigma must be None, 'auto' or a number, got {sigma!r}")
    elif sigma is not None:
        _check_number(fn, "sigma", sigma)


def zone_plate(size: int = 512, f_max: float = 0.5) -> Tensor:
    """A zone plate: ``x = 1/2 + 1/2 · cos(π f_max r² / R)``, a test image whose frequency is known everywhere.

    ``r`` is the distance from the centre in pixels and ``R = size / 2``. The phase ``φ = π f_max r² / R`` has
    gradient ``∇φ / 2π = (f_max / R) · (u, v)``: the local frequency at offset ``(u, v)`` from the centre is
    ``f_max · (u, v) / R`` cycles per pixel — zero at the centre, ``f_max`` at the middle of each edge
    (``f_max = 1/2`` is the Nyquist frequency of the pixel grid) and ``√2 · f_max`` in the corners.

    Args:
        size: side length in pixels.
        f_max: frequency at the middle of the edges, cycles per pixel.

    Returns:
        float32 ``[1, size, size]`` in [0, 1].

    Introduced in chapter 01.
    """
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"zone_plate: size must be an int >= 2, got {size!r}")
    _check_number("zone_plate", "f_max", f_max)
    if not f_max > 0:
        raise ValueError(f"zone_plate: f_max must be > 0, got {f_max!r}")
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2  # pixel offsets from the centre
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return (0.5 + 0.5 * torch.cos(math.pi * f_max * r2 / (size / 2))).float()[None]


def gaussian_frequency_response(sigma: float, freq: Tensor | float) -> Tensor:
    """Gain of a Gaussian blur at frequency ``ν`` (cycles per pixel): ``Ĝ(ν) = exp(-2π² σ² ν²)``.

    The Fourier transform of a Gaussian of standard deviation ``σ`` is a Gaussian of standard deviation
    ``1 / (2πσ)``: blurring more in space keeps fewer frequencies. Introduced in chapter 01.
    """
    _check_number("gaussian_frequency_response", "sigma", sigma)
    freq = torch.as_tensor(freq, dtype=torch.float64)
    return torch.exp(-2 * math.pi**2 * sigma**2 * freq**2)


def antialias_sigma(factor: int, attenuation: float = 0.5) -> float:
    """The Gaussian σ whose gain at the new Nyquist frequency ``1/(2f)`` is ``attenuation``.

    Solve ``exp(-2π² σ² (1/(2f))²) = ε`` for σ: ``σ = f · sqrt(2 ln(1/ε)) / π``. Frequencies above the new
    Nyquist fold back (alias) when we keep every f-th pixel; this blur leaves at most a fraction ε of their
    amplitude. A Gaussian is no brick wall, so ε trades aliasing against blur inside the band: the default
    ε = 1/2 (the half-amplitude point at the new Nyquist, σ ≈ 0.375 f) is the setting chapter 01 measures to
    give the smallest error against the ideal small image; ε = 0.1 (σ ≈ 0.68 f) over-blurs.

    Args:
        factor: the downsampling factor ``f``.
        attenuation: ``ε`` in (0, 1), the gain at the new Nyquist frequency.

    Introduced in chapter 01.
    """
    _check_factor("antialias_sigma", factor)
    _check_number("antialias_sigma", "attenuation", attenuation)
    if not 0 < attenuation < 1:
        raise ValueError(f"antialias_sigma: attenuation must be in (0, 1), got {attenuation!r}")
    return factor * math.sqrt(2 * math.log(1 / attenuation)) / math.pi


def downsample(img: Tensor, factor: int, sigma: float | str | None = None) -> Tensor:
    """Blur with a Gaussian of standard deviation ``sigma`` (if any), then keep every ``factor``-th pixel.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        factor: ``f``.
        sigma: ``None`` (no pre-filter: plain :func:`decimate`), a number, or ``"auto"`` for
            :func:`antialias_sigma` ``(f)``.

    Returns:
        ``[..., ceil(H/f), ceil(W/f)]``.

    Introduced in chapter 01.
    """
    _check_image("downsample", img)
    f = _check_factor("downsample", factor)
    _check_sigma("downsample", sigma)
    if sigma == "auto":
        sigma = antialias_sigma(f)
    if sigma is not None and f > 1:
        radius = math.ceil(3 * float(sigma))  # blur's default kernel is 2·radius + 1 wide
        img = blur(img, float(sigma), padding="reflect" if radius < min(img.shape[-2:]) else "replicate")
    return decimate(img, f)


def _mirror(img: Tensor) -> Tensor:
    """Symmetric extension ``[..., H, W] → [..., 2H, 2W]`` (edge pixel repeated): periodic with no jumps."""
    x = torch.cat([img, img.flip(-1)], dim=-1)
    return torch.cat([x, x.flip(-2)], dim=-2)


def _band(h: int, w: int, cutoff: float, device: torch.device) -> Tensor:
    """Boolean mask over the ``rfft2`` grid of an ``[h, w]`` image: ``|ν_y| <= cutoff`` and ``|ν_x| <= cutoff``."""
    fy = torch.fft.fftfreq(h, device=device).abs()
    fx = torch.fft.rfftfreq(w, device=device)
    eps = 1e-9  # the Nyquist bin of the smaller image sits exactly on the cutoff: keep it
    return (fy[:, None] <= cutoff + eps) & (fx[None, :] <= cutoff + eps)


def _power(img: Tensor) -> Tensor:
    """Power spectrum of the symmetric extension on the ``rfft2`` grid, weighted so it sums like the full FFT.

    ``rfft2`` stores only ``ν_x >= 0``; every column except ν_x = 0 and the Nyquist column stands for itself
    and its mirror image, so it counts twice. The mean (ν = 0) is set to 0.
    """
    x = _mirror(img.double())
    p = torch.fft.rfft2(x).abs() ** 2
    weight = torch.full((p.shape[-1],), 2.0, dtype=p.dtype, device=p.device)
    weight[0] = 1.0
    if x.shape[-1] % 2 == 0:
        weight[-1] = 1.0
    p = p * weight
    p[..., 0, 0] = 0.0
    return p


def ideal_lowpass(img: Tensor, cutoff: float) -> Tensor:
    """Remove every frequency above ``cutoff`` (cycles per pixel) along either axis, exactly, with the FFT.

    The image is first extended symmetrically to ``2H x 2W``, which makes it periodic without a jump at the
    border, so the FFT sees no false edges (this is the DCT's trick). Used as the alias-free reference
    ``decimate(ideal_lowpass(x, 1/(2f)), f)``.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        cutoff: highest frequency kept, in (0, 1/2].

    Returns:
        same shape as ``img``.

    Introduced in chapter 01.
    """
    _check_image("ideal_lowpass", img)
    _check_number("ideal_lowpass", "cutoff", cutoff)
    if not 0 < cutoff <= 0.5:
        raise ValueError(f"ideal_lowpass: cutoff must be in (0, 0.5] cycles per pixel, got {cutoff!r}")
    h, w = img.shape[-2:]
    spec = torch.fft.rfft2(_mirror(img.double()))  # a real image: keep only ν_x >= 0
    spec = spec * _band(2 * h, 2 * w, cutoff, img.device)
    return torch.fft.irfft2(spec, s=(2 * h, 2 * w))[..., :h, :w].to(img.dtype)


def aliased_fraction(img: Tensor, factor: int, sigma: float | str | None = None) -> float:
    """Fraction of the image's signal power that would alias when downsampling by ``factor``.

    Keeping every f-th pixel can only represent ``|ν| <= 1/(2f)``; all power of the (pre-filtered) image
    above that along either axis folds back into the band. Measured with the FFT of the symmetric extension:
    ``Σ_{ν ∉ band} |X̂_h(ν)|² / Σ_{ν ≠ 0} |X̂(ν)|²``, where ``X̂_h`` is the spectrum after the blur (if any) and
    ``X̂`` the original's; the mean (ν = 0) is left out of both.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float.
        factor: ``f``.
        sigma: the pre-filter, as in :func:`downsample`.

    Returns:
        a float in [0, 1]: 0 means alias-free.

    Introduced in chapter 01.
    """
    _check_image("aliased_fraction", img)
    f = _check_factor("aliased_fraction", factor)
    _check_sigma("aliased_fraction", sigma)
    if sigma == "auto":
        sigma = antialias_sigma(f)
    h, w = img.shape[-2:]
    total = _power(img).sum()
    filtered = img if sigma is None or f == 1 else blur(img, float(sigma))
    above = _power(filtered)[..., ~_band(2 * h, 2 * w, 1 / (2 * f), img.device)].sum()
    return float(above / total) if total > 0 else 0.0


def aliasing_error(img: Tensor, factor: int, sigma: float | str | None = None) -> float:
    """RMS difference between ``downsample(img, factor, sigma)`` and the alias-free ideal small image.

    The ideal is ``decimate(ideal_lowpass(img, 1/(2f)), f)``: every frequency the small grid can hold kept at
    full strength, nothing above it. The error mixes what aliased in and what the blur took out of the band.

    Args:
        img: ``[C, H, W]`` or ``[N, C, H, W]``, float in [0, 1].
        factor: ``f >= 2``.
        sigma: the pre-filter, as in :func:`downsample`.

    Returns:
        RMS error in intensity units (images in [0, 1]).

    Introduced in chapter 01.
    """
    _check_image("aliasing_error", img)
    f = _check_factor("aliasing_error", factor)
    if f < 2:
        raise ValueError(f"aliasing_error: factor must be >= 2 (factor 1 keeps every pixel), got {factor}")
    ideal = decimate(ideal_lowpass(img, 1 / (2 * f)), f)
    small = downsample(img, f, sigma)
    return float(((small.double() - ideal.double()) ** 2).mean().sqrt())
