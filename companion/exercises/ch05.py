"""Exercise checks for chapter 05 · Going deeper: VGG, BatchNorm and initialisation.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including edge cases,
and compares with PyTorch (``torch.nn.init.calculate_gain`` and fans, ``F.batch_norm``, ``nn.Conv2d``'s
parameter count) or with ``companion.init`` / ``companion.vgg`` through :func:`expect_close`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import init, layers, vgg
from . import exercise, expect_close


def _number(name: str, value: object) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AssertionError(f"{name}: your value is a {type(value).__name__}, expected a number")
    return float(value)


@exercise("05.1", "Kaiming-normal standard deviation of a weight", reference=init.kaiming_std)
def check_kaiming_std(fn: Callable[[tuple, str], float]) -> str:
    cases = [
        ((256, 128), "relu"),  # a linear layer: fan_in = 128
        ((64, 32, 3, 3), "relu"),  # a 3x3 convolution: fan_in = 32 * 9 = 288
        ((16, 1, 5, 5), "tanh"),  # first layer of a tanh net: fan_in = 25
        ((10, 84), "linear"),  # the output layer
        ((8, 3, 7, 7), "relu"),  # a 7x7 stem
        ((1, 1), "tanh"),  # the smallest weight
    ]
    found = []
    for shape, nonlinearity in cases:
        fan_in = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))[0]
        expected = nn.init.calculate_gain(nonlinearity) / math.sqrt(fan_in)  # PyTorch's own formula pieces
        yours = _number(f"kaiming_std({shape}, {nonlinearity!r})", fn(shape, nonlinearity))
        expect_close(f"kaiming_std({shape}, {nonlinearity!r}) (fan_in = {fan_in})", yours, expected,
                     atol=1e-9, rtol=1e-6)
        found.append(yours)
    # and the empirical std of PyTorch's initialiser agrees with the formula
    w = nn.init.kaiming_normal_(torch.empty(128, 64, 3, 3), nonlinearity="relu",
                                generator=torch.Generator().manual_seed(0))
    expect_close("std of 73,728 weights drawn by nn.init.kaiming_normal_", w.std().item(),
                 _number("kaiming_std", fn((128, 64, 3, 3), "relu")), atol=0, rtol=0.01)
    return (f"6 shapes match gain / sqrt(fan_in), e.g. a 3x3 conv 32 → 64 with ReLU: std {found[1]:.4f}; "
            "nn.init.kaiming_normal_ draws weights with that std")


@exercise("05.2", "batch normalisation, training mode", reference=layers.batch_norm_2d)
def check_batch_norm(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(52)
    cases = [
        ("a batch [8, 3, 5, 5] with mean 4 and std 3", torch.randn(8, 3, 5, 5, generator=g) * 3 + 4),
        ("one image [1, 4, 6, 6] (statistics over its pixels)", torch.randn(1, 4, 6, 6, generator=g)),
        ("1x1 feature maps [16, 2, 1, 1] (statistics over the batch)", torch.randn(16, 2, 1, 1, generator=g)),
        ("a large mean, 1000 + N(0, 0.01)", 1000 + 0.01 * torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)),
    ]
    for name, x in cases:
        c = x.shape[1]
        gamma = torch.randn(c, generator=g, dtype=x.dtype)
        beta = torch.randn(c, generator=g, dtype=x.dtype)
        expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
        expect_close(f"batch norm of {name}", fn(x.clone(), gamma.clone(), beta.clone(), 1e-5), expected,
                     atol=1e-4, rtol=1e-4)
    # a constant channel: variance 0, the output is beta (eps keeps it finite)
    x = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)  # float64: the rounding of the mean is ~1e-16
    x[:, 1] = 5.0
    gamma, beta = torch.tensor([2.0, 3.0], dtype=torch.float64), torch.tensor([0.5, -1.0], dtype=torch.float64)
    expect_close("batch norm with a constant channel (its output is beta)", fn(x, gamma, beta, 1e-5),
                 F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5))
    # eps is used (and not hard-coded)
    x = torch.randn(2, 1, 2, 2, generator=g) * 0.01
    expect_close("batch norm with eps = 1e-3 on tiny inputs", fn(x, torch.ones(1), torch.zeros(1), 1e-3),
                 F.batch_norm(x, None, None, torch.ones(1), torch.zeros(1), training=True, eps=1e-3))
    # gradients flow to x, gamma and beta exactly as through F.batch_norm
    x = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    gamma, beta = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    ours = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    ref = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    upstream = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    (fn(*ours, 1e-5) * upstream).sum().backward()
    (F.batch_norm(ref[0], None, None, ref[1], ref[2], training=True, eps=1e-5) * upstream).sum().backward()
    for label, a, b in zip(("x", "gamma", "beta"), ours, ref):
        if a.grad is None:
            raise AssertionError(f"no gradient reached {label}: keep the computation in torch (autograd)")
        expect_close(f"gradient w.r.t. {label}", a.grad, b.grad, atol=1e-8, rtol=1e-6)
    return "matches F.batch_norm(training=True) on 7 inputs (one image, 1x1 maps, a large mean, a constant " \
           "channel, eps) and in its gradients w.r.t. x, gamma and beta"


@exercise("05.3", "parameters of a stack of convolutions", reference=vgg.conv_stack_params)
def check_conv_stack_params(fn: Callable[..., int]) -> str:
    cases = [(2, 64, 64, 3, False), (1, 64, 64, 5, False), (3, 64, 64, 3, False), (1, 64, 64, 7, False),
             (1, 1, 8, 3, True), (4, 16, 32, 3, True), (2, 3, 4, 5, True)]
    found = []
    for n, c_in, c_out, k, bias in cases:
        stack = nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=bias),
                              *[nn.Conv2d(c_out, c_out, k, bias=bias) for _ in range(n - 1)])
        expected = sum(p.numel() for p in stack.parameters())
        yours = fn(n, c_in, c_out, k, bias)
        yours = _number("conv_stack_params", yours)
        expect_close(f"conv_stack_params(n={n}, c_in={c_in}, c_out={c_out}, kernel={k}, bias={bias}) vs the "
                     f"nn.Conv2d stack", yours, float(expected), atol=0, rtol=0)
        found.append(int(yours))
    return (f"7 stacks match nn.Conv2d; 64 channels, no bias: two 3x3 = {found[0]:,} vs one 5x5 = {found[1]:,}, "
            f"three 3x3 = {found[2]:,} vs one 7x7 = {found[3]:,}")


def _nets() -> list[tuple[str, nn.Module, torch.Tensor]]:
    torch.manual_seed(54)
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
                           nn.Sequential(nn.Conv2d(4, 4, 3), nn.Tanh(), nn.Conv2d(4, 2, 1)),
                           nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    return [
        ("a 6-layer plain ReLU net", vgg.plain_net(6, 8), torch.randn(4, 1, 10, 10)),
        ("a VGG with batch norm", vgg.VGG(vgg.VGGConfig.tiny(batch_norm=True)), torch.randn(3, 1, 28, 28)),
        ("nested Sequentials", nested, torch.randn(2, 1, 8, 8)),
    ]


@exercise("05.4", "activation statistics with forward hooks", reference=init.layer_output_stds)
def check_layer_output_stds(fn: Callable[..., torch.Tensor]) -> str:
    found = []
    for name, model, x in _nets():
        expected = init.layer_output_stds(model, x, nn.Conv2d)
        yours = fn(model, x, nn.Conv2d)
        expect_close(f"std of every Conv2d output of {name}", yours, expected, atol=1e-6, rtol=1e-5)
        left = [m for m in model.modules() if m._forward_hooks]
        if left:
            raise AssertionError(f"{name}: {len(left)} hook(s) left behind on the model; remove them (handle.remove())")
        found.append(len(yours))
    model, x = _nets()[2][1:]
    expect_close("std of the nn.Linear outputs of the nested net", fn(model, x, nn.Linear),
                 init.layer_output_stds(model, x, nn.Linear), atol=1e-6, rtol=1e-5)
    expect_close("a model without any Conv2d (an empty tensor)", fn(nn.Sequential(nn.ReLU()), torch.randn(2, 3), nn.Conv2d),
                 torch.zeros(0))
    return f"matches on 3 models ({', '.join(map(str, found))} convolutions), for nn.Linear too, and on a model " \
           f"without convolutions; no hook left behind"
