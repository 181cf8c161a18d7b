"""Plotting helpers with one consistent style: image grids, loss curves, comparisons, interpolation strips.

A leaf module: nothing else in ``companion`` imports it. Every function returns the matplotlib ``Figure``
(or draws on an ``ax`` you pass) so notebooks can save or tweak it. Introduced in chapter 01.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.frameon": False,
    "image.cmap": "gray",
}


def use_style() -> None:
    """Apply the course's matplotlib style (called once at the top of each chapter)."""
    plt.rcParams.update(STYLE)


def _as_images(images: torch.Tensor) -> torch.Tensor:
    """Accept ``[N,C,H,W]``, ``[N,H,W]`` or ``[C,H,W]``/``[H,W]`` (one image) → float ``[N,C,H,W]`` on CPU."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images, got {type(images).__name__}")
    x = images.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x = x.float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None] if x.shape[0] in (1, 3) else x[:, None]
    elif x.ndim != 4:
        raise ValueError(f"images must be [N,C,H,W], [N,H,W], [C,H,W] or [H,W]; got shape {tuple(images.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got {x.shape[1]} (shape {tuple(images.shape)})")
    return x


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images ``[N,C,H,W]`` into one image ``[C, rows*(H+p)+p, nrow*(W+p)+p]``."""
    x = _as_images(images)
    n, c, h, w = x.shape
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid


def _imshow(ax: Axes, img: torch.Tensor, vmin: float | None = 0.0, vmax: float | None = 1.0) -> None:
    """Show one ``[C,H,W]`` image on ``ax`` without ticks."""
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, labels: Sequence | None = None,
                scale: float = 1.0, vmin: float | None = 0.0, vmax: float | None = 1.0) -> Figure:
    """Show a batch ``[N,C,H,W]`` as a grid; with ``labels`` each image gets its own small title."""
    x = _as_images(images)
    n = len(x)
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    if labels is None:
        fig, ax = plt.subplots(figsize=(scale * ncol * 0.9 + 0.5, scale * rows * 0.9 + 0.5))
        _imshow(ax, make_grid(x, nrow=ncol), vmin, vmax)
    else:
        if len(labels) != n:
            raise ValueError(f"got {n} images but {len(labels)} labels")
        fig, axes = plt.subplots(rows, ncol, figsize=(scale * ncol * 1.1, scale * rows * 1.25), squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < n:
                _imshow(ax, x[i], vmin, vmax)
                ax.set_title(str(labels[i]), fontsize=9)
            else:
                ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare(images: Sequence[torch.Tensor], titles: Sequence[str], nrow: int = 8, title: str | None = None,
            scale: float = 1.0) -> Figure:
    """Side-by-side panels, one grid per entry (e.g. inputs | reconstructions | samples)."""
    if len(images) != len(titles):
        raise ValueError(f"got {len(images)} image batches but {len(titles)} titles")
    grids = [make_grid(_as_images(x), nrow=nrow) for x in images]
    fig, axes = plt.subplots(1, len(grids), figsize=(scale * 3.2 * len(grids), scale * 3.4), squeeze=False)
    for ax, g, t in zip(axes[0], grids, titles):
        _imshow(ax, g)
        ax.set_title(t)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def interpolation_strip(rows: torch.Tensor | Sequence[torch.Tensor], row_labels: Sequence[str] | None = None,
                        title: str | None = None) -> Figure:
    """Rows of interpolations: ``[R, T, C, H, W]`` (or a list of ``[T,C,H,W]``), one row per path."""
    if isinstance(rows, torch.Tensor):
        if rows.ndim == 4:
            rows = rows[None]
        if rows.ndim != 5:
            raise ValueError(f"interpolation rows must be [R,T,C,H,W] or [T,C,H,W], got {tuple(rows.shape)}")
        rows = list(rows)
    steps = len(rows[0])
    if any(len(r) != steps for r in rows):
        raise ValueError("every interpolation row needs the same number of steps")
    fig, axes = plt.subplots(len(rows), 1, figsize=(steps * 0.9, len(rows) * 1.0 + 0.3), squeeze=False)
    for i, (ax, r) in enumerate(zip(axes[:, 0], rows)):
        _imshow(ax, make_grid(_as_images(r), nrow=steps))
        if row_labels is not None:
            ax.set_ylabel(row_labels[i], rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, keys: Sequence[str] = ("loss",), eval_keys: Sequence[str] = (), title: str | None = None,
                 smooth_weight: float = 0.0, ax: Axes | None = None, logy: bool = False) -> Figure:
    """Loss curves from a :class:`companion.train.History`: train metrics as lines, eval metrics as markers."""
    from .train import smooth  # local: plot is a leaf, train is light

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    for k in keys:
        steps, vals = history.series(k, "train")
        ax.plot(steps, smooth(vals, smooth_weight) if smooth_weight else vals, label=f"train {k}")
    for k in eval_keys:
        steps, vals = history.series(k, "eval")
        ax.plot(steps, vals, "o-", label=f"eval {k}")
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str = "step",
                ylabel: str = "", title: str | None = None, ax: Axes | None = None, logy: bool = False) -> Figure:
    """Several named ``(x, y)`` curves on one axis (e.g. the same loss under different settings)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys):
            raise ValueError(f"curve {name!r}: {len(xs)} x values but {len(ys)} y values")
        ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if curves:
        ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
