"""Procedural and toy data: dSprites-style shapes with known factors, and 2-D toy distributions.

Nothing here reads a file: every set is computed from a ``seed`` and is the same on every machine.

* :func:`shapes`: binary images of one white shape (square, ellipse, heart) with random scale, rotation and
  position, returned with the factors that generated them (for disentanglement metrics such as MIG);
* :func:`scenes`: one coloured shape (circle, square, triangle; red, green, blue; small, large; in one of
  four corners) on black, with its attribute labels and a prompt that says them (``"a small red circle at the
  top left"``), for the text-to-image model of chapter 20;
* :func:`eight_gaussians`, :func:`grid_gaussians`, :func:`two_moons`, :func:`swiss_roll`: 2-D point clouds for
  generative models small enough to plot; :func:`ring_centres` and :func:`grid_centres` give the mixtures' means
  (for counting the modes a generator covers, chapter 14).

Real image datasets (MNIST, Fashion-MNIST, CIFAR-10, scikit-learn's digits) live in :mod:`companion.data`.
"""

from __future__ import annotations

import math

import torch

from ._checks import _positive_int

__all__ = [
    "SCENE_ATTRIBUTES",
    "SCENE_SPLITS",
    "eight_gaussians",
    "grid_centres",
    "grid_gaussians",
    "ring_centres",
    "scene_combos",
    "scene_prompt",
    "scenes",
    "shapes",
    "shapes_factor_names",
    "shapes_shape_names",
    "swiss_roll",
    "two_moons",
]

#: Names of the factors returned by :func:`shapes`, in a fixed order.
shapes_factor_names: tuple[str, ...] = ("shape", "scale", "rotation", "pos_x", "pos_y")
#: What the values 0, 1, 2 of the ``"shape"`` factor mean.
shapes_shape_names: tuple[str, ...] = ("square", "ellipse", "heart")


# --------------------------------------------------------------------------------------------------------
# dSprites-style shapes
# --------------------------------------------------------------------------------------------------------

_SHAPE_RADIUS = 0.18  # shape size at scale 1, as a fraction of the image width
_POS_LO, _POS_HI = 0.25, 0.75  # centres stay in this range so no shape is cut off


