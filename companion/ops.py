"""From-scratch convolution and attention, checked against ``torch.nn.functional``.

What is here, and where the course uses it:

* ``conv_output_size`` / ``conv_transpose_output_size``: the shape arithmetic (chapter 03).
* ``conv2d_loops``: a readable convolution with Python loops over output positions (chapter 03).
* ``conv2d``: the fast version, im2col + one matrix multiply, with a hand-written backward
  (``Conv2dFunction``) whose input gradient is a col2im (chapter 03).
* ``conv_transpose2d``: the adjoint of ``conv2d``; its forward *is* the input-gradient of a
  convolution, and its backward is a convolution (chapter 03; used again by the decoders and generators of chapters 09 and 14).
* ``attention_weights`` / ``scaled_dot_product_attention``: softmax(QK^T / sqrt(E)) V
  (chapter 08, vision transformers).

Every function takes and returns ordinary tensors, so it can be dropped into an ``nn.Module``
in place of its ``torch.nn.functional`` counterpart. Only ``torch`` is imported.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import IntPair, _pair, _shape

__all__ = [
    "Conv2dFunction",
    "ConvTranspose2dFunction",
    "attention_weights",
    "conv2d",
    "conv2d_loops",
    "conv_output_size",
    "conv_transpose2d",
    "conv_transpose_output_size",
    "scaled_dot_product_attention",
]

Padding4 = tuple[int, int, int, int]  # (top, bottom, left, right), the order im2col pads in


# ----------------------------------------------------------------------------------------------
# Shape arithmetic
# ----------------------------------------------------------------------------------------------


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one spatial axis.

    Equation: ``out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``
    (the formula in the ``torch.nn.Conv2d`` docs; Dumoulin & Visin 2016, "A guide to
    convolution arithmetic for deep learning").

    Args:
        size: input length (H or W).
        kernel: kernel length (kH or kW).
        stride, padding, dilation: the convolution's settings along this axis.

    A result below 1 means the (dilated) kernel does not fit into the padded input.

    Introduced in chapter 03.
    """
    fn = "conv_output_size"
    _check_int(fn, "size", size)
    _check_int(fn, "kernel", kernel, 1)
    _check_int(fn, "stride", stride, 1)
    _check_int(fn, "padding", padding, 0)
    _check_int(fn, "dilation", dilation, 1)
    effective_kernel = dilation * (kernel - 1) + 1  # a dilated kernel spans this many pixels
    return (size + 2 * padding - effective_kernel) // stride + 1


def conv_transpose_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> int:
    """Output length of a transposed convolution along one spatial axis.

    Equation: ``out = (size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``,
    the inverse of ``conv_output_size`` (``output_padding`` picks among the several sizes that
    a strided convolution maps to the same ``size``).

    Introduced in chapter 03.
    """
    fn = "conv_transpose_output_size"
    _check_int(fn, "size", size)
    _check_int(fn, "kernel", kernel, 1)
    _check_int(fn, "stride", stride, 1)
    _check_int(fn, "padding", padding, 0)
    _check_int(fn, "output_padding", output_padding, 0)
    _check_int(fn, "dilation", dilation, 1)
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


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
# The three kernels: im2col, col2im, and the matrix multiplies around them
# ----------------------------------------------------------------------------------------------


