"""From-scratch layers that keep the same state as their ``torch.nn`` counterparts.

* ``BatchNorm2d``: batch normalisation over (batch, height, width) per channel, with the
  running statistics used at evaluation time (chapter 05).

Parameters and buffers carry the same names as in ``torch.nn`` (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``), so state dicts load both ways.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BatchNorm2d"]


class BatchNorm2d(nn.Module):
    """Batch normalisation for [B, C, H, W] activations (Ioffe & Szegedy 2015, Algorithm 1).

    Training, per channel c, over the B*H*W values of the batch::

        mu_c     = mean(x[:, c])                       # batch mean
        sigma2_c = mean((x[:, c] - mu_c)^2)            # biased batch variance (divide by n)
        y        = gamma_c * (x - mu_c) / sqrt(sigma2_c + eps) + beta_c
        running_mean <- (1 - momentum) * running_mean + momentum * mu_c
        running_var  <- (1 - momentum) * running_var  + momentum * sigma2_c * n / (n - 1)

    The running variance uses the unbiased estimate (divide by n - 1), as PyTorch does. With
    ``momentum=None`` the running statistics are the cumulative average over all batches seen
    (momentum = 1 / num_batches_tracked). Evaluation (``model.eval()``) normalises with the
    running statistics instead of the batch's, so the output of one image no longer depends on
    the rest of the batch.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability.
        momentum: weight of the newest batch in the running statistics, or None.

    Shapes: input and output [B, C, H, W]; ``weight`` (gamma) and ``bias`` (beta) are [C].

    Introduced in chapter 05.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma: [C]
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta: [C]
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Forget the running statistics (mean 0, variance 1, no batches seen)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset, gamma = 1, beta = 0."""
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"BatchNorm2d expects a 4-D input [B, C, H, W], got shape {list(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) got input of shape {list(x.shape)} with "
                f"{x.shape[1]} channels, expected {self.num_features}"
            )
        if self.training:
            n = x.numel() // x.shape[1]  # values per channel: B*H*W
            if n <= 1:
                raise ValueError(
                    f"BatchNorm2d needs more than 1 value per channel when training, got input {list(x.shape)}"
                )
            mean = x.mean(dim=(0, 2, 3))  # mu: [C]
            var = x.var(dim=(0, 2, 3), correction=0)  # sigma^2, biased: [C]
            self._update_running_stats(mean.detach(), var.detach(), n)
        else:
            mean, var = self.running_mean, self.running_var
        # broadcast the per-channel [C] statistics over [B, C, H, W]
        x_hat = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return x_hat * self.weight[None, :, None, None] + self.bias[None, :, None, None]

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        """Exponential (or cumulative, momentum=None) average of the batch statistics."""
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)  # cumulative moving average
        else:
            factor = self.momentum
        unbiased_var = var * (n / (n - 1))  # Bessel's correction for the running estimate
        self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)  # (1 - f) * running + f * batch
        self.running_var.mul_(1.0 - factor).add_(unbiased_var, alpha=factor)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
