"""The public convolutions: :func:`conv2d` (im2col + one matrix multiply), :func:`conv_transpose2d` (its adjoint)
and :func:`conv2d_loops` (Python loops over output positions, the readable reference). Each takes and returns
ordinary tensors, like its ``torch.nn.functional`` counterpart. Introduced in chapter 03.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .._checks import IntPair, _pair, _shape
from .checks import _check_conv_args, _check_conv_inputs, _check_int, _check_int_pair, _check_positive
from .im2col import Conv2dFunction, ConvTranspose2dFunction, Padding4
from .shapes import conv_output_size, conv_transpose_output_size

# ----------------------------------------------------------------------------------------------
# Public convolution API
# ----------------------------------------------------------------------------------------------


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
