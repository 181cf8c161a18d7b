"""Interactive widgets for the notebooks (ipywidgets), each with a static fallback for the rendered book.

A leaf module like ``companion.plot``: nothing else in ``companion`` imports it, and ``ipywidgets`` is only
imported when an interactive widget is built.

* :func:`latent_explorer` — sliders over chosen latent dimensions and the live decoded image; in Jupyter and
  Colab (where it switches on Colab's custom widget manager). ``static=True`` draws the same thing as a
  traversal grid (one row per slider), which is what the HTML book shows.
* :func:`to_png` — a ``[C, H, W]`` image in ``[0, 1]`` as PNG bytes (nearest-neighbour enlarged).

Introduced in chapter 10.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .vae import traverse

__all__ = ["LatentExplorer", "enable_colab_widgets", "latent_explorer", "to_png", "traversal_figure"]

Decode = Callable[[Tensor], Tensor]


def enable_colab_widgets() -> bool:
    """In Colab, switch on the custom widget manager that ipywidgets 8 needs; elsewhere do nothing.

    Returns whether it was switched on. Never raises: outside Colab (or with an old Colab) it is a no-op.
    """
    if "google.colab" not in sys.modules:
        return False
    try:
        from google.colab import output  # type: ignore[import-not-found]

        output.enable_custom_widget_manager()
        return True
    except Exception:  # an old Colab without the manager: the sliders still work, the image may not refresh
        return False


def _as_hw(image: Tensor) -> np.ndarray:
    """One image ``[C, H, W]`` / ``[H, W]`` (or a batch of one) -> ``uint8 [H, W]`` or ``[H, W, 3]``."""
    x = image.detach().cpu().float()
    while x.ndim > 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 3 and x.shape[0] == 3:
        x = x.permute(1, 2, 0)
    elif x.ndim != 2:
        raise ValueError(f"expected one image [C, H, W] with C = 1 or 3, or [H, W]; got shape {tuple(image.shape)}")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def to_png(image: Tensor, scale: int = 6) -> bytes:
    """PNG bytes of one image in ``[0, 1]`` (``[C, H, W]`` or ``[H, W]``), each pixel a ``scale x scale`` block."""
    from PIL import Image

    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    arr = _as_hw(image)
    arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _decode_one(decode: Decode, z: Tensor) -> Tensor:
    with torch.no_grad():
        out = decode(z)
    if not isinstance(out, Tensor) or out.shape[0] != z.shape[0]:
        raise ValueError("decode(z [B, D]) must return a tensor of B images [B, C, H, W] or [B, H, W]")
    return out


def traversal_figure(decode: Decode, base: Tensor, dims: Sequence[int], values: Sequence[float],
                     labels: Sequence[str] | None = None, title: str | None = None, padding: int = 2):
    """The static picture of the explorer: one row per dimension, the dimension swept over ``values``.

    ``base [D]`` is the latent every other dimension stays at; the grid is ``companion.vae.traverse``'s. The images
    are tiled into one picture on a single axis (fast to draw); rows are labelled with ``labels`` (default ``z[d]``), columns with the values.
    Returns a matplotlib ``Figure``; ``fig.axes[0].images[0].get_array()`` is the tiled ``[rows*, cols*]`` array.
    """
    import matplotlib.pyplot as plt

    images = traverse(decode, base.detach().flatten().float(), dims, values).flatten(0, 1).float()  # [R*T, ...]
    cells = [_as_hw(img) for img in images]  # uint8 [H, W] (or [H, W, 3])
    rows, cols = len(dims), len(values)
    h, w = cells[0].shape[:2]
    canvas = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, *cells[0].shape[2:]), 255,
                     dtype=np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        canvas[top:top + h, left:left + w] = cell
    fig, ax = plt.subplots(figsize=(0.75 * cols + 1.2, 0.75 * rows + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([padding + c * (w + padding) + w / 2 for c in range(cols)], [f"{v:+.1f}" for v in values],
                  fontsize=8)
    ax.set_yticks([padding + r * (h + padding) + h / 2 for r in range(rows)],
                  list(labels) if labels else [f"z[{d}]" for d in dims], fontsize=9)
    ax.tick_params(length=0)
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


class LatentExplorer:
    """Sliders over latent dimensions and the live decoded image (built by :func:`latent_explorer`).

    Attributes:
        sliders: one ``ipywidgets.FloatSlider`` per explored dimension.
        image: the ``ipywidgets.Image`` that shows ``decode(z)``.
        widget: the whole layout (displayed when the explorer is the last expression of a cell).
        dims: the latent dimensions the sliders control; ``base`` the latent the others stay at.
    """

    def __init__(self, decode: Decode, dims: Sequence[int], base: Tensor, value_range: tuple[float, float],
                 step: float, labels: Sequence[str] | None, scale: int, title: str | None) -> None:
        import ipywidgets as W

        self.decode, self.dims, self.base, self.scale = decode, list(dims), base.detach().flatten().float(), scale
        self.updates = 0
        lo, hi = value_range
        self.sliders = [
            W.FloatSlider(value=float(self.base[d].clamp(lo, hi)), min=lo, max=hi, step=step,
                          description=(labels[i] if labels else f"z[{d}]"), continuous_update=True,
                          readout_format=".1f", layout=W.Layout(width="320px"))
            for i, d in enumerate(self.dims)
        ]
        size = 28 * scale
        self.image = W.Image(format="png", width=size, height=size)
        self.reset_button = W.Button(description="reset", layout=W.Layout(width="80px"))
        self.reset_button.on_click(lambda _b: self.reset())
        for s in self.sliders:
            s.observe(self._on_change, names="value")
        header = [W.HTML(f"<b>{title}</b>")] if title else []
        self.widget = W.VBox([*header, W.HBox([W.VBox([*self.sliders, self.reset_button]), self.image])])
        self.update()

    def current_z(self) -> Tensor:
        """The latent the sliders describe, ``[1, D]``."""
        z = self.base.clone()
        for d, s in zip(self.dims, self.sliders):
            z[d] = float(s.value)
        return z[None]

    def decoded(self) -> Tensor:
        """``decode(current_z())``: the image now shown, ``[C, H, W]`` or ``[H, W]``."""
        return _decode_one(self.decode, self.current_z())[0]

    def update(self) -> None:
        """Decode the current latent and show it."""
        self.image.value = to_png(self.decoded(), self.scale)
        self.updates += 1

    def _on_change(self, change) -> None:
        """The slider callback (``observe(..., names="value")``)."""
        self.update()

    def reset(self) -> None:
        """Move every slider back to the base latent."""
        for d, s in zip(self.dims, self.sliders):
            s.value = float(self.base[d].clamp(s.min, s.max))
        self.update()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def latent_explorer(decode: Decode, dims: Sequence[int], base: Tensor | None = None, *,
                    latent_dim: int | None = None, value_range: tuple[float, float] = (-3.0, 3.0),
                    step: float = 0.1, labels: Sequence[str] | None = None, static: bool = False,
                    n_static: int = 9, scale: int = 6, title: str | None = None):
    """An interactive latent explorer: one slider per dimension in ``dims``, the decoded image beside them.

    Args:
        decode: ``z [B, D] -> images [B, C, H, W]`` (or ``[B, H, W]``) in ``[0, 1]``, e.g. ``model.decode_mean``.
        dims: which latent dimensions get a slider (pick the most active ones: ``vae.activity``).
        base: the latent ``[D]`` the other dimensions stay at (default: zeros, the prior's mean).
        latent_dim: D, needed when ``base`` is not given.
        value_range, step: the sliders' range and step (the prior puts 99.7% of its mass in ``[-3, 3]``).
        labels: slider names (default ``z[d]``).
        static: return a matplotlib figure instead (a traversal grid: each row sweeps one slider over
            ``n_static`` values of ``value_range``), for the rendered book or a PDF.
        scale: the image is enlarged ``scale`` times (28 x 6 = 168 pixels).

    Returns:
        a :class:`LatentExplorer` (display it: it is the cell's last expression), or with ``static=True`` a Figure.
    """
    dims = [int(d) for d in dims]
    if not dims:
        raise ValueError("latent_explorer needs at least one dimension in dims")
    if base is None:
        if latent_dim is None:
            raise ValueError("pass base (a latent [D]) or latent_dim")
        base = torch.zeros(latent_dim)
    base = base.detach().flatten().float().cpu()
    if any(d < 0 or d >= base.numel() for d in dims):
        raise ValueError(f"dims {dims} out of range for a {base.numel()}-dimensional latent")
    if labels is not None and len(labels) != len(dims):
        raise ValueError(f"got {len(labels)} labels for {len(dims)} dims")
    lo, hi = value_range
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    if static:
        values = np.linspace(lo, hi, n_static).tolist()
        return traversal_figure(decode, base, dims, values, labels=labels, title=title)
    enable_colab_widgets()
    return LatentExplorer(decode, dims, base, (lo, hi), step, labels, scale, title)
