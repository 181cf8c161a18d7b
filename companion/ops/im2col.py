"""The engine under :func:`~companion.ops.conv2d` and :func:`~companion.ops.conv_transpose2d`: im2col, col2im and
the batched matrix multiplies around them, and the two ``torch.autograd.Function`` s with hand-written backward
passes, :class:`Conv2dFunction` (whose input gradient is a col2im) and :class:`ConvTranspose2dFunction` (whose
forward *is* that input gradient). Introduced in chapter 03.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------------------------
# The three kernels: im2col, col2im, and the matrix multiplies around them
# ----------------------------------------------------------------------------------------------


Padding4 = tuple[int, int, int, int]  # (top, bottom, left, right), the order im2col pads in


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
