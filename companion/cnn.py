"""Convolutional networks: pooling from scratch, receptive fields, LeNet-5 and the locality-vs-depth models.

Read top to bottom, smallest piece first:

* pure functions: :func:`max_pool2d` and :func:`avg_pool2d` (one ``unfold`` and a reduction, equal to
  ``F.max_pool2d`` / ``F.avg_pool2d`` in value *and* gradient), :func:`conv2d_num_params`,
  :func:`confusion_matrix`;
* receptive fields: :func:`receptive_field` (the analytic recurrence), :func:`layer_specs` (read the
  recurrence's inputs off a model), :func:`receptive_field_box` and :func:`effective_receptive_field`
  (measured with gradients);
* models: :class:`LeNetConfig` / :class:`LeNet` (LeNet-5 adapted to 28x28 inputs), :class:`ShallowCNNConfig` /
  :class:`ShallowCNN` (one local layer) and :func:`matched_mlp` (a deeper MLP with the same parameter count);
* the shipped checkpoint ``lenet_mnist``: :func:`build_hub_lenet` and :func:`train_hub_lenet` (``companion.hub``).

Shapes: images ``[B, C, H, W]``, logits ``[B, K]``. Introduced in chapter 04.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import MLP
from .ops import conv_output_size

__all__ = [
    "LeNet",
    "LeNetConfig",
    "ShallowCNN",
    "ShallowCNNConfig",
    "avg_pool2d",
    "build_hub_lenet",
    "confusion_matrix",
    "conv2d_num_params",
    "effective_receptive_field",
    "layer_specs",
    "matched_mlp",
    "max_pool2d",
    "mlp_num_params",
    "receptive_field",
    "receptive_field_box",
    "train_hub_lenet",
]

IntPair = int | Sequence[int]


def _pair(value: IntPair, name: str) -> tuple[int, int]:
    """``3`` or ``(3, 5)`` → ``(h, w)``, with a clear error for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    values = tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Pooling from scratch
# ----------------------------------------------------------------------------------------------


