"""The geometry of a convolution, counted and drawn: helpers for chapter 03.

``companion.ops`` holds the convolution a model uses (``conv2d``: im2col + one matrix multiply, with a
hand-written backward). This module holds the small, deliberately plain functions chapter 03 uses to *see*
what that convolution does:

* ``tap_positions`` / ``footprint``: which input pixels feed one output pixel, for any kernel size, stride,
  padding and dilation;
* ``connectivity``: which input channels feed which output channels, for any number of groups;
* ``im2col``: the column matrix, written as one strided slice per kernel tap (compare ``F.unfold``);
* ``conv_matrix``: a convolution as the dense matrix ``A`` with ``vec(y) = A vec(x)``, so that its transpose,
  the transposed convolution, can be looked at;
* ``transposed_overlap``: how many kernel taps a transposed convolution adds into each output pixel (the
  cause of checkerboard artefacts);
* ``weight_grad_2d``: the weight gradient of a one-channel convolution, a correlation of input and upstream
  gradient;
* ``benchmark``: a wall-clock timer that is robust to a busy machine (the best of several repeats);
* ``draw_conv`` / ``draw_groups`` / ``show_matrix``: matplotlib pictures of the above.

Only ``torch`` is imported at module level; matplotlib is imported inside the drawing functions, and nothing
else in ``companion`` imports this module (it is a leaf, like ``plot``). Introduced in chapter 03.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import IntPair, _pair

__all__ = [
    "benchmark",
    "connectivity",
    "conv_matrix",
    "draw_conv",
    "draw_groups",
    "footprint",
    "im2col",
    "show_matrix",
    "tap_positions",
    "transposed_overlap",
    "weight_grad_2d",
]



def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2p - d(k - 1) - 1) / s) + 1, the number of kernel placements along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ----------------------------------------------------------------------------------------------
# Which pixels feed which output
# ----------------------------------------------------------------------------------------------


def tap_positions(
    out_pos: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """Input coordinates read by output pixel ``out_pos``: ``[kH, kW, 2]`` (row, column) per kernel tap.

    Equation: tap ``(i, j)`` of output ``(h, w)`` reads input row ``h*s - p + i*d`` and column
    ``w*s - p + j*d``. Coordinates are in the *unpadded* input, so a negative value (or one >= H) means the
    tap reads the zero padding.

    Introduced in chapter 03.
    """
    (kh, kw), (sh, sw) = _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1)
    (ph, pw), (dh, dw) = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    h, w = out_pos
    rows = h * sh - ph + dh * torch.arange(kh)  # [kH]
    cols = w * sw - pw + dw * torch.arange(kw)  # [kW]
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # [kH, kW, 2]


def footprint(
    input_size: IntPair,
    out_pos: tuple[int, int],
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """The receptive field of one output pixel on the *padded* input canvas: ``[H + 2pH, W + 2pW]`` of 0/1.

    Raises ``ValueError`` when ``out_pos`` is not a position of the output.

    Introduced in chapter 03.
    """
    (H, W), (kh, kw) = _pair(input_size, "input_size", 1), _pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel (dilation {dilation}) does not fit a {H}x{W} input padded by {padding}")
    if not (0 <= out_pos[0] < Ho and 0 <= out_pos[1] < Wo):
        raise ValueError(f"out_pos {tuple(out_pos)} is outside the {Ho}x{Wo} output")
    taps = tap_positions(out_pos, (kh, kw), (sh, sw), (ph, pw), (dh, dw))  # [kH, kW, 2], unpadded coords
    canvas = torch.zeros(H + 2 * ph, W + 2 * pw, dtype=torch.long)
    canvas[taps[..., 0] + ph, taps[..., 1] + pw] = 1  # shift into padded coordinates
    return canvas


def connectivity(in_channels: int, out_channels: int, groups: int = 1) -> Tensor:
    """Which input channels each output channel reads: bool ``[C_out, C_in]``.

    With ``groups = G`` the channels split into G blocks; output channel ``o`` belongs to block
    ``o // (C_out / G)`` and reads exactly the ``C_in / G`` input channels of that block (G = 1: everything;
    G = C_in: a depthwise convolution, one input channel per output).

    Introduced in chapter 03.
    """
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels={in_channels} and out_channels={out_channels} must be divisible by groups={groups}")
    block_out = torch.arange(out_channels) // (out_channels // groups)  # group of each output channel
    block_in = torch.arange(in_channels) // (in_channels // groups)  # group of each input channel
    return block_out[:, None] == block_in[None, :]


# ----------------------------------------------------------------------------------------------
# The column matrix, the dense matrix, the transposed convolution's overlaps
# ----------------------------------------------------------------------------------------------


def im2col(
    x: Tensor,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """Gather every receptive field into a column: ``[B, C, H, W] -> [B, C*kH*kW, Ho*Wo]`` (like ``F.unfold``).

    Row ``(c, i, j)`` (in that order, ``c`` slowest) of the result holds the pixel that kernel tap ``(i, j)`` of
    channel ``c`` reads, for every output position in row-major order. One strided slice per kernel tap:
    ``x_pad[:, :, i*d : i*d + s*(Ho - 1) + 1 : s, ...]`` is the whole image of what tap ``(i, j)`` sees.
    An unbatched ``[C, H, W]`` input gives ``[C*kH*kW, Ho*Wo]``.

    Introduced in chapter 03 (``companion.ops.conv2d`` does the same with a single ``as_strided`` view).
    """
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"im2col expects [B, C, H, W] or [C, H, W], got shape {list(x.shape)}")
    (kh, kw), (sh, sw) = _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1)
    (ph, pw), (dh, dw) = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    B, C, H, W = x.shape
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {kh}x{kw} kernel (dilation {(dh, dw)}) does not fit input {list(x.shape)} padded by {(ph, pw)}")
    xp = F.pad(x, (pw, pw, ph, ph))  # [B, C, H + 2pH, W + 2pW]
    cols = x.new_empty(B, C, kh, kw, Ho, Wo)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw  # where tap (i, j) sits for output (0, 0)
            cols[:, :, i, j] = xp[:, :, top : top + sh * (Ho - 1) + 1 : sh, left : left + sw * (Wo - 1) + 1 : sw]
    cols = cols.reshape(B, C * kh * kw, Ho * Wo)
    return cols[0] if unbatched else cols


def conv_matrix(
    weight: Tensor,
    input_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> Tensor:
    """A convolution written out as a dense matrix ``A``: ``vec(conv2d(x, weight)) = A @ vec(x)``.

    ``A`` has shape ``[C_out*Ho*Wo, C_in*H*W]``; row ``(o, h, w)`` holds the kernel ``weight[o]`` placed where
    output ``(h, w)`` reads it (taps that fall on the padding are dropped, since padding is zero). Built from the
    definition with index arithmetic, not from a convolution routine, so comparing ``A @ vec(x)`` with
    ``F.conv2d`` is an independent check. ``A.T`` is the transposed convolution. Small inputs only: ``A`` is
    mostly zeros.

    Introduced in chapter 03.
    """
    if weight.dim() != 4:
        raise ValueError(f"weight must be [C_out, C_in, kH, kW], got shape {list(weight.shape)}")
    C_out, C_in, kh, kw = weight.shape
    (H, W), (sh, sw) = _pair(input_size, "input_size", 1), _pair(stride, "stride", 1)
    (ph, pw), (dh, dw) = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"weight {list(weight.shape)} does not fit a {H}x{W} input padded by {(ph, pw)}")
    # one entry per (o, h, w, c, i, j); broadcast the index grids to that shape
    o, h, w, c, i, j = torch.meshgrid(
        *(torch.arange(n) for n in (C_out, Ho, Wo, C_in, kh, kw)), indexing="ij"
    )
    r, q = h * sh - ph + i * dh, w * sw - pw + j * dw  # the input pixel tap (i, j) of output (h, w) reads
    inside = (r >= 0) & (r < H) & (q >= 0) & (q < W)
    row = ((o * Ho + h) * Wo + w)[inside]
    col = ((c * H + r) * W + q)[inside]
    A = weight.new_zeros(C_out * Ho * Wo, C_in * H * W)
    A.index_put_((row, col), weight[o[inside], c[inside], i[inside], j[inside]], accumulate=True)
    return A


def transposed_overlap(input_size: IntPair, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0) -> Tensor:
    """How many (input pixel, kernel tap) pairs a transposed convolution adds into each output pixel.

    Input pixel ``h`` paints its kernel onto outputs ``h*s - p + i`` for ``i = 0..k-1``. When ``k`` is not a
    multiple of ``s`` some outputs receive more paint than their neighbours, a periodic pattern that becomes the
    checkerboard artefact (Odena et al. 2016). The count is separable: rows times columns.
    Returns a long tensor ``[Ho, Wo]``, ``Ho = (H - 1)*s - 2p + k``.

    Introduced in chapter 03.
    """
    (H, W), (kh, kw) = _pair(input_size, "input_size", 1), _pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)

    def axis(n: int, k: int, s: int, p: int) -> Tensor:
        size = (n - 1) * s - 2 * p + k
        if size < 1:
            raise ValueError(f"transposed convolution of size {n} with kernel {k}, stride {s}, padding {p} is empty")
        counts = torch.zeros(size, dtype=torch.long)
        for h in range(n):
            for i in range(k):
                o = h * s - p + i
                if 0 <= o < size:
                    counts[o] += 1
        return counts

    return axis(H, kh, sh, ph)[:, None] * axis(W, kw, sw, pw)[None, :]


def weight_grad_2d(x: Tensor, grad_out: Tensor) -> Tensor:
    """dL/dW of the one-channel convolution ``y = conv2d(x, W)`` (stride 1, no padding), given ``g = dL/dy``.

    Equation: ``dL/dW[i, j] = sum_{h, w} g[h, w] * x[h + i, w + j]``, the correlation of the input with the
    upstream gradient. ``x`` is ``[H, W]``, ``grad_out`` is ``[Ho, Wo]``; the kernel was ``[H - Ho + 1, W - Wo + 1]``.

    Introduced in chapter 03 (exercise 03.3).
    """
    if x.dim() != 2 or grad_out.dim() != 2:
        raise ValueError(f"x and grad_out must be 2-D, got {list(x.shape)} and {list(grad_out.shape)}")
    (H, W), (Ho, Wo) = x.shape, grad_out.shape
    kh, kw = H - Ho + 1, W - Wo + 1
    if kh < 1 or kw < 1:
        raise ValueError(f"grad_out {list(grad_out.shape)} is larger than x {list(x.shape)}")
    grad_w = x.new_empty(kh, kw)
    for i in range(kh):
        for j in range(kw):
            grad_w[i, j] = (grad_out * x[i : i + Ho, j : j + Wo]).sum()  # tap (i, j) saw this window of x
    return grad_w


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def benchmark(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.005, max_calls: int = 1000) -> float:
    """Seconds per call of ``fn()``: the best of ``repeats`` timings, each averaging enough calls to last ``min_time``.

    The minimum (not the mean) is the number least disturbed by other processes on a busy machine: noise only
    ever adds time. One untimed warm-up call comes first.

    Introduced in chapter 03.
    """
    if repeats < 1 or min_time < 0 or max_calls < 1:
        raise ValueError("repeats and max_calls must be >= 1 and min_time >= 0")
    start = time.perf_counter()
    fn()  # warm-up: first-call allocations, lazy initialisation
    first = max(time.perf_counter() - start, 1e-9)
    calls = int(min(max_calls, max(1, min_time / first)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------


def _grid(ax, x0: float, y0: float, rows: int, cols: int, fill, hatch=None, edge: str = "0.55") -> None:
    """Draw a rows x cols grid of unit squares with top-left corner at (x0, y0) (y grows downwards).

    ``fill(r, c)`` gives each cell's colour; ``hatch(r, c)`` (optional) a hatch pattern or None.
    """
    from matplotlib.patches import Rectangle

    for r in range(rows):
        for c in range(cols):
            pattern = hatch(r, c) if hatch is not None else None
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=fill(r, c), edgecolor=edge, linewidth=0.6,
                                   hatch=pattern))


def draw_conv(
    ax,
    input_size: IntPair,
    kernel_size: IntPair,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    out_positions: Sequence[tuple[int, int]] = ((0, 0),),
    title: str | None = None,
):
    """Draw the padded input (left) and the output (right); colour the taps of each output pixel in ``out_positions``.

    Padding cells are grey and hatched, input cells white; each chosen output pixel and the input pixels it reads
    share a colour (overlapping receptive fields blend; a tap on the padding stays hatched). Returns ``ax``.

    Introduced in chapter 03.
    """
    from matplotlib.colors import to_rgb

    (H, W), (kh, kw) = _pair(input_size, "input_size", 1), _pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw) = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    dh, dw = _pair(dilation, "dilation", 1)
    Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
    colours = [to_rgb(f"C{k}") for k in range(len(out_positions))]
    masks = [footprint((H, W), pos, (kh, kw), (sh, sw), (ph, pw), (dh, dw)) for pos in out_positions]
    Hp, Wp = H + 2 * ph, W + 2 * pw

    def inside(r, c):
        return ph <= r < ph + H and pw <= c < pw + W

    def in_fill(r, c):
        hits = [col for m, col in zip(masks, colours) if m[r, c]]
        if hits:
            return tuple(sum(ch) / len(hits) for ch in zip(*hits))  # blend where fields overlap
        return (1.0, 1.0, 1.0) if inside(r, c) else (0.85, 0.85, 0.85)

    def out_fill(r, c):
        for pos, col in zip(out_positions, colours):
            if (r, c) == tuple(pos):
                return col
        return (1.0, 1.0, 1.0)

    gap = 2.5
    _grid(ax, 0, 0, Hp, Wp, in_fill, hatch=lambda r, c: None if inside(r, c) else "///")
    oy = (Hp - Ho) / 2
    _grid(ax, Wp + gap, oy, Ho, Wo, out_fill)
    ax.text(Wp / 2, -0.6, f"input {H}×{W}" + (f" + padding {ph}" if ph or pw else ""), ha="center", va="bottom", fontsize=9)
    ax.text(Wp + gap + Wo / 2, oy - 0.6, f"output {Ho}×{Wo}", ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-0.5, Wp + gap + Wo + 0.5)
    ax.set_ylim(max(Hp, oy + Ho) + 0.5, -2.2)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def draw_groups(ax, in_channels: int, out_channels: int, groups: int = 1, title: str | None = None):
    """Draw the channel connections of a grouped convolution: inputs on top, outputs below, one colour per group.

    Each line is one ``kH x kW`` kernel slice ``W[o, c]``; the number of lines is ``C_out * C_in / G``, the
    weight count divided by ``kH*kW``. Returns ``ax``.

    Introduced in chapter 03.
    """
    conn = connectivity(in_channels, out_channels, groups)
    xs_in = torch.linspace(0, 1, in_channels) if in_channels > 1 else torch.tensor([0.5])
    xs_out = torch.linspace(0, 1, out_channels) if out_channels > 1 else torch.tensor([0.5])
    per_group = out_channels // groups
    for o in range(out_channels):
        colour = f"C{(o // per_group) % 10}"
        for c in range(in_channels):
            if conn[o, c]:
                ax.plot([xs_in[c], xs_out[o]], [1, 0], color=colour, linewidth=1.0, alpha=0.8)
    for o in range(out_channels):
        ax.plot(xs_out[o], 0, "o", color=f"C{(o // per_group) % 10}", markersize=7, zorder=3)
    ax.plot(xs_in, torch.ones(in_channels), "o", color="0.3", markersize=7, zorder=3)
    ax.text(-0.08, 1, "in", ha="right", va="center", fontsize=9)
    ax.text(-0.08, 0, "out", ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.2, 1.05)
    ax.set_ylim(-0.2, 1.2)
    ax.axis("off")
    ax.set_title(title or f"groups = {groups}: {int(conn.sum())} kernel slices", fontsize=10)
    return ax


def show_matrix(ax, matrix: Tensor, title: str | None = None, fmt: str = "{:g}", cmap: str = "Blues",
                row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                symmetric: bool = False, limit: float | None = None):
    """Draw a small matrix as a heat map with its numbers written in the cells. Returns ``ax``.

    ``symmetric=True`` centres the colour scale on 0 (for a diverging ``cmap`` such as ``"RdBu_r"``), from
    ``-limit`` to ``limit`` (default: the largest magnitude in the matrix).
    """
    m = matrix.detach().cpu().double()
    if m.dim() != 2:
        raise ValueError(f"show_matrix expects a 2-D tensor, got shape {list(m.shape)}")
    hi = limit if limit is not None else (float(m.abs().max()) or 1.0)
    scale = dict(vmin=-hi, vmax=hi) if symmetric else {}
    ax.imshow(m.numpy(), cmap=cmap, aspect="equal", **scale)
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            v = float(m[r, c])
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=7, color="white" if abs(v) > 0.6 * hi else "black")
    ax.set_xticks(range(m.shape[1]), col_labels if col_labels is not None else [str(c) for c in range(m.shape[1])], fontsize=7)
    ax.set_yticks(range(m.shape[0]), row_labels if row_labels is not None else [str(r) for r in range(m.shape[0])], fontsize=7)
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
