"""The diffusion transformer (DiT) of chapter 20: a ViT that denoises, conditioned through adaLN-Zero.

Read top to bottom (Peebles & Xie 2023, with the 2-D rotary positions and parallel blocks of FLUX):

* :class:`DiTConfig`: the input grid (a latent ``[C, H, W]``), the patch size, width, depth, heads, the
  number of classes, ``position`` (``"rope"``: axial 2-D RoPE on queries and keys, as FLUX; ``"sincos"``:
  fixed 2-D sinusoidal positions added to the tokens, as the original DiT) and ``parallel`` (FLUX's
  single-stream block: attention and MLP side by side on one modulated input);
* :func:`modulate`: adaptive LayerNorm's ``x * (1 + scale) + shift``, the conditioning of every block;
* :class:`DiTBlock`: ``x + gate * attn(modulate(LN(x)))``, then the same for the MLP, with ``shift``,
  ``scale`` and ``gate`` regressed from the conditioning vector by a linear layer initialised to zero
  (adaLN-Zero: at initialisation every gate is 0 and every block is the identity);
* :class:`FinalLayer`: one more modulated LayerNorm and a linear map from each token back to its patch, also
  zero-initialised (the untrained DiT predicts 0);
* :class:`DiT`: patchify (chapter 08's :func:`companion.vit.patchify`), embed, add the conditioning vector
  ``c = time MLP(t) + label embedding(y)`` (chapter 18's :func:`companion.unet.timestep_embedding`), run the
  blocks, unpatchify.

``DiT(config)(x, t, y)`` has the signature of every network in :mod:`companion.diffusion` (``y=None`` or the
label ``num_classes`` is "no label", for classifier-free guidance). Shapes: inputs ``[B, C, H, W]``; tokens
``[B, N, D]`` with ``N = (H/p)(W/p)``; conditioning ``[B, D]``; times ``[B]``. Introduced in chapter 20.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _check_images, _shape
from .layers import FeedForward, MultiHeadAttention, rope_angles_2d, sincos_2d
from .unet import timestep_embedding
from .vit import patchify, unpatchify

__all__ = ["POSITIONS", "DiT", "DiTBlock", "DiTConfig", "FinalLayer", "modulate"]

#: How a DiT tells tokens where they are: rotary angles on q and k, or sinusoids added to the tokens.
POSITIONS = ("rope", "sincos")


@dataclass(frozen=True)
class DiTConfig:
    """A DiT's shape.

    Attributes:
        in_channels, input_size: the input grid ``[in_channels, input_size, input_size]`` (a latent).
        patch_size: p, dividing ``input_size``; ``(input_size / p)^2`` tokens of ``in_channels * p^2`` values.
        dim, depth, heads: token width, number of blocks, attention heads (``dim / heads`` divisible by 4
            with RoPE: half the rotated planes turn with the row, half with the column).
        mlp_ratio: the MLP's hidden width over ``dim``.
        num_classes: class-conditional with this many labels plus "no label"; ``None``: unconditional.
        position: one of :data:`POSITIONS`.
        rope_base: the RoPE frequency base (FLUX uses 10000 on grids of 64 and more; 100 suits a 7x7 grid).
        parallel: FLUX's parallel block (one modulation, attention and MLP summed) instead of DiT's sequential one.
        time_scale: multiplies ``t`` before the sinusoidal embedding (1000 for flow times in ``[0, 1]``).
    """

    in_channels: int = 4
    input_size: int = 7
    patch_size: int = 1
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    num_classes: int | None = 10
    position: str = "rope"
    rope_base: float = 100.0
    parallel: bool = False
    time_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"DiTConfig: position must be one of {POSITIONS}, got {self.position!r}")
        if self.patch_size < 1 or self.input_size % self.patch_size:
            raise ValueError(f"DiTConfig: patch_size {self.patch_size} must be >= 1 and divide input_size "
                             f"{self.input_size}")
        if self.dim % self.heads:
            raise ValueError(f"DiTConfig: heads {self.heads} must divide dim {self.dim}")
        if self.position == "rope" and (self.dim // self.heads) % 4:
            raise ValueError(f"DiTConfig: 2-D RoPE needs a head width divisible by 4, got {self.dim // self.heads}")
        if self.position == "sincos" and self.dim % 4:
            raise ValueError(f"DiTConfig: 2-D sinusoidal positions need dim divisible by 4, got {self.dim}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"DiTConfig: num_classes must be >= 1 or None, got {self.num_classes}")

    @property
    def grid(self) -> int:
        """Tokens per side, ``input_size / patch_size``."""
        return self.input_size // self.patch_size

    def replace(self, **changes: Any) -> DiTConfig:
        return replace(self, **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> DiTConfig:
        """A DiT small enough for tests: width 32, 2 blocks, 2 heads."""
        return replace(cls(dim=32, depth=2, heads=2), **changes)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Adaptive LayerNorm's affine step, ``x * (1 + scale) + shift``: tokens ``[B, N, D]``, ``shift, scale [B, D]``.

    The ``1 +`` makes ``scale = shift = 0`` the plain (affine-free) LayerNorm. Introduced in chapter 20.
    """
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """A transformer block conditioned by adaLN-Zero (Peebles & Xie 2023, sec. 3.2), sequential or parallel.

    Sequential (DiT)::

        shift1, scale1, gate1, shift2, scale2, gate2 = ada(c)
        x = x + gate1 * attn(modulate(LN(x), shift1, scale1))
        x = x + gate2 * mlp(modulate(LN(x), shift2, scale2))

    Parallel (FLUX's single-stream block; Dehghani et al. 2023): ``h = modulate(LN(x), shift, scale)``,
    ``x = x + gate * (attn(h) + mlp(h))``, one modulation and one residual. ``ada`` is ``SiLU -> Linear`` with
    weights and bias set to zero, so every gate starts at 0 and the block starts as the identity.

    Args:
        dim, heads: token width and attention heads.
        mlp_ratio: hidden width of the MLP over ``dim``.
        parallel: the parallel layout.

    Shapes: ``x [B, N, D]``, ``c [B, D]`` -> ``[B, N, D]``; ``rope_angles [N, d/2]`` rotate q and k.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, parallel: bool = False) -> None:
        super().__init__()
        self.parallel = bool(parallel)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = None if parallel else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = FeedForward(dim, int(round(mlp_ratio * dim)))
        self.ada = nn.Linear(dim, (3 if parallel else 6) * dim)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: gates, shifts and scales all start at 0
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: Tensor, c: Tensor, rope_angles: Tensor | None = None) -> Tensor:
        mods = self.ada(F.silu(c)).chunk(3 if self.parallel else 6, dim=-1)  # each [B, D]
        if self.parallel:
            shift, scale, gate = mods
            h = modulate(self.norm1(x), shift, scale)
            return x + gate.unsqueeze(1) * (self.attn(h, rope_angles=rope_angles) + self.mlp(h))
        shift1, scale1, gate1, shift2, scale2, gate2 = mods
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1), rope_angles=rope_angles)
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """Modulated LayerNorm, then ``Linear(D, p*p*C)`` per token; both linear maps start at zero (the DiT outputs 0)."""

    def __init__(self, dim: int, patch_values: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, patch_values)
        for layer in (self.ada, self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # [B, N, p*p*C]


class DiT(nn.Module):
    """A diffusion transformer ``net(x, t, y)``: a ViT over patches of ``x`` whose every block reads ``(t, y)``.

    Args:
        config: a :class:`DiTConfig`.

    ``forward`` raises ``ValueError`` for an input of the wrong shape, times not one per example, or labels
    that do not fit. Introduced in chapter 20.
    """

    def __init__(self, config: DiTConfig | None = None, **changes: Any) -> None:
        super().__init__()
        c = (config or DiTConfig()).replace(**changes) if changes else (config or DiTConfig())
        self.config = c
        p = c.patch_size
        self.embed = nn.Linear(c.in_channels * p * p, c.dim)  # chapter 08's linear patch embedding
        self.time_mlp = nn.Sequential(nn.Linear(c.dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        self.label = None if c.num_classes is None else nn.Embedding(c.num_classes + 1, c.dim)  # + "no label"
        self.blocks = nn.ModuleList(DiTBlock(c.dim, c.heads, c.mlp_ratio, c.parallel) for _ in range(c.depth))
        self.final = FinalLayer(c.dim, c.in_channels * p * p)
        if c.position == "rope":  # [N, d/2] angles, one per (token, plane) of a head: not trained, not saved
            self.register_buffer("rope", rope_angles_2d(c.grid, c.grid, c.dim // c.heads, c.rope_base),
                                 persistent=False)
        else:
            self.register_buffer("pos", sincos_2d(c.grid, c.grid, c.dim), persistent=False)

    def condition(self, t: Tensor | float, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """The conditioning vector ``c [B, D]``: the time MLP of the sinusoidal embedding of ``t``, plus ``y``'s."""
        cfg = self.config
        t = torch.as_tensor(t, device=device)
        t = t.expand(batch) if t.ndim == 0 else t
        if t.shape != (batch,):
            raise ValueError(f"DiT: t must be a scalar or one time per example, [B] with B = {batch}, "
                             f"got shape {_shape(t)}")
        c = self.time_mlp(timestep_embedding(t, cfg.dim, cfg.time_scale).to(self.embed.weight.dtype))
        if self.label is None:
            if y is not None:
                raise ValueError("DiT: got labels y, but the model is unconditional (set DiTConfig.num_classes)")
            return c
        if y is None:
            y = torch.full((batch,), cfg.num_classes, dtype=torch.long, device=device)
        if y.shape != (batch,) or y.is_floating_point():
            raise ValueError(f"DiT: y must be integer labels [B] with B = {batch}, got shape {_shape(y)}, {y.dtype}")
        if int(y.min()) < 0 or int(y.max()) > cfg.num_classes:
            raise ValueError(f"DiT: labels must lie in 0..{cfg.num_classes} ({cfg.num_classes} = no label), "
                             f"got values in {int(y.min())}..{int(y.max())}")
        return c + self.label(y)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """The prediction (velocity or noise, as trained) for ``x [B, C, H, W]`` at times ``t [B]``, labels ``y``."""
        cfg = self.config
        _check_images("DiT", x, cfg.in_channels, (cfg.input_size, cfg.input_size))
        c = self.condition(t, y, x.shape[0], x.device)
        tokens = self.embed(patchify(x, cfg.patch_size))  # [B, N, C p^2] -> [B, N, D]
        rope = None
        if cfg.position == "rope":
            rope = self.rope
        else:
            tokens = tokens + self.pos.to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, c, rope)
        return unpatchify(self.final(tokens, c), cfg.patch_size, cfg.in_channels, cfg.input_size, cfg.input_size)
