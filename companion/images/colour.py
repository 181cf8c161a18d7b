"""Images as tensors, sections 2 and 3: colour spaces and histograms.

Luma weights derived from a standard's primaries (``luma_weights``), RGB to gray, HSV and Y'CbCr and back, and
the intensity histogram with histogram equalisation. Introduced in chapter 01.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dtypes import _check_image

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
