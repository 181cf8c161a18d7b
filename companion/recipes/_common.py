"""Helpers the recipes share: the card fields a recipe returns, and loading a shipped model it builds on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..checkpoints import WEIGHTS_DIR, load_weights, read_card
from ..data import split_indices


def card_info(description: str, data: str, steps: int, metrics: dict[str, Any],
              seen: dict[str, str]) -> dict[str, Any]:
    """The card fields a recipe's ``train`` returns next to the model (``companion.hub`` adds the rest).

    ``seen`` names exactly the images trained on and the ones the metrics were measured on,
    ``{"train": spec, "heldout": spec}`` (:attr:`companion.data.Splits.info`, or a procedural draw's call).
    """
    if set(seen) != {"train", "heldout"}:
        raise ValueError(f"seen must name 'train' and 'heldout' images, got {sorted(seen)}")
    return {"description": description, "data": data, "seen": {"train": str(seen["train"]),
            "heldout": str(seen["heldout"])}, "steps": int(steps), "metrics": metrics}


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


def check_unseen(heldout: str, base: str) -> None:
    """Refuse to measure on ``heldout`` images that shipped checkpoint ``base`` (a frozen encoder) was trained on.

    Raises:
        ValueError: the two sets overlap (e.g. ``base`` was trained on MNIST-test[:8000] and this run holds out all
            of MNIST-test); retrain ``base`` on this run's data first.
    """
    base_train = read_card(WEIGHTS_DIR / f"{base}.json").get("seen", {}).get("train")
    if base_train is None:
        raise ValueError(f"the card of {base} does not say which images it was trained on; retrain {base} first")
    (src, idx), (held_src, held_idx) = split_indices(base_train), split_indices(heldout)
    if src == held_src and bool(torch.isin(held_idx, idx).any()):
        raise ValueError(f"{base} was trained on {base_train}, which overlaps this run's held-out {heldout}; "
                         f"retrain {base} on the same data first (python -m companion.hub retrain {base})")
