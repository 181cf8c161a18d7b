"""Solutions · 09 Autoencoders

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch


def pca_reconstruct(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rank-k PCA reconstruction of the rows of x, fitted to x itself.

    Args:
        x: data [N, D] (one example per row, not centred).
        k: number of principal components kept, 1 <= k <= min(N, D).

    Returns:
        [N, D]: mean + (x - mean) V_k V_k^T, where V_k holds the top-k right singular vectors of the centred data.
    """
    mean = x.mean(0, keepdim=True)  # [1, D]
    _, _, Vt = torch.linalg.svd(x - mean, full_matrices=False)  # x - mean = U diag(S) V^T, Vt [min(N, D), D]
    Vk = Vt[:k].T  # [D, k]: the directions of largest variance
    z = (x - mean) @ Vk  # encode: [N, k]
    return mean + z @ Vk.T  # decode: back to [N, D]


def output_padding_for(size: int, target: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The output_padding that makes a transposed convolution map length `size` to length `target`.

    A transposed convolution gives (size - 1) * stride - 2 * padding + kernel + output_padding, with
    0 <= output_padding < stride allowed by PyTorch.

    Returns:
        the output_padding (an int); raises ValueError when no allowed value reaches `target`.
    """
    base = (size - 1) * stride - 2 * padding + kernel  # the length with output_padding = 0
    op = target - base
    if not 0 <= op < max(stride, 1):
        raise ValueError(f"size {size} maps to {base}..{base + stride - 1}, never to {target}")
    return op


def mask_pixels(x: torch.Tensor, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Masking noise: zero each pixel independently with probability `level`.

    Draw u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) (exactly this call, so the
    check can reproduce your mask) and zero the pixels where u < level.

    Returns:
        a tensor like x.
    """
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    keep = (u >= level).to(x.dtype)  # 1 with probability 1 - level
    return x * keep


EXERCISES = {"09.1": pca_reconstruct, "09.2": output_padding_for, "09.3": mask_pixels}
