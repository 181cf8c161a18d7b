"""The argument checks of ``companion.ops``: every public function calls them first, so a wrong type, dtype or
value fails at the door with a message that names the function, the argument, what was expected and what was
given. Introduced in chapter 03.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import _shape

# ----------------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------------


def _check_conv_args(fn: str, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    """Validate ranks, channel counts and bias for conv2d / conv_transpose2d."""
    if x.dim() != 4:
        raise ValueError(f"{fn}: expected input of shape [B, C, H, W] or [C, H, W], got {_shape(x)}")
    if weight.dim() != 4:
        raise ValueError(f"{fn}: expected a 4-D weight, got weight {_shape(weight)}")
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{fn}: groups must be a positive int, got {groups!r}")
    if x.dtype != weight.dtype or x.device != weight.device:
        raise ValueError(
            f"{fn}: input {_shape(x)} is {x.dtype} on {x.device} but weight {_shape(weight)} "
            f"is {weight.dtype} on {weight.device}"
        )
    c_in = x.shape[1]
    if fn == "conv2d":
        # weight: [C_out, C_in / groups, kH, kW]
        c_out, c_in_per_group = weight.shape[0], weight.shape[1]
        if c_in != c_in_per_group * groups:
            raise ValueError(
                f"conv2d: input {_shape(x)} has {c_in} channels, but weight {_shape(weight)} with "
                f"groups={groups} expects {c_in_per_group}*{groups} = {c_in_per_group * groups} channels"
            )
        if c_out % groups != 0:
            raise ValueError(
                f"conv2d: weight {_shape(weight)} has {c_out} output channels, not divisible by "
                f"groups={groups} (input {_shape(x)})"
            )
    else:
        # weight: [C_in, C_out / groups, kH, kW]
        c_out = weight.shape[1] * groups
        if c_in != weight.shape[0]:
            raise ValueError(
                f"conv_transpose2d: input {_shape(x)} has {c_in} channels, but weight {_shape(weight)} "
                f"expects {weight.shape[0]} (weight is [C_in, C_out/groups, kH, kW])"
            )
        if c_in % groups != 0:
            raise ValueError(
                f"conv_transpose2d: input {_shape(x)} has {c_in} channels, not divisible by "
                f"groups={groups} (weight {_shape(weight)})"
            )
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(
            f"{fn}: bias {_shape(bias)} does not match weight {_shape(weight)}: expected [{c_out}]"
        )


def _check_positive(name: str, pair: tuple[int, int], minimum: int) -> None:
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {pair}")


# ----------------------------------------------------------------------------------------------
# Input checks: every public function of companion.ops calls these first, so a wrong type, dtype
# or value fails at the door with a message that names the function, the argument, what was
# expected and what was given (instead of deep inside a reshape).
# ----------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    """A Python int; a bool is not one here (``stride=True`` is a mistake, not a 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(fn: str, name: str, value: object, minimum: int | None = None) -> None:
    """``value`` must be an int, at least ``minimum``."""
    if not _is_int(value):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")


def _check_int_pair(fn: str, name: str, value: object, minimum: int) -> None:
    """``value`` must be an int or a pair (tuple or list) of ints, each at least ``minimum``."""
    entries = list(value) if isinstance(value, (tuple, list)) else [value]
    if not 1 <= len(entries) <= 2:
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {value!r} ({len(entries)} entries)")
    for entry in entries:
        if not _is_int(entry):
            raise TypeError(
                f"{fn}: {name} must be an int or a pair of ints, got {value!r} "
                f"(an entry is a {type(entry).__name__})"
            )
        if entry < minimum:
            raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value!r}")


def _check_tensor_arg(fn: str, name: str, value: object, expected: str = "") -> None:
    """``value`` must be a floating-point ``torch.Tensor`` (not a list, an array, a bool or an int tensor)."""
    what = f"a floating-point torch.Tensor{' ' + expected if expected else ''}"
    if not isinstance(value, Tensor):
        array_like = isinstance(value, (list, tuple)) or hasattr(value, "__array__")
        hint = " (convert it with torch.as_tensor(..., dtype=torch.float32))" if array_like else ""
        raise TypeError(f"{fn}: {name} must be {what}, got {type(value).__name__}{hint}")
    if not value.is_floating_point():
        hint = " (a uint8 image: x.float() / 255)" if value.dtype == torch.uint8 else ""
        raise TypeError(f"{fn}: {name} must be {what}, got dtype {value.dtype}{hint}")


def _check_same_dtype(fn: str, **tensors: Tensor | None) -> None:
    """Every given tensor has one dtype and one device (PyTorch refuses to mix them too)."""
    given = {name: t for name, t in tensors.items() if t is not None}
    names = " and ".join([", ".join(list(given)[:-1]), list(given)[-1]]) if len(given) > 1 else ""
    if len({t.dtype for t in given.values()}) > 1:
        got = ", ".join(f"{name} {t.dtype}" for name, t in given.items())
        raise TypeError(f"{fn}: {names} must share one dtype, got {got}")
    if len({t.device for t in given.values()}) > 1:
        got = ", ".join(f"{name} on {t.device}" for name, t in given.items())
        raise ValueError(f"{fn}: {names} must be on one device, got {got}")


def _check_conv_inputs(fn: str, x: object, weight: object, bias: object) -> None:
    """Types and dtypes of a convolution's tensors; shapes are ``_check_conv_args``'s job."""
    _check_tensor_arg(fn, "x", x, "[B, C_in, H, W]")
    _check_tensor_arg(fn, "weight", weight, "[C_out, C_in / groups, kH, kW]")
    if bias is not None:
        _check_tensor_arg(fn, "bias", bias, "[C_out]")
    _check_same_dtype(fn, x=x, weight=weight, bias=bias)  # type: ignore[arg-type]
