"""Images as tensors, section 6: aliasing.

A zone plate to see it, the Gaussian pre-filter's frequency response and the sigma that suppresses what a
``factor``-times downsampling folds back (``antialias_sigma``, ``downsample``), an ideal low-pass in the
Fourier domain, and two measures of what aliases (``aliased_fraction``, ``aliasing_error``). Introduced in
chapter 01.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .dtypes import _check_factor, _check_image
from .filters import blur
from .resample import decimate

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
