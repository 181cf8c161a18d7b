"""Attention from scratch: :func:`attention_weights` and :func:`scaled_dot_product_attention`,
``softmax(QK^T / sqrt(E)) V`` with optional masks, checked against ``F.scaled_dot_product_attention``.
Introduced in chapter 08.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import _shape
from .checks import _check_same_dtype, _check_tensor_arg

# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------


def _check_attention_inputs(
    fn: str,
    q: Tensor,
    k: Tensor,
    v: object,
    attn_mask: object,
    is_causal: object,
    scale: object,
    with_v: bool = True,
) -> None:
    """Types, dtypes and the mask of an attention call (shapes of q, k, v: ``_attention_logits``)."""
    _check_tensor_arg(fn, "q", q, "[..., L, E]")
    _check_tensor_arg(fn, "k", k, "[..., S, E]")
    if with_v:
        _check_tensor_arg(fn, "v", v, "[..., S, Ev]")
        _check_same_dtype(fn, q=q, k=k, v=v)  # type: ignore[arg-type]
    else:
        _check_same_dtype(fn, q=q, k=k)  # type: ignore[arg-type]
    if not isinstance(is_causal, bool):
        raise TypeError(f"{fn}: is_causal must be True or False, got {is_causal!r} ({type(is_causal).__name__})")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"{fn}: scale must be a number or None, got {scale!r} ({type(scale).__name__})")
        if not math.isfinite(scale):
            raise ValueError(f"{fn}: scale must be finite, got {scale!r}")
    if attn_mask is None:
        return
    expected = f"a bool tensor (True = attend) or a float tensor of the scores' dtype {q.dtype} (added to the scores)"
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"{fn}: attn_mask must be {expected}, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and attn_mask.dtype != q.dtype:
        hint = (
            f"; convert it with attn_mask.to({q.dtype})"
            if attn_mask.is_floating_point()
            else "; a 0/1 integer mask would be added to the scores, not select keys: use attn_mask.bool()"
        )
        raise TypeError(f"{fn}: attn_mask must be {expected}, got dtype {attn_mask.dtype}{hint}")
    if q.dim() >= 2 and k.dim() >= 2:
        try:
            batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        except RuntimeError:
            return  # _attention_logits reports the batch dims of q and k
        scores = [*batch, q.shape[-2], k.shape[-2]]
        try:
            fits = list(torch.broadcast_shapes(attn_mask.shape, tuple(scores))) == scores
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"{fn}: attn_mask {list(attn_mask.shape)} does not broadcast to the scores "
                f"[..., L, S] = {scores} (q {list(q.shape)}, k {list(k.shape)})"
            )


def _attention_logits(
    q: Tensor,
    k: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
) -> tuple[Tensor, bool]:
    """Masked, scaled scores QK^T / sqrt(E): [..., L, E] x [..., S, E] -> [..., L, S].

    Returns the scores and whether a user mask could have blanked out a whole row.
    """
    if q.dim() < 2 or k.dim() < 2:
        raise ValueError(
            f"attention: q and k need at least 2 dims [..., L, E], got q {_shape(q)}, k {_shape(k)}"
        )
    if q.dtype != k.dtype:
        raise ValueError(f"attention: q {_shape(q)} is {q.dtype} but k {_shape(k)} is {k.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: q {_shape(q)} and k {_shape(k)} must share the embedding size E (last dim)"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"attention: batch dims of q {_shape(q)} and k {_shape(k)} do not broadcast"
        ) from None
    if attn_mask is not None and is_causal:
        raise ValueError("attention: pass either attn_mask or is_causal=True, not both (as in PyTorch)")
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1))  # [..., L, E] @ [..., E, S] -> [..., L, S]
    scores = scores * scale
    if is_causal:
        # query i may look at keys 0..i (top-left aligned, as PyTorch)
        allowed = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        return scores.masked_fill(~allowed, float("-inf")), False
    if attn_mask is None:
        return scores, False
    try:
        torch.broadcast_shapes(attn_mask.shape, scores.shape)
    except RuntimeError:
        raise ValueError(
            f"attention: attn_mask {_shape(attn_mask)} does not broadcast to the scores "
            f"[..., L, S] = {list(scores.shape)} (q {_shape(q)}, k {_shape(k)})"
        ) from None
    if attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = take part
    else:
        scores = scores + attn_mask  # additive mask: 0 = keep, -inf = drop
    return scores, True


def _softmax_rows(scores: Tensor, may_have_empty_rows: bool) -> Tensor:
    """softmax over keys; a row whose keys are all masked gets zero weights (as PyTorch), not NaN."""
    if not may_have_empty_rows:
        return torch.softmax(scores, dim=-1)
    empty = torch.isneginf(scores).all(dim=-1, keepdim=True)  # [..., L, 1]
    weights = torch.softmax(scores.masked_fill(empty, 0.0), dim=-1)
    return weights.masked_fill(empty, 0.0)


def attention_weights(
    q: Tensor,
    k: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """The attention map ``softmax(QK^T / sqrt(E) + mask)``, for plotting.

    Equation (Vaswani et al. 2017, eq. 1, without the final ``@ V``). Row i says how much
    query i draws from each key; rows sum to 1 (0 for a fully masked row).

    Args:
        q: [..., L, E] queries; k: [..., S, E] keys.
        attn_mask: bool (True = may attend) or float of q's dtype (added to the scores), broadcastable
            to [..., L, S]; an integer 0/1 mask is refused (``mask.bool()`` is what it means).
        is_causal: mask out keys j > i; not together with attn_mask.
        scale: score scale, default 1/sqrt(E).

    Returns:
        [..., L, S] weights.

    Introduced in chapter 08.
    """
    _check_attention_inputs("attention_weights", q, k, None, attn_mask, is_causal, scale, with_v=False)
    scores, may_be_empty = _attention_logits(q, k, attn_mask, is_causal, scale)
    return _softmax_rows(scores, may_be_empty)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Scaled dot-product attention, a drop-in for ``F.scaled_dot_product_attention`` (no dropout).

    Equation (Vaswani et al. 2017, "Attention Is All You Need", eq. 1):
    ``Attention(Q, K, V) = softmax(Q K^T / sqrt(E) + M) V``, where the mask M is 0 where a
    query may attend and -inf where it may not.

    Args:
        q: [..., L, E] queries; k: [..., S, E] keys; v: [..., S, Ev] values (batch dims broadcast).
        attn_mask: bool (True = take part) or float of q's dtype (added to the scores), broadcastable
            to [..., L, S]; an integer 0/1 mask is refused (``mask.bool()`` is what it means).
        is_causal: query i attends to keys 0..i only; an error together with attn_mask.
        scale: score scale, default 1/sqrt(E).

    Returns:
        [..., L, Ev].

    Introduced in chapter 08.
    """
    _check_attention_inputs("scaled_dot_product_attention", q, k, v, attn_mask, is_causal, scale)
    if v.dim() < 2 or v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"attention: k {_shape(k)} and v {_shape(v)} must have the same number of keys S (dim -2)"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"attention: batch dims of q {_shape(q)}, k {_shape(k)} and v {_shape(v)} do not broadcast"
        ) from None
    weights = attention_weights(q, k, attn_mask, is_causal, scale)  # [..., L, S]
    return torch.matmul(weights, v)  # [..., L, S] @ [..., S, Ev] -> [..., L, Ev]
