"""Solutions · 07 Residual networks

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def residual_block(x: torch.Tensor, conv1: nn.Module, bn1: nn.Module, conv2: nn.Module, bn2: nn.Module,
                   shortcut) -> torch.Tensor:
    """The forward pass of a basic residual block: y = relu(F(x) + shortcut(x)).

    The residual branch is F(x) = bn2(conv2(relu(bn1(conv1(x))))). conv1 may be strided, so F(x) can have
    a different shape from x; shortcut maps x to F(x)'s shape (nn.Identity, the option-A shortcut or an
    option-B projection).

    Args:
        x: [B, C, H, W].
        conv1, bn1, conv2, bn2: the modules of the residual branch (call them like functions).
        shortcut: a callable, x [B, C, H, W] -> [B, C', H', W'].

    Returns:
        [B, C', H', W'].
    """
    out = F.relu(bn1(conv1(x)))  # first conv (maybe strided) + BN + ReLU
    out = bn2(conv2(out))  # second conv + BN: this is F(x), with no ReLU yet
    # add the shortcut BEFORE the last ReLU: the block computes relu(F(x) + x), the sum is what it learns around
    return F.relu(out + shortcut(x))


def block_num_params(kind: str, in_channels: int, out_channels: int, projection: bool = False) -> int:
    """Number of parameters of a residual block (convolutions without bias, BN after each one).

    kind "basic": conv3x3(C -> C') + BN(C') + conv3x3(C' -> C') + BN(C').
    kind "bottleneck": width w = C' / 4; conv1x1(C -> w) + BN(w) + conv3x3(w -> w) + BN(w)
    + conv1x1(w -> C') + BN(C').
    Every BN has 2 parameters per channel (gamma and beta). projection=True adds an option-B shortcut,
    conv1x1(C -> C') + BN(C').

    Args:
        kind: "basic" or "bottleneck".
        in_channels: C.
        out_channels: C' (for a bottleneck, 4 times its inner width).
        projection: whether the block has a projection shortcut.

    Returns:
        an int.
    """
    c, c_out = in_channels, out_channels
    if kind == "basic":
        total = 9 * c * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out  # two 3x3 convs, two BNs
    else:
        w = c_out // 4
        total = c * w + 2 * w  # 1x1 reduce + BN
        total += 9 * w * w + 2 * w  # 3x3 at the reduced width + BN
        total += w * c_out + 2 * c_out  # 1x1 expand + BN
    if projection:
        total += c * c_out + 2 * c_out  # 1x1 projection + BN on the shortcut
    return total


def shortcut_a(x: torch.Tensor, out_channels: int, stride: int = 1) -> torch.Tensor:
    """Option-A shortcut: identity, subsampled by the stride, with zero channels appended.

    Keep every stride-th row and column, starting with the first (so the size is ceil(H / stride), the size
    of a 3x3 convolution's output with padding 1 and the same stride), then append out_channels - C channels
    of zeros after the C channels of x. There are no parameters.

    Args:
        x: [B, C, H, W].
        out_channels: C' >= C.
        stride: the subsampling factor s >= 1.

    Returns:
        [B, C', ceil(H / s), ceil(W / s)].
    """
    sub = x[:, :, ::stride, ::stride]  # [B, C, ceil(H/s), ceil(W/s)]
    b, c, h, w = sub.shape
    zeros = sub.new_zeros(b, out_channels - c, h, w)  # the new channels carry nothing
    return torch.cat([sub, zeros], dim=1)


EXERCISES = {"07.1": residual_block, "07.2": block_num_params, "07.3": shortcut_a}
