"""Monte Carlo gradient estimators on a toy: why a VAE reparameterises.

:func:`toy_gradient_samples` draws single-sample estimates of the gradient of an expectation,
``d/dmu E_{z ~ N(mu, sigma^2)}[f(z)]``, with the score-function estimator (REINFORCE) or with the
reparameterisation ``z = mu + sigma * eps``; both are unbiased, and chapter 10 compares their variances.
Only ``torch`` is imported. Introduced in chapter 10.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["toy_gradient_samples"]


# ----------------------------------------------------------------------------------------------
# Why reparameterise: two gradient estimators on a toy
# ----------------------------------------------------------------------------------------------


def toy_gradient_samples(f: Callable[[Tensor], Tensor], mu: float, sigma: float, n: int, estimator: str,
                         generator: torch.Generator | None = None) -> Tensor:
    r"""``n`` single-sample estimates of :math:`\partial_\mu \mathbb{E}_{z \sim N(\mu, \sigma^2)}[f(z)]`, ``[n]``.

    * ``"score"`` (REINFORCE, Williams 1992): :math:`f(z)\,\partial_\mu \log q(z) = f(z)\,(z - \mu)/\sigma^2`;
    * ``"reparam"``: :math:`z = \mu + \sigma\varepsilon`, so the estimate is :math:`f'(z)` (autograd).

    Both are unbiased; the chapter compares their variances.
    """
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    if estimator == "score":
        z = mu + sigma * eps
        return f(z) * (z - mu) / sigma**2
    if estimator == "reparam":
        # one mu per sample, so autograd returns every per-sample derivative f'(mu + sigma * eps_i) at once
        ms = torch.full((n,), float(mu), dtype=torch.float64, requires_grad=True)
        (grads,) = torch.autograd.grad(f(ms + sigma * eps).sum(), ms)
        return grads
    raise ValueError(f"estimator must be 'score' or 'reparam', got {estimator!r}")
