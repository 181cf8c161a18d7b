"""Solutions · 03 Convolution from first principles

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Number of output positions of a convolution along one axis (an int).

    Args:
        size: input length n (H or W).
        kernel: kernel length k.
        stride: step s between neighbouring kernel placements.
        padding: zeros p added on *each* side.
        dilation: spacing d between kernel taps.

    Returns:
        floor((n + 2p - d(k - 1) - 1) / s) + 1
    """
    span = dilation * (kernel - 1) + 1  # pixels covered by one (dilated) kernel placement
    # placements start at 0, s, 2s, ... and the last must end inside the padded input: start <= n + 2p - span
    return (size + 2 * padding - span) // stride + 1


def im2col(x: torch.Tensor, k: int) -> torch.Tensor:
    """The column matrix of x for a k x k kernel, stride 1 and no padding (what F.unfold returns).

    Column l = h * Wo + w holds the patch x[:, h:h+k, w:w+k] flattened in (channel, row, column) order,
    so that W.reshape(C_out, -1) @ im2col(x, k) is the convolution, reshaped to [C_out, Ho, Wo].

    Args:
        x: [C, H, W]
        k: kernel size, 1 <= k <= min(H, W).

    Returns:
        [C*k*k, Ho*Wo] with Ho = H - k + 1, Wo = W - k + 1.
    """
    C, H, W = x.shape
    Ho, Wo = H - k + 1, W - k + 1
    rows = []
    for c in range(C):  # row order (c, i, j), c slowest, as F.unfold
        for i in range(k):
            for j in range(k):
                # tap (i, j) of channel c reads this Ho x Wo window for every output position at once
                rows.append(x[c, i : i + Ho, j : j + Wo].reshape(-1))
    return torch.stack(rows)


def conv2d_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """dL/dW for the one-channel convolution y = conv2d(x, W) (stride 1, no padding), given g = dL/dy.

    Chain rule: dL/dW[i, j] = sum over h, w of g[h, w] * x[h + i, w + j]  (a correlation of x with g).

    Args:
        x: input image [H, W].
        grad_out: upstream gradient g [Ho, Wo]; the kernel was [H - Ho + 1, W - Wo + 1].

    Returns:
        [H - Ho + 1, W - Wo + 1]
    """
    Ho, Wo = grad_out.shape
    kh, kw = x.shape[0] - Ho + 1, x.shape[1] - Wo + 1
    grad_w = torch.zeros(kh, kw, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # tap W[i, j] multiplied x[h + i, w + j] into y[h, w] for every output position (h, w)
            grad_w[i, j] = (grad_out * x[i : i + Ho, j : j + Wo]).sum()
    # The same in one line: correlate x with g used as the kernel,
    #   F.conv2d(x[None, None], grad_out[None, None])[0, 0]
    return grad_w


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis (an int).

    The transposed convolution undoes the *shape* change of conv2d(stride, padding, dilation): solve the
    output-size formula for the input size, taking the largest remainder r = output_padding.

    Returns:
        (n - 1) s - 2p + d(k - 1) + output_padding + 1
    """
    # each of the n inputs paints a kernel of span d(k - 1) + 1 starting s pixels after the previous one;
    # the painting is cropped by p on each side, and output_padding adds back rows a strided conv never read
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - 2 * padding + output_padding


EXERCISES = {
    "03.1": conv_output_size,
    "03.2": im2col,
    "03.3": conv2d_weight_grad,
    "03.4": conv_transpose_output_size,
}
