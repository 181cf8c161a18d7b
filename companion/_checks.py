"""Argument checks shared by the package: one wording for every "expected ..., got ..." message.

Private (floor 1, imports only ``torch``). Each helper raises ``ValueError`` (wrong shape or value) or
``TypeError`` (wrong type or dtype) with a message that names the function, the argument, what was expected
and what was given.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from torch import Tensor

IntPair = int | Sequence[int]


def _shape(t: Tensor) -> str:
    """Format a shape as ``[2, 3, 8, 8]`` for error messages."""
    return str(list(t.shape))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pair(value: IntPair, name: str, minimum: int | None = None) -> tuple[int, int]:
    """``3``, ``(3,)`` or ``(3, 5)`` -> ``(h, w)``; every entry an int (not a bool), at least ``minimum``."""
    values = (value, value) if _is_int(value) else tuple(value) if isinstance(value, Sequence) else (value,)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(_is_int(v) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if minimum is not None and min(values) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values  # type: ignore[return-value]


def _check_tensor(fn: str, value: object, name: str = "x", expected: str = "a torch.Tensor") -> Tensor:
    """``value`` must be a tensor; returns it."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{fn}: {name} must be {expected}, got {type(value).__name__}")
    return value


def _check_float(fn: str, t: Tensor, name: str = "x") -> None:
    """``t`` must hold floating-point values (an integer image is usually a uint8 one not yet divided by 255)."""
    if not t.is_floating_point():
        raise TypeError(f"{fn}: {name} must be floating point (convert uint8 images with x.float() / 255), "
                        f"got {t.dtype}")


def _check_images(fn: str, x: object, channels: int | None = None, size: tuple[int, int] | None = None,
                  name: str = "x") -> Tensor:
    """``x`` must be a floating-point batch ``[B, C, H, W]``, optionally with ``C = channels`` and ``(H, W) = size``."""
    c = "C" if channels is None else str(channels)
    h, w = ("H", "W") if size is None else size
    expected = f"[B, {c}, {h}, {w}]"
    x = _check_tensor(fn, x, name, f"a torch.Tensor {expected}")
    if x.ndim != 4:
        raise ValueError(f"{fn}: {name} must be a batch of images {expected}, got shape {_shape(x)}")
    if channels is not None and x.shape[1] != channels:
        hint = " (is it [B, H, W, C]? permute(0, 3, 1, 2) first)" if x.shape[-1] == channels else ""
        raise ValueError(f"{fn}: {name} must have {channels} channel(s), {expected}, got shape {_shape(x)}{hint}")
    if size is not None and tuple(x.shape[2:]) != tuple(size):
        raise ValueError(f"{fn}: {name} must be {size[0]}x{size[1]} images, {expected}, got shape {_shape(x)}")
    _check_float(fn, x, name)
    return x


def _positive_int(n: object, what: str) -> int:
    """``n`` as an ``int``; a ``TypeError`` (not an integer) or ``ValueError`` (not positive) names ``what``."""
    if isinstance(n, bool):
        raise TypeError(f"{what} must be an integer, got {n!r}")
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {n!r}") from None
    if value <= 0:
        raise ValueError(f"{what} must be positive, got {value}")
    return value
