"""Solutions · 11 VAE variants and uses

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve from ranks (Mann–Whitney U); tied scores count one half.

    AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), where R_pos is the sum of the positives'
    ranks (1 = the lowest score) among all N scores, and tied scores share the mean of their ranks.

    Args:
        scores: [N] float, higher = more likely an anomaly.
        labels: [N] int in {0, 1}, 1 = anomaly (a positive).

    Returns:
        a Python float in [0, 1].
    """
    scores, labels = scores.double().flatten(), labels.flatten()
    # the distinct scores in increasing order, which group each score belongs to, and the group sizes
    _, group, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of the last member of each group (ranks start at 1)
    mean_rank = last - (counts.double() - 1) / 2  # ties share the mean of the ranks they occupy
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    r_pos = mean_rank[group][pos].sum().item()
    # U = R_pos - n_pos (n_pos + 1) / 2 counts the (positive, negative) pairs ranked right (ties: one half)
    return (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mutual information I(a; b) in nats between two discrete variables, from N paired samples.

    Build the joint distribution p(a, b) from the counts of each pair of values (the contingency table),
    its marginals p(a) and p(b), and sum p(a, b) log(p(a, b) / (p(a) p(b))) over the pairs that occur.
    The values are arbitrary integers (not necessarily 0..n-1).

    Args:
        a, b: [N] int64.

    Returns:
        a Python float >= 0.
    """
    ia = torch.unique(a, return_inverse=True)[1]  # relabel the values 0..na-1
    ib = torch.unique(b, return_inverse=True)[1]
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    counts = torch.bincount(ia * nb + ib, minlength=na * nb).view(na, nb).double()  # contingency table
    p_ab = counts / a.numel()
    p_a, p_b = p_ab.sum(1, keepdim=True), p_ab.sum(0, keepdim=True)
    seen = p_ab > 0  # 0 log 0 = 0: skip the pairs that never occur
    mi = (p_ab[seen] * torch.log(p_ab[seen] / (p_a * p_b)[seen])).sum().item()
    return max(mi, 0.0)  # round-off can leave -1e-17 for independent variables


def cvae_elbo(x: torch.Tensor, y: torch.Tensor, encoder: nn.Module, decoder: nn.Module, eps: torch.Tensor,
              num_classes: int) -> torch.Tensor:
    """The conditional ELBO per example with one reparameterised sample.

    ELBO(x, y) = log p(x | y, z) - KL(q(z | x, y) || N(0, I)) with z = mu + exp(logvar / 2) * eps:
    turn y into a one-hot [B, K] float matrix c, get (mu, logvar) = encoder(x, c), decode logits =
    decoder(z, c), and use Bernoulli pixels, log p(x | y, z) = sum_i x_i l_i - softplus(l_i) over all pixels,
    and the closed-form KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - logvar_j - 1).

    Args:
        x: images [B, C, H, W] in [0, 1].
        y: labels int64 [B] in 0..K-1.
        encoder: encoder(x, c) -> (mu [B, D], logvar [B, D]).
        decoder: decoder(z [B, D], c) -> logits [B, C, H, W].
        eps: standard-normal noise [B, D].
        num_classes: K.

    Returns:
        [B], in nats.
    """
    c = F.one_hot(y, num_classes).to(x.dtype)  # the condition, fed to both networks
    mu, logvar = encoder(x, c)
    z = mu + torch.exp(0.5 * logvar) * eps  # reparameterisation: gradients reach mu and logvar
    logits = decoder(z, c)
    log_lik = (x * logits - F.softplus(logits)).flatten(1).sum(1)  # Bernoulli, stable in the logits
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
    return log_lik - kl


EXERCISES = {"11.1": auroc, "11.2": mutual_information, "11.3": cvae_elbo}
