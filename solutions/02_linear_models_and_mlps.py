"""Solutions · 02 Linear models and MLPs on pixels

Each function has the same signature and docstring as its stub in the chapter. Try the exercise first:
the chapter's check cell tells you whether your version is right.
"""

import torch
import torch.nn.functional as F


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dimension, stable for huge logits.

    Args:
        z: logits ``[..., K]`` (e.g. ``[B, 10]``), floating point.

    Returns:
        ``[..., K]`` log-probabilities: ``z_k - log sum_j exp(z_j)``, computed without overflow
        (subtract the row maximum first). ``torch.log_softmax`` is off limits.
    """
    m = z.amax(dim=-1, keepdim=True)  # [..., 1], the log-sum-exp shift
    return (z - m) - (z - m).exp().sum(dim=-1, keepdim=True).log()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer labels under softmax(logits), like ``F.cross_entropy``.

    Args:
        logits: ``[B, K]`` unnormalised scores.
        targets: ``[B]`` int64 labels in ``0..K-1``.

    Returns:
        A scalar tensor: ``-(1/B) * sum_i log softmax(logits_i)[targets_i]``. Stay stable for logits of 1000.
    """
    m = logits.amax(dim=-1, keepdim=True)
    logp = (logits - m) - (logits - m).exp().sum(dim=-1, keepdim=True).log()  # [B, K]
    return -logp[torch.arange(logits.shape[0]), targets].mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The gradient of the mean cross-entropy with respect to the logits, without autograd.

    Args:
        logits: ``[B, K]``.
        targets: ``[B]`` int64 labels.

    Returns:
        ``[B, K]``: ``(softmax(logits) - onehot(targets)) / B``.
    """
    p = torch.softmax(logits, dim=-1)  # [B, K]
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)  # [B, K]
    return (p - onehot) / logits.shape[0]


def permute_pixels(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the pixels of every image with one fixed permutation.

    Args:
        x: images ``[B, C, H, W]``.
        perm: ``[H*W]`` int64, a permutation of ``0..H*W-1``.

    Returns:
        ``[B, C, H, W]`` where output pixel ``i`` (in row-major order) is input pixel ``perm[i]``,
        for every image and channel.
    """
    B, C, H, W = x.shape
    return x.reshape(B, C, H * W)[:, :, perm].reshape(B, C, H, W)


EXERCISES = {
    "02.1": log_softmax,
    "02.2": cross_entropy,
    "02.3": cross_entropy_grad,
    "02.4": permute_pixels,
}