def _shape_mask(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside-test for one shape kind, on coordinates in the shape's own frame (units of its size)."""
    if kind == 0:  # square
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if kind == 1:  # ellipse with semi-axes 1 and 0.6
        return u * u + v * v * (1 / 0.36) <= 1.0
    x, y = 1.2 * u, 0.12 - 1.2 * v  # heart: (x^2 + y^2 - 1)^3 <= x^2 y^3, y up, tip pointing down
    x2 = x * x
    r = x2 + y * y - 1
    return r * r * r <= x2 * y * y * y


def _render_shapes(
    shape: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Rasterise shapes given their factors (all ``[n]``) into float32 ``[n, 1, size, size]`` masks."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in [0, 1]
    gx, gy = coords.view(1, 1, size), coords.view(1, size, 1)
    out = torch.zeros(shape.shape[0], size, size, dtype=torch.bool)
    for kind in range(len(shapes_shape_names)):
        idx = (shape == kind).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        cx = (_POS_LO + (_POS_HI - _POS_LO) * px[idx]).view(-1, 1, 1)
        cy = (_POS_LO + (_POS_HI - _POS_LO) * py[idx]).view(-1, 1, 1)
        inv_r = (1.0 / (_SHAPE_RADIUS * scale[idx])).view(-1, 1, 1)
        cos = torch.cos(rotation[idx]).view(-1, 1, 1) * inv_r
        sin = torch.sin(rotation[idx]).view(-1, 1, 1) * inv_r
        dx, dy = gx - cx, gy - cy
        u = cos * dx + sin * dy  # rotate by -rotation and divide by the size
        v = cos * dy - sin * dx
        out[idx] = _shape_mask(kind, u, v)
    return out.unsqueeze(1).to(torch.float32)


def shapes(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """dSprites-style binary images of one white shape on black, with their generating factors.

    Introduced in chapter 11. Each image has a random shape (0 square, 1 ellipse, 2 heart), scale in
    [0.5, 1], rotation in [0, 2π) and position; the whole set is determined by ``seed``.

    Args:
        n: number of images.
        size: image side in pixels (at least 8).
        seed: random seed.

    Returns:
        ``(images, factors)``: images float32 ``[n, 1, size, size]`` with values in {0, 1}; factors maps
        :data:`shapes_factor_names` to ``[n]`` tensors: ``"shape"`` int64 in {0, 1, 2}, ``"scale"`` in
        [0.5, 1], ``"rotation"`` in [0, 2π), ``"pos_x"``/``"pos_y"`` in [0, 1] (0 = left/top edge).
    """
    n = _positive_int(n, "n")
    size = _positive_int(size, "size")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    gen = torch.Generator().manual_seed(int(seed))
    shape = torch.randint(0, 3, (n,), generator=gen)
    scale = 0.5 + 0.5 * torch.rand(n, generator=gen)
    rotation = torch.remainder(2 * math.pi * torch.rand(n, generator=gen), 2 * math.pi)
    pos_x = torch.rand(n, generator=gen)
    pos_y = torch.rand(n, generator=gen)
    chunk = max(1, (1 << 22) // (size * size))  # bound the temporary memory for large n
    images = torch.cat(
        [
            _render_shapes(
                shape[i : i + chunk],
                scale[i : i + chunk],
                rotation[i : i + chunk],
                pos_x[i : i + chunk],
                pos_y[i : i + chunk],
                size,
            )
            for i in range(0, n, chunk)
        ]
    )
    factors = {"shape": shape, "scale": scale, "rotation": rotation, "pos_x": pos_x, "pos_y": pos_y}
    return images, factors


# --------------------------------------------------------------------------------------------------------
# Coloured scenes with prompts (chapter 20)
# --------------------------------------------------------------------------------------------------------

#: The four attributes of a :func:`scenes` image and the words for their values (label ``k`` is word ``k``).
SCENE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle"),
    "colour": ("red", "green", "blue"),
    "size": ("small", "large"),
    "position": ("top left", "top right", "bottom left", "bottom right"),
}
#: Which attribute combinations :func:`scenes` draws: all 72, the 62 ``"train"`` ones, or the 10 ``"heldout"`` ones.
SCENE_SPLITS: tuple[str, ...] = ("all", "train", "heldout")

_SCENE_RADIUS = {0: (0.10, 0.13), 1: (0.18, 0.21)}  # small / large: radius range as a fraction of the width
_SCENE_CENTRE, _SCENE_JITTER = (0.28, 0.72), 0.03  # quadrant centres (fraction of the width) and their jitter


def scene_prompt(shape: int, colour: int, size: int, position: int) -> str:
    """The prompt of one attribute combination (labels as in :data:`SCENE_ATTRIBUTES`): ``"a small red circle at
    the top left"``. Introduced in chapter 20."""
    a = SCENE_ATTRIBUTES
    return f"a {a['size'][size]} {a['colour'][colour]} {a['shape'][shape]} at the {a['position'][position]}"


def scene_combos(split: str = "all") -> torch.Tensor:
    """The attribute combinations of ``split`` as int64 ``[K, 4]`` rows ``(shape, colour, size, position)``.

    ``"heldout"`` is the 10 combinations with ``(shape + colour + size + position) % 6 == 0``, ``"train"`` the other
    62; every single value and every pair of values of two attributes occurs in ``"train"``, so a held-out prompt
    is a new combination of known words. Introduced in chapter 20.

    Raises:
        ValueError: an unknown ``split``.
    """
    if split not in SCENE_SPLITS:
        raise ValueError(f"scene_combos: split must be one of {SCENE_SPLITS}, got {split!r}")
    sizes = [len(v) for v in SCENE_ATTRIBUTES.values()]
    grid = torch.cartesian_prod(*[torch.arange(k) for k in sizes])  # [72, 4], row-major
    held = grid.sum(1) % 6 == 0
    return grid if split == "all" else grid[held if split == "heldout" else ~held]


def _scene_masks(labels: torch.Tensor, radius: torch.Tensor, centre: torch.Tensor, size: int) -> torch.Tensor:
    """Inside-tests ``[n, size, size]`` (anti-aliased by 2x2 supersampling) for shapes of ``labels[:, 0]``."""
    s = 2 * size
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    gx, gy = coords.view(1, 1, s), coords.view(1, s, 1)
    dx = (gx - centre[:, 0].view(-1, 1, 1)) / radius.view(-1, 1, 1)
    dy = (gy - centre[:, 1].view(-1, 1, 1)) / radius.view(-1, 1, 1)
    shape = labels[:, 0].view(-1, 1, 1)
    circle = dx * dx + dy * dy <= 1.0
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.85  # about the circle's area
    # an upright triangle with its apex at the top: inside below the two slanted edges and above the base
    triangle = (dy <= 0.8) & (dy >= -1.1 + 1.9 * dx.abs() / 1.1)
    inside = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle))
    return torch.nn.functional.avg_pool2d(inside.float().unsqueeze(1), 2).squeeze(1)


def scenes(n: int, size: int = 32, seed: int = 0, split: str = "all"
           ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """RGB images of one coloured shape on black, with their attribute labels and prompts.

    Introduced in chapter 20. Each image draws one combination of :func:`scene_combos` (``split``) uniformly, a
    radius in the size's range (small 0.10–0.13, large 0.18–0.21 of the width), a centre near its quadrant's
    centre (0.28 or 0.72 of the width and height, ± 0.03) and a colour whose named channel is in [0.75, 1] and the
    other two in [0, 0.25]. The whole set is determined by ``seed`` (and ``split``).

    Args:
        n: number of images.
        size: image side in pixels (at least 16).
        seed: random seed.
        split: ``"all"``, ``"train"`` or ``"heldout"`` (:func:`scene_combos`).

    Returns:
        ``(images, labels, prompts)``: images float32 ``[n, 3, size, size]`` in [0, 1]; labels int64 ``[n, 4]``
        (shape, colour, size, position as indices into :data:`SCENE_ATTRIBUTES`); the ``n`` prompt strings.

    Raises:
        ValueError: ``n`` not positive, ``size`` below 16, or an unknown ``split``.
    """
    n = _positive_int(n, "n")
    size = _positive_int(size, "size")
    if size < 16:
        raise ValueError(f"scenes: size must be at least 16 pixels, got {size}")
    combos = scene_combos(split)
    gen = torch.Generator().manual_seed(int(seed))
    labels = combos[torch.randint(0, len(combos), (n,), generator=gen)]
    u = torch.rand(n, 6, generator=gen)
    lo = torch.tensor([_SCENE_RADIUS[0][0], _SCENE_RADIUS[1][0]])[labels[:, 2]]
    hi = torch.tensor([_SCENE_RADIUS[0][1], _SCENE_RADIUS[1][1]])[labels[:, 2]]
    radius = lo + (hi - lo) * u[:, 0]
    col, row = labels[:, 3] % 2, labels[:, 3] // 2  # position 0 top left, 1 top right, 2 bottom left, 3 bottom right
    c0, c1 = _SCENE_CENTRE
    centre = torch.stack([torch.where(col == 1, c1, c0), torch.where(row == 1, c1, c0)], dim=1)
    centre = centre + _SCENE_JITTER * (2 * u[:, 1:3] - 1)
    rgb = 0.25 * u[:, 3:6]
    rgb[torch.arange(n), labels[:, 1]] = 0.75 + 0.25 * u[torch.arange(n), 3 + labels[:, 1]]
    chunk = max(1, (1 << 20) // (size * size))
    masks = torch.cat([_scene_masks(labels[i:i + chunk], radius[i:i + chunk], centre[i:i + chunk], size)
                       for i in range(0, n, chunk)])
    images = masks.unsqueeze(1) * rgb.view(n, 3, 1, 1)
    prompts = [scene_prompt(*map(int, row_)) for row_ in labels]
    return images, labels, prompts


# --------------------------------------------------------------------------------------------------------
# 2-D toy distributions
# --------------------------------------------------------------------------------------------------------


def eight_gaussians(
    n: int, seed: int = 0, radius: float = 2.0, std: float = 0.02, return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eight Gaussian blobs evenly spaced on a circle, equally likely. Introduced in chapter 12.

    Args:
        n: number of points.
        seed: random seed.
        radius: radius of the circle of centres.
        std: standard deviation of each blob.
        return_labels: also return each point's component index.

    Returns:
        points float32 ``[n, 2]``; with ``return_labels`` also the component int64 ``[n]`` in 0..7
        (component k is centred at angle k·π/4).
    """
    n = _positive_int(n, "n")
    if radius <= 0 or std < 0:
        raise ValueError(f"need radius > 0 and std >= 0, got radius={radius}, std={std}")
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(0, 8, (n,), generator=gen)
    angle = labels.to(torch.float32) * (math.pi / 4)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    points = centres + std * torch.randn(n, 2, generator=gen)
    return (points, labels) if return_labels else points


def ring_centres(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """The means of :func:`eight_gaussians` (for ``k = 8``): ``k`` points on a circle, component j at angle
    ``2 pi j / k``. Returns float32 ``[k, 2]``. Introduced in chapter 14."""
    k = _positive_int(k, "k")
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    angle = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).to(torch.float32)


def grid_centres(size: int = 5, spacing: float = 2.0) -> torch.Tensor:
    """The means of :func:`grid_gaussians`: a ``size x size`` grid centred on the origin with ``spacing`` between
    neighbours (``{-4, -2, 0, 2, 4}^2`` by default), row-major. Returns float32 ``[size**2, 2]``. Introduced in
    chapter 14."""
    size = _positive_int(size, "size")
    if spacing <= 0:
        raise ValueError(f"spacing must be > 0, got {spacing}")
    axis = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * spacing
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=1)


def grid_gaussians(
    n: int, seed: int = 0, size: int = 5, spacing: float = 2.0, std: float = 0.05, return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A ``size x size`` grid of equally likely Gaussian blobs (the "25 Gaussians" of the GAN literature, e.g.
    Srivastava et al. 2017). Introduced in chapter 14.

    Args:
        n: number of points.
        seed: random seed.
        size: blobs per side (5: 25 blobs); spacing: distance between neighbouring centres (:func:`grid_centres`).
        std: standard deviation of each blob.
        return_labels: also return each point's component index (a row of :func:`grid_centres`).

    Returns:
        points float32 ``[n, 2]``; with ``return_labels`` also int64 ``[n]`` in ``0..size**2 - 1``.
    """
    n = _positive_int(n, "n")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    centres = grid_centres(size, spacing)
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(0, len(centres), (n,), generator=gen)
    points = centres[labels] + std * torch.randn(n, 2, generator=gen)
    return (points, labels) if return_labels else points


def two_moons(
    n: int, seed: int = 0, noise: float = 0.05, return_labels: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (scikit-learn's ``make_moons`` geometry), for later chapters.

    Args:
        n: number of points.
        seed: random seed.
        noise: standard deviation of the Gaussian noise added to every point.
        return_labels: also return which moon (0 upper, 1 lower) each point is on.

    Returns:
        points float32 ``[n, 2]`` (roughly in [-1, 2] x [-0.5, 1]); with ``return_labels`` also int64 ``[n]``.
    """
    n = _positive_int(n, "n")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(0, 2, (n,), generator=gen)
    t = math.pi * torch.rand(n, generator=gen)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    points = torch.where(labels.view(-1, 1) == 0, upper, lower) + noise * torch.randn(n, 2, generator=gen)
    return (points, labels) if return_labels else points


def swiss_roll(n: int, seed: int = 0, noise: float = 0.25) -> torch.Tensor:
    """A 2-D swiss roll (spiral), centred and scaled to roughly unit standard deviation, for later chapters.

    Args:
        n: number of points.
        seed: random seed.
        noise: standard deviation of the Gaussian noise, in the spiral's raw units (before scaling by 1/6.8).

    Returns:
        points float32 ``[n, 2]``.
    """
    n = _positive_int(n, "n")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    gen = torch.Generator().manual_seed(int(seed))
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) + noise * torch.randn(
        n, 2, generator=gen
    )
    return (points - torch.tensor([2.0, 0.2])) / 6.8
