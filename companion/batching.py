"""Batched passes over a data set and the door check of the generative models, shared by Part II and after.

* :func:`as_images`: images ``[N, ...]`` from a tensor or a ``TensorDataset``;
* :func:`model_device`: where a model's parameters live;
* :func:`map_batches`: ``fn`` over batches in eval mode, no gradients, results concatenated on the CPU;
* :func:`check_input`: a floating tensor of the expected shape (and the model's dtype), or a clear error.

Floor 1: imports only ``torch``. Introduced in chapter 09.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["as_images", "check_input", "map_batches", "model_device"]


def as_images(data: Any) -> Tensor:
    """Images ``[N, ...]`` from a tensor or a ``TensorDataset`` (its first tensor; labels are ignored).

    Introduced in chapter 09.
    """
    if isinstance(data, Tensor):
        return data
    tensors = getattr(data, "tensors", None)
    if tensors is None:
        raise TypeError(f"expected a tensor or a TensorDataset, got {type(data).__name__}")
    return tensors[0]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters). Chapter 09."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def map_batches(model: nn.Module, fn: Callable[..., Any], *tensors: Tensor | None, batch_size: int = 500) -> Any:
    """``fn(*batch)`` over batches of ``tensors`` (moved to ``model``'s device), concatenated on the CPU.

    ``model`` is put in eval mode for the pass and given back its mode afterwards; no gradients are kept.
    ``None`` stands in for a missing tensor (e.g. the labels of an unconditional model) and is passed as
    ``None``. ``fn`` returns a tensor ``[b, ...]`` or a tuple of them; the result is ``[N, ...]`` (or a tuple).
    Introduced in chapter 09.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(next(t for t in tensors if t is not None))
    device, was = model_device(model), model.training
    model.eval()
    try:
        outs = [fn(*(None if t is None else t[i:i + batch_size].to(device) for t in tensors))
                for i in range(0, n, batch_size)]
    finally:
        model.train(was)
    if isinstance(outs[0], tuple):
        return tuple(torch.cat([o[j].cpu() for o in outs]) for j in range(len(outs[0])))
    return torch.cat([o.cpu() for o in outs])


def check_input(who: str, name: str, x: Any, shape: Sequence[int | None], like: Tensor | None = None) -> None:
    """Raise at the door when ``x`` is not a floating tensor of ``shape`` (``None``: any size there).

    ``like`` (a model parameter) adds a dtype check, so a float64 batch for a float32 model fails here, with
    both dtypes named, instead of deep inside a matrix product. ``TypeError`` for a wrong type or dtype,
    ``ValueError`` for a wrong shape; the message names ``who``, the argument, what was expected and what came.
    Introduced in chapter 09.
    """
    want = "[" + ", ".join("B" if i == 0 and s is None else "*" if s is None else str(s)
                           for i, s in enumerate(shape)) + "]"
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: {name} must be a tensor {want}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who}: {name} must be a floating-point tensor, got {x.dtype}")
    if like is not None and x.dtype != like.dtype:
        raise TypeError(f"{who}: {name} has dtype {x.dtype} but the model's parameters are {like.dtype} "
                        f"(convert one of them: x.to({like.dtype}) or model.to({x.dtype}))")
    if x.ndim != len(shape) or any(s is not None and x.shape[i] != s for i, s in enumerate(shape)):
        raise ValueError(f"{who}: {name} must be {want}, got {list(x.shape)}")