def _im2col(
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding4,
    dilation: tuple[int, int],
    out_hw: tuple[int, int] | None = None,
) -> Tensor:
    """Gather every receptive field into a column: [B, C, H, W] -> [B, C*kH*kW, Ho*Wo].

    No loops and no copies until the final ``reshape``: after zero padding, ``as_strided``
    builds a *view* of shape [B, C, kH, kW, Ho, Wo] whose element (b, c, i, j, h, w) is
    ``x_padded[b, c, h*sH + i*dH, w*sW + j*dW]``, i.e. the pixel kernel tap (i, j) sees at
    output position (h, w). Reshaping that view materialises the column matrix.
    ``out_hw`` limits the number of output positions (used by conv_transpose2d's backward).
    """
    B, C, H, W = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    top, bottom, left, right = padding
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom))  # [B, C, H + top + bottom, W + left + right]
    x = x.contiguous()
    Hp, Wp = x.shape[-2:]
    if out_hw is None:
        out_hw = ((Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1)
    Ho, Wo = out_hw
    sB, sC, sH, sW = x.stride()
    patches = x.as_strided(
        (B, C, kh, kw, Ho, Wo),  # one entry per (batch, channel, kernel tap, output position)
        (sB, sC, dh * sH, dw * sW, sh * sH, sw * sW),
        x.storage_offset(),
    )
    return patches.reshape(B, C * kh * kw, Ho * Wo)  # [B, K, L]: K = C*kH*kW, L = Ho*Wo (copies)


def _col2im_add(
    img: Tensor,
    cols: Tensor,
    out_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> None:
    """The adjoint of ``_im2col``: scatter-add columns [B, C*kH*kW, L] into a padded image [B, C, Hp, Wp].

    A pixel that appeared in several receptive fields receives the sum of all its copies,
    which is exactly the chain rule for the gather that ``_im2col`` performed. One strided
    slice-add per kernel tap (kH*kW of them), each vectorised over batch, channels and positions.
    ``img`` is in padded coordinates; the caller crops the padding off (its gradient goes nowhere).
    """
    B, C = img.shape[:2]
    Ho, Wo = out_hw
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    cols = cols.reshape(B, C, kh, kw, Ho, Wo)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dh, j * dw  # where tap (i, j) lands for output position (0, 0)
            # .add_ on the view (not ``img[...] += ...``, which would also copy the view back into itself)
            img[:, :, h0 : h0 + sh * (Ho - 1) + 1 : sh, w0 : w0 + sw * (Wo - 1) + 1 : sw].add_(
                cols[:, :, i, j]
            )


def _crop(img: Tensor, padding: Padding4) -> Tensor:
    """[B, C, Hp, Wp] -> [B, C, H, W]: drop the zero padding added on each side."""
    top, bottom, left, right = padding
    return img[:, :, top : img.shape[2] - bottom, left : img.shape[3] - right]


# The three products below are written with torch.bmm on explicit [batch, rows, cols] views:
# ``torch.matmul`` of a 2-D weight with 3-D columns may "fold" the batch into one big matrix,
# which costs a transposed copy of the (large) column matrix.


def _group_weight(weight: Tensor, n: int, groups: int) -> Tensor:
    """[C_out, Cg, kH, kW] -> [n*G, Og, Kg], one weight matrix per (image, group); a view when G == 1."""
    c_out = weight.shape[0]
    w = weight.reshape(groups, c_out // groups, -1)  # [G, Og, Kg], Kg = Cg*kH*kW
    return w.unsqueeze(0).expand(n, *w.shape).reshape(n * groups, *w.shape[1:])  # [n*G, Og, Kg]


def _conv_from_cols(cols: Tensor, weight: Tensor, groups: int) -> Tensor:
    """out = W @ cols per image and group: [n, G*Kg, L] x [C_out, Cg, kH, kW] -> [n, C_out, L]."""
    n, K, L = cols.shape
    w = _group_weight(weight, n, groups)  # [n*G, Og, Kg]
    out = torch.bmm(w, cols.reshape(n * groups, K // groups, L))  # [n*G, Og, L]
    return out.reshape(n, -1, L)


def _cols_grad(grad_out: Tensor, weight: Tensor, groups: int) -> Tensor:
    """dL/dcols = W^T @ grad_out per image and group: [n, C_out, L] -> [n, G*Kg, L]."""
    n, c_out, L = grad_out.shape
    w = _group_weight(weight, n, groups)  # [n*G, Og, Kg]
    g = torch.bmm(w.transpose(1, 2), grad_out.reshape(n * groups, c_out // groups, L))  # [n*G, Kg, L]
    return g.reshape(n, -1, L)


def _weight_grad(grad_out: Tensor, cols: Tensor, weight_shape: torch.Size, groups: int) -> Tensor:
    """dL/dW = sum_b grad_out_b @ cols_b^T per group: [n, C_out, L], [n, G*Kg, L] -> weight_shape."""
    n, c_out, L = grad_out.shape
    go = grad_out.reshape(n * groups, c_out // groups, L)  # [n*G, Og, L]
    c = cols.reshape(n * groups, -1, L)  # [n*G, Kg, L]
    gw = torch.bmm(go, c.transpose(1, 2))  # [n*G, Og, Kg]
    return gw.reshape(n, -1).sum(0).reshape(weight_shape)  # sum over images


# Columns are built for a block of images at a time, at most 2**23 elements (32 MiB of float32)
# per block: memory stays bounded instead of growing as batch * kH*kW, and the allocator reuses
# the block's buffers. On a 2-core CPU this measured about 1.4x faster than one column matrix
# for the whole batch at the VGG and ResNet layer shapes of tools/benchmark.py, while the blocks
# stay large enough that per-op overhead is small. A GPU gets the whole batch as one block.
_CPU_BLOCK_ELEMENTS = 2**23


def _batch_block(x: Tensor, elements_per_image: int) -> int:
    """How many images to put through im2col at once."""
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, _CPU_BLOCK_ELEMENTS // max(1, elements_per_image))


def _cat(parts: list[Tensor]) -> Tensor:
    """torch.cat along the batch, without a copy when there is a single block."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class Conv2dFunction(torch.autograd.Function):
    """conv2d with a hand-written backward.

    Forward: ``cols = im2col(x)`` ([B, K, L]), ``y = W @ cols + b``, a block of images at a time.
    Backward, for upstream gradient ``g = dL/dy`` ([B, C_out, L]):

    * ``dL/dx = col2im(W^T @ g)``: a transposed convolution of g;
    * ``dL/dW = sum_b g_b @ cols_b^T``;
    * ``dL/db = sum over batch and positions of g``.

    The columns are rebuilt in the backward rather than stored (they are kH*kW times the size
    of x). The backward is made of differentiable tensor ops, so second derivatives (e.g. a
    gradient penalty with ``create_graph=True``) work too.

    Introduced in chapter 03.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        padding: Padding4,
        dilation: tuple[int, int],
        groups: int,
    ) -> Tensor:
        B, C, H, W = x.shape
        kernel = (weight.shape[2], weight.shape[3])
        Ho = (H + padding[0] + padding[1] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        Wo = (W + padding[2] + padding[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        block = _batch_block(x, C * kernel[0] * kernel[1] * Ho * Wo)
        out = _cat(
            [
                _conv_from_cols(_im2col(xb, kernel, stride, padding, dilation), weight, groups)
                for xb in x.split(block)  # xb: [block, C, H, W] -> [block, C_out, Ho*Wo]
            ]
        )
        if bias is not None:
            out.add_(bias.view(1, -1, 1))  # out is a fresh tensor: add in place
        ctx.save_for_backward(x, weight)
        ctx.conf = (kernel, stride, padding, dilation, groups, (Ho, Wo), block)
        ctx.has_bias = bias is not None
        return out.view(B, -1, Ho, Wo)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        kernel, stride, padding, dilation, groups, out_hw, block = ctx.conf
        B, C, H, W = x.shape
        g = grad_out.reshape(B, grad_out.shape[1], -1)  # [B, C_out, L]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        top, bottom, left, right = padding
        grad_x_padded = x.new_zeros(B, C, H + top + bottom, W + left + right) if need_x else None
        grad_w_parts = []
        for start in range(0, B, block):
            xb, gb = x[start : start + block], g[start : start + block]
            if need_x:
                dcols = _cols_grad(gb, weight, groups)  # [block, C*kH*kW, L]
                _col2im_add(grad_x_padded[start : start + block], dcols, out_hw, kernel, stride, dilation)
            if need_w:
                cols = _im2col(xb, kernel, stride, padding, dilation)  # [block, C*kH*kW, L]
                grad_w_parts.append(_weight_grad(gb, cols, weight.shape, groups))
        grad_x = _crop(grad_x_padded, padding) if need_x else None
        grad_w = sum(grad_w_parts[1:], grad_w_parts[0]) if need_w else None
        grad_b = g.sum((0, 2)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None


class ConvTranspose2dFunction(torch.autograd.Function):
    """conv_transpose2d as the adjoint of conv2d, with a hand-written backward.

    With ``A`` the convolution of weight W (which maps the output space back to the input
    space), ``y = A^T x`` is computed as ``col2im(W^T @ x)``, the same code as conv2d's input
    gradient. Its backward swaps roles again: ``dL/dx = A g = conv2d(g, W)`` and
    ``dL/dW = sum_b x_b @ im2col(g)_b^T``.

    Introduced in chapter 03.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        padding: Padding4,
        dilation: tuple[int, int],
        groups: int,
        out_hw: tuple[int, int],
    ) -> Tensor:
        B, C_in, H, W = x.shape
        kernel = (weight.shape[2], weight.shape[3])
        c_out = weight.shape[1] * groups
        block = _batch_block(x, c_out * kernel[0] * kernel[1] * H * W)
        top, bottom, left, right = padding
        out = x.new_zeros(B, c_out, out_hw[0] + top + bottom, out_hw[1] + left + right)  # padded output
        x_flat = x.reshape(B, C_in, H * W)
        for start in range(0, B, block):
            dcols = _cols_grad(x_flat[start : start + block], weight, groups)  # [block, C_out*kH*kW, H*W]
            _col2im_add(out[start : start + block], dcols, (H, W), kernel, stride, dilation)
        out = _crop(out, padding)  # [B, C_out, Ho, Wo]
        out = out + bias.view(1, -1, 1, 1) if bias is not None else out.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.conf = (kernel, stride, padding, dilation, groups, block)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        kernel, stride, padding, dilation, groups, block = ctx.conf
        B, C_in, H, W = x.shape
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x_parts, grad_w_parts = [], []
        for xb, gb in zip(x.reshape(B, C_in, H * W).split(block), grad_out.split(block)):
            # im2col of the upstream gradient, cropped to x's H x W positions: [block, C_out*kH*kW, H*W]
            cols = _im2col(gb, kernel, stride, padding, dilation, out_hw=(H, W))
            if need_x:
                grad_x_parts.append(_conv_from_cols(cols, weight, groups))  # [block, C_in, H*W]
            if need_w:
                grad_w_parts.append(_weight_grad(xb, cols, weight.shape, groups))
        grad_x = _cat(grad_x_parts).view(B, C_in, H, W) if need_x else None
        grad_w = sum(grad_w_parts[1:], grad_w_parts[0]) if need_w else None
        grad_b = grad_out.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


# ----------------------------------------------------------------------------------------------
# Input checks: every public function of this module calls these first, so a wrong type, dtype
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


def _empty_batch(x: Tensor, weight: Tensor, bias: Tensor | None, channels: int, out_hw: tuple[int, int]) -> Tensor:
    """What PyTorch returns for a batch of 0 images: ``[0, channels, Ho, Wo]``, on the autograd graph.

    Nothing to compute, so no im2col; ``0 * t.sum()`` connects the result to ``x``, ``weight`` and
    ``bias`` so that a backward pass runs and gives them the zero gradients PyTorch gives.
    """
    out = x.new_zeros(0, channels, *out_hw)
    for t in (x, weight, bias):
        if t is not None and t.requires_grad:
            out = out + 0 * t.sum()
    return out


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


# ----------------------------------------------------------------------------------------------
# Public convolution API
# ----------------------------------------------------------------------------------------------


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> Padding4:
    """padding='same': total = dilation*(k - 1) per axis, the odd pixel going bottom/right (as PyTorch)."""
    total_h, total_w = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
    return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair | str = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation, a drop-in for ``torch.nn.functional.conv2d``.

    Equation (per group g; LeCun et al. 1998 for CNNs, Chellapilla et al. 2006 for im2col):
    ``y[b, o, h, w] = bias[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[b, c, h*sH + i*dH, w*sW + j*dW]``,
    computed as ``y = W @ im2col(x)`` with the backward of ``Conv2dFunction``.

    Args:
        x: [B, C_in, H, W] (or unbatched [C_in, H, W]).
        weight: [C_out, C_in / groups, kH, kW].
        bias: [C_out] or None.
        stride, dilation: int or (sH, sW) / (dH, dW), all >= 1.
        padding: int, (pH, pW), or "valid" (no padding) / "same" (output size = input size,
            stride 1 only).
        groups: split channels into this many independent convolutions.

    Returns:
        [B, C_out, Ho, Wo] with ``Ho = conv_output_size(H, kH, sH, pH, dH)`` (unbatched if x was).

    Introduced in chapter 03.
    """
    _check_conv_inputs("conv2d", x, weight, bias)
    _check_int_pair("conv2d", "stride", stride, 1)
    _check_int_pair("conv2d", "dilation", dilation, 1)
    if not isinstance(padding, str):
        _check_int_pair("conv2d", "padding", padding, 0)
    _check_int("conv2d", "groups", groups, 1)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)  # [C, H, W] -> [1, C, H, W]
    _check_conv_args("conv2d", x, weight, bias, groups)
    kernel = (weight.shape[2], weight.shape[3])
    stride_, dilation_ = _pair(stride, "stride"), _pair(dilation, "dilation")
    _check_positive("stride", stride_, 1)
    _check_positive("dilation", dilation_, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pad4: Padding4 = (0, 0, 0, 0)
        elif padding == "same":
            if stride_ != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride_})"
                )
            pad4 = _same_padding(kernel, dilation_)
        else:
            raise ValueError(f"padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
        _check_positive("padding", (ph, pw), 0)
        pad4 = (ph, ph, pw, pw)
    H, W = x.shape[-2:]
    span_h, span_w = dilation_[0] * (kernel[0] - 1) + 1, dilation_[1] * (kernel[1] - 1) + 1
    if H + pad4[0] + pad4[1] < span_h or W + pad4[2] + pad4[3] < span_w:
        raise ValueError(
            f"conv2d: input {_shape(x)} padded to {H + pad4[0] + pad4[1]}x{W + pad4[2] + pad4[3]} is "
            f"smaller than the (dilated) kernel {span_h}x{span_w} of weight {_shape(weight)}"
        )
    if x.shape[0] == 0:  # an empty batch in, an empty batch out (as F.conv2d)
        out_hw = (
            (H + pad4[0] + pad4[1] - span_h) // stride_[0] + 1,
            (W + pad4[2] + pad4[3] - span_w) // stride_[1] + 1,
        )
        return _empty_batch(x, weight, bias, weight.shape[0], out_hw)
    out = Conv2dFunction.apply(x, weight, bias, stride_, pad4, dilation_, groups)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Tensor:
    """Transposed convolution, a drop-in for ``torch.nn.functional.conv_transpose2d``.

    It is the adjoint of ``conv2d`` (Dumoulin & Visin 2016; Zeiler et al. 2010): if
    ``y = conv2d(z, weight)`` maps [B, C_out, Ho, Wo] -> [B, C_in, H, W], then
    ``conv_transpose2d(x, weight)`` maps [B, C_in, H, W] -> [B, C_out, Ho, Wo] and
    ``<conv2d(z, W), x> = <z, conv_transpose2d(x, W)>``. Computed as ``col2im(W^T @ x)``.
    Note the argument order differs from conv2d (``groups`` before ``dilation``), as in PyTorch.

    Args:
        x: [B, C_in, H, W] (or unbatched [C_in, H, W]).
        weight: [C_in, C_out / groups, kH, kW].
        bias: [C_out] or None.
        stride, padding, dilation: the settings of the convolution this undoes.
        output_padding: extra rows/columns on the bottom/right; must be < stride or < dilation.
        groups: number of independent channel groups.

    Returns:
        [B, C_out, Ho, Wo] with ``Ho = conv_transpose_output_size(H, kH, sH, pH, opH, dH)``.

    Introduced in chapter 03.
    """
    fn = "conv_transpose2d"
    _check_conv_inputs(fn, x, weight, bias)
    _check_int_pair(fn, "stride", stride, 1)
    _check_int_pair(fn, "padding", padding, 0)
    _check_int_pair(fn, "output_padding", output_padding, 0)
    _check_int_pair(fn, "dilation", dilation, 1)
    _check_int(fn, "groups", groups, 1)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)  # [C, H, W] -> [1, C, H, W]
    _check_conv_args("conv_transpose2d", x, weight, bias, groups)
    kernel = (weight.shape[2], weight.shape[3])
    stride_, dilation_ = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding_, out_pad = _pair(padding, "padding"), _pair(output_padding, "output_padding")
    _check_positive("stride", stride_, 1)
    _check_positive("dilation", dilation_, 1)
    _check_positive("padding", padding_, 0)
    _check_positive("output_padding", out_pad, 0)
    for op, s, d in zip(out_pad, stride_, dilation_):
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than either stride or dilation, got "
                f"output_padding={out_pad}, stride={stride_}, dilation={dilation_}"
            )
    H, W = x.shape[-2:]
    out_hw = (
        conv_transpose_output_size(H, kernel[0], stride_[0], padding_[0], out_pad[0], dilation_[0]),
        conv_transpose_output_size(W, kernel[1], stride_[1], padding_[1], out_pad[1], dilation_[1]),
    )
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise ValueError(
            f"conv_transpose2d: input {_shape(x)} with weight {_shape(weight)} gives a non-positive "
            f"output size {out_hw}"
        )
    if x.shape[0] == 0:  # an empty batch in, an empty batch out (as F.conv_transpose2d)
        return _empty_batch(x, weight, bias, weight.shape[1] * groups, out_hw)
    pad4 = (padding_[0], padding_[0], padding_[1], padding_[1])
    out = ConvTranspose2dFunction.apply(x, weight, bias, stride_, pad4, dilation_, groups, out_hw)
    return out.squeeze(0) if unbatched else out


def conv2d_loops(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> Tensor:
    """2-D convolution written as loops over output positions: the definition, slowly.

    Equation: ``y[b, o, h, w] = bias[o] + sum_{c,i,j} W[o, c, i, j] * x_pad[b, c, h*s + i, w*s + j]``.
    Each output pixel is a dot product between the kernel and the patch under it. Same result
    as ``conv2d`` (no dilation or groups here); use it to read, ``conv2d`` to train.

    Args:
        x: [B, C_in, H, W] (or [C_in, H, W]).
        weight: [C_out, C_in, kH, kW].
        bias: [C_out] or None.
        stride, padding: ints.

    Introduced in chapter 03.
    """
    _check_conv_inputs("conv2d_loops", x, weight, bias)
    _check_int("conv2d_loops", "stride", stride, 1)
    _check_int("conv2d_loops", "padding", padding, 0)
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    _check_conv_args("conv2d", x, weight, bias, groups=1)
    B, _, H, W = x.shape
    C_out, _, kh, kw = weight.shape
    Ho = conv_output_size(H, kh, stride, padding)
    Wo = conv_output_size(W, kw, stride, padding)
    if Ho < 1 or Wo < 1:
        raise ValueError(
            f"conv2d_loops: input {_shape(x)} padded by {padding} is smaller than the kernel {kh}x{kw} "
            f"of weight {_shape(weight)}"
        )
    x = F.pad(x, (padding, padding, padding, padding))  # zeros around the border
    out = x.new_zeros(B, C_out, Ho, Wo)
    for h in range(Ho):
        for w in range(Wo):
            top, left = h * stride, w * stride
            patch = x[:, :, top : top + kh, left : left + kw]  # [B, C_in, kH, kW]
            # dot product of each kernel with the patch: sum over c, i, j -> [B, C_out]
            out[:, :, h, w] = (patch.unsqueeze(1) * weight).sum(dim=(2, 3, 4))
    if bias is not None:
        out = out + bias.view(1, C_out, 1, 1)
    return out.squeeze(0) if unbatched else out


# ----------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------


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
