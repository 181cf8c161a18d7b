"""Residual networks (He et al. 2016), built bottom-up: the shortcut, the blocks, the network, the probes.

Read top to bottom:

* :class:`ResNetConfig`, a dataclass with the CIFAR-style presets of the paper (:meth:`ResNetConfig.from_depth`:
  ResNet-8/20/56 for ``n = 1/3/9``) and a :meth:`ResNetConfig.tiny` preset for tests and the ci profile;
* shortcuts: :func:`shortcut_a` / :class:`ShortcutA` (option A: identity, subsampled, zero-padded channels,
  no parameters) and :func:`projection` (option B: a strided 1x1 convolution + BN when the shape changes);
* the blocks: :func:`basic_block_forward` (``relu(F(x) + shortcut(x))``), :class:`BasicBlock` (two 3x3
  convolutions) and :class:`Bottleneck` (1x1 reduce, 3x3, 1x1 expand), each with ``skip=False`` giving the
  identical *plain* block; :func:`block_num_params` counts their parameters in closed form;
* :class:`ResNet`: a 3x3 stem, three stages of ``n`` blocks at 16/32/64 channels (stride 2 between stages),
  global average pooling and a linear classifier: ``6n + 2`` weight layers with basic blocks (``9n + 2`` with
  bottlenecks). ``skip=False`` removes the ``+ x`` and nothing else;
* the gradient probe :func:`gradient_norms`: one forward/backward pass on a batch, then the gradient norm of
  every main-path convolution's weight and (caught with tensor hooks) of every block's input;
* (the chapter trains with ``companion.train.train_classifier`` — SGD with momentum, warm-up + cosine — and
  measures with ``companion.train.evaluate_classifier``);

Normalisation is ``nn.BatchNorm2d`` by default (PyTorch's fast kernel); ``norm="scratch"`` swaps in chapter 05's
``companion.layers.BatchNorm2d``, which has the same parameter and buffer names, so the two networks share
``state_dict`` s and compute the same function. Shapes: images ``[B, C, H, W]``, logits ``[B, K]``.
Introduced in chapter 07.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _check_images
from .layers import BatchNorm2d

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetConfig",
    "ShortcutA",
    "basic_block_forward",
    "block_num_params",
    "gradient_norms",
    "projection",
    "shortcut_a",
]

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B")
NORMS = ("torch", "scratch")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetConfig:
    """Hyper-parameters of a CIFAR-style :class:`ResNet` (He et al. 2016, section 4.2).

    Attributes:
        n: blocks per stage; the network has ``6n + 2`` weight layers with basic blocks, ``9n + 2`` with
            bottlenecks (ResNet-20 is ``n = 3``, ResNet-56 ``n = 9``).
        widths: channels of the three stages (the paper: 16, 32, 64). With bottlenecks these are the inner
            widths and each block outputs ``4 x`` as many channels.
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1, 3x3, 1x1).
        shortcut: ``"A"`` (identity; when the shape changes, subsample and pad with zero channels: no
            parameters) or ``"B"`` (identity; a 1x1 projection + BN when the shape changes).
        skip: ``False`` drops the shortcut: the *plain* network with the same layers (and, with option A, the
            same parameters).
        in_channels: C of the images (1 for MNIST).
        num_classes: K, the number of logits.
        norm: ``"torch"`` (``nn.BatchNorm2d``) or ``"scratch"`` (``companion.layers.BatchNorm2d``, chapter 05).

    Introduced in chapter 07.
    """

    n: int = 3
    widths: tuple[int, ...] = (16, 32, 64)
    block: str = "basic"
    shortcut: str = "A"
    skip: bool = True
    in_channels: int = 1
    num_classes: int = 10
    norm: str = "torch"

    def __post_init__(self) -> None:
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"n (blocks per stage) must be a positive integer, got {self.n!r}")
        if len(self.widths) < 1 or any(int(w) != w or w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    @property
    def convs_per_block(self) -> int:
        """2 for a basic block, 3 for a bottleneck."""
        return 2 if self.block == "basic" else 3

    @property
    def expansion(self) -> int:
        """Output channels of a block divided by its inner width: 1 (basic) or 4 (bottleneck)."""
        return 1 if self.block == "basic" else 4

    @property
    def depth(self) -> int:
        """Weight layers on the main path: stem + ``convs_per_block`` per block + the classifier."""
        return self.convs_per_block * self.n * len(self.widths) + 2

    @property
    def name(self) -> str:
        """``"ResNet-20"`` or ``"plain-20"``."""
        return f"{'ResNet' if self.skip else 'plain'}-{self.depth}"

    @classmethod
    def from_depth(cls, depth: int, **overrides: Any) -> ResNetConfig:
        """The ``6n + 2`` (basic) or ``9n + 2`` (bottleneck) network of a given depth, e.g. ``from_depth(56)``."""
        block = overrides.get("block", "basic")
        per_stage = (2 if block == "basic" else 3) * len(overrides.get("widths", (16, 32, 64)))
        if depth < per_stage + 2 or (depth - 2) % per_stage:
            raise ValueError(f"depth {depth} is not {per_stage}n + 2 for {block} blocks (e.g. "
                             f"{', '.join(str(per_stage * k + 2) for k in (1, 3, 9))})")
        return cls(n=(depth - 2) // per_stage, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> ResNetConfig:
        """ResNet-8 at widths 4/8/8 (2,518 parameters): for tests and the ci profile."""
        base: dict[str, Any] = dict(n=1, widths=(4, 8, 8))
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> ResNetConfig:
        """A copy with some fields changed (e.g. ``cfg.replace(skip=False)`` for the plain twin)."""
        return replace(self, **changes)


def _norm(channels: int, kind: str) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "torch" else BatchNorm2d(channels)


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free ``k x k`` convolution with 'same' padding (the BN after it has the bias)."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


# ----------------------------------------------------------------------------------------------
# Shortcuts
# ----------------------------------------------------------------------------------------------


def shortcut_a(x: Tensor, out_channels: int, stride: int = 1) -> Tensor:
    """Option A shortcut (He et al. 2016, section 3.3): identity, subsampled and zero-padded to the new shape.

    Keeps every ``stride``-th pixel (the positions a stride-``s`` 3x3 convolution with padding 1 is centred on,
    so the sizes agree: ``ceil(H / s)``) and appends ``out_channels - C`` channels of zeros. No parameters.

    Args:
        x: ``[B, C, H, W]``.
        out_channels: ``C' >= C``.
        stride: spatial subsampling factor ``s``.

    Returns:
        ``[B, C', ceil(H / s), ceil(W / s)]``; the first ``C`` channels are ``x[:, :, ::s, ::s]``.

    Introduced in chapter 07.
    """
    c = x.shape[1]
    if out_channels < c:
        raise ValueError(f"option A can only add channels: {c} -> {out_channels} (use option B, a projection)")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    x = x[:, :, ::stride, ::stride]  # [B, C, ceil(H/s), ceil(W/s)]
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - c))  # zeros for the new channels: [B, C', ., .]


class ShortcutA(nn.Module):
    """:func:`shortcut_a` as a module (no parameters). Introduced in chapter 07."""

    def __init__(self, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        return shortcut_a(x, self.out_channels, self.stride)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


def projection(in_channels: int, out_channels: int, stride: int = 1, norm: str = "torch") -> nn.Sequential:
    """Option B shortcut: ``BN(W_s x)`` with a strided 1x1 convolution ``W_s`` (``C (C') + 2 C'`` parameters).

    Introduced in chapter 07.
    """
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         _norm(out_channels, norm))


def _shortcut(in_channels: int, out_channels: int, stride: int, kind: str, norm: str) -> nn.Module:
    """Identity when the shape is unchanged, else option A or B."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(out_channels, stride)
    return projection(in_channels, out_channels, stride, norm)


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


def basic_block_forward(x: Tensor, conv1: nn.Module, bn1: nn.Module, conv2: nn.Module, bn2: nn.Module,
                        shortcut: Callable[[Tensor], Tensor] | None) -> Tensor:
    """The basic residual block (He et al. 2016, Fig. 2): ``y = relu(F(x) + shortcut(x))``.

    ``F(x) = BN2(conv2(relu(BN1(conv1(x)))))``; with ``shortcut=None`` the block is plain, ``y = relu(F(x))``.

    Args:
        x: ``[B, C, H, W]``.
        conv1, bn1, conv2, bn2: the residual branch's modules (``conv1`` may be strided).
        shortcut: maps ``x`` to ``F(x)``'s shape (identity, :func:`shortcut_a` or :func:`projection`), or None.

    Returns:
        ``[B, C', H', W']``.

    Introduced in chapter 07.
    """
    out = F.relu(bn1(conv1(x)))  # [B, C', H', W']
    out = bn2(conv2(out))  # F(x): [B, C', H', W']
    if shortcut is not None:
        out = out + shortcut(x)  # the residual connection: y = F(x) + x
    return F.relu(out)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BN and a shortcut: ``relu(F(x) + shortcut(x))`` (He et al. 2016, Fig. 2).

    Args:
        in_channels, out_channels: C and C'.
        stride: 2 at the first block of a stage (halves H and W), else 1.
        shortcut: ``"A"`` or ``"B"`` (only matters when the shape changes).
        skip: ``False``: the same block without the shortcut (the plain block).
        norm: ``"torch"`` or ``"scratch"``.

    Parameters: ``9 C C' + 9 C'^2 + 4 C'`` (+ ``C C' + 2 C'`` for an option-B projection).
    Introduced in chapter 07.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "A",
                 skip: bool = True, norm: str = "torch") -> None:
        super().__init__()
        self.skip = skip
        self.conv1 = _conv(in_channels, out_channels, 3, stride)
        self.bn1 = _norm(out_channels, norm)
        self.conv2 = _conv(out_channels, out_channels, 3)
        self.bn2 = _norm(out_channels, norm)
        self.shortcut = _shortcut(in_channels, out_channels, stride, shortcut, norm) if skip else None

    def forward(self, x: Tensor) -> Tensor:
        return basic_block_forward(x, self.conv1, self.bn1, self.conv2, self.bn2, self.shortcut)

    def main_convs(self) -> list[nn.Conv2d]:
        """The convolutions of the residual branch, in order (not the projection)."""
        return [self.conv1, self.conv2]

    def last_bn(self) -> nn.Module:
        """The BN that ends the residual branch (``zero_init`` sets its gamma to 0)."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, with BN and a shortcut (He et al. 2016, Fig. 5 right).

    The block works at ``width`` channels inside and outputs ``4 * width``; the 3x3 convolution, the
    expensive one, sees only a quarter of the channels. The stride sits on the 3x3 convolution.

    Args:
        in_channels: C.
        width: the inner width w; the output has ``C' = 4 w`` channels.
        stride, shortcut, skip, norm: as in :class:`BasicBlock`.

    Parameters: ``C w + 9 w^2 + w C' + 4 w + 2 C'`` (+ ``C C' + 2 C'`` for an option-B projection).
    Introduced in chapter 07.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, shortcut: str = "A",
                 skip: bool = True, norm: str = "torch") -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.skip = skip
        self.conv1 = _conv(in_channels, width, 1)
        self.bn1 = _norm(width, norm)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = _norm(width, norm)
        self.conv3 = _conv(width, out_channels, 1)
        self.bn3 = _norm(out_channels, norm)
        self.shortcut = _shortcut(in_channels, out_channels, stride, shortcut, norm) if skip else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # reduce: [B, w, H, W]
        out = F.relu(self.bn2(self.conv2(out)))  # [B, w, H', W']
        out = self.bn3(self.conv3(out))  # expand, F(x): [B, 4w, H', W']
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)

    def main_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2, self.conv3]

    def last_bn(self) -> nn.Module:
        return self.bn3


def block_num_params(kind: str, in_channels: int, out_channels: int, projection: bool = False) -> int:
    """Parameters of a :class:`BasicBlock` or :class:`Bottleneck` in closed form (convolutions have no bias).

    Each BN adds 2 per channel (gamma, beta). ``out_channels`` is the block's output ``C'``; a bottleneck's
    inner width is ``C' / 4``. ``projection`` adds an option-B shortcut: ``C C' + 2 C'``.

    Introduced in chapter 07.
    """
    if kind == "basic":
        total = 9 * in_channels * out_channels + 9 * out_channels**2 + 4 * out_channels
    elif kind == "bottleneck":
        if out_channels % 4:
            raise ValueError(f"a bottleneck outputs 4 x its width: out_channels must divide by 4, got {out_channels}")
        w = out_channels // 4
        total = in_channels * w + 9 * w * w + w * out_channels + 4 * w + 2 * out_channels
    else:
        raise ValueError(f"kind must be 'basic' or 'bottleneck', got {kind!r}")
    return total + (in_channels * out_channels + 2 * out_channels if projection else 0)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class ResNet(nn.Module):
    """A CIFAR-style ResNet for small images (He et al. 2016, section 4.2), or its plain twin.

    ``stem``: 3x3 conv (``widths[0]`` channels) + BN + ReLU; ``stages``: three stages of ``n`` blocks, the first
    block of stages 2 and 3 with stride 2 (28 -> 14 -> 7 on MNIST); ``head``: global average pooling and a
    linear layer. Convolutions get Kaiming-normal initialisation (He et al. 2015, fan-out), BN ``gamma = 1,
    beta = 0``.

    Introduced in chapter 07.
    """

    def __init__(self, config: ResNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ResNetConfig()
        block_cls = BasicBlock if cfg.block == "basic" else Bottleneck
        self.stem = nn.Sequential(_conv(cfg.in_channels, cfg.widths[0], 3), _norm(cfg.widths[0], cfg.norm),
                                  nn.ReLU())
        c = cfg.widths[0]
        stages = []
        for i, w in enumerate(cfg.widths):
            blocks = []
            for j in range(cfg.n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block_cls(c, w, stride, cfg.shortcut, cfg.skip, cfg.norm))
                c = w * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, C_last]``: everything before the classifier (any H, W: global pooling)."""
        _check_images("ResNet", x, self.config.in_channels)
        h = self.stages(self.stem(x))  # [B, C_last, H / 4, W / 4]
        return h.mean(dim=(2, 3))  # global average pooling

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # [B, K]

    def blocks(self) -> Iterator[nn.Module]:
        """Every block, input side first."""
        for stage in self.stages:
            yield from stage

    def main_convs(self) -> list[tuple[str, nn.Conv2d]]:
        """``(name, conv)`` for the stem and every residual-branch convolution, input side first (no projections)."""
        out = [("stem", self.stem[0])]
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                out += [(f"stage{s + 1}.block{b + 1}.conv{k + 1}", conv) for k, conv in enumerate(block.main_convs())]
        return out

    def weight_layers(self) -> int:
        """Convolutions and linear layers on the main path: ``6n + 2`` (basic) or ``9n + 2`` (bottleneck)."""
        return len(self.main_convs()) + 1

    @torch.no_grad()
    def zero_init_residual(self) -> ResNet:
        """Set the last BN gamma of every residual branch to 0, so each block starts as the identity (Goyal et al.
        2017). Returns ``self``."""
        for block in self.blocks():
            block.last_bn().weight.zero_()
        return self


# ----------------------------------------------------------------------------------------------
# The gradient probe
# ----------------------------------------------------------------------------------------------


def gradient_norms(model: ResNet, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per-layer gradient norms after one forward/backward pass of the cross-entropy on one batch.

    The model runs in training mode (BN uses the batch's statistics, as in training); its running statistics
    and ``.grad`` fields are restored afterwards, so probing changes nothing.

    Args:
        model: a :class:`ResNet`.
        x: images ``[B, C, H, W]``; y: labels ``[B]``.

    Returns:
        two float64 tensors, input side first:

        * ``"conv"``: ``||dL/dW_l||`` of every main-path convolution weight (``model.main_convs()`` order,
          ``depth - 1`` values: the stem and every residual-branch convolution, no projections);
        * ``"input"``: ``||dL/dx_l|| / sqrt(numel(x_l) / B)`` for the input ``x_l`` of every block (``3n``
          values), caught with tensor hooks; dividing by the size per image makes stages with different map
          sizes comparable (an RMS per image).

    Introduced in chapter 07.
    """
    was_training = model.training
    saved_buffers = {k: v.clone() for k, v in model.named_buffers()}
    saved_grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    blocks = list(model.blocks())
    captured: list[Tensor] = [torch.zeros((), dtype=torch.float64) for _ in blocks]

    def make_pre_hook(slot: int) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def pre_hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            def grad_hook(g: Tensor) -> None:  # runs during backward with g = dL/dx_l
                captured[slot] = g.detach().double().norm() / math.sqrt(g[0].numel())

            args[0].register_hook(grad_hook)

        return pre_hook

    handles = [block.register_forward_pre_hook(make_pre_hook(i)) for i, block in enumerate(blocks)]
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        conv = torch.stack([c.weight.grad.detach().double().norm() for _, c in model.main_convs()])
        inputs = torch.stack(captured)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved_buffers[k])
        for k, p in model.named_parameters():
            p.grad = saved_grads[k]
        model.train(was_training)
    return {"conv": conv, "input": inputs}


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


