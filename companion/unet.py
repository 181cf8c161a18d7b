"""A small U-Net noise predictor for 28x28 images, built bottom-up (the network of chapter 18).

Read top to bottom:

* :class:`UNetConfig` with a :meth:`UNetConfig.tiny` preset (tests and the ci profile);
* :func:`timestep_embedding`: the sinusoidal encoding of the timestep (``companion.layers.sincos_1d``, the
  transformer's position encoding used for time; Ho et al. 2020, appendix B);
* :class:`TimeResBlock`: GroupNorm, SiLU, 3x3 convolution, the time embedding added as a per-channel bias, and
  again; a residual connection around both (Ho et al. 2020 after Zagoruyko & Komodakis 2016);
* :class:`AttentionBlock`: self-attention over the pixels of a feature map, with
  :class:`companion.layers.MultiHeadAttention` (chapter 08) on the ``H * W`` tokens;
* :class:`Downsample2d` (stride-2 convolution) and :class:`Upsample2d` (nearest x2, then a convolution);
* :class:`UNet`: levels of residual blocks going down, a middle (residual, attention, residual) and the
  mirrored levels going up, each up block reading the matching down block's output through a skip
  connection (Ronneberger et al. 2015); attention at the levels named in ``attention_levels`` (by default
  14x14 and 7x7).

The network is the ``model`` of ``companion.diffusion``'s samplers: ``UNet(config)(x, t)`` returns a noise
(or ``x0``, or ``v``) prediction shaped like ``x`` for integer timesteps ``t [B]``; with ``time_scale=1000``
it reads flow-matching times in ``[0, 1]`` instead. With ``num_classes`` set it is class-conditional,
``model(x, t, y=labels)``, and ``y=None`` (or the label ``num_classes``) is the "no label" input that
classifier-free guidance needs. No sampling loop lives here.

Shapes: images ``[B, C, H, W]``; timesteps ``[B]`` (a scalar is broadcast); labels ``[B]``; time embedding
``[B, time_dim]``. Introduced in chapter 18.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _check_images, _shape
from .layers import MultiHeadAttention, sincos_1d

__all__ = [
    "AttentionBlock",
    "Downsample2d",
    "TimeResBlock",
    "UNet",
    "UNetConfig",
    "Upsample2d",
    "timestep_embedding",
]


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a :class:`UNet`.

    Attributes:
        image_channels: C of the images (1 for MNIST).
        image_size: H = W; must be divisible by ``2 ** (len(widths) - 1)`` (28 allows three levels: 28, 14, 7).
        widths: the channels of each level, from the full resolution down.
        blocks: residual blocks per level (on the way down; the same number on the way up).
        attention_levels: the levels (indices into ``widths``) with self-attention after each residual block;
            the middle block always has one.
        heads: attention heads; must divide the width of every level with attention.
        groups: GroupNorm groups; must divide every width.
        time_dim: the width of the time embedding (``None``: ``4 * widths[0]``).
        time_scale: the timestep is multiplied by this before its sinusoidal encoding (1 for integer
            timesteps ``0 .. T-1``; about 1000 for flow-matching times in ``[0, 1]``).
        dropout: dropout inside the residual blocks.
        num_classes: ``None`` (unconditional) or K: add a label embedding with K + 1 entries, the last one
            (label K, or ``y=None``) meaning "no label".
    """

    image_channels: int = 1
    image_size: int = 28
    widths: tuple[int, ...] = (32, 64, 128)
    blocks: int = 1
    attention_levels: tuple[int, ...] = (1, 2)
    heads: int = 4
    groups: int = 8
    time_dim: int | None = None
    time_scale: float = 1.0
    dropout: float = 0.0
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive channel counts, got {self.widths}")
        if self.image_size % 2 ** (len(self.widths) - 1):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2 ** (len(widths) - 1) = "
                             f"{2 ** (len(self.widths) - 1)} for widths {self.widths}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if any(not 0 <= i < len(self.widths) for i in self.attention_levels):
            raise ValueError(f"attention_levels must index widths (0..{len(self.widths) - 1}), "
                             f"got {self.attention_levels}")
        for w in self.widths:
            if w % self.groups:
                raise ValueError(f"groups {self.groups} must divide every width, got widths {self.widths}")
        for i in (*self.attention_levels, len(self.widths) - 1):
            if self.widths[i] % self.heads:
                raise ValueError(f"heads {self.heads} must divide the width of every level with attention, "
                                 f"got width {self.widths[i]} at level {i}")
        if self.time_dim is not None and (self.time_dim < 2 or self.time_dim % 2):
            raise ValueError(f"time_dim must be an even number >= 2, got {self.time_dim}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {self.num_classes}")

    @property
    def embedding_dim(self) -> int:
        """The time embedding's width (``time_dim`` or ``4 * widths[0]``)."""
        return self.time_dim or 4 * self.widths[0]

    def replace(self, **changes: Any) -> UNetConfig:
        return replace(self, **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> UNetConfig:
        """A small U-Net (widths 8, 16, 16; attention at 14x14 and 7x7) for tests and the ci profile."""
        return cls(**{"widths": (8, 16, 16), "heads": 2, "groups": 4, **changes})


# ----------------------------------------------------------------------------------------------
# Time embedding
# ----------------------------------------------------------------------------------------------


def timestep_embedding(t: Tensor, dim: int, scale: float = 1.0) -> Tensor:
    """Sinusoidal encoding of the timesteps, ``[B] -> [B, dim]`` (Vaswani et al. 2017, used for time by Ho et al. 2020).

    Pairs ``sin(scale t w_i), cos(scale t w_i)`` with ``w_i = 10000^(-2i / dim)``: nearby timesteps get
    nearby codes, and the network can read both coarse and fine differences.

    Args:
        t: ``[B]`` timesteps, integer or float.
        dim: the encoding width, even.
        scale: multiplies ``t`` first (1000 maps flow times in ``[0, 1]`` onto DDPM's range).

    Returns:
        ``[B, dim]`` float32 (or the dtype of a float ``t``).

    Introduced in chapter 18.
    """
    positions = t.reshape(-1).to(t.dtype if t.is_floating_point() else torch.float32) * scale
    return sincos_1d(positions, dim)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


class TimeResBlock(nn.Module):
    """A residual block with the time embedding: ``x + f(x, emb)`` (a 1x1 convolution on the skip if widths differ).

    ``f``: GroupNorm, SiLU, 3x3 convolution, plus ``Linear(SiLU(emb))`` as a per-channel bias, GroupNorm, SiLU,
    dropout, 3x3 convolution.

    Args:
        in_channels: channels in.
        out_channels: channels out.
        time_dim: width of the time embedding.
        groups: GroupNorm groups.
        dropout: dropout probability before the second convolution.

    Shapes: ``x [B, in, H, W], emb [B, time_dim] -> [B, out, H, W]``. Introduced in chapter 18.
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, out, H, W]
        h = h + self.time(F.silu(emb))[:, :, None, None]  # the timestep shifts every channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the pixels of a feature map, with a residual connection.

    GroupNorm, then the ``H * W`` pixels become tokens of width C (``[B, C, H, W] -> [B, HW, C]``) for
    :class:`companion.layers.MultiHeadAttention`, and back. Every pixel can read every other pixel: the
    global view that convolutions build only slowly (the DDPM U-Net uses it at 16x16).

    Args:
        channels: C, the token width.
        heads: attention heads, dividing C.
        groups: GroupNorm groups.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``. Introduced in chapter 18.
    """

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = MultiHeadAttention(channels, heads)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        out = self.attn(tokens).transpose(1, 2).reshape(B, C, H, W)
        return x + out


class Downsample2d(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution: ``[B, C, H, W] -> [B, C, H/2, W/2]``. Chapter 18."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample2d(nn.Module):
    """Double the resolution: nearest-neighbour x2, then a 3x3 convolution: ``[B, C, H, W] -> [B, C, 2H, 2W]``. Chapter 18."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# ----------------------------------------------------------------------------------------------
# The U-Net
# ----------------------------------------------------------------------------------------------


class _Level(nn.Module):
    """One level's residual blocks, each followed by attention if the level has it."""

    def __init__(self, channels_in: list[int], channels: int, config: UNetConfig, attention: bool) -> None:
        super().__init__()
        c = config
        self.res = nn.ModuleList(TimeResBlock(i, channels, c.embedding_dim, c.groups, c.dropout) for i in channels_in)
        self.attn = nn.ModuleList(AttentionBlock(channels, c.heads, c.groups) if attention else nn.Identity()
                                  for _ in channels_in)


class UNet(nn.Module):
    """The noise predictor ``eps_theta(x_t, t)`` of DDPM (Ho et al. 2020, appendix B), small enough for MNIST.

    Down: ``conv_in``, then for each level ``blocks`` residual blocks (with attention where configured), a
    :class:`Downsample2d` between levels. Middle: residual, attention, residual. Up: the levels in reverse,
    each block concatenating the matching down block's output (the skip connection) before its residual
    block, an :class:`Upsample2d` between levels. Out: GroupNorm, SiLU, ``conv_out`` back to C channels.

    Args:
        config: a :class:`UNetConfig`.

    Shapes: ``x [B, C, H, W], t [B] (or a scalar), y [B] or None -> [B, C, H, W]``. Introduced in chapter 18.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or UNetConfig()
        widths, E = c.widths, c.embedding_dim
        self.time_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.label = nn.Embedding(c.num_classes + 1, E) if c.num_classes else None  # the last row: "no label"
        self.conv_in = nn.Conv2d(c.image_channels, widths[0], 3, padding=1)
        # down: remember the width of every output a skip connection will carry
        self.down, self.downsample, skips, ch = nn.ModuleList(), nn.ModuleList(), [widths[0]], widths[0]
        for i, w in enumerate(widths):
            self.down.append(_Level([ch] + [w] * (c.blocks - 1), w, c, i in c.attention_levels))
            skips += [w] * c.blocks
            ch = w
            if i < len(widths) - 1:
                self.downsample.append(Downsample2d(w))
                skips.append(w)
        self.mid1 = TimeResBlock(ch, ch, E, c.groups, c.dropout)
        self.mid_attn = AttentionBlock(ch, c.heads, c.groups)
        self.mid2 = TimeResBlock(ch, ch, E, c.groups, c.dropout)
        # up: one block more per level than on the way down, so every skip (also the downsampled ones) is read
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            ins = []
            for _ in range(c.blocks + 1):
                ins.append(ch + skips.pop())
                ch = w
            self.up.append(_Level(ins, w, c, i in c.attention_levels))
            if i > 0:
                self.upsample.append(Upsample2d(w))
        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.image_channels, 3, padding=1)

    def embed(self, t: Tensor | int | float, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """The conditioning vector ``[B, time_dim]``: the time MLP of :func:`timestep_embedding`, plus the label's."""
        c = self.config
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"UNet: t must be a scalar or one timestep per image, [B] with B = {batch}, "
                             f"got shape {_shape(t)}")
        emb = self.time_mlp(timestep_embedding(t, c.embedding_dim, c.time_scale).to(self.conv_in.weight.dtype))
        if self.label is None:
            if y is not None:
                raise ValueError("UNet: got labels y, but the model is unconditional (set UNetConfig.num_classes)")
            return emb
        if y is None:
            y = torch.full((batch,), c.num_classes, dtype=torch.long, device=device)
        if y.shape != (batch,) or y.is_floating_point():
            raise ValueError(f"UNet: y must be integer labels [B] with B = {batch}, got shape {_shape(y)}, {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > c.num_classes):
            raise ValueError(f"UNet: labels must lie in 0..{c.num_classes} ({c.num_classes} = no label), "
                             f"got values in {int(y.min())}..{int(y.max())}")
        return emb + self.label(y)

    def forward(self, x: Tensor, t: Tensor | int | float, y: Tensor | None = None) -> Tensor:
        """Predict the noise (or whatever the model was trained to predict) in ``x`` at time ``t``.

        Args:
            x: ``[B, C, H, W]`` noisy images.
            t: ``[B]`` timesteps (integer ``0 .. T-1``, or float times with ``time_scale``), or a scalar.
            y: ``[B]`` integer labels for a class-conditional model (``num_classes`` or ``None``: no label).

        Returns:
            ``[B, C, H, W]``.

        Raises:
            ValueError: ``x`` of the wrong shape, ``t`` not one per image, or labels that do not fit the model.
        """
        c = self.config
        _check_images("UNet", x, c.image_channels, (c.image_size, c.image_size))
        emb = self.embed(t, y, x.shape[0], x.device)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(h, emb))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))  # the skip connection
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))