def _windows(x: Tensor, kernel_size: IntPair, stride: IntPair | None, padding: IntPair, fill: float,
             who: str) -> Tensor:
    """Every pooling window as a row: ``[..., H, W]`` → ``[..., Ho, Wo, kH*kW]`` (a view until the reshape)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{who}: expected [B, C, H, W] or [C, H, W], got shape {tuple(x.shape)}")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    ph, pw = _pair(padding, "padding")
    if min(kh, kw, sh, sw) < 1:
        raise ValueError(f"{who}: kernel_size and stride must be >= 1, got {(kh, kw)} and {(sh, sw)}")
    if ph < 0 or pw < 0 or 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"{who}: padding must be between 0 and half the kernel ({(kh, kw)}), got {(ph, pw)}")
    H, W = x.shape[-2:]
    if H + 2 * ph < kh or W + 2 * pw < kw:
        raise ValueError(f"{who}: input {tuple(x.shape)} (padded by {(ph, pw)}) is smaller than the "
                         f"kernel {(kh, kw)}")
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=fill)  # [..., H + 2ph, W + 2pw]
    win = x.unfold(-2, kh, sh).unfold(-2, kw, sw)  # [..., Ho, Wo, kH, kW]: window (i, j) at [..., i, j, :, :]
    return win.reshape(*win.shape[:-2], kh * kw)  # [..., Ho, Wo, kH*kW], row-major inside each window


def max_pool2d(x: Tensor, kernel_size: IntPair = 2, stride: IntPair | None = None,
               padding: IntPair = 0) -> Tensor:
    """Max pooling, a drop-in for ``F.max_pool2d`` (``dilation=1``, ``ceil_mode=False``).

    ``y[..., i, j] = max_{0 <= a < kH, 0 <= b < kW} x_pad[..., i*sH + a, j*sW + b]`` with ``x`` padded by
    ``-inf``. The gradient of a max is 1 at the arg-max and 0 elsewhere, so the backward pass routes each
    output's gradient to the one input that won its window (the first one in row-major order on a tie,
    exactly as PyTorch does); windows that overlap add their contributions. Autograd derives all of that
    from ``unfold`` + ``max(dim)``.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``.
        kernel_size: window ``k`` or ``(kH, kW)``.
        stride: defaults to ``kernel_size`` (non-overlapping windows).
        padding: ``p`` or ``(pH, pW)``, at most half the kernel.

    Returns:
        ``[..., Ho, Wo]`` with ``Ho = floor((H + 2 pH - kH) / sH) + 1`` (rows that do not fill a window are
        dropped).

    Introduced in chapter 04.
    """
    return _windows(x, kernel_size, stride, padding, -math.inf, "max_pool2d").max(dim=-1).values


def avg_pool2d(x: Tensor, kernel_size: IntPair = 2, stride: IntPair | None = None,
               padding: IntPair = 0) -> Tensor:
    """Average pooling, a drop-in for ``F.avg_pool2d`` (``ceil_mode=False``, ``count_include_pad=True``).

    ``y[..., i, j] = (1 / (kH kW)) sum_{a, b} x_pad[..., i*sH + a, j*sW + b]`` with zero padding (the padded
    zeros count in the mean, PyTorch's default). Every input in a window gets gradient ``1 / (kH kW)``.

    Args and returns as :func:`max_pool2d`. Introduced in chapter 04.
    """
    return _windows(x, kernel_size, stride, padding, 0.0, "avg_pool2d").mean(dim=-1)


# ----------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------


def conv2d_num_params(in_channels: int, out_channels: int, kernel_size: IntPair, bias: bool = True,
                      groups: int = 1) -> int:
    """Number of learnable parameters of ``nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)``.

    Each of the ``C_out`` filters has one ``kH x kW`` kernel per input channel it sees
    (``C_in / groups``), plus one bias: ``C_out * (C_in / groups * kH * kW + [bias])``. The image size does
    not appear: that is weight sharing.

    Introduced in chapter 04.
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    if min(in_channels, out_channels, kh, kw, groups) < 1:
        raise ValueError("channels, kernel size and groups must be positive, got "
                         f"{in_channels}, {out_channels}, {(kh, kw)}, groups={groups}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    return out_channels * (in_channels // groups * kh * kw + int(bias))


def mlp_num_params(sizes: Sequence[int]) -> int:
    """Parameters of a fully connected net ``sizes[0] → … → sizes[-1]``: ``sum_l (d_l + 1) d_{l+1}``.

    Introduced in chapter 04.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"need at least two positive sizes, got {sizes}")
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int = 10) -> Tensor:
    """``C[t, p]`` = number of examples of true class ``t`` predicted as ``p`` (int64 ``[K, K]``).

    The diagonal holds the correct predictions; ``C.sum(1)`` is the class count. Introduced in chapter 04.
    """
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred and target must both be [N], got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred.long().cpu(), target.long().cpu()
    if pred.numel() and (min(pred.min(), target.min()) < 0 or max(pred.max(), target.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


# ----------------------------------------------------------------------------------------------
# Receptive fields
# ----------------------------------------------------------------------------------------------

LayerSpec = Sequence[int]  # (kernel, stride[, padding[, dilation]])


def _spec(layer: LayerSpec) -> tuple[int, int, int, int]:
    values = tuple(layer)
    if not 2 <= len(values) <= 4 or not all(isinstance(v, int) for v in values):
        raise ValueError(f"a layer is (kernel, stride[, padding[, dilation]]) of ints, got {layer!r}")
    k, s = values[0], values[1]
    p = values[2] if len(values) > 2 else 0
    d = values[3] if len(values) > 3 else 1
    if k < 1 or s < 1 or p < 0 or d < 1:
        raise ValueError(f"need kernel >= 1, stride >= 1, padding >= 0, dilation >= 1; got {layer!r}")
    return k, s, p, d


def receptive_field(layers: Sequence[LayerSpec]) -> list[tuple[int, int, float]]:
    """Receptive field size, jump and start of every layer of a stack of convolutions and poolings.

    For layer ``l`` with kernel ``k_l`` (dilated: ``d_l (k_l - 1) + 1``), stride ``s_l`` and padding ``p_l``,
    starting from the input (``r_0 = 1``, ``j_0 = 1``, ``start_0 = 0``)::

        r_l     = r_{l-1} + (k_l - 1) j_{l-1}                  # k_l neighbours, j_{l-1} input pixels apart
        j_l     = j_{l-1} s_l                                  # distance (input pixels) between neighbours
        start_l = start_{l-1} + ((k_l - 1) / 2 - p_l) j_{l-1}  # centre of unit 0's receptive field

    (Araujo, Norris & Sim 2019, "Computing receptive fields of convolutional neural networks"). Coordinates
    are input pixel indices: unit ``i`` of layer ``l`` sees the pixels ``start_l + i j_l ± (r_l - 1) / 2``.

    Args:
        layers: ``(kernel, stride)``, ``(kernel, stride, padding)`` or ``(kernel, stride, padding,
            dilation)`` per layer, input side first (see :func:`layer_specs`). Elementwise layers
            (activations) do not change the receptive field and are left out.

    Returns:
        ``[(r_l, j_l, start_l) for each layer]``: ints ``r_l``, ``j_l`` and a float ``start_l``.

    Introduced in chapter 04.
    """
    r, j, start = 1, 1, 0.0
    out = []
    for layer in layers:
        k, s, p, d = _spec(layer)
        k_eff = d * (k - 1) + 1  # a dilated kernel spans this many positions of the layer below
        r = r + (k_eff - 1) * j
        start = start + ((k_eff - 1) / 2 - p) * j
        j = j * s
        out.append((r, j, float(start)))
    return out


def receptive_field_box(rf: tuple[int, int, float], index: int) -> tuple[float, float]:
    """``(first, last)`` input pixel seen by unit ``index`` of a layer with ``rf = (r, j, start)``.

    Both ends are inclusive; they may lie outside the image (then part of the field is padding).
    Introduced in chapter 04.
    """
    r, j, start = rf
    centre = start + index * j
    return centre - (r - 1) / 2, centre + (r - 1) / 2


def layer_specs(model: nn.Module) -> list[tuple[int, int, int, int]]:
    """``(kernel, stride, padding, dilation)`` of every ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d`` in ``model``.

    Modules are read in registration order, which is the order they run in for ``nn.Sequential`` and for
    the models of this file. Only square kernels, strides and paddings are supported.

    Introduced in chapter 04.
    """
    specs = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            vals = (m.kernel_size, m.stride, m.padding, m.dilation)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            vals = (m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1))
        else:
            continue
        if isinstance(vals[2], str):
            raise ValueError(f"{name}: string padding {vals[2]!r} is not supported; use an int")
        pairs = [_pair(v, name) for v in vals]
        if any(a != b for a, b in pairs):
            raise ValueError(f"{name}: only square kernels/strides/paddings are supported, got {vals}")
        specs.append(tuple(a for a, _ in pairs))
    return specs


def effective_receptive_field(model: nn.Module, input_shape: Sequence[int], inputs: Tensor | None = None,
                              n: int = 32, seed: int = 0, position: tuple[int, int] | None = None) -> Tensor:
    """Gradient map ``E|d y_centre / d x|``: how much each input pixel moves the centre output unit.

    Backpropagates from the output unit at ``position`` (default the centre, summed over channels) of
    ``model(x) [B, C, H', W']`` to the input, takes ``|.|`` per example, and averages over the ``B`` examples
    and sums over input channels (Luo et al. 2016, "Understanding the effective receptive field in deep
    convolutional neural networks"). The map is zero outside the analytic receptive field
    (:func:`receptive_field`); inside, it shows which pixels actually matter.

    Args:
        model: maps ``[B, *input_shape]`` to a spatial map ``[B, C, H', W']`` (e.g. ``LeNet.features``).
        input_shape: ``(C, H, W)``.
        inputs: images to average over ``[B, C, H, W]``; default ``n`` standard-normal images drawn with ``seed``.
        position: ``(row, col)`` of the output unit; default ``(H' // 2, W' // 2)``.

    Returns:
        ``[H, W]`` float tensor, non-negative. Parameter gradients are left untouched.

    Introduced in chapter 04.
    """
    if inputs is None:
        g = torch.Generator().manual_seed(seed)
        inputs = torch.randn(n, *input_shape, generator=g)
    if tuple(inputs.shape[1:]) != tuple(input_shape):
        raise ValueError(f"inputs {tuple(inputs.shape)} do not match input_shape {tuple(input_shape)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and inputs.is_floating_point() else inputs.dtype
    x = inputs.detach().to(device=device, dtype=dtype).clone().requires_grad_(True)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        y = model(x)  # [B, C, H', W']
        if y.ndim != 4:
            raise ValueError(f"the model must return a spatial map [B, C, H', W'], got {tuple(y.shape)}")
        h, w = position if position is not None else (y.shape[-2] // 2, y.shape[-1] // 2)
        (grad,) = torch.autograd.grad(y[:, :, h, w].sum(), x)  # [B, C, H, W]
    model.train(was_training)
    return grad.abs().mean(dim=0).sum(dim=0).cpu()  # [H, W]


# ----------------------------------------------------------------------------------------------
# LeNet-5
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}
_POOLS: dict[str, type[nn.Module]] = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


@dataclass(frozen=True)
class LeNetConfig:
    """LeNet-5's layout (LeCun et al. 1998), adapted to 28x28 inputs with ``padding=2``.

    1998: a 32x32 input, C1 conv 5x5 → 6@28x28, S2 subsampling → 6@14x14, C3 conv 5x5 → 16@10x10,
    S4 subsampling → 16@5x5, C5 (a 5x5 convolution on a 5x5 map, i.e. fully connected) → 120, F6 → 84,
    output → 10. Padding MNIST's 28x28 by 2 gives the same map sizes. The 1998 net used a scaled tanh,
    trainable average subsampling and an RBF output layer; ``tanh`` + ``avg`` is the closest plain version,
    ``relu`` + ``max`` the modern one.
    """

    in_channels: int = 1
    image_size: int = 28
    padding: int = 2
    kernel_size: int = 5
    channels: tuple[int, int] = (6, 16)
    hidden: tuple[int, int] = (120, 84)
    num_classes: int = 10
    activation: str = "tanh"
    pool: str = "avg"

    @classmethod
    def classic(cls) -> LeNetConfig:
        """tanh + average pooling, the 1998 choices."""
        return cls(activation="tanh", pool="avg")

    @classmethod
    def modern(cls) -> LeNetConfig:
        """ReLU + max pooling, what a LeNet is trained with today (and the shipped checkpoint)."""
        return cls(activation="relu", pool="max")

    def map_sizes(self) -> list[int]:
        """Spatial size after conv1, pool1, conv2, pool2 (e.g. ``[28, 14, 10, 5]``)."""
        s1 = conv_output_size(self.image_size, self.kernel_size, 1, self.padding)
        s2 = conv_output_size(s1, 2, 2)
        s3 = conv_output_size(s2, self.kernel_size)
        s4 = conv_output_size(s3, 2, 2)
        return [s1, s2, s3, s4]


class LeNet(nn.Module):
    """LeNet-5: two convolution + pooling stages (``features``) and three fully connected layers.

    ``features``: conv1 (k5, pad 2) → act → pool1 (2x2) → conv2 (k5) → act → pool2 (2x2), ``[B, 1, 28, 28]`` →
    ``[B, 16, 5, 5]``; ``classifier``: flatten (400) → fc1 (120) → act → fc2 (84) → act → fc3 (10 logits).
    61,706 parameters with the default config. The convolutions are ``nn.Conv2d`` for speed;
    :meth:`forward_with_conv` swaps in any ``conv(x, weight, bias, stride, padding)`` function, e.g. chapter
    03's ``companion.ops.conv2d``.

    Shapes: ``x [B, C, H, W] → logits [B, K]``. Introduced in chapter 04.
    """

    def __init__(self, config: LeNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or LeNetConfig()
        if cfg.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {cfg.activation!r}")
        if cfg.pool not in _POOLS:
            raise ValueError(f"pool must be one of {sorted(_POOLS)}, got {cfg.pool!r}")
        sizes = cfg.map_sizes()
        if min(sizes) < 1:
            raise ValueError(f"image_size {cfg.image_size} is too small for LeNet (map sizes {sizes})")
        self.config = cfg
        act, pool = _ACTIVATIONS[cfg.activation], _POOLS[cfg.pool]
        c1, c2 = cfg.channels
        k = cfg.kernel_size
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(cfg.in_channels, c1, k, padding=cfg.padding)),  # [B, 6, 28, 28]
            ("act1", act()),
            ("pool1", pool(2)),                                                  # [B, 6, 14, 14]
            ("conv2", nn.Conv2d(c1, c2, k)),                                     # [B, 16, 10, 10]
            ("act2", act()),
            ("pool2", pool(2)),                                                  # [B, 16, 5, 5]
        ]))
        flat = c2 * sizes[-1] ** 2
        h1, h2 = cfg.hidden
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),                                           # [B, 400]
            ("fc1", nn.Linear(flat, h1)),                                        # [B, 120]
            ("act3", act()),
            ("fc2", nn.Linear(h1, h2)),                                          # [B, 84]
            ("act4", act()),
            ("fc3", nn.Linear(h2, cfg.num_classes)),                             # [B, 10]
        ]))

    def _check(self, x: Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"LeNet expects images [B, {c}, {s}, {s}], got shape {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return self.classifier(self.features(x))

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate activation by module name (``conv1`` is the map *before* ``act1``), plus logits."""
        self._check(x)
        maps: dict[str, Tensor] = {}
        for seq in (self.features, self.classifier):
            for name, module in seq.named_children():
                x = module(x)
                maps[name] = x
        maps["logits"] = x
        return maps

    def forward_with_conv(self, x: Tensor, conv: Callable[..., Tensor]) -> Tensor:
        """The same forward pass with ``conv(x, weight, bias, stride=..., padding=...)`` for every ``nn.Conv2d``."""
        self._check(x)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                x = conv(x, module.weight, module.bias, stride=module.stride, padding=module.padding)
            else:
                x = module(x)
        return self.classifier(x)


# ----------------------------------------------------------------------------------------------
# The locality-vs-depth experiment: one local layer vs a deeper MLP with the same parameter count
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShallowCNNConfig:
    """One convolution (``channels`` filters of ``kernel_size``², stride ``stride``, padding ``kernel_size // 2``),
    ReLU, max-pool by ``pool``, then a linear classifier. Defaults: 32 filters of 5x5 with stride 2
    (→ 32@14x14), pool 2 (→ 32@7x7), linear → 10: 16,522 parameters."""

    in_channels: int = 1
    image_size: int = 28
    channels: int = 32
    kernel_size: int = 5
    stride: int = 2
    pool: int = 2
    num_classes: int = 10

    def map_size(self) -> int:
        """Side of the convolution's output map (before pooling)."""
        return conv_output_size(self.image_size, self.kernel_size, self.stride, self.kernel_size // 2)


class ShallowCNN(nn.Module):
    """A shallow *local* model: conv → ReLU → max-pool → linear (two weight layers).

    Every pooled feature depends on a small patch of pixels (7x7 with the defaults: see
    :func:`receptive_field`), and the same filters are used at every position.

    Shapes: ``x [B, C, H, W] → logits [B, K]``. Introduced in chapter 04.
    """

    def __init__(self, config: ShallowCNNConfig | None = None) -> None:
        super().__init__()
        cfg = config or ShallowCNNConfig()
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for centred padding, got {cfg.kernel_size}")
        side = cfg.map_size()
        if side < 1 or side % cfg.pool:
            raise ValueError(f"pool {cfg.pool} must divide the {side}x{side} convolution output")
        self.config = cfg
        self.conv = nn.Conv2d(cfg.in_channels, cfg.channels, cfg.kernel_size, stride=cfg.stride,
                              padding=cfg.kernel_size // 2)
        self.pool = nn.MaxPool2d(cfg.pool)
        self.fc = nn.Linear(cfg.channels * (side // cfg.pool) ** 2, cfg.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(torch.relu(self.conv(x)))  # [B, channels, side/pool, side/pool]
        return self.fc(h.flatten(1))  # [B, K]


def matched_mlp(target_params: int, hidden_layers: int = 3, in_features: int = 784, num_classes: int = 10,
                activation: str = "relu") -> MLP:
    """An MLP ``in → h → … → h → K`` with ``hidden_layers`` equal widths ``h`` chosen so that its parameter
    count is as close as possible to ``target_params`` (``companion.mlp.MLP``, Kaiming initialisation).

    Its parameter count is ``(D + 1) h + (L - 1)(h + 1) h + (h + 1) K``, increasing in ``h``; we scan ``h``.

    Introduced in chapter 04.
    """
    if hidden_layers < 1 or target_params < 1:
        raise ValueError(f"need hidden_layers >= 1 and target_params >= 1, got {hidden_layers}, {target_params}")

    def params(h: int) -> int:
        return mlp_num_params([in_features, *[h] * hidden_layers, num_classes])

    h = 1
    while params(h + 1) <= target_params:
        h += 1
    if abs(params(h + 1) - target_params) < abs(params(h) - target_params):
        h += 1
    return MLP([in_features, *[h] * hidden_layers, num_classes], activation)


# ----------------------------------------------------------------------------------------------
# The shipped checkpoint ``lenet_mnist`` (companion.hub recipe)
# ----------------------------------------------------------------------------------------------

#: Training settings of ``lenet_mnist`` per profile: epochs and training images (None = the whole split).
HUB_SCHEDULE: dict[str, dict[str, Any]] = {
    "ci": {"epochs": 2, "n_train": 2000},
    "cpu": {"epochs": 20, "n_train": None},
    "gpu": {"epochs": 30, "n_train": None},
}
HUB_LR, HUB_WEIGHT_DECAY, HUB_BATCH = 2e-3, 5e-4, 64


def build_hub_lenet() -> LeNet:
    """The untrained model of checkpoint ``lenet_mnist``: ``LeNet(LeNetConfig.modern())`` (61,706 parameters).

    Introduced in chapter 04.
    """
    return LeNet(LeNetConfig.modern())


def train_hub_lenet(profile: str = "cpu") -> tuple[LeNet, dict[str, Any]]:
    """Train checkpoint ``lenet_mnist`` at ``profile`` and return ``(model, card info)``.

    The recipe: :func:`build_hub_lenet` with seed 0, AdamW (cosine decay to 0), no augmentation, on the
    training split of :func:`companion.data.mnist_splits` (offline: MNIST-test[:8000], evaluated on
    MNIST-test[8000:], and the card says so). See :data:`HUB_SCHEDULE` for epochs per profile.

    Returns:
        ``(model, {"description", "data", "steps", "metrics": {"test_accuracy"}})`` for ``companion.hub``.

    Introduced in chapter 04.
    """
    from . import data
    from .mlp import cross_entropy
    from .profile import seed_everything
    from .train import train_classifier

    if profile not in HUB_SCHEDULE:
        raise ValueError(f"profile must be one of {sorted(HUB_SCHEDULE)}, got {profile!r}")
    epochs, n_train = HUB_SCHEDULE[profile]["epochs"], HUB_SCHEDULE[profile]["n_train"]
    train, test, desc = data.mnist_splits(profile, n_train=n_train)
    device = "cuda" if profile == "gpu" and torch.cuda.is_available() else "cpu"
    seed_everything(0)
    model = build_hub_lenet()
    history, acc = train_classifier(model, train, test, epochs=epochs, batch_size=HUB_BATCH, lr=HUB_LR,
                                    weight_decay=HUB_WEIGHT_DECAY, seed=0, criterion=cross_entropy,
                                    device=device, desc=f"lenet_mnist ({profile})")
    info = {
        "description": f"LeNet-5 (ReLU, max pooling, 28x28 with padding 2) on MNIST, chapter 04: AdamW lr "
                       f"{HUB_LR:g}, weight decay {HUB_WEIGHT_DECAY:g}, cosine decay, batch {HUB_BATCH}, "
                       f"{epochs} epoch(s), seed 0, no augmentation",
        "data": desc,
        "steps": int(history.train[-1]["step"]),
        "metrics": {"test_accuracy": round(acc, 4)},
    }
    return model.cpu().eval(), info
