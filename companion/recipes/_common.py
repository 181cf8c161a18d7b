"""Helpers the recipes share: the card fields a recipe returns, and loading a shipped model it builds on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..checkpoints import WEIGHTS_DIR, load_weights, read_card


def card_info(description: str, data: str, steps: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """The card fields a recipe's ``train`` returns next to the model (``companion.hub`` adds the rest)."""
    return {"description": description, "data": data, "steps": int(steps), "metrics": metrics}


def load_shipped(name: str, build: Callable[[], nn.Module]) -> nn.Module:
    """Shipped checkpoint ``name`` (hash-verified) in a fresh ``build()``, in eval mode: a recipe's teacher or base."""
    model = build()
    model.load_state_dict(load_weights(name))
    return model.eval()


def shipped_sha256(name: str) -> str:
    """The sha256 that shipped checkpoint ``name``'s card records."""
    return str(read_card(WEIGHTS_DIR / f"{name}.json")["sha256"])


def offline(desc: str) -> bool:
    """Whether ``data.mnist_splits``' description says it fell back to the MNIST test split."""
    return "offline" in desc
