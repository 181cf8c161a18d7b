"""Solutions · 10 Variational autoencoders

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A sample of q(z | x) = N(mu, diag(exp(logvar))) written as a differentiable function of mu and logvar.

    Args:
        mu: the posterior means [B, D].
        logvar: the posterior log-variances log sigma^2 [B, D].
        eps: standard-normal noise [B, D] (drawn by the caller).

    Returns:
        z [B, D], with gradients flowing into mu and logvar.
    """
    sigma = torch.exp(0.5 * logvar)  # sigma = sqrt(exp(logvar)); never exp(logvar), which is the variance
    return mu + sigma * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) per example, in closed form.

    Args:
        mu, logvar: [B, ...] (same shape); every dimension after the first is a latent dimension.

    Returns:
        [B]: the KL of each example, summed over its latent dimensions (in nats).
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)  # one term per latent dimension
    return kl.reshape(kl.shape[0], -1).sum(dim=1)


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """log( (1/k) sum_i exp(log_w[i]) ) over the first dimension, without overflow or underflow.

    Args:
        log_w: log importance weights [k, B] (k samples for each of B images).

    Returns:
        [B]: the importance-weighted bound L_k of each image.
    """
    m = log_w.max(dim=0).values  # [B]: the largest log weight of each image
    return m + torch.log(torch.exp(log_w - m).mean(dim=0))  # every exp is <= 1, and one of them is exactly 1


def bernoulli_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   beta: float = 1.0) -> torch.Tensor:
    """The (beta-weighted) single-sample ELBO of a VAE with a Bernoulli decoder, per example.

    ELBO = log p(x | z) - beta * KL(q(z | x) || N(0, I)), where log p(x | z) = sum over pixels of
    x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)) for the decoder's logits l at one sample z ~ q(z | x).

    Args:
        logits: decoder logits [B, C, H, W].
        x: binary images [B, C, H, W].
        mu, logvar: the posterior's parameters [B, D].
        beta: the weight of the KL term.

    Returns:
        [B] in nats (higher is better).
    """
    # log sigmoid(l) = l - softplus(l) and log(1 - sigmoid(l)) = -softplus(l): stable for any logit
    rec = (x * logits - F.softplus(logits)).reshape(x.shape[0], -1).sum(dim=1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(dim=1)
    return rec - beta * kl


EXERCISES = {
    "10.1": reparameterize,
    "10.2": gaussian_kl,
    "10.3": log_mean_exp,
    "10.4": bernoulli_elbo,
}
