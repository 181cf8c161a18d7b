"""Solutions · 12 Discrete latents: VQ-VAE

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared Euclidean distance) for every vector.

    Expand ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2 so that one matrix product does the work.

    Args:
        z: [N, D] vectors; codebook: [K, D] codes.

    Returns:
        [N] long: argmin_k ||z_i - e_k||^2 (ties go to the lowest index).
    """
    z_sq = (z * z).sum(dim=1, keepdim=True)  # [N, 1]
    e_sq = (codebook * codebook).sum(dim=1)  # [K]
    distances = z_sq - 2 * z @ codebook.T + e_sq  # [N, 1] - [N, K] + [K] -> [N, K]
    return distances.argmin(dim=1)


def straight_through(z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """The straight-through estimator.

    Returns a tensor whose value is z_q but whose gradient flows to z as if the output were z itself
    (the Jacobian d out / d z is the identity), and which sends no gradient to z_q.

    Args:
        z: the encoder output (any shape); z_q: its quantised version (same shape).
    """
    return z + (z_q - z).detach()  # value z + z_q - z = z_q; the detached part is a constant for autograd


def ema_update(cluster_size: torch.Tensor, embed_sum: torch.Tensor, z: torch.Tensor, indices: torch.Tensor,
               decay: float, eps: float) -> tuple:
    """One exponential-moving-average codebook step (online k-means with Laplace smoothing).

    With n_k the number of rows of z assigned to code k and s_k their sum:
        N_k <- decay * N_k + (1 - decay) * n_k
        m_k <- decay * m_k + (1 - decay) * s_k
        N~_k = (N_k + eps) / (sum_j N_j + K * eps) * sum_j N_j
        e_k  = m_k / N~_k

    Args:
        cluster_size: [K] running counts N; embed_sum: [K, D] running sums m.
        z: [N, D] vectors; indices: [N] long, the code of each vector.
        decay: in [0, 1); eps: the smoothing constant.

    Returns:
        (new cluster_size [K], new embed_sum [K, D], codebook [K, D]) as new tensors; the inputs are unchanged.
    """
    K = cluster_size.shape[0]
    one_hot = F.one_hot(indices, K).to(z.dtype)  # [N, K]: row i has a 1 in column indices[i]
    n = one_hot.sum(dim=0)  # [K]
    s = one_hot.T @ z  # [K, D]: sum of the vectors assigned to each code
    new_size = decay * cluster_size + (1 - decay) * n
    new_sum = decay * embed_sum + (1 - decay) * s
    total = new_size.sum()
    smoothed = (new_size + eps) / (total + K * eps) * total
    return new_size, new_sum, new_sum / smoothed[:, None]


def perplexity(indices: torch.Tensor, num_codes: int) -> float:
    """Perplexity exp(H(p)) of the average code usage, the effective number of codes in use.

    p_k = (number of times code k occurs in indices) / (number of indices), and
    H(p) = -sum_k p_k log p_k with 0 log 0 = 0.

    Args:
        indices: integer tensor of any shape, values in [0, num_codes).
        num_codes: K.

    Returns:
        a Python float between 1 and num_codes.
    """
    counts = torch.bincount(indices.flatten(), minlength=num_codes).double()
    p = counts / counts.sum()
    p = p[p > 0]  # 0 log 0 = 0: drop unused codes
    return math.exp(-(p * p.log()).sum().item())


EXERCISES = {
    "12.1": nearest_code,
    "12.2": straight_through,
    "12.3": ema_update,
    "12.4": perplexity,
}
