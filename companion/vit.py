"""Attention and Vision Transformers, built bottom-up (the nanoGPT order): smallest piece first.

Read top to bottom:

* :class:`ViTConfig` with a :meth:`ViTConfig.tiny` preset (tests and the ci profile);
* images as sequences: :func:`patchify` / :func:`unpatchify` and :class:`PatchEmbedding` (no convolution:
  cut the image into ``p x p`` patches and apply one linear map, equal to a stride-``p`` convolution);
* the blocks come from ``companion.layers`` (floor 2, shared with chapter 12's prior): the positional encodings
  (:func:`~companion.layers.sincos_2d`, :func:`~companion.layers.rope_angles_2d`, ...),
  :class:`~companion.layers.MultiHeadAttention`, :class:`~companion.layers.FeedForward` and the pre-LayerNorm
  :class:`~companion.layers.TransformerBlock`; the position information is learned (a parameter in
  :class:`ViT`), fixed sinusoidal or rotary;
* the classifier :class:`ViT` (CLS token or mean pooling) and its cost, :func:`vit_flops`;
* looking inside: :func:`attention_rollout` (Abnar & Zuidema 2020), :func:`attention_maps` and
  :func:`patch_tokens` (the patch tokens after some blocks, for a probe);
* the chapter's experiments: :class:`SmallCNN` (the baseline with a convolutional bias),
  trained with ``companion.train.train_classifier`` (random shifts from ``companion.augment``);

Shapes: images ``[B, C, H, W]``; tokens ``[B, T, D]`` (``T = N`` patches, plus one with a CLS token); per head
``[B, h, T, d]`` with ``d = D / h``; attention maps ``[B, h, T, T]``; logits ``[B, K]``. Patches are numbered
row-major (token ``t`` sits at grid row ``t // w``, column ``t % w``). Introduced in chapter 08.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import _check_images
from .layers import TransformerBlock, rope_angles_2d, sincos_2d

__all__ = [
    "PatchEmbedding",
    "SmallCNN",
    "ViT",
    "ViTConfig",
    "attention_maps",
    "attention_rollout",
    "patch_tokens",
    "patchify",
    "unpatchify",
    "vit_flops",
]

POSITIONS = ("learned", "sincos", "rope", "none")
POOLS = ("cls", "mean")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a :class:`ViT`.

    Attributes:
        image_size: H = W of the input images (28 for MNIST).
        patch_size: p; must divide ``image_size``. The image becomes ``(H / p)^2`` tokens.
        in_channels: C of the images.
        num_classes: K, the number of logits.
        dim: D, the width of every token.
        depth: L, the number of transformer blocks.
        heads: h; must divide ``dim`` (each head works in ``d = D / h`` dimensions).
        mlp_ratio: the MLP's hidden width is ``mlp_ratio * D``.
        pos: ``"learned"``, ``"sincos"`` (fixed 2-D sinusoidal), ``"rope"`` (2-D rotary) or ``"none"``.
        pool: ``"cls"`` (classify from a learned CLS token) or ``"mean"`` (average the patch tokens).
        rope_base: the base b of the rotary frequencies ``b^(-k / n)`` (Heo et al. 2024 use 100 for images).

    Introduced in chapter 08.
    """

    image_size: int = 28
    patch_size: int = 4
    in_channels: int = 1
    num_classes: int = 10
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    pos: str = "learned"
    pool: str = "cls"
    rope_base: float = 100.0

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}")
        if self.dim % self.heads:
            raise ValueError(f"heads {self.heads} does not divide dim {self.dim}")
        if self.pos not in POSITIONS:
            raise ValueError(f"pos must be one of {POSITIONS}, got {self.pos!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.pos == "sincos" and self.dim % 4:
            raise ValueError(f"pos='sincos' needs dim divisible by 4, got {self.dim}")
        if self.pos == "rope" and (self.dim // self.heads) % 4:
            raise ValueError(f"pos='rope' needs a head size divisible by 4, got {self.dim // self.heads}")

    @property
    def grid(self) -> int:
        """Patches per side, ``H / p``."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """N = (H / p)^2."""
        return self.grid**2

    @property
    def num_tokens(self) -> int:
        """T = N, plus one for a CLS token."""
        return self.num_patches + (self.pool == "cls")

    @classmethod
    def tiny(cls, **overrides: Any) -> ViTConfig:
        """A 2-block, 32-wide ViT on 7x7 patches of 28x28 images (~18k parameters): for tests and ci."""
        base = dict(patch_size=7, dim=32, depth=2, heads=2, mlp_ratio=2.0)
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> ViTConfig:
        """A copy with some fields changed (e.g. ``cfg.replace(patch_size=2)``)."""
        return replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# Images as sequences: patches
# ----------------------------------------------------------------------------------------------


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping ``p x p`` patches and flatten each: ``[B, C, H, W] -> [B, N, C*p*p]``.

    Patch ``n`` is the block at grid row ``n // (W/p)``, column ``n % (W/p)`` (row-major, as reading text);
    inside a patch the values are ordered channel, row, column -- the order of ``F.unfold`` and of a
    convolution weight ``[D, C, p, p]`` flattened, which is why :class:`PatchEmbedding` equals a convolution.

    Args:
        images: ``[B, C, H, W]``; ``p`` must divide H and W.
        patch_size: p >= 1.

    Returns:
        ``[B, N, C*p*p]`` with ``N = (H/p) * (W/p)``. Introduced in chapter 08.
    """
    if images.dim() != 4:
        raise ValueError(f"patchify expects images [B, C, H, W], got shape {list(images.shape)}")
    p = int(patch_size)
    B, C, H, W = images.shape
    if p < 1 or H % p or W % p:
        raise ValueError(f"patch_size {patch_size} must be >= 1 and divide H={H} and W={W}")
    x = images.reshape(B, C, H // p, p, W // p, p)  # [B, C, gh, p, gw, p]: split each axis into (grid, pixel)
    x = x.permute(0, 2, 4, 1, 3, 5)  # [B, gh, gw, C, p, p]: grid position first, patch contents last
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # [B, N, C*p*p]


def unpatchify(patches: Tensor, patch_size: int, channels: int, height: int, width: int) -> Tensor:
    """The inverse of :func:`patchify`: ``[B, N, C*p*p] -> [B, C, H, W]``. Introduced in chapter 08."""
    p = int(patch_size)
    B, N, K = patches.shape
    gh, gw = height // p, width // p
    if gh * p != height or gw * p != width or N != gh * gw or K != channels * p * p:
        raise ValueError(f"patches {list(patches.shape)} do not tile a {channels}x{height}x{width} image with p={p}")
    x = patches.reshape(B, gh, gw, channels, p, p)  # [B, gh, gw, C, p, p]
    return x.permute(0, 3, 1, 4, 2, 5).reshape(B, channels, height, width)  # [B, C, gh, p, gw, p] -> image


class PatchEmbedding(nn.Module):
    """Linear patch embedding (Dosovitskiy et al. 2021, eq. 1): ``z_n = E x_n + b`` for every flattened patch.

    No convolution is used; :meth:`conv_weight` reshapes ``E`` into the weight of the equivalent
    ``nn.Conv2d(C, D, kernel_size=p, stride=p)``.

    Shapes: ``[B, C, H, W] -> [B, N, D]``. Introduced in chapter 08.
    """

    def __init__(self, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size, self.in_channels, self.dim = int(patch_size), int(in_channels), int(dim)
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(patchify(images, self.patch_size))  # [B, N, C*p*p] @ [C*p*p, D] -> [B, N, D]

    def conv_weight(self) -> tuple[Tensor, Tensor]:
        """``(weight [D, C, p, p], bias [D])`` of the stride-p convolution that computes the same map."""
        p = self.patch_size
        return self.proj.weight.reshape(self.dim, self.in_channels, p, p), self.proj.bias


# ----------------------------------------------------------------------------------------------
# The Vision Transformer
# ----------------------------------------------------------------------------------------------


class ViT(nn.Module):
    """A Vision Transformer classifier (Dosovitskiy et al. 2021), small enough for a CPU.

    ``z_0 = [x_cls; E x_1; ...; E x_N] + E_pos`` (eq. 1), L pre-LN blocks (eqs. 2-3), then
    ``y = head(LN(z_L^0))`` with a CLS token, or ``head(LN(mean_n z_L^n))`` with mean pooling. The
    position information is a learned ``E_pos``, the fixed :func:`sincos_2d`, rotary angles inside every
    attention (:func:`rope_angles_2d`), or nothing. The head starts at zero, so the first loss is ``ln K``.

    Shapes: ``[B, C, H, W] -> [B, K]``; ``forward(x, return_attention=True)`` also returns one
    ``[B, h, T, T]`` map per block. Introduced in chapter 08.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = (config or ViTConfig()).replace(**overrides) if overrides else (config or ViTConfig())
        self.config = cfg
        D, N = cfg.dim, cfg.num_patches
        self.patch_embed = PatchEmbedding(cfg.patch_size, cfg.in_channels, D)
        self.n_prefix = 1 if cfg.pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, N, D)) if cfg.pos == "learned" else None
        if cfg.pos == "sincos":
            self.register_buffer("pos_fixed", sincos_2d(cfg.grid, cfg.grid, D)[None], persistent=False)  # [1, N, D]
        else:
            self.pos_fixed = None
        if cfg.pos == "rope":
            angles = rope_angles_2d(cfg.grid, cfg.grid, D // cfg.heads, cfg.rope_base)  # [N, d/2]
            self.register_buffer("rope_angles", angles, persistent=False)
        else:
            self.rope_angles = None
        self.blocks = nn.ModuleList(TransformerBlock(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, cfg.num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # Linear layers keep PyTorch's default scale ~ 1/sqrt(fan_in) and q, k, v get Xavier's, as in
        # nn.MultiheadAttention. (The std 0.02 of large ViTs is ~10x smaller than 1/sqrt(D) at D = 32: every
        # block would start as an identity and a small model's first hundreds of steps would stall.)
        for block in self.blocks:
            nn.init.xavier_uniform_(block.attn.qkv.weight)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.zeros_(block.attn.proj.bias)
        for p in (self.cls_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        nn.init.zeros_(self.head.weight)  # every class equally likely at step 0: the first loss is ln K
        nn.init.zeros_(self.head.bias)

    def tokens(self, images: Tensor) -> Tensor:
        """Embedded tokens entering the first block: ``[B, C, H, W] -> [B, T, D]`` (eq. 1)."""
        c = self.config
        _check_images("ViT", images, c.in_channels, (c.image_size, c.image_size), name="images")
        z = self.patch_embed(images)  # [B, N, D]
        if self.pos_embed is not None:
            z = z + self.pos_embed
        elif self.pos_fixed is not None:
            z = z + self.pos_fixed
        if self.cls_token is not None:
            z = torch.cat([self.cls_token.expand(len(z), -1, -1), z], dim=1)  # [B, 1 + N, D]
        return z

    def forward(self, images: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        z = self.tokens(images)  # [B, T, D]
        maps = []
        for block in self.blocks:
            if return_attention:
                z, attn = block(z, rope_angles=self.rope_angles, n_prefix=self.n_prefix, return_attention=True)
                maps.append(attn)
            else:
                z = block(z, rope_angles=self.rope_angles, n_prefix=self.n_prefix)
        z = self.norm(z)
        pooled = z[:, 0] if self.cls_token is not None else z.mean(dim=1)  # [B, D]
        logits = self.head(pooled)  # [B, K]
        return (logits, maps) if return_attention else logits


def vit_flops(config: ViTConfig) -> dict[str, int]:
    """Multiply-adds of one forward pass of :class:`ViT` on one image, by part (LayerNorms etc. ignored).

    With T tokens, width D and MLP width rD, each block costs ``4 T D^2`` (q, k, v and output projections),
    ``2 T^2 D`` (scores ``QK^T`` and the weighted sum ``AV``) and ``2 r T D^2`` (MLP). The projections grow
    linearly with T, the attention quadratically.

    Returns:
        ``{"patch_embed", "projections", "attention", "mlp", "head", "total"}``. Introduced in chapter 08.
    """
    T, D, N, L = config.num_tokens, config.dim, config.num_patches, config.depth
    hidden = int(round(config.mlp_ratio * D))
    out = {
        "patch_embed": N * config.in_channels * config.patch_size**2 * D,
        "projections": L * 4 * T * D * D,
        "attention": L * 2 * T * T * D,
        "mlp": L * 2 * T * D * hidden,
        "head": D * config.num_classes,
    }
    out["total"] = sum(out.values())
    return out


# ----------------------------------------------------------------------------------------------
# Looking inside: attention rollout
# ----------------------------------------------------------------------------------------------


def attention_rollout(attentions: Sequence[Tensor], residual: float = 0.5) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    Heads are averaged, the residual connection is accounted for as ``A~ = (1 - a) A + a I`` (``a = residual``,
    0.5 in the paper; rows still sum to 1), and the layers are chained:
    ``R = A~_L A~_{L-1} ... A~_1``. Row i of R is a distribution over the input tokens.

    Args:
        attentions: one ``[B, h, T, T]`` (or head-averaged ``[B, T, T]``) map per block, first block first.
        residual: weight a of the identity, in [0, 1].

    Returns:
        ``[B, T, T]``. Introduced in chapter 08.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one attention map")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    rollout = None
    for a in attentions:
        a = a.mean(dim=1) if a.dim() == 4 else a  # [B, T, T]: average the heads
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = (1 - residual) * a + residual * eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # later layers act on the result of earlier ones
    return rollout


@torch.no_grad()
def attention_maps(model: ViT, images: Tensor, layer: int | None = None) -> Tensor:
    """Where the classifier looks, as one ``[B, gh, gw]`` map per image, each scaled to max 1.

    With a CLS token: the CLS row of the attention rollout (``layer=None``) or of one block's head-averaged
    attention (``layer=l``), over the patch tokens. With mean pooling: the same rows averaged over all
    patch tokens (the pooled vector averages them). Introduced in chapter 08.
    """
    was_training = model.training
    model.eval()
    _, maps = model(images, return_attention=True)
    model.train(was_training)
    a = attention_rollout(maps) if layer is None else maps[layer].mean(dim=1)  # [B, T, T]
    p = model.n_prefix
    rows = a[:, 0, p:] if p else a[:, :, :].mean(dim=1)  # [B, N]
    g = model.config.grid
    rows = rows / rows.amax(dim=-1, keepdim=True)
    return rows.reshape(-1, g, g)


@torch.no_grad()
def patch_tokens(model: ViT, images: Tensor, depth: int | None = None, batch_size: int = 256) -> Tensor:
    """The patch tokens of a frozen :class:`ViT` after its first ``depth`` blocks, CLS token dropped.

    ``depth=0`` gives the embedded patches plus positions (what the first block reads), ``None`` the tokens
    after every block (before the final LayerNorm). Token ``n`` belongs to patch ``n`` of :func:`patchify`, so a
    probe can be trained to read a patch's pixels back from its token.

    Shapes: ``[B, C, H, W] -> [B, N, D]``, computed ``batch_size`` images at a time. Introduced in chapter 08.
    """
    depth = len(model.blocks) if depth is None else int(depth)
    if not 0 <= depth <= len(model.blocks):
        raise ValueError(f"depth must be in [0, {len(model.blocks)}], got {depth}")
    was_training = model.training
    model.eval()
    out = []
    for chunk in images.split(batch_size):
        z = model.tokens(chunk)  # [b, T, D]
        for block in model.blocks[:depth]:
            z = block(z, rope_angles=model.rope_angles, n_prefix=model.n_prefix)
        out.append(z[:, model.n_prefix:])  # [b, N, D]
    model.train(was_training)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# The chapter's experiments: a CNN baseline, augmentation, a training loop
# ----------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """The baseline with a convolutional bias: ``[conv3x3 -> ReLU -> maxpool2] x 2 -> linear``.

    ``SmallCNN(channels=(16, 32))`` on 28x28 MNIST has 20,490 parameters. Introduced in chapter 08.
    """

    def __init__(self, channels: Sequence[int] = (16, 32), in_channels: int = 1, num_classes: int = 10,
                 image_size: int = 28) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for c_out in channels:
            layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = c_out
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.head = nn.Linear(c * side * side, num_classes)
        self.in_channels, self.image_size = in_channels, image_size

    def forward(self, x: Tensor) -> Tensor:
        _check_images("SmallCNN", x, self.in_channels, (self.image_size, self.image_size))
        return self.head(self.features(x).flatten(1))  # [B, C, H, W] -> [B, c, H/4, W/4] -> [B, K]


