"""VGG-style networks for 28x28 images: stacks of 3x3 convolutions, with or without batch normalisation.

Read top to bottom, smallest piece first:

* :func:`conv_stack_params` (parameters of ``n`` stacked convolutions); batch normalisation itself lives in
  ``companion.layers`` (the functional ``batch_norm_2d`` and the layer ``BatchNorm2d``);
* :class:`VGGConfig` (a dataclass with tiny presets), :func:`config_layer_specs` (the layer specs of a config,
  without building it) and :func:`receptive_field_size` (how much of the image one unit of the last stage sees,
  ``companion.cnn.receptive_field`` on those specs);
* :class:`VGG`: ``stages`` of 3x3 convolution → (BatchNorm) → ReLU, a 2x2 max-pool after every stage, then one
  linear layer on the flattened feature map (VGG's design) or on its global average (``head="gap"``);
* :func:`plain_net`: a stack of same-width 3x3 convolutions with no pooling, the "plain deep net" of the
  initialisation study.

Why 3x3 (Simonyan & Zisserman 2015): two stacked 3x3 convolutions see a 5x5 window and three see 7x7, with
``2 * 9 C^2 = 18 C^2`` and ``27 C^2`` weights instead of ``25 C^2`` and ``49 C^2``, and a nonlinearity between
them. Shapes: images ``[B, C, H, W]``, logits ``[B, K]``. Introduced in chapter 05.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from torch import Tensor, nn

from . import cnn
from . import init as init_
from .layers import BatchNorm2d

__all__ = [
    "VGG",
    "VGGConfig",
    "config_layer_specs",
    "conv_stack_params",
    "plain_net",
    "receptive_field_size",
]


# ----------------------------------------------------------------------------------------------
# Pure functions
# ----------------------------------------------------------------------------------------------


def conv_stack_params(n: int, c_in: int, c_out: int, kernel: int = 3, bias: bool = True) -> int:
    """Parameters of ``n`` stacked ``kernel x kernel`` convolutions: ``c_in → c_out``, then ``c_out → c_out``.

    ``(k^2 c_in + b) c_out + (n - 1)(k^2 c_out + b) c_out`` with ``b = 1`` for a bias. Introduced in chapter 05.
    """
    if n < 1 or c_in < 1 or c_out < 1 or kernel < 1:
        raise ValueError(f"need n, c_in, c_out, kernel >= 1, got {(n, c_in, c_out, kernel)}")
    b = 1 if bias else 0
    return (kernel * kernel * c_in + b) * c_out + (n - 1) * (kernel * kernel * c_out + b) * c_out


# ----------------------------------------------------------------------------------------------
# Configuration and receptive field
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VGGConfig:
    """A VGG-style network for small images.

    Attributes:
        stages: number of 3x3 convolutions in each stage; a 2x2 max-pool ends every stage.
        widths: channels of each stage (VGG doubles them after every pool).
        batch_norm: put ``companion.layers.BatchNorm2d`` between every convolution and its ReLU (the
            convolutions then have no bias: BN subtracts the mean, a bias would be undone).
        in_channels: image channels.
        num_classes: outputs of the linear head.
        image_size: side of the square input (28 for MNIST).
        head: ``"flatten"`` (a linear layer on the whole last feature map, as in VGG: the classifier sees every
            position) or ``"gap"`` (global average pooling first, as in NiN/ResNet: the classifier only knows
            what one unit's receptive field contains, wherever it is).

    Introduced in chapter 05.
    """

    stages: tuple[int, ...] = (2, 2)
    widths: tuple[int, ...] = (16, 32)
    batch_norm: bool = False
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    head: str = "flatten"

    def __post_init__(self) -> None:
        if self.head not in ("gap", "flatten"):
            raise ValueError(f"head must be 'gap' or 'flatten', got {self.head!r}")
        if not self.stages or len(self.stages) != len(self.widths):
            raise ValueError(f"stages {self.stages} and widths {self.widths} need the same, non-zero length")
        if min(self.stages) < 1 or min(self.widths) < 1:
            raise ValueError(f"every stage needs >= 1 convolution and >= 1 channel, got {self.stages}, {self.widths}")
        if self.image_size < 2 ** len(self.stages):
            raise ValueError(f"{len(self.stages)} max-pools need an image of at least {2 ** len(self.stages)} px, "
                             f"got {self.image_size}")

    @property
    def depth(self) -> int:
        """Number of convolution layers."""
        return sum(self.stages)

    @classmethod
    def with_depth(cls, depth: int, width: int = 8, batch_norm: bool = False, n_stages: int = 2,
                   head: str = "flatten") -> VGGConfig:
        """``depth`` convolutions spread over ``n_stages`` stages (later stages get the extra ones), widths
        ``width, 2 width, 4 width, ...``. ``with_depth(8)`` is ``stages=(4, 4), widths=(8, 16)``."""
        if depth < n_stages:
            raise ValueError(f"depth {depth} must be at least the number of stages {n_stages}")
        base, extra = divmod(depth, n_stages)
        stages = tuple(base + (1 if i >= n_stages - extra else 0) for i in range(n_stages))
        return cls(stages=stages, widths=tuple(width * 2**i for i in range(n_stages)), batch_norm=batch_norm,
                   head=head)

    @classmethod
    def tiny(cls, batch_norm: bool = False) -> VGGConfig:
        """The smallest useful net (tests, the ci profile): two stages of one 3x3 convolution, 4 and 8 channels."""
        return cls(stages=(1, 1), widths=(4, 8), batch_norm=batch_norm)

    def with_batch_norm(self, batch_norm: bool = True) -> VGGConfig:
        """The same network with batch normalisation switched on (or off)."""
        return replace(self, batch_norm=batch_norm)


def config_layer_specs(config: VGGConfig) -> list[tuple[int, int, int, int]]:
    """``(kernel, stride, padding, dilation)`` of every convolution and pool of ``config``, input side first.

    The same list ``companion.cnn.layer_specs`` reads off a built :class:`VGG`, obtained without building it;
    feed it to ``companion.cnn.receptive_field``. Introduced in chapter 05.
    """
    specs: list[tuple[int, int, int, int]] = []
    for n_convs in config.stages:
        specs += [(3, 1, 1, 1)] * n_convs + [(2, 2, 0, 1)]
    return specs


def receptive_field_size(config: VGGConfig) -> int:
    """Side r (pixels) of the receptive field of one unit after the last pool of ``config``.

    ``cnn.receptive_field(config_layer_specs(config))[-1][0]``: every 3x3 convolution adds ``2 j`` pixels and
    every 2x2 pool ``j`` before doubling the jump ``j``. For ``stages=(n, n)`` that is ``6 n + 4``.
    Introduced in chapter 05.
    """
    return cnn.receptive_field(config_layer_specs(config))[-1][0]


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def _conv_block(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    """3x3 convolution (padding 1 keeps the size) → BatchNorm (optional) → ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    return layers


class VGG(nn.Module):
    """A VGG-style classifier: ``features`` (stages of 3x3 conv → [BN] → ReLU, a 2x2 max-pool after each stage)
    → ``head`` (flatten → linear, or global average pool → linear; see :class:`VGGConfig`).

    Convolutions are Kaiming-initialised (fan_in, ReLU gain, :mod:`companion.init`) with zero biases; the linear
    head keeps PyTorch's default initialisation.

    Shapes: ``[B, in_channels, image_size, image_size]`` → ``[B, num_classes]``. Introduced in chapter 05.
    """

    def __init__(self, config: VGGConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VGGConfig()
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = config.in_channels
        for s, (n_convs, width) in enumerate(zip(config.stages, config.widths), start=1):
            for i in range(1, n_convs + 1):
                conv, *rest = _conv_block(c_in, width, config.batch_norm)
                modules[f"conv{s}_{i}"] = conv
                if config.batch_norm:
                    modules[f"bn{s}_{i}"] = rest.pop(0)
                modules[f"relu{s}_{i}"] = rest.pop(0)
                c_in = width
            modules[f"pool{s}"] = nn.MaxPool2d(2)  # [B, C, H, W] -> [B, C, H/2, W/2]
        self.features = nn.Sequential(modules)
        if config.head == "gap":
            self.head = nn.Sequential(OrderedDict(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                                  fc=nn.Linear(c_in, config.num_classes)))
        else:
            side = config.image_size // 2 ** len(config.stages)
            self.head = nn.Sequential(OrderedDict(flatten=nn.Flatten(),
                                                  fc=nn.Linear(c_in * side * side, config.num_classes)))
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                init_.kaiming_normal_(m.weight, "relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # [B, C, H, W] -> [B, C', H', W'] -> [B, K]


def plain_net(depth: int, width: int = 16, activation: str = "relu", batch_norm: bool = False,
              in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """A plain deep net: ``depth`` 3x3 convolutions of ``width`` channels (padding 1, no pooling), each followed
    by [BatchNorm2d] and ``activation`` (``"relu"``, ``"tanh"`` or ``"linear"``), then global average pooling
    and a linear layer.

    Weights keep PyTorch's default initialisation; re-initialise with :func:`companion.init.init_weights`.
    Modules are named ``conv1, bn1, act1, ..., gap, flatten, fc``. Introduced in chapter 05.
    """
    if depth < 1 or width < 1:
        raise ValueError(f"need depth >= 1 and width >= 1, got {depth}, {width}")
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = in_channels
    for i in range(1, depth + 1):
        modules[f"conv{i}"] = nn.Conv2d(c_in, width, 3, padding=1, bias=not batch_norm)
        if batch_norm:
            modules[f"bn{i}"] = BatchNorm2d(width)
        modules[f"act{i}"] = acts[activation]()
        c_in = width
    modules["gap"] = nn.AdaptiveAvgPool2d(1)
    modules["flatten"] = nn.Flatten()
    modules["fc"] = nn.Linear(width, num_classes)
    return nn.Sequential(modules)
