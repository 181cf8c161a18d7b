"""Classifier-free guidance: a wrapper that turns a conditional model into a guided one.

Ho & Salimans (2022) train one network both with and without its condition (the label is dropped, replaced
by a "null" value, for a fraction of the training examples) and sample with a mix of the two predictions,

``guided = uncond + scale * (cond - uncond)``.

``scale = 0`` is the unconditional model, ``scale = 1`` the conditional one, and ``scale > 1`` pushes
further in the direction the condition points (sharper, more typical samples, less diversity). The paper
writes the same mix as ``(1 + w) cond - w uncond``: ``scale = 1 + w``. The mix is linear, so it applies
unchanged to a model that predicts ``eps``, ``x0``, ``v`` or a flow velocity.

Introduced in chapter 19.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

__all__ = ["classifier_free_guidance"]


def classifier_free_guidance(model: Callable[..., Tensor], scale: float,
                             uncond: dict[str, Any]) -> Callable[..., Tensor]:
    """Wrap ``model(x, t, **cond)`` into ``guided(x, t, **cond) = u + scale * (c - u)`` (Ho & Salimans 2022, eq. 6).

    ``c = model(x, t, **cond)`` and ``u = model(x, t, **{**cond, **uncond})``: the unconditional call is the
    conditional one with the entries of ``uncond`` replacing (or adding) keyword arguments, e.g.
    ``uncond={"y": None}`` for a model that reads ``y=None`` as "no label". Two model calls per evaluation
    (one when ``scale`` is 0 or 1); a production sampler would batch them into one.

    Args:
        model: the conditional model, ``model(x, t, **cond)``.
        scale: the guidance scale (0: unconditional, 1: conditional, > 1: guided).
        uncond: keyword arguments that make a call unconditional.

    Returns:
        ``guided(x, t, **cond)``, usable wherever ``model`` is (every sampler).

    Raises:
        TypeError: ``model`` is not callable or ``uncond`` is not a dict.

    Introduced in chapter 19.
    """
    if not callable(model):
        raise TypeError(f"classifier_free_guidance: model must be callable, got {type(model).__name__}")
    if not isinstance(uncond, dict):
        raise TypeError("classifier_free_guidance: uncond must be a dict of keyword arguments that make the call "
                        f"unconditional (e.g. {{'y': None}}), got {type(uncond).__name__}")
    scale = float(scale)

    def guided(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        if scale == 1:
            return model(x, t, **cond)
        u = model(x, t, **{**cond, **uncond})
        if scale == 0:
            return u
        c = model(x, t, **cond)
        return u + scale * (c - u)

    return guided
