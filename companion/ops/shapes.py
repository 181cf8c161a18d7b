"""Convolution shape arithmetic: :func:`conv_output_size` and :func:`conv_transpose_output_size`.

Introduced in chapter 03.
"""

from __future__ import annotations

from .checks import _check_int

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
