"""Losses as pure functions: classification (chapter 02), then likelihoods and divergences for latent-variable models.

The classification losses (``log_softmax``, ``softmax``, ``cross_entropy``, ``cross_entropy_grad``) take logits
``[B, K]`` and integer labels ``[B]``; ``cross_entropy`` averages over the batch by default, like
``F.cross_entropy``. Checked against PyTorch's own functions in ``tests/test_losses.py``.

The likelihoods and divergences reduce over all non-batch dimensions and returns shape ``[B]``, so an ELBO is
``log_likelihood - kl`` per example and a batch loss is its mean. Introduced in chapter 10 (VAEs) and used again
by chapters 11, 12 and 20. Checked against ``torch.distributions`` in ``tests/test_losses.py``.

A further section holds the Part II training terms: the reconstruction losses :func:`bce_per_image` and
:func:`mse_per_image` (chapter 09), the single-sample :func:`bernoulli_elbo` (chapter 10), and the VQ-VAE's
:func:`codebook_loss` and :func:`commitment_loss` (chapter 12). The last section holds the adversarial losses of
chapter 14 over the discriminator's logits: :func:`discriminator_loss`, :func:`generator_loss_minimax` and
:func:`generator_loss_non_saturating` (:data:`GENERATOR_LOSSES` names them for ``companion.train.train_gan``), and
chapter 15's alternatives: the least-squares losses (:func:`lsgan_discriminator_loss`, :func:`lsgan_generator_loss`),
the Wasserstein critic and generator losses (:func:`wasserstein_critic_loss`, :func:`wasserstein_generator_loss`) and
the two gradient penalties, :func:`gradient_penalty` (WGAN-GP) and :func:`r1_penalty` (these two take the critic as a
callable: a penalty on its input gradient needs the function, not only its outputs). Loss functions over a *model*
(``(model, batch) -> loss``) stay with their model in the chapter's module and build on these.

Conventions: a diagonal Gaussian is given by its mean ``mu`` and log-variance ``logvar`` (``sigma**2 =
exp(logvar)``); Bernoulli pixels by their logits (``p = sigmoid(logits)``), which is numerically stable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "log_softmax",
    "softmax",
    "gaussian_kl",
    "gaussian_kl_between",
    "log_normal",
    "log_standard_normal",
    "bernoulli_log_likelihood",
    "gaussian_log_likelihood",
    "log_mean_exp",
    "gaussian_kl_mc",
    # reconstruction, ELBO and vector-quantisation terms (chapters 09-12)
    "bce_per_image",
    "mse_per_image",
    "bernoulli_elbo",
    "codebook_loss",
    "commitment_loss",
    # adversarial losses (chapter 14)
    "GENERATOR_LOSSES",
    "DISCRIMINATOR_LOSSES",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "wasserstein_critic_loss",
    "wasserstein_generator_loss",
    "gradient_penalty",
    "hinge_discriminator_loss",
    "r1_penalty",
    "discriminator_loss",
    "generator_loss_minimax",
    "generator_loss_non_saturating",
    "adaptive_weight",
    "perceptual_distance",
]

LOG_2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------------------------
# Classification: softmax, log-softmax, cross-entropy and its gradient (chapter 02)
# ----------------------------------------------------------------------------------------------


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax along ``dim``.

    ``log softmax(z)_k = z_k - logsumexp(z) = (z_k - m) - log sum_j exp(z_j - m)`` with ``m = max_j z_j``.
    Subtracting the maximum changes nothing mathematically (it cancels) but keeps every ``exp`` in
    ``(0, 1]``: no overflow for ``z = 1000`` (``exp(1000) = inf`` in float32) and no ``log(0)``.

    Args:
        z: logits of any shape, e.g. ``[B, K]``; floating point.
        dim: the class dimension.

    Returns:
        Log-probabilities, same shape as ``z``; ``exp`` of them sums to 1 along ``dim``.

    Introduced in chapter 02.
    """
    if not z.is_floating_point():
        raise TypeError(f"log_softmax needs floating-point logits, got dtype {z.dtype}")
    m = z.amax(dim=dim, keepdim=True).detach()  # the shift is a constant: it cancels in the result
    shifted = z - m
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``: ``softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m)``.

    Args:
        z: logits of any shape, e.g. ``[B, K]``; floating point.
        dim: the class dimension.

    Returns:
        Probabilities, same shape as ``z``, non-negative and summing to 1 along ``dim``.

    Introduced in chapter 02.
    """
    if not z.is_floating_point():
        raise TypeError(f"softmax needs floating-point logits, got dtype {z.dtype}")
    e = (z - z.amax(dim=dim, keepdim=True).detach()).exp()
    return e / e.sum(dim=dim, keepdim=True)


def _check_logits_targets(logits: Tensor, targets: Tensor) -> None:
    """Raise a ``ValueError`` naming the shapes unless ``logits [B, K]`` and ``targets [B]`` fit together."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, K] (batch, classes), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be [B] class indices matching logits [B, K]: got logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(
            f"targets must lie in 0..{logits.shape[1] - 1} for logits with K={logits.shape[1]} classes, "
            f"got values in {int(targets.min())}..{int(targets.max())}"
        )


def cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of integer labels under ``softmax(logits)``, the same as ``F.cross_entropy``.

    ``L = -(1/B) sum_i log softmax(z_i)_{y_i}``: the average negative log-likelihood the model gives the
    true labels (Goodfellow et al. 2016, section 6.2.2.3).

    Args:
        logits: ``[B, K]`` unnormalised scores.
        targets: ``[B]`` integer labels in ``0..K-1``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example losses ``[B]``).

    Raises:
        ValueError: shapes that do not fit (``logits [B, K]`` vs ``targets [B']``), labels out of range,
            or an unknown ``reduction``.

    Introduced in chapter 02.
    """
    _check_logits_targets(logits, targets)
    nll = -log_softmax(logits, dim=-1).gather(1, targets.long()[:, None])[:, 0]  # [B]
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """Gradient of the mean cross-entropy with respect to the logits: ``(softmax(z) - onehot(y)) / B``.

    Derivation: for one example ``l = -z_y + log sum_j exp(z_j)``, so
    ``dl/dz_k = -[k = y] + exp(z_k) / sum_j exp(z_j) = p_k - [k = y]``; the batch mean divides by ``B``.

    Args:
        logits: ``[B, K]``.
        targets: ``[B]`` integer labels.

    Returns:
        ``[B, K]``, each row sums to 0 (probability mass moves from wrong classes to the right one).

    Introduced in chapter 02.
    """
    _check_logits_targets(logits, targets)
    onehot = torch.nn.functional.one_hot(targets.long(), logits.shape[1]).to(logits.dtype)  # [B, K]
    return (softmax(logits, dim=-1) - onehot) / logits.shape[0]


# ----------------------------------------------------------------------------------------------
# Likelihoods and divergences, one number per example (chapters 10-12)
# ----------------------------------------------------------------------------------------------


def _per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``[B, ...] -> [B]``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _check(who: str, **tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if isinstance(t, Tensor)}
    missing = [name for name, t in tensors.items() if not isinstance(t, Tensor)]
    if missing:
        raise TypeError(f"{who}: {', '.join(missing)} must be tensors, got "
                        + ", ".join(type(tensors[m]).__name__ for m in missing))
    first = next(iter(shapes.values()))
    if len(first) < 1 or first[0] == 0:
        raise ValueError(f"{who}: expected a batch dimension [B, ...] with B >= 1, got shape {first}")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{who}: shapes must match, got " + ", ".join(f"{n} {s}" for n, s in shapes.items()))
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise TypeError(f"{who}: {name} must be a floating-point tensor, got {t.dtype}")


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""KL( N(mu, diag exp(logvar)) || N(0, I) ) per example, summed over latent dimensions.

    .. math:: \mathrm{KL} = \tfrac12 \sum_j \left(\mu_j^2 + \sigma_j^2 - \log\sigma_j^2 - 1\right)

    mu, logvar: ``[B, ...]`` (same shape) -> ``[B]``. Zero exactly when ``mu = 0`` and ``logvar = 0``.
    """
    _check("gaussian_kl", mu=mu, logvar=logvar)
    return _per_example(0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0))


def gaussian_kl_between(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    r"""KL( N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p)) ) per example (diagonal Gaussians).

    .. math:: \tfrac12 \sum_j \left(\log\frac{\sigma_{p,j}^2}{\sigma_{q,j}^2}
              + \frac{\sigma_{q,j}^2 + (\mu_{q,j}-\mu_{p,j})^2}{\sigma_{p,j}^2} - 1\right)

    All four ``[B, ...]`` -> ``[B]``; with ``mu_p = 0, logvar_p = 0`` it equals :func:`gaussian_kl`.
    """
    _check("gaussian_kl_between", mu_q=mu_q, logvar_q=logvar_q, mu_p=mu_p, logvar_p=logvar_p)
    term = logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0
    return _per_example(0.5 * term)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    r"""log N(z; mu, diag exp(logvar)) per example: ``[B, ...]`` x3 -> ``[B]``.

    .. math:: -\tfrac12 \sum_j \left(\log 2\pi + \log\sigma_j^2 + (z_j-\mu_j)^2/\sigma_j^2\right)
    """
    _check("log_normal", z=z, mu=mu, logvar=logvar)
    return _per_example(-0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)))


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I) per example: ``[B, ...]`` -> ``[B]`` (the prior term of an importance weight)."""
    _check("log_standard_normal", z=z)
    return _per_example(-0.5 * (LOG_2PI + z.pow(2)))


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    r"""log p(x | logits) for independent Bernoulli pixels, per example: ``[B, ...]`` x2 -> ``[B]``.

    .. math:: \sum_i x_i \log\sigma(\ell_i) + (1-x_i)\log(1-\sigma(\ell_i))
              = \sum_i x_i\ell_i - \operatorname{softplus}(\ell_i)

    ``x`` may be binary or in ``[0, 1]`` (then it is the continuous cross-entropy, not a likelihood).
    Equals ``-F.binary_cross_entropy_with_logits(logits, x, reduction="none")`` summed per example.
    """
    _check("bernoulli_log_likelihood", logits=logits, x=x)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"bernoulli_log_likelihood: x must lie in [0, 1], got range "
                         f"[{x.min().item():.3g}, {x.max().item():.3g}]")
    return _per_example(x * logits - torch.nn.functional.softplus(logits))


def gaussian_log_likelihood(x: Tensor, mean: Tensor, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(x; mean, exp(logvar)) per example for a Gaussian decoder: ``[B, ...]`` -> ``[B]``.

    ``logvar`` is a tensor of ``x``'s shape (a learned per-pixel variance) or a float (one fixed variance for
    every pixel; ``logvar = 0`` gives ``-0.5 * ||x - mean||^2`` plus a constant).
    """
    if not isinstance(logvar, Tensor):
        logvar = torch.full_like(mean, float(logvar))
    return log_normal(x, mean, logvar)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    r"""``log mean_i exp(log_w_i)`` along ``dim``, computed stably with a log-sum-exp.

    .. math:: \log \frac1k \sum_{i=1}^k e^{a_i} = m + \log \frac1k \sum_{i=1}^k e^{a_i - m},\quad m = \max_i a_i

    The importance-weighted bound of Burda et al. (2016) is ``log_mean_exp(log_w, dim=0)`` over ``k`` log weights
    ``log_w [k, B]``. Introduced in chapter 10.
    """
    if not isinstance(log_w, Tensor) or not log_w.is_floating_point():
        raise TypeError("log_mean_exp: log_w must be a floating-point tensor")
    if log_w.ndim == 0 or log_w.shape[dim] == 0:
        raise ValueError(f"log_mean_exp: need at least one value along dim {dim}, got shape {tuple(log_w.shape)}")
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def gaussian_kl_mc(mu: Tensor, logvar: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Monte Carlo estimate of :func:`gaussian_kl` per example: the mean of ``log q(z) - log p(z)``, ``z ~ q``.

    .. math:: \mathrm{KL}(q\,\|\,p) = \mathbb{E}_{q}\left[\log q(z) - \log p(z)\right]
              \approx \frac1S \sum_{s=1}^S \log q(z_s) - \log p(z_s)

    Unbiased, with a standard error that shrinks like ``1/sqrt(n_samples)``. ``[B, ...]`` x2 -> ``[B]``.
    Introduced in chapter 10 (to check the closed form).
    """
    _check("gaussian_kl_mc", mu=mu, logvar=logvar)
    if n_samples < 1:
        raise ValueError(f"gaussian_kl_mc: n_samples must be >= 1, got {n_samples}")
    b = mu.shape[0]
    eps = torch.randn((n_samples, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps  # [S, B, ...]
    flat = lambda t: t.reshape(n_samples * b, *mu.shape[1:])
    mu_s, lv_s = flat(mu.expand_as(z)), flat(logvar.expand_as(z))
    log_ratio = log_normal(flat(z), mu_s, lv_s) - log_standard_normal(flat(z))  # [S*B]
    return log_ratio.view(n_samples, b).mean(0)


# ----------------------------------------------------------------------------------------------
# Reconstruction, ELBO and vector-quantisation terms (chapters 09-12)
# ----------------------------------------------------------------------------------------------


def bce_per_image(logits: Tensor, x: Tensor) -> Tensor:
    r"""Binary cross-entropy summed over pixels, ``[B, ...] x2 -> [B]`` (nats per image).

    The negative log-likelihood of a Bernoulli decoder, :math:`-\sum_i x_i \log p_i + (1 - x_i)\log(1 - p_i)`
    with :math:`p = \sigma(\ell)`: ``-bernoulli_log_likelihood(logits, x)``. For grey ``x`` in ``(0, 1)`` it is a
    cross-entropy, bounded below by the pixels' own binary entropy, not by 0. Introduced in chapter 09.
    """
    return -bernoulli_log_likelihood(logits, x)


def mse_per_image(x_hat: Tensor, x: Tensor) -> Tensor:
    r"""Squared error summed over pixels, ``[B, ...] x2 -> [B]``.

    Up to constants the negative log-likelihood of a Gaussian decoder with a fixed variance :math:`\sigma^2`:
    :math:`-\log\mathcal N(x; \hat x, \sigma^2 I) = \|x - \hat x\|^2 / 2\sigma^2 + \tfrac{D}{2}\log 2\pi\sigma^2`.
    Divide by the number of pixels for the per-pixel mean squared error. Introduced in chapter 09.
    """
    _check("mse_per_image", x_hat=x_hat, x=x)
    return (x_hat - x).pow(2).reshape(x.shape[0], -1).sum(1)


def bernoulli_elbo(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, beta: float = 1.0) -> Tensor:
    r"""The single-sample ELBO of a Bernoulli decoder per example, ``[B]`` nats (Kingma & Welling 2014, eq. 10).

    .. math:: \sum_i \big(x_i \ell_i - \operatorname{softplus}(\ell_i)\big)
              \;-\; \beta\, \tfrac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - \log \sigma_j^2 - 1\big)

    logits, x: ``[B, C, H, W]`` (the decoder's logits at one ``z ~ q(z|x)``, binary pixels); mu, logvar: ``[B, D]``.
    ``beta`` weighs the KL term (the beta-VAE of chapter 11; 1 is the ELBO). Introduced in chapter 10.
    """
    return bernoulli_log_likelihood(logits, x) - beta * gaussian_kl(mu, logvar)


def codebook_loss(z: Tensor, e: Tensor) -> Tensor:
    r"""The VQ-VAE codebook term :math:`\|\mathrm{sg}[z] - e\|^2` (mean over elements): moves the codes to the encoder.

    van den Oord et al. (2017), eq. 3, second term. z: encoder outputs ``[N, D]``; e: their chosen codes ``[N, D]``
    (differentiable with respect to the codebook) -> a scalar. Introduced in chapter 12.
    """
    _check("codebook_loss", z=z, e=e)
    return torch.nn.functional.mse_loss(e, z.detach())


def commitment_loss(z: Tensor, e: Tensor) -> Tensor:
    r"""The VQ-VAE commitment term :math:`\|z - \mathrm{sg}[e]\|^2` (mean over elements): keeps the encoder near its codes.

    van den Oord et al. (2017), eq. 3, third term (weighted by :math:`\beta`, 0.25 in the paper, by the caller).
    z: encoder outputs ``[N, D]``; e: their chosen codes ``[N, D]`` -> a scalar. Introduced in chapter 12.
    """
    _check("commitment_loss", z=z, e=e)
    return torch.nn.functional.mse_loss(z, e.detach())


# ----------------------------------------------------------------------------------------------
# Adversarial losses over the discriminator's logits (chapter 14)
# ----------------------------------------------------------------------------------------------
#
# The discriminator outputs a logit l; D = sigmoid(l) is its probability that the input is real. Every loss is
# written with softplus(t) = log(1 + e^t), stable for any l: -log sigmoid(l) = softplus(-l) and
# -log(1 - sigmoid(l)) = softplus(l).


def _logits(who: str, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            got = t.dtype if isinstance(t, Tensor) else type(t).__name__
            raise TypeError(f"{who}: {name} must be a floating-point tensor of logits, got {got}")
        if t.numel() == 0:
            raise ValueError(f"{who}: {name} is empty")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The discriminator's loss, :math:`-\mathbb E_x[\log D(x)] - \mathbb E_z[\log(1 - D(G(z)))]` (a scalar).

    Goodfellow et al. (2014), eq. 1, negated: binary cross-entropy with label 1 for real and 0 for fake,
    ``mean(softplus(-real_logits)) + mean(softplus(fake_logits))``. At the game's equilibrium
    (:math:`D = 1/2` everywhere) it equals :math:`2 \log 2`. real_logits, fake_logits: ``[B]`` or ``[B, 1]``
    (the two batches may differ in size). Introduced in chapter 14.
    """
    _logits("discriminator_loss", real_logits=real_logits, fake_logits=fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_minimax(fake_logits: Tensor) -> Tensor:
    r"""The generator's loss of the minimax game, :math:`\mathbb E_z[\log(1 - D(G(z)))]` (the *saturating* loss).

    Goodfellow et al. (2014), eq. 1: the generator minimises the second term of the value function,
    ``-mean(softplus(fake_logits))``. Its gradient with respect to the logit is :math:`-D(G(z))`, which vanishes
    when the discriminator confidently rejects the fakes (:math:`D \to 0`) -- early in training. fake_logits:
    ``[B]`` or ``[B, 1]`` -> a scalar (at most 0). Introduced in chapter 14.
    """
    _logits("generator_loss_minimax", fake_logits=fake_logits)
    return -F.softplus(fake_logits).mean()


def generator_loss_non_saturating(fake_logits: Tensor) -> Tensor:
    r"""The *non-saturating* generator loss, :math:`-\mathbb E_z[\log D(G(z))]` (Goodfellow et al. 2014, sec. 3).

    ``mean(softplus(-fake_logits))``: the fakes are labelled real. Same fixed point as the minimax loss, but its
    gradient with respect to the logit is :math:`-(1 - D(G(z)))`, close to -1 exactly where the minimax gradient
    vanishes. fake_logits: ``[B]`` or ``[B, 1]`` -> a scalar (at least 0). Introduced in chapter 14.
    """
    _logits("generator_loss_non_saturating", fake_logits=fake_logits)
    return F.softplus(-fake_logits).mean()


#: The generator losses by name, as ``companion.train.train_gan``'s ``loss=`` argument reads them.
GENERATOR_LOSSES = {"non_saturating": generator_loss_non_saturating, "minimax": generator_loss_minimax}


# ----------------------------------------------------------------------------------------------
# Stabilised adversarial losses and gradient penalties (chapter 15)
# ----------------------------------------------------------------------------------------------
#
# Here the discriminator's raw output is a score, not necessarily a logit: LSGAN regresses it onto targets
# (0 for fake, 1 for real), the Wasserstein critic uses it as the potential of the Kantorovich-Rubinstein dual.


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""LSGAN's discriminator loss (Mao et al. 2017, eq. 2 with ``a = 0``, ``b = c = 1``), a scalar:
    :math:`\tfrac12 \mathbb E_x[(D(x) - 1)^2] + \tfrac12 \mathbb E_z[D(G(z))^2]`.

    A least-squares regression of the raw score onto 1 for real and 0 for fake; no sigmoid. Introduced in chapter 15.
    """
    _logits("lsgan_discriminator_loss", real_scores=real_scores, fake_scores=fake_scores)
    return 0.5 * (real_scores - 1).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()


def lsgan_generator_loss(fake_scores: Tensor) -> Tensor:
    r"""LSGAN's generator loss, :math:`\tfrac12 \mathbb E_z[(D(G(z)) - 1)^2]` (Mao et al. 2017, eq. 2, ``c = 1``).

    Its gradient with respect to the score is ``D(G(z)) - 1``: it does not vanish for fakes the discriminator
    classifies correctly but that still lie far from the decision boundary. Introduced in chapter 15.
    """
    _logits("lsgan_generator_loss", fake_scores=fake_scores)
    return 0.5 * (fake_scores - 1).pow(2).mean()


def wasserstein_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    r"""The WGAN critic's loss, :math:`\mathbb E_z[f(G(z))] - \mathbb E_x[f(x)]` (Arjovsky et al. 2017, Algorithm 1).

    Minimising it maximises the Kantorovich-Rubinstein dual :math:`\mathbb E_x f - \mathbb E_{G} f`, which equals the
    Wasserstein-1 distance when ``f`` ranges over 1-Lipschitz functions; the Lipschitz constraint comes from weight
    clipping (``train_gan(clip=...)``) or a penalty (:func:`gradient_penalty`). Its negative is the critic's estimate
    of :math:`W_1`. Introduced in chapter 15.
    """
    _logits("wasserstein_critic_loss", real_scores=real_scores, fake_scores=fake_scores)
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: Tensor) -> Tensor:
    r"""The WGAN generator's loss, :math:`-\mathbb E_z[f(G(z))]`: push the critic's score of the fakes up.
    Introduced in chapter 15."""
    _logits("wasserstein_generator_loss", fake_scores=fake_scores)
    return -fake_scores.mean()


def _input_gradient(critic, x: Tensor) -> Tensor:
    """``d critic(x).sum() / dx`` with the graph kept (the penalty is differentiated again), ``[B, ...]``."""
    scores = critic(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad


def gradient_penalty(critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None,
                     target: float = 1.0) -> Tensor:
    r"""WGAN-GP's penalty (Gulrajani et al. 2017, Algorithm 1), a scalar:
    :math:`\mathbb E_{\hat x}[(\lVert \nabla_{\hat x} f(\hat x) \rVert_2 - 1)^2]` on random interpolates
    :math:`\hat x = \epsilon x + (1 - \epsilon)\tilde x`, :math:`\epsilon \sim U[0, 1]` per example.

    The optimal critic has gradient norm 1 almost everywhere on the straight lines between real and generated
    points (Gulrajani et al. 2017, Proposition 1), so the penalty is taken there -- not on real samples only.
    ``critic``: ``[B, ...] -> [B]``; ``real``, ``fake``: the same shape ``[B, ...]`` (``fake`` detached or not:
    only the interpolates are differentiated); ``generator`` draws ``epsilon`` on the CPU. Multiply by
    :math:`\lambda` (10 in the paper). Introduced in chapter 15.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {list(real.shape)} and fake {list(fake.shape)} differ in shape")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype)
    eps = eps.to(real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)  # [B, ...] on the lines
    grad = _input_gradient(critic, x_hat).flatten(1)  # [B, D]
    norm = torch.sqrt(grad.pow(2).sum(1) + 1e-12)  # the epsilon keeps the gradient finite at norm 0
    return (norm - target).pow(2).mean()


def r1_penalty(critic, real: Tensor) -> Tensor:
    r"""The R1 penalty (Mescheder et al. 2018, eq. 9), a scalar :math:`\mathbb E_x[\lVert \nabla_x D(x) \rVert_2^2]`
    on **real** data only; the paper's regulariser is :math:`\tfrac{\gamma}{2}` times it.

    It pushes the discriminator to be flat on the data manifold, which makes the game locally convergent at the
    equilibrium (where ``D`` is constant and needs no gradient). ``critic``: ``[B, ...] -> [B]`` (a logit);
    ``real``: ``[B, ...]``. Introduced in chapter 15.
    """
    x = real.detach().requires_grad_(True)
    return _input_gradient(critic, x).flatten(1).pow(2).sum(1).mean()


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The hinge loss of SAGAN and BigGAN, :math:`\mathbb E_x[\max(0, 1 - D(x))] + \mathbb E_z[\max(0, 1 +
    D(G(z)))]` (Lim & Ye 2017; Zhang et al. 2019, eq. 5): a real scored above 1 or a fake below -1 costs nothing,
    so the discriminator stops pushing on examples it already separates with a margin. Pairs with
    :func:`wasserstein_generator_loss` (``-E[D(G(z))]``). Introduced in chapter 16."""
    _logits("hinge_discriminator_loss", real_logits=real_logits, fake_logits=fake_logits)
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()


GENERATOR_LOSSES.update({"lsgan": lsgan_generator_loss, "wasserstein": wasserstein_generator_loss,
                         "hinge": wasserstein_generator_loss})
#: The discriminator (critic) losses by name; ``companion.train.train_gan`` pairs each generator loss with one.
DISCRIMINATOR_LOSSES = {"non_saturating": discriminator_loss, "minimax": discriminator_loss,
                        "lsgan": lsgan_discriminator_loss, "wasserstein": wasserstein_critic_loss,
                        "hinge": hinge_discriminator_loss}


# --- chapter 16: VQGAN's reconstruction terms ---


def perceptual_distance(features: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """A perceptual loss: the mean squared distance between ``features(x)`` and ``features(y)`` (a frozen network's
    feature maps), per example averaged; VQGAN (Esser et al. 2021) uses LPIPS, a VGG's features. Introduced in
    chapter 16."""
    return (features(x) - features(y)).pow(2).flatten(1).mean(1).mean()


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's adaptive weight of the adversarial term (Esser et al. 2021, eq. 7):
    ``lambda = |grad_L L_rec| / (|grad_L L_GAN| + 1e-4)`` at the decoder's last layer ``L``, so that neither loss
    swamps the other whatever their scales. Returned detached. Introduced in chapter 16."""
    (g_rec,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    (g_gan,) = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, max_weight).detach()
