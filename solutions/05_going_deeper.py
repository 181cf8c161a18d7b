"""Solutions · 05 Going deeper: VGG, BatchNorm and initialisation

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def kaiming_std(shape: tuple, nonlinearity: str) -> float:
    """Standard deviation of Kaiming-normal initialisation (mode fan_in) for a weight of this shape.

    Args:
        shape: [out, in] for a linear layer or [C_out, C_in, kH, kW] for a convolution.
        nonlinearity: "linear", "relu" or "tanh" (gains 1, sqrt(2) and 5/3).

    Returns:
        gain / sqrt(fan_in) as a float, where fan_in = C_in * kH * kW (in for a linear layer).
    """
    fan_in = shape[1] * math.prod(shape[2:])  # every output sums over C_in * kH * kW inputs
    gain = {"linear": 1.0, "relu": math.sqrt(2.0), "tanh": 5.0 / 3.0}[nonlinearity]
    return gain / math.sqrt(fan_in)


def batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Batch normalisation in training mode for x [B, C, H, W].

    Per channel c, over the B*H*W values of the batch: subtract the batch mean, divide by
    sqrt(biased batch variance + eps), then scale by gamma[c] and shift by beta[c].

    Args:
        x: [B, C, H, W].
        gamma, beta: [C], the learned scale and shift.
        eps: added to the variance.

    Returns:
        [B, C, H, W], like F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps).
    """
    mu = x.mean(dim=(0, 2, 3), keepdim=True)  # [1, C, 1, 1]
    var = ((x - mu) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased: divide by B*H*W
    x_hat = (x - mu) / torch.sqrt(var + eps)
    return gamma.view(1, -1, 1, 1) * x_hat + beta.view(1, -1, 1, 1)


def conv_stack_params(n: int, c_in: int, c_out: int, kernel: int = 3, bias: bool = True) -> int:
    """Number of parameters of n stacked kernel x kernel convolutions.

    The first maps c_in to c_out channels, the other n - 1 map c_out to c_out, like
    nn.Sequential(nn.Conv2d(c_in, c_out, kernel, bias=bias), nn.Conv2d(c_out, c_out, kernel, bias=bias), ...).

    Returns:
        an int.
    """
    b = 1 if bias else 0
    first = (kernel * kernel * c_in + b) * c_out  # one k x k x c_in filter (+ bias) per output channel
    rest = (n - 1) * (kernel * kernel * c_out + b) * c_out
    return first + rest


def layer_output_stds(model: nn.Module, x: torch.Tensor, layer_type: type = nn.Conv2d) -> torch.Tensor:
    """Standard deviation of the output of every layer of type layer_type when model(x) runs.

    Use forward hooks (module.register_forward_hook) and remove them afterwards; run without gradients.

    Args:
        model: any nn.Module.
        x: its input batch.
        layer_type: e.g. nn.Conv2d; every module that isinstance(module, layer_type) is recorded.

    Returns:
        a float tensor [L] of stds, in the order the layers ran (empty if there is no such layer).
    """
    stds = []

    def hook(module, inputs, output):
        stds.append(output.double().std().item())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layer_type)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.tensor(stds, dtype=torch.float32)


EXERCISES = {
    "05.1": kaiming_std,
    "05.2": batch_norm,
    "05.3": conv_stack_params,
    "05.4": layer_output_stds,
}
