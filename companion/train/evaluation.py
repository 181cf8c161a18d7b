"""Measuring a model after (or while) it trains: :func:`accuracy`, :func:`predict`, :func:`evaluate_classifier`,
and two small helpers for the chapters' tables and plots, :func:`count_parameters` and :func:`smooth`.
Introduced in chapter 02.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .loop import Batch


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Batch], device: str | torch.device | None = None) -> float:
    """Classification accuracy in ``[0, 1]`` of ``model`` over ``(x, y)`` batches."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=-1)
        correct += (pred == y.to(device)).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("accuracy() got an empty loader")
    return correct / total


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Run ``model`` over ``x [N, ...]`` in batches and concatenate the outputs ``[N, ...]``."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    outs = [model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (bias-corrected), for noisy loss curves."""
    if not 0 <= weight < 1:
        raise ValueError(f"weight must be in [0, 1), got {weight}")
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i) if weight > 0 else avg)
    if any(math.isnan(v) for v in out):
        raise ValueError("smooth() got NaN values")
    return out


@torch.no_grad()
def evaluate_classifier(model: nn.Module, dataset: Any, batch_size: int = 500,
                        criterion: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, float]:
    """Mean loss (cross-entropy by default) and accuracy of ``model`` (in eval mode) over ``(x, y)`` pairs.

    ``dataset`` is a dataset of ``(x, y)`` (e.g. a ``TensorDataset``); ``criterion(logits, y)`` must accept
    ``reduction="sum"``. Returns ``{"loss", "accuracy"}``. Introduced in chapter 07.
    """
    from torch.utils.data import DataLoader

    criterion = criterion or F.cross_entropy
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in DataLoader(dataset, batch_size=batch_size):
        logits = model(xb.to(device))
        total_loss += criterion(logits, yb.to(device), reduction="sum").item()
        correct += (logits.argmax(-1) == yb.to(device)).sum().item()
        count += yb.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_classifier() got an empty dataset")
    return {"loss": total_loss / count, "accuracy": correct / count}
