"""Data augmentation written out: affine warps, a bilinear sampler, shifts and crops, elastic distortions.

Everything works on batches ``x [B, C, H, W]`` of float images and takes an optional ``torch.Generator``,
so an augmented batch is reproducible from a seed.

**Coordinates.** Geometry is expressed in *pixel* units, in a frame centred on the image centre, with
``x`` pointing right and ``y`` pointing down (the way an image is displayed). A forward affine map moves the
content of the image::

    p' = A p + t,      A = scale * R(angle) @ Shear(shear)      (2 x 2),   t = translate  (pixels)

with ``angle`` in degrees, positive = counter-clockwise *as displayed*, so ``angle=90`` equals
``torch.rot90(x, 1, dims=(-2, -1))``; and ``translate=(dx, dy)`` moves the content ``dx`` pixels right and
``dy`` pixels down. To *render* the warped image we need the opposite direction: every output pixel ``q``
looks up the input at ``A^{-1} (q - t)`` (inverse mapping: no holes, every output pixel gets a value) and
interpolates bilinearly between the four nearest input pixels; outside the image the input is 0.

``F.affine_grid`` / ``F.grid_sample`` want that inverse map in *normalised* coordinates, where ``-1`` and
``+1`` are the outer edges of the image (``align_corners=False``): ``u = x_n * W / 2``, ``v = y_n * H / 2``.
:func:`affine_theta` does the conversion; :func:`bilinear_sample` is a from-scratch ``grid_sample``
(zeros padding, ``align_corners=False``) that the tests check against PyTorch's.

Introduced in chapter 06 (training craft).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _checks

__all__ = [
    "ShiftedDataset",
    "affine_matrix",
    "affine_theta",
    "bilinear_sample",
    "dynamic_binarize",
    "elastic_distortion",
    "random_affine",
    "random_crop",
    "random_shift",
    "random_shift_crop",
    "shift",
    "warp_affine",
]

Number = float | int | Tensor


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def _check_images(x: Tensor, who: str) -> tuple[int, int, int, int]:
    """``x`` must be a floating-point ``[B, C, H, W]`` tensor with a non-empty image; returns its shape."""
    b, c, h, w = _checks._check_images(who, x).shape
    if h < 1 or w < 1:
        raise ValueError(f"{who}: empty images, shape {tuple(x.shape)}")
    return b, c, h, w


def _non_negative(value: float, name: str, who: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value}")
    return value


# ----------------------------------------------------------------------------------------------
# Affine geometry
# ----------------------------------------------------------------------------------------------


def affine_matrix(angle: Number = 0.0, translate: Sequence[Number] | Tensor = (0.0, 0.0), scale: Number = 1.0,
                  shear: Number = 0.0) -> Tensor:
    """The forward affine map ``p' = A p + t`` of the image content, as a ``[..., 2, 3]`` matrix ``[A | t]``.

    ``A = scale * R(angle) @ Shear(shear)`` in pixel coordinates centred on the image centre, x right,
    y down::

        R(a)     = [[ cos a,  sin a],      Shear(s) = [[1, tan s],      (x' = x + tan(s) * y)
                    [-sin a,  cos a]]                  [0,   1   ]]

    ``R`` turns counter-clockwise *as displayed* (y points down, so the usual signs of sin flip).

    Args:
        angle: rotation in degrees (counter-clockwise on screen); a number or a tensor ``[B]``.
        translate: ``(dx, dy)`` in pixels (right, down); a pair of numbers or a tensor ``[B, 2]``.
        scale: zoom factor (> 0); a number or a tensor ``[B]``.
        shear: shear angle in degrees, in (-90, 90); a number or a tensor ``[B]``.

    Returns:
        float tensor ``[2, 3]`` for scalar arguments, ``[B, 2, 3]`` when any argument is batched
        (arguments broadcast against each other). float64 if any tensor argument is float64, else float32.

    Introduced in chapter 06.
    """
    tensors = [v for v in (angle, translate, scale, shear) if isinstance(v, Tensor)]
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in tensors) else torch.float32
    device = tensors[0].device if tensors else torch.device("cpu")
    a = torch.as_tensor(angle, dtype=dtype, device=device)
    s = torch.as_tensor(scale, dtype=dtype, device=device)
    sh = torch.as_tensor(shear, dtype=dtype, device=device)
    t = torch.as_tensor(translate, dtype=dtype, device=device)
    if t.shape[-1:] != (2,) or t.ndim > 2:
        raise ValueError(f"affine_matrix: translate must be (dx, dy) or [B, 2], got shape {tuple(t.shape)}")
    for name, v in (("angle", a), ("scale", s), ("shear", sh)):
        if v.ndim > 1:
            raise ValueError(f"affine_matrix: {name} must be a number or a [B] tensor, got shape {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"affine_matrix: {name} must be finite")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("affine_matrix: translate must be finite")
    if bool((s <= 0).any()):
        raise ValueError(f"affine_matrix: scale must be > 0, got {s.tolist()}")
    if bool((sh.abs() >= 90).any()):
        raise ValueError(f"affine_matrix: shear must lie in (-90, 90) degrees, got {sh.tolist()}")
    batch = torch.broadcast_shapes(a.shape, s.shape, sh.shape, t.shape[:-1])
    a, s, sh = (v.expand(batch) for v in (a, s, sh))
    t = t.expand(*batch, 2)
    rad, k = torch.deg2rad(a), torch.tan(torch.deg2rad(sh))
    cos, sin = torch.cos(rad), torch.sin(rad)
    # scale * R(a) @ [[1, k], [0, 1]] = scale * [[cos, cos*k + sin], [-sin, -sin*k + cos]]
    row0 = torch.stack([s * cos, s * (cos * k + sin), t[..., 0]], dim=-1)
    row1 = torch.stack([-s * sin, s * (cos - sin * k), t[..., 1]], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def affine_theta(matrix: Tensor, height: int, width: int) -> Tensor:
    """Convert a forward map ``[A | t]`` (pixels) into the ``theta`` that ``F.affine_grid`` wants.

    ``affine_grid`` maps *output* normalised coordinates to *input* normalised coordinates, so we invert
    the map and change units with ``D = diag(W / 2, H / 2)`` (pixel = D @ normalised)::

        theta = [D^-1 A^-1 D  |  -D^-1 A^-1 t]

    Args:
        matrix: ``[2, 3]`` or ``[B, 2, 3]`` from :func:`affine_matrix`.
        height, width: the image size in pixels.

    Returns:
        ``[B, 2, 3]`` (``B = 1`` for an unbatched matrix).

    Introduced in chapter 06.
    """
    if matrix.shape[-2:] != (2, 3) or matrix.ndim not in (2, 3):
        raise ValueError(f"affine_theta: matrix must be [2, 3] or [B, 2, 3], got shape {tuple(matrix.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"affine_theta: need a positive image size, got {height}x{width}")
    m = matrix if matrix.ndim == 3 else matrix[None]
    a_inv = torch.linalg.inv(m[:, :, :2])  # [B, 2, 2]; raises for a singular A
    d = torch.tensor([width / 2, height / 2], dtype=m.dtype, device=m.device)
    lin = a_inv * d[None, None, :] / d[None, :, None]  # D^-1 A^-1 D: (i, j) entry * d_j / d_i
    shift = -(a_inv @ m[:, :, 2:]).squeeze(-1) / d  # -D^-1 A^-1 t
    return torch.cat([lin, shift[..., None]], dim=-1)


def bilinear_sample(x: Tensor, grid: Tensor) -> Tensor:
    """Sample ``x`` at normalised positions ``grid`` with bilinear interpolation, zeros outside.

    A from-scratch ``F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)``.
    A grid point ``(g_x, g_y)`` in ``[-1, 1]^2`` sits at the (fractional) pixel index
    ``i_x = ((g_x + 1) W - 1) / 2`` (and likewise ``i_y``). With ``x0 = floor(i_x)``, ``wx = i_x - x0``::

        out = (1-wx)(1-wy) x[y0, x0] + wx (1-wy) x[y0, x0+1] + (1-wx) wy x[y0+1, x0] + wx wy x[y0+1, x0+1]

    where a neighbour outside the image contributes 0. Differentiable with respect to ``x``.

    Args:
        x: ``[B, C, H, W]`` images.
        grid: ``[B, H_out, W_out, 2]`` sampling positions (``[..., 0]`` is x, ``[..., 1]`` is y).

    Returns:
        ``[B, C, H_out, W_out]``.

    Introduced in chapter 06.
    """
    b, c, h, w = _check_images(x, "bilinear_sample")
    if grid.ndim != 4 or grid.shape[0] != b or grid.shape[-1] != 2:
        raise ValueError(f"bilinear_sample: grid must be [B={b}, H_out, W_out, 2], got shape {tuple(grid.shape)}")
    _, h_out, w_out, _ = grid.shape
    ix = ((grid[..., 0] + 1) * w - 1) / 2  # [B, H_out, W_out] fractional column index
    iy = ((grid[..., 1] + 1) * h - 1) / 2  # fractional row index
    x0, y0 = ix.floor(), iy.floor()
    wx1, wy1 = ix - x0, iy - y0  # weight of the right / lower neighbour
    flat = x.reshape(b, c, h * w)
    out = x.new_zeros(b, c, h_out * w_out)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xx, yy = x0 + dx, y0 + dy
        weight = (wx1 if dx else 1 - wx1) * (wy1 if dy else 1 - wy1)
        inside = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long().reshape(b, 1, -1).expand(b, c, -1)
        out = out + flat.gather(2, index) * (weight * inside).reshape(b, 1, -1).to(x.dtype)
    return out.reshape(b, c, h_out, w_out)


def warp_affine(x: Tensor, matrix: Tensor, mode: str = "bilinear") -> Tensor:
    """Move the content of every image by the forward affine map ``matrix``; uncovered pixels become 0.

    Args:
        x: ``[B, C, H, W]`` float images.
        matrix: ``[2, 3]`` (same map for all) or ``[B, 2, 3]`` from :func:`affine_matrix`.
        mode: ``"bilinear"`` or ``"nearest"`` (passed to ``F.grid_sample``).

    Returns:
        ``[B, C, H, W]``.

    Introduced in chapter 06.
    """
    b, c, h, w = _check_images(x, "warp_affine")
    if not isinstance(matrix, Tensor):
        raise TypeError(f"warp_affine: matrix must be a tensor [2, 3] or [B, 2, 3], got {type(matrix).__name__}")
    if matrix.ndim == 3 and matrix.shape[0] != b:
        raise ValueError(f"warp_affine: {matrix.shape[0]} matrices for a batch of {b} images")
    theta = affine_theta(matrix.to(device=x.device), h, w).to(x.dtype).expand(b, 2, 3)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)  # [B, H, W, 2]
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_affine(x: Tensor, max_rotation: float = 0.0, max_shift: float = 0.0, max_scale: float = 0.0,
                  max_shear: float = 0.0, generator: torch.Generator | None = None,
                  return_matrix: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """A random affine warp per image: rotation, shift, zoom and shear drawn uniformly and independently.

    For each image: ``angle ~ U(-max_rotation, max_rotation)`` degrees, ``dx, dy ~ U(-max_shift, max_shift)``
    pixels, ``scale ~ U(1 - max_scale, 1 + max_scale)``, ``shear ~ U(-max_shear, max_shear)`` degrees; the
    image is then warped with :func:`warp_affine` (bilinear, zeros outside). The parameters are drawn on the
    CPU from ``generator`` (the global generator when ``None``), so the same seed gives the same batch on any
    device.

    Args:
        x: ``[B, C, H, W]`` float images.
        max_rotation: degrees, >= 0.
        max_shift: pixels, >= 0.
        max_scale: in [0, 1).
        max_shear: degrees, in [0, 90).
        generator: a ``torch.Generator`` (CPU) for reproducible draws.
        return_matrix: also return the ``[B, 2, 3]`` forward maps that were applied.

    Introduced in chapter 06.
    """
    b, _, _, _ = _check_images(x, "random_affine")
    max_rotation = _non_negative(max_rotation, "max_rotation", "random_affine")
    max_shift = _non_negative(max_shift, "max_shift", "random_affine")
    max_scale = _non_negative(max_scale, "max_scale", "random_affine")
    max_shear = _non_negative(max_shear, "max_shear", "random_affine")
    if max_scale >= 1:
        raise ValueError(f"random_affine: max_scale must be < 1 (scale stays positive), got {max_scale}")
    if max_shear >= 90:
        raise ValueError(f"random_affine: max_shear must be < 90 degrees, got {max_shear}")
    angle = _uniform(b, -max_rotation, max_rotation, generator)
    translate = torch.stack([_uniform(b, -max_shift, max_shift, generator),
                             _uniform(b, -max_shift, max_shift, generator)], dim=1)
    scale = _uniform(b, 1 - max_scale, 1 + max_scale, generator)
    shear = _uniform(b, -max_shear, max_shear, generator)
    matrix = affine_matrix(angle, translate, scale, shear)  # [B, 2, 3] float64
    out = warp_affine(x, matrix)
    return (out, matrix.to(x.dtype)) if return_matrix else out


# ----------------------------------------------------------------------------------------------
# Whole-pixel shifts and crops
# ----------------------------------------------------------------------------------------------


def _per_image_shift(d: int | Tensor, name: str, b: int) -> Tensor:
    """An int or an int tensor ``[B]`` → an int64 tensor ``[B]`` (one shift per image)."""
    d = torch.as_tensor(d)
    if d.is_floating_point() or d.is_complex() or d.dtype == torch.bool:
        raise TypeError(f"shift: {name} must be whole pixels (an int or an int tensor), got {d.dtype}")
    if d.ndim == 0:
        d = d.expand(b)
    if d.shape != (b,):
        raise ValueError(f"shift: {name} must be an int or a [B={b}] tensor, got shape {tuple(d.shape)}")
    return d.long()


def shift(x: Tensor, dx: int | Tensor, dy: int | Tensor) -> Tensor:
    """Translate every image by whole pixels (``dx`` right, ``dy`` down), filling the uncovered border with 0.

    ``out[b, :, i, j] = x[b, :, i - dy_b, j - dx_b]`` where that pixel exists, else 0 — ``torch.roll`` without
    the wrap-around. Implemented as zero padding followed by a crop, the classic "pad and random-crop"
    augmentation.

    Args:
        x: ``[B, C, H, W]``.
        dx, dy: ints (same shift for all images) or int tensors ``[B]`` (one shift per image), each
            smaller than the image in absolute value.

    Returns:
        ``[B, C, H, W]``.

    Introduced in chapter 02 (an MLP's accuracy under shifts), the augmentation of chapter 06.
    """
    b, c, h, w = _check_images(x, "shift")
    dxs, dys = _per_image_shift(dx, "dx", b), _per_image_shift(dy, "dy", b)
    if b and (int(dxs.abs().max()) >= w or int(dys.abs().max()) >= h):
        raise ValueError(f"shift: a shift of (dx, dy) up to ({int(dxs.abs().max())}, {int(dys.abs().max())}) "
                         f"moves a {h}x{w} image entirely out of frame")
    pad = int(max(dxs.abs().max(), dys.abs().max())) if b else 0
    if pad == 0:
        return x.clone()
    padded = F.pad(x, (pad, pad, pad, pad))  # [B, C, H + 2p, W + 2p]
    # output row i reads padded row i + pad - dy (a crop whose top-left corner is (pad - dy, pad - dx))
    rows = (torch.arange(h, device=x.device)[None, :] + pad - dys.to(x.device)[:, None])  # [B, H]
    cols = (torch.arange(w, device=x.device)[None, :] + pad - dxs.to(x.device)[:, None])  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def _check_max_shift(x: Tensor, max_shift: int, who: str) -> tuple[int, int]:
    """``(B, max_shift)`` after checking ``max_shift`` is a whole number of pixels that keeps the image in frame."""
    b, _, h, w = _check_images(x, who)
    if int(max_shift) != max_shift or max_shift < 0:
        raise ValueError(f"{who}: max_shift must be a whole number of pixels >= 0, got {max_shift}")
    if max_shift >= min(h, w):
        raise ValueError(f"{who}: max_shift={int(max_shift)} would move a {h}x{w} image out of frame")
    return b, int(max_shift)


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """Shift each image by a random whole number of pixels in ``[-max_shift, max_shift]`` along each axis.

    Equivalent to padding by ``max_shift`` zeros and taking a random ``H x W`` crop. The draws: ``dx [B]``
    first, then ``dy [B]``, each ``~ U{-s..s}`` on the CPU from ``generator``. (:func:`random_shift_crop` has the
    same distribution but draws the crop corner instead, so the same seed gives other shifts.)

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``. Introduced in chapter 06.
    """
    b, s = _check_max_shift(x, max_shift, "random_shift")
    dx = torch.randint(-s, s + 1, (b,), generator=generator)
    dy = torch.randint(-s, s + 1, (b,), generator=generator)
    return shift(x, dx, dy)


def random_shift_crop(x: Tensor, max_shift: int, generator: torch.Generator | None = None) -> Tensor:
    """:func:`random_shift` drawn as a random crop: pad by ``s = max_shift``, crop at a random corner.

    The corner ``(top, left) ~ U{0..2s}^2`` is drawn as one ``[2, B]`` tensor on the CPU (rows first), and
    the image moves by ``dy = s - top``, ``dx = s - left``. The distribution is that of :func:`random_shift`;
    the draws from a given seed differ. This is the order of chapter 08's ViT training and of the shipped
    ``vit_mnist`` recipe (kept so they stay reproducible). ``max_shift=0`` returns ``x`` itself.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``. Introduced in chapter 08.
    """
    b, s = _check_max_shift(x, max_shift, "random_shift_crop")
    if s == 0:
        return x
    corner = torch.randint(0, 2 * s + 1, (2, b), generator=generator)  # [2, B]: top, left
    return shift(x, s - corner[1], s - corner[0])


class ShiftedDataset(torch.utils.data.Dataset):
    """A dataset of ``(x, y)`` whose images move by a fresh random whole-pixel shift (zero fill) at every visit.

    Reproducible without a shared generator (so it works with any ``DataLoader`` order or worker count): the
    shift ``(dy, dx) ~ U{-s..s}^2`` of item ``i`` at its ``k``-th visit is drawn from a generator seeded with
    ``seed * 1_000_003 + i * 7919 + k``. Chapter 07's ResNet training (and the ``resnet_mnist`` recipe) use it.

    Args:
        base: a ``TensorDataset(x [N, C, H, W], y [N])``.
        max_shift: s, whole pixels.
        seed: seeds every draw.

    Introduced in chapter 07.
    """

    def __init__(self, base: torch.utils.data.TensorDataset, max_shift: int, seed: int = 0) -> None:
        self.x, self.y = base.tensors
        _check_max_shift(self.x[:1], max_shift, "ShiftedDataset")
        self.max_shift, self.seed = int(max_shift), seed
        self.visits = torch.zeros(len(self.y), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        s = self.max_shift
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i) * 7919 + int(self.visits[i]))
        self.visits[i] += 1
        dy, dx = torch.randint(-s, s + 1, (2,), generator=g).tolist()
        return shift(self.x[i][None], dx, dy)[0], self.y[i]


def random_crop(x: Tensor, size: int | tuple[int, int], padding: int = 0,
                generator: torch.Generator | None = None) -> Tensor:
    """A random ``size`` crop of each image after zero padding by ``padding`` pixels on every side.

    Args:
        x: ``[B, C, H, W]``.
        size: crop size ``s`` or ``(h, w)``, at most the padded size.
        padding: zeros added on every side first (>= 0).
        generator: for reproducible crop positions.

    Returns:
        ``[B, C, h, w]``.

    Introduced in chapter 06.
    """
    b, c, h, w = _check_images(x, "random_crop")
    ch, cw = (size, size) if isinstance(size, int) else tuple(size)
    if int(padding) != padding or padding < 0:
        raise ValueError(f"random_crop: padding must be an int >= 0, got {padding}")
    padding = int(padding)
    hp, wp = h + 2 * padding, w + 2 * padding
    if not (1 <= ch <= hp and 1 <= cw <= wp):
        raise ValueError(f"random_crop: crop {ch}x{cw} does not fit in the padded {hp}x{wp} image")
    padded = F.pad(x, (padding,) * 4) if padding else x
    top = torch.randint(0, hp - ch + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, wp - cw + 1, (b,), generator=generator).to(x.device)
    rows = top[:, None] + torch.arange(ch, device=x.device)[None]  # [B, ch]
    cols = left[:, None] + torch.arange(cw, device=x.device)[None]  # [B, cw]
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B, ch, cw, C]
    return out.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# Elastic distortion (Simard, Steinkraus & Platt 2003)
# ----------------------------------------------------------------------------------------------


def _gaussian_blur(field: Tensor, sigma: float) -> Tensor:
    """Blur ``[B, C, H, W]`` with a separable Gaussian of standard deviation ``sigma`` pixels (zero padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = field.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    field = F.conv2d(field, kx, padding=(0, radius), groups=c)
    return F.conv2d(field, ky, padding=(radius, 0), groups=c)


def elastic_distortion(x: Tensor, alpha: float = 34.0, sigma: float = 4.0,
                       generator: torch.Generator | None = None) -> Tensor:
    """Elastic distortion: a smooth random displacement field, as Simard et al. (2003) used for MNIST.

    Draw ``u, v ~ U(-1, 1)`` independently per pixel, blur each with a Gaussian of standard deviation
    ``sigma`` pixels, multiply by ``alpha`` (pixels), and sample the input at ``p + (u(p), v(p))``.
    Small ``sigma`` gives noisy, large ``sigma`` nearly affine displacements.

    Args:
        x: ``[B, C, H, W]`` float images.
        alpha: displacement scale in pixels (>= 0); ``alpha=0`` returns the input.
        sigma: smoothness of the field in pixels (> 0).
        generator: for reproducible fields.

    Returns:
        ``[B, C, H, W]``.

    Introduced in chapter 06.
    """
    b, c, h, w = _check_images(x, "elastic_distortion")
    alpha = _non_negative(alpha, "alpha", "elastic_distortion")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"elastic_distortion: sigma must be > 0, got {sigma}")
    field = 2 * torch.rand(b, 2, h, w, generator=generator) - 1  # [B, 2, H, W] in pixels before smoothing
    field = alpha * _gaussian_blur(field, sigma)
    eye = torch.eye(2, 3).expand(b, 2, 3)
    grid = F.affine_grid(eye, [b, c, h, w], align_corners=False)  # identity, [B, H, W, 2]
    # a displacement of d pixels is 2 d / W in normalised x (2 d / H in y)
    offset = torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], dim=-1)
    return F.grid_sample(x, (grid + offset).to(device=x.device, dtype=x.dtype), mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def dynamic_binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A fresh binary image per call: each pixel is 1 with probability equal to its intensity in [0, 1].

    Salakhutdinov & Murray (2008); re-drawing at every epoch is a regulariser (the model never sees the same
    binary image twice). ``x [B, ...]`` in [0, 1] -> same shape, values 0.0 / 1.0. Introduced in chapter 10.
    """
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"dynamic_binarize: x must lie in [0, 1], got [{x.min().item():.3g}, {x.max().item():.3g}]")
    if x.device.type != "cpu" and generator is not None and generator.device != x.device:
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)
    return torch.bernoulli(x, generator=generator)
