"""Solutions · 08 Attention and Vision Transformers

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention softmax(q k^T / sqrt(E)) v, without a mask.

    Args:
        q: queries [..., L, E]; k: keys [..., S, E]; v: values [..., S, Ev] (leading dims match).

    Returns:
        [..., L, Ev]: row i is the average of the values weighted by how well query i matches each key.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., L, S]
    scores = scores - scores.amax(dim=-1, keepdim=True)  # the shift cancels in the softmax; exp stays <= 1
    weights = scores.exp()
    weights = weights / weights.sum(dim=-1, keepdim=True)  # each row sums to 1
    return weights @ v  # [..., L, S] @ [..., S, Ev] -> [..., L, Ev]


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut a batch of images into non-overlapping p x p patches, each flattened to a vector.

    Patches are numbered row by row (left to right, then top to bottom); inside a patch the values are ordered
    channel first, then row, then column -- the order F.unfold uses.

    Args:
        images: [B, C, H, W]; patch_size p divides H and W.

    Returns:
        [B, N, C*p*p] with N = (H // p) * (W // p).
    """
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # split each axis into (patch index, pixel in patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # [B, H/p, W/p, C, p, p]: patch position first, contents last
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def sinusoidal_encoding(n_positions: int, dim: int) -> torch.Tensor:
    """The 1-D sinusoidal position encoding of Vaswani et al. (2017).

    PE[m, 2i] = sin(m * w_i) and PE[m, 2i + 1] = cos(m * w_i), with frequencies w_i = 10000^(-2i / dim).

    Args:
        n_positions: positions m = 0, 1, ..., n_positions - 1.
        dim: the encoding width, even.

    Returns:
        [n_positions, dim], float32.
    """
    m = torch.arange(n_positions, dtype=torch.float64)[:, None]  # [N, 1]
    omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [dim/2]
    angles = m * omega  # [N, dim/2]
    pe = torch.zeros(n_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)  # even columns
    pe[:, 1::2] = torch.cos(angles)  # odd columns
    return pe.float()


EXERCISES = {
    "08.1": attention,
    "08.2": patchify,
    "08.3": sinusoidal_encoding,
}
