"""Solutions · 04 CNNs: LeNet, pooling and receptive fields

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """Max pooling with 2x2 windows and stride 2, like F.max_pool2d(x, 2).

    Args:
        x: [B, C, H, W] or [C, H, W]. An odd last row or column is dropped, as PyTorch does.

    Returns:
        [..., H // 2, W // 2]: the maximum of every non-overlapping 2x2 block.
    """
    *lead, h, w = x.shape
    x = x[..., : h // 2 * 2, : w // 2 * 2]  # drop an odd last row/column (floor, like PyTorch)
    # split each spatial axis into (which block, where inside the block): [..., H/2, 2, W/2, 2]
    blocks = x.reshape(*lead, h // 2, 2, w // 2, 2)
    # the maximum over the two in-block axes; autograd routes the gradient to the winner of each block
    return blocks.amax(dim=(-3, -1))


def receptive_field(layers: list) -> list:
    """Receptive field size r, jump j and start of every layer of a stack, input side first.

    Each layer is (kernel, stride, padding). Start from the input, r = 1, j = 1, start = 0, and apply
        r_l = r_{l-1} + (k_l - 1) * j_{l-1}
        start_l = start_{l-1} + ((k_l - 1) / 2 - p_l) * j_{l-1}
        j_l = j_{l-1} * s_l

    Args:
        layers: list of (kernel, stride, padding) tuples of ints.

    Returns:
        list of (r, j, start) tuples, one per layer: r and j ints, start a float (the input coordinate of
        the centre of unit 0's receptive field; pixel centres are at 0, 1, 2, ...).
    """
    r, j, start = 1, 1, 0.0
    out = []
    for k, s, p in layers:
        r = r + (k - 1) * j  # k neighbours below, each j_{l-1} input pixels apart
        start = start + ((k - 1) / 2 - p) * j  # unit 0's window centre, moved back by the padding
        j = j * s  # the stride multiplies the spacing of units
        out.append((r, j, start))
    return out


def conv2d_num_params(in_channels: int, out_channels: int, kernel_size, bias: bool = True) -> int:
    """Number of learnable parameters of nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k (a k x k kernel) or a pair (kH, kW).
        bias: whether each output channel has a bias.

    Returns:
        an int.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    # one kH x kW kernel per (output channel, input channel) pair, plus one bias per output channel;
    # the image size does not appear anywhere: the same weights are used at every position
    return out_channels * (in_channels * kh * kw + int(bias))


EXERCISES = {"04.1": max_pool2x2, "04.2": receptive_field, "04.3": conv2d_num_params}
