"""Exercise checks for chapter 07 · Residual networks.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including edge cases, and
compares through :func:`expect_close` with ``companion.resnet``'s blocks (built from ``nn.Conv2d`` and
``nn.BatchNorm2d``), with PyTorch's own parameter counts, and with the option-A shortcut written as a fixed
strided 1x1 ``F.conv2d``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import resnet
from . import exercise, expect_close


def _randomise_bn(block: nn.Module, g: torch.Generator) -> None:
    """Non-trivial BN parameters and running statistics, so a missing or misplaced BN shows."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


@exercise("07.1", "the forward pass of a basic residual block", reference=resnet.basic_block_forward)
def check_residual_block(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(71)
    cases = [
        ("identity shortcut, 8 -> 8 channels, stride 1, eval mode", 8, 8, 1, "A", False, (3, 8, 10, 10)),
        ("option-B projection shortcut, 8 -> 16 channels, stride 2, eval mode", 8, 16, 2, "B", False, (2, 8, 9, 9)),
        ("option-A shortcut (subsample + zero channels), 4 -> 8, stride 2, 7x7 input, eval mode",
         4, 8, 2, "A", False, (2, 4, 7, 7)),
        ("identity shortcut in training mode (BN uses the batch statistics)", 6, 6, 1, "A", True, (4, 6, 5, 5)),
        ("a single 1x1 image in eval mode", 4, 4, 1, "A", False, (1, 4, 1, 1)),
    ]
    worst = 0.0
    for name, c_in, c_out, stride, kind, training, shape in cases:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        block = resnet.BasicBlock(c_in, c_out, stride, shortcut=kind)
        _randomise_bn(block, g)
        block.train(training)
        ref_block = copy.deepcopy(block)  # BN in training mode updates running stats: keep the two apart
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            expected = ref_block(x)
            yours = fn(x.clone(), block.conv1, block.bn1, block.conv2, block.bn2, block.shortcut)
        worst = max(worst, expect_close(f"block output for {name}", yours, expected))
    return f"5 blocks match resnet.BasicBlock (identity, option A, option B, training mode, 1x1 image; max error " \
           f"{worst:.1e})"


@exercise("07.2", "parameters of a basic block and a bottleneck", reference=resnet.block_num_params)
def check_block_num_params(fn: Callable[..., int]) -> str:
    cases = [
        ("basic", 16, 16, False), ("basic", 16, 32, True), ("basic", 16, 32, False), ("basic", 1, 1, False),
        ("basic", 64, 64, False), ("bottleneck", 64, 256, True), ("bottleneck", 256, 256, False),
        ("bottleneck", 256, 512, True), ("bottleneck", 4, 4, False),
    ]
    found = {}
    for kind, c_in, c_out, proj in cases:
        stride = 2 if proj else 1
        if kind == "basic":
            block = resnet.BasicBlock(c_in, c_out, stride, shortcut="B" if proj else "A")
        else:
            block = resnet.Bottleneck(c_in, c_out // 4, stride, shortcut="B" if proj else "A")
        expected = sum(p.numel() for p in block.parameters())
        yours = fn(kind, c_in, c_out, proj)
        if isinstance(yours, torch.Tensor) and yours.numel() == 1:
            yours = yours.item()
        expect_close(f"block_num_params({kind!r}, {c_in}, {c_out}, projection={proj}) vs the block's "
                     f"parameter count", yours, expected)
        found[kind, c_in, c_out] = yours
    return f"9 blocks match PyTorch's parameter counts: a basic block at 64 channels has " \
           f"{found['basic', 64, 64]:,}, a bottleneck 256 -> 64 -> 256 {found['bottleneck', 256, 256]:,}"


@exercise("07.3", "the option-A shortcut: subsample and pad with zero channels", reference=resnet.shortcut_a)
def check_shortcut_a(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(73)
    cases = [
        ("stride 1, same channels (the identity)", (2, 8, 6, 6), 8, 1),
        ("stride 2, 16 -> 32 channels on 28x28", (2, 16, 28, 28), 32, 2),
        ("stride 2, 4 -> 8 channels on an odd 7x7 map", (3, 4, 7, 7), 8, 2),
        ("stride 1, 16 -> 64 channels (a bottleneck's first block)", (1, 16, 5, 5), 64, 1),
        ("stride 2 on a 1x1 map", (2, 3, 1, 1), 5, 2),
        ("stride 3, 2 -> 3 channels on 8x5", (1, 2, 8, 5), 3, 3),
    ]
    for name, shape, c_out, stride in cases:
        x = torch.randn(*shape, generator=g)
        # option A = option B with a fixed, unlearned projection W_s = [I; 0] (a strided 1x1 convolution)
        w = torch.zeros(c_out, shape[1], 1, 1)
        w[: shape[1], :, 0, 0] = torch.eye(shape[1])
        expected = F.conv2d(x, w, stride=stride)
        expect_close(f"shortcut for {name}", fn(x.clone(), c_out, stride), expected)
        # its size must agree with the residual branch's (a 3x3 convolution, padding 1, same stride)
        branch = nn.Conv2d(shape[1], c_out, 3, stride=stride, padding=1)(x)
        if tuple(expected.shape) != tuple(branch.shape):  # pragma: no cover - guards the check itself
            raise AssertionError(f"internal: shortcut {tuple(expected.shape)} vs branch {tuple(branch.shape)}")
    return "6 inputs match a strided 1x1 F.conv2d with the fixed weights [I; 0], incl. odd sizes and the identity"
