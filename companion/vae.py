"""Variational autoencoders, built bottom-up: config, encoder, decoder, the ELBO, then what we measure with it.

Read top to bottom:

* :class:`VAEConfig` with :meth:`VAEConfig.tiny` (tests, ci);
* the inference network :class:`Encoder` (``x -> (mu, logvar)`` of ``q(z|x) = N(mu, diag exp(logvar))``) and
  the generative network :class:`Decoder` (``z ->`` Bernoulli logits or Gaussian means), MLP or small conv;
* :func:`reparameterize` (Kingma & Welling 2014, eq. 10 with ``L = 1``): ``z = mu + exp(logvar / 2) * eps``;
* :class:`VAE`: ``encode``, ``reparameterize``, ``decode``, ``log_likelihood``, :meth:`VAE.elbo` (per example,
  with a KL weight ``beta``), :meth:`VAE.iwae_bound` (the importance-weighted bound with gradients, for training
  with ``companion.train.train_vae(iwae_k=...)``) and :meth:`VAE.sample` from the prior;
* training: :func:`dynamic_binarize` (a fresh Bernoulli draw of every image each time it is seen),
  the KL-weight schedules :func:`beta_anneal` (linear warm-up, Bowman et al. 2016) and :func:`beta_cyclical`
  (Fu et al. 2019), used by ``companion.train.train_vae`` (tqdm, history, early stopping on a held-out slice);
* evaluation: :func:`evaluate_elbo` (mean ELBO, reconstruction and KL over a data set), :func:`iwae_log_weights`
  and :func:`iwae_nll` (Burda et al. 2016, eq. 8: the importance-weighted bound ``log mean_k p(x, z_k) / q(z_k | x)``,
  chunked over ``k``; also for chapter 11's conditional models), :func:`activity`, :func:`active_units`
  (Burda et al. 2016, section 5.2) and :func:`kl_per_dimension`;
* looking at the latent space: :func:`encode_means`, :func:`interpolate`, :func:`latent_grid`,
  :func:`posterior_pixel_std`, :func:`traverse` (also behind ``companion.widgets``' traversal figures);
* (the gradient-estimator toy of the chapter, score function vs reparameterisation, is
  :func:`companion.estimators.toy_gradient_samples`).

Shapes: images ``x [B, 1, 28, 28]`` in ``[0, 1]``; latents ``z, mu, logvar [B, D]``; decoder output
``[B, 1, 28, 28]`` (logits or means); every loss term is per example, ``[B]``, in nats. Introduced in chapter 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import losses
from .augment import dynamic_binarize  # the one implementation (floor 1); chapter 10 introduces it
from .batching import as_images, check_input, map_batches, model_device

__all__ = [
    "LIKELIHOODS",
    "VAE",
    "Decoder",
    "Encoder",
    "VAEConfig",
    "active_units",
    "activity",
    "beta_anneal",
    "beta_cyclical",
    "dynamic_binarize",
    "encode_means",
    "evaluate_elbo",
    "interpolate",
    "iwae_log_weights",
    "iwae_nll",
    "kl_per_dimension",
    "latent_grid",
    "posterior_pixel_std",
    "reparameterize",
    "slerp",
    "traversal_codes",
    "traverse",
]

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHS = ("mlp", "conv")
DECODER_VARIANCES = ("fixed", "learned")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of a :class:`VAE`.

    Attributes:
        latent_dim: D, the size of z.
        hidden: widths of the MLP's hidden layers (encoder in this order, decoder mirrored);
            for ``arch="conv"`` the channels of the two stride-2 convolutions.
        arch: ``"mlp"`` or ``"conv"``.
        likelihood: ``"bernoulli"`` (pixels are coin flips with probability ``sigmoid(logits)``) or ``"gaussian"``.
        decoder_variance: Gaussian decoder only: ``"fixed"`` (one variance ``exp(fixed_logvar)`` for every pixel)
            or ``"learned"`` (one free log-variance per pixel, shared by all images).
        fixed_logvar: the fixed log-variance (``log 0.1**2`` by default: sigma = 0.1 on a [0, 1] scale).
        min_logvar: a learned log-variance is kept above this (MNIST's background is exactly 0, where a free
            variance would shrink to 0 and the likelihood to +inf).
        image_shape: ``(C, H, W)``.
        dropout: dropout probability after every hidden layer of the MLPs (a regulariser for small data sets;
            0 switches it off).
    """

    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 512)
    arch: str = "mlp"
    likelihood: str = "bernoulli"
    decoder_variance: str = "fixed"
    fixed_logvar: float = 2 * math.log(0.1)
    min_logvar: float = 2 * math.log(0.02)
    image_shape: tuple[int, int, int] = (1, 28, 28)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.decoder_variance not in DECODER_VARIANCES:
            raise ValueError(f"decoder_variance must be one of {DECODER_VARIANCES}, got {self.decoder_variance!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.arch == "conv" and (len(self.hidden) != 2 or self.image_shape[1:] != (28, 28)):
            raise ValueError("arch='conv' needs hidden=(c1, c2) and 28x28 images")

    @property
    def pixels(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def replace(self, **changes: Any) -> VAEConfig:
        return replace(self, **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> VAEConfig:
        """A small MLP VAE (2 latents, one hidden layer of 64) for tests and the ci profile."""
        return cls(**{"latent_dim": 2, "hidden": (64,), **changes})


# ----------------------------------------------------------------------------------------------
# Encoder and decoder
# ----------------------------------------------------------------------------------------------


def _mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with ELU (and dropout, if any) between them; nothing after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """The inference network: ``x [B, C, H, W] -> (mu [B, D], logvar [B, D])`` of ``q(z | x)``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        d = config.latent_dim
        if config.arch == "mlp":
            self.body = nn.Sequential(nn.Flatten(), _mlp([config.pixels, *config.hidden], config.dropout), nn.ELU(),
                                      *([nn.Dropout(config.dropout)] if config.dropout else []))
            features = config.hidden[-1]
        else:
            c1, c2 = config.hidden
            self.body = nn.Sequential(
                nn.Conv2d(config.image_shape[0], c1, 4, 2, 1), nn.ELU(),  # [B, c1, 14, 14]
                nn.Conv2d(c1, c2, 4, 2, 1), nn.ELU(),  # [B, c2, 7, 7]
                nn.Flatten(),
            )
            features = c2 * 7 * 7
        self.head = nn.Linear(features, 2 * d)  # mu and logvar side by side

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)  # [B, D] each
        return mu, logvar


class Decoder(nn.Module):
    """The generative network: ``z [B, D] -> [B, C, H, W]`` Bernoulli logits or Gaussian means."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        if config.arch == "mlp":
            self.body = nn.Sequential(_mlp([config.latent_dim, *reversed(config.hidden), config.pixels], config.dropout),
                                      nn.Unflatten(1, (c, h, w)))
        else:
            c1, c2 = config.hidden
            self.body = nn.Sequential(
                nn.Linear(config.latent_dim, c2 * 7 * 7), nn.ELU(),
                nn.Unflatten(1, (c2, 7, 7)),
                nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.ELU(),  # [B, c1, 14, 14]
                nn.ConvTranspose2d(c1, c, 4, 2, 1),  # [B, C, 28, 28]
            )

    def forward(self, z: Tensor) -> Tensor:
        return self.body(z)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None,
                   eps: Tensor | None = None) -> Tensor:
    r"""A differentiable sample of ``N(mu, diag exp(logvar))``: :math:`z = \mu + \sigma \odot \varepsilon`.

    Kingma & Welling (2014), eq. 10: the randomness sits in :math:`\varepsilon \sim N(0, I)`, which does not
    depend on the parameters, so gradients flow through ``mu`` and ``sigma = exp(logvar / 2)``.

    mu, logvar: ``[B, D]`` -> z ``[B, D]``. ``eps`` (same shape) supplies the noise instead of drawing it from
    ``generator``. Introduced in chapter 10.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    elif eps.shape != mu.shape:
        raise ValueError(f"eps must have mu's shape {tuple(mu.shape)}, got {tuple(eps.shape)}")
    return mu + torch.exp(0.5 * logvar) * eps


class VAE(nn.Module):
    """A variational autoencoder with a standard-normal prior ``p(z) = N(0, I)``. Introduced in chapter 10.

    ``elbo(x)`` is the per-example evidence lower bound
    :math:`\\mathbb{E}_{q(z|x)}[\\log p(x|z)] - \\beta\\,\\mathrm{KL}(q(z|x)\\,\\|\\,p(z))` with one reparameterised
    sample of z and the KL in closed form (``companion.losses.gaussian_kl``).
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        if self.config.likelihood == "gaussian" and self.config.decoder_variance == "learned":
            self.raw_logvar = nn.Parameter(torch.zeros(self.config.image_shape))  # one per pixel
        else:
            self.raw_logvar = None

    # ---- the pieces
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C, H, W] -> (mu, logvar)``, each ``[B, D]``."""
        check_input("VAE.encode", "x", x, (None, *self.config.image_shape), like=self.encoder.head.weight)
        return self.encoder(x)

    reparameterize = staticmethod(reparameterize)

    def decode(self, z: Tensor) -> Tensor:
        """``z [B, D] ->`` decoder output ``[B, C, H, W]``: Bernoulli logits, or Gaussian means."""
        check_input("VAE.decode", "z", z, (None, self.config.latent_dim), like=self.encoder.head.weight)
        return self.decoder(z)

    def decoder_logvar(self) -> Tensor | float:
        """The Gaussian decoder's log-variance: a ``[C, H, W]`` tensor (learned) or a float (fixed)."""
        if self.raw_logvar is None:
            return self.config.fixed_logvar
        lo = self.config.min_logvar
        return lo + F.softplus(self.raw_logvar - lo)  # smooth max(raw, lo): never below min_logvar

    def mean_image(self, out: Tensor) -> Tensor:
        """The mean of ``p(x | z)`` from the decoder output: ``sigmoid(logits)`` or the Gaussian mean."""
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def decode_mean(self, z: Tensor) -> Tensor:
        """``z [B, D] -> E[x | z] [B, C, H, W]`` (what we draw as "the decoded image")."""
        return self.mean_image(self.decode(z))

    def log_likelihood(self, x: Tensor, out: Tensor) -> Tensor:
        """``log p(x | z)`` per example ``[B]`` for a decoder output ``out`` (logits or means)."""
        if self.config.likelihood == "bernoulli":
            return losses.bernoulli_log_likelihood(out, x)
        logvar = self.decoder_logvar()
        if isinstance(logvar, Tensor):
            logvar = logvar.expand_as(out)
        return losses.gaussian_log_likelihood(x, out, logvar)

    # ---- the objective
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x -> (out, z, mu, logvar)``: one reparameterised pass."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        return self.decode(z), z, mu, logvar

    def elbo(self, x: Tensor, beta: float = 1.0,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The (beta-weighted) ELBO per example: ``(elbo, rec, kl)``, each ``[B]``, in nats.

        ``rec`` is the reconstruction log-likelihood ``log p(x | z)`` with one sample ``z ~ q(z | x)`` (a
        single-sample estimate of its expectation), ``kl`` is ``KL(q(z | x) || N(0, I))`` in closed form, and
        ``elbo = rec - beta * kl`` (the true ELBO at ``beta = 1``). Training minimises ``-elbo.mean()``.
        """
        out, _, mu, logvar = self(x, generator)
        rec = self.log_likelihood(x, out)
        kl = losses.gaussian_kl(mu, logvar)
        return rec - beta * kl, rec, kl

    def iwae_bound(self, x: Tensor, k: int, beta: float = 1.0,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""The importance-weighted bound :math:`\mathcal{L}_k` per example, differentiable: ``(bound, rec, kl)``.

        ``bound = log mean_i exp(log p(x|z_i) - beta (log q(z_i|x) - log p(z_i)))`` over ``k`` samples
        ``z_i ~ q(z|x)`` (Burda et al. 2016, eq. 8; ``k = 1`` is the one-sample ELBO). ``rec`` and ``kl`` are the
        averages over the ``k`` samples of the reconstruction term and the *sampled* KL, for logging. Each ``[B]``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mu, logvar = self.encode(x)  # [B, D]
        rec, kl = self.sampled_terms(x, mu, logvar, k, generator)  # [k, B] each
        bound = losses.log_mean_exp(rec - beta * kl, dim=0)
        return bound, rec.mean(0), kl.mean(0)

    def sampled_terms(self, x: Tensor, mu: Tensor, logvar: Tensor, k: int,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """For ``k`` samples ``z_i ~ q(z|x) = N(mu, exp(logvar))``: ``log p(x|z_i)`` and ``log q(z_i|x) - log p(z_i)``.

        x ``[B, C, H, W]``, mu/logvar ``[B, D]`` -> two ``[k, B]`` tensors; the log importance weights are their
        difference. The noise is drawn sample-major (all B images for sample 1, then sample 2, ...).
        """
        b = x.shape[0]
        mu_r, lv_r = mu.repeat(k, 1), logvar.repeat(k, 1)  # [k*B, D], sample-major
        eps = torch.randn(mu_r.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = reparameterize(mu_r, lv_r, eps=eps)
        rec = self.log_likelihood(x.repeat(k, 1, 1, 1), self.decode(z)).view(k, b)
        kl = (losses.log_normal(z, mu_r, lv_r) - losses.log_standard_normal(z)).view(k, b)
        return rec, kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> Tensor:
        """``n`` images from the model: ``z ~ N(0, I)``, then ``E[x | z]`` (``mean=True``) or a draw of ``x | z``."""
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent_dim, generator=generator, dtype=p.dtype)
        m = self.decode_mean(z.to(p.device))
        if mean:
            return m
        if self.config.likelihood == "bernoulli":
            return torch.bernoulli(m.cpu(), generator=generator).to(m.device)
        logvar = self.decoder_logvar()
        std = torch.exp(0.5 * torch.as_tensor(logvar, dtype=m.dtype)).to(m.device)
        return m + std * torch.randn(m.shape, generator=generator, dtype=m.dtype).to(m.device)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def beta_anneal(step: int, warmup: int, beta_max: float = 1.0) -> float:
    """Linear KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): 0 at step 0, ``beta_max`` from ``warmup`` on."""
    if warmup < 0 or step < 0:
        raise ValueError(f"step and warmup must be >= 0, got step={step}, warmup={warmup}")
    if warmup == 0:
        return float(beta_max)
    return float(beta_max) * min(1.0, step / warmup)


def beta_cyclical(step: int, period: int, beta_max: float = 1.0, ratio: float = 0.5) -> float:
    """Cyclical KL annealing (Fu et al. 2019): in every ``period`` steps, rise linearly for ``ratio * period``, then hold."""
    if period < 1 or not 0 < ratio <= 1 or step < 0:
        raise ValueError(f"need period >= 1, 0 < ratio <= 1 and step >= 0, got {period}, {ratio}, {step}")
    t = (step % period) / (period * ratio)
    return float(beta_max) * min(1.0, t)


@torch.no_grad()
def evaluate_elbo(model: VAE, data: Any, beta: float = 1.0, batch_size: int = 500, binarize: bool = False,
                  seed: int = 0) -> dict[str, float]:
    """Mean ``elbo``, ``rec`` (log-likelihood) and ``kl`` over ``data`` (one seeded posterior sample per image).

    data: images ``[N, C, H, W]`` or a ``TensorDataset``. With ``binarize=True`` each image is binarised once with
    ``seed`` (a fixed binarisation of the test set). Introduced in chapter 10.
    """
    x_all = as_images(data)
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    tot = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
    for i in range(0, len(x_all), batch_size):
        x = x_all[i:i + batch_size]
        if binarize:
            x = dynamic_binarize(x, g)
        elbo, rec, kl = model.elbo(x.to(model_device(model)), beta=beta, generator=_gen_for(model, g))
        tot["elbo"] += elbo.sum().item()
        tot["rec"] += rec.sum().item()
        tot["kl"] += kl.sum().item()
    model.train(was)
    return {k: v / len(x_all) for k, v in tot.items()}


def _gen_for(model: nn.Module, g: torch.Generator) -> torch.Generator | None:
    """The CPU generator when the model is on the CPU; otherwise ``None`` (draw from the device's default)."""
    return g if model_device(model).type == "cpu" else None


# ----------------------------------------------------------------------------------------------
# Evaluation: the importance-weighted bound, active units, KL per dimension
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def iwae_log_weights(model: nn.Module, x: Tensor, k: int, generator: torch.Generator | None = None,
                     max_samples: int = 20_000, y: Tensor | None = None) -> Tensor:
    r"""Log importance weights :math:`\log w_i = \log p(x, z_i) - \log q(z_i | x)`, :math:`z_i \sim q(z|x)`.

    x ``[B, C, H, W]`` -> ``[k, B]``. The ``k`` samples are drawn in chunks of at most ``max_samples`` decoded
    images, so memory stays bounded for ``k = 5000``. ``model`` is a :class:`VAE` or any model with
    ``encode(x[, y])`` and ``sampled_terms(x, mu, logvar, k, generator[, y=y])`` (chapter 11's conditional VAE:
    pass its labels ``y [B]``). Introduced in chapter 10.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = model_device(model)
    x = x.to(device)
    b = x.shape[0]
    cond = {} if y is None else {"y": y.to(device)}
    mu, logvar = model.encode(x, *cond.values())  # [B, D]
    chunk = max(1, max_samples // b)
    out = []
    for start in range(0, k, chunk):
        rec, kl = model.sampled_terms(x, mu, logvar, min(chunk, k - start), generator, **cond)  # [m, B] each
        out.append(rec - kl)
    return torch.cat(out).cpu()


def iwae_nll(model: nn.Module, x: Any, k: int = 5000, batch_size: int = 100, generator: torch.Generator | None = None,
             max_samples: int = 20_000, progress: bool = False, y: Tensor | None = None) -> Tensor:
    r"""The importance-weighted estimate of :math:`-\log p(x)` per example, in nats (Burda et al. 2016, eq. 8).

    .. math:: -\log p(x) \;\le\; -\log \frac{1}{k}\sum_{i=1}^{k} \frac{p(x, z_i)}{q(z_i|x)} = -\mathcal{L}_k,

    computed with a log-sum-exp; ``k = 1`` is the ELBO, and the bound tightens as ``k`` grows. ``x``:
    images ``[N, C, H, W]`` (binary for a Bernoulli decoder) or a ``TensorDataset``; ``y``: labels ``[N]`` for a
    conditional model (chapter 11's ``CVAE``, where it estimates ``-log p(x | y)``). Returns ``[N]``; its mean
    is the test NLL quoted in papers. Introduced in chapter 10.
    """
    x_all = as_images(x)
    was = model.training
    model.eval()
    out = []
    starts = range(0, len(x_all), batch_size)
    for i in tqdm(starts, desc=f"IWAE k={k}", disable=not progress, leave=False):
        yb = None if y is None else y[i:i + batch_size]
        log_w = iwae_log_weights(model, x_all[i:i + batch_size], k, generator, max_samples, y=yb)
        out.append(-losses.log_mean_exp(log_w, dim=0))
    model.train(was)
    return torch.cat(out)


def encode_means(model: nn.Module, data: Any, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """``(mu [N, D], logvar [N, D])`` of ``q(z | x)`` for every image (tensor or ``TensorDataset``), on the CPU.

    Any model with ``encode(x) -> (mu, logvar)``: chapter 10's :class:`VAE` or chapter 11's beta-VAE.
    Introduced in chapter 10.
    """
    return map_batches(model, model.encode, as_images(data), batch_size=batch_size)


def activity(model: VAE, data: Any) -> Tensor:
    r"""Per-dimension activity :math:`A_u = \mathrm{Cov}_x\big(\mathbb{E}_{q(u|x)}[u]\big)` (Burda et al. 2016), ``[D]``.

    A dimension whose posterior mean does not move with the input carries no information about it.
    """
    mu, _ = encode_means(model, data)
    if len(mu) < 2:
        raise ValueError("activity needs at least two images")
    return mu.var(dim=0, unbiased=True)


def active_units(model: VAE, data: Any, threshold: float = 1e-2) -> int:
    """Number of latent dimensions with :func:`activity` above ``threshold`` (Burda et al. use 0.01)."""
    return int((activity(model, data) > threshold).sum())


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    r"""Batch mean of :math:`\mathrm{KL}(q(z_j | x) \,\|\, N(0, 1))` for every latent dimension j: ``[B, D] x2 -> [D]``.

    .. math:: \mathrm{KL}_j = \tfrac1B \sum_b \tfrac12 \big(\mu_{bj}^2 + \sigma_{bj}^2 - \log \sigma_{bj}^2 - 1\big)

    They add up to the mean KL term of the ELBO; a collapsed dimension has KL ~ 0 (its posterior is the prior).
    Over a whole data set: ``kl_per_dimension(*encode_means(model, data))``. Introduced in chapter 10.
    """
    if not isinstance(mu, Tensor) or not isinstance(logvar, Tensor):
        raise TypeError(f"mu and logvar must be tensors, got {type(mu).__name__} and {type(logvar).__name__}")
    if mu.ndim != 2 or mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must both be [B, D], got {list(mu.shape)} and {list(logvar.shape)}")
    return (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)).mean(dim=0)


# ----------------------------------------------------------------------------------------------
# Looking at the latent space
# ----------------------------------------------------------------------------------------------


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latents ``a, b [D]`` at fractions ``t [T]`` -> ``[T, D]`` (White 2016)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


@torch.no_grad()
def interpolate(model: VAE, x_a: Tensor, x_b: Tensor, steps: int = 8, mode: str = "linear") -> Tensor:
    """Decode a path between the posterior means of two images ``[C, H, W]``: ``[steps, C, H, W]``."""
    mu, _ = model.encode(torch.stack([x_a, x_b]).to(model_device(model)))
    t = torch.linspace(0, 1, steps, device=mu.device)
    if mode == "linear":
        z = (1 - t[:, None]) * mu[0] + t[:, None] * mu[1]
    elif mode == "slerp":
        z = slerp(mu[0], mu[1], t)
    else:
        raise ValueError(f"mode must be 'linear' or 'slerp', got {mode!r}")
    return model.decode_mean(z).cpu()


@torch.no_grad()
def latent_grid(model: VAE, n: int = 15, dims: tuple[int, int] = (0, 1), quantile: float = 0.95,
                base: Tensor | None = None) -> Tensor:
    """Decode an ``n x n`` grid over two latent dimensions: ``[n*n, C, H, W]``, row-major (top row: high z2).

    The grid is evenly spaced in *probability* (Kingma & Welling 2014, Fig. 4): z = Phi^-1(p) for p between
    ``1 - quantile`` and ``quantile``, so each cell covers the same prior mass. Other dimensions stay at
    ``base`` (zeros by default).
    """
    d = model.config.latent_dim
    if len(dims) != 2 or not all(0 <= int(j) < d for j in dims) or dims[0] == dims[1]:
        raise ValueError(f"latent_grid: dims must be two different dimensions in 0..{d - 1}, got {dims}")
    p = torch.linspace(1 - quantile, quantile, n)
    vals = torch.distributions.Normal(0.0, 1.0).icdf(p)
    z = torch.zeros(n * n, d) if base is None else base.detach().cpu().float().repeat(n * n, 1)
    ys, xs = torch.meshgrid(vals.flip(0), vals, indexing="ij")
    z[:, dims[0]] = xs.reshape(-1)
    z[:, dims[1]] = ys.reshape(-1)
    return model.decode_mean(z.to(model_device(model))).cpu()


@torch.no_grad()
def posterior_pixel_std(model: VAE, x: Tensor, n_samples: int = 64,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Per-pixel uncertainty of the reconstruction: ``(mean, std)`` of ``E[x | z]`` over ``z ~ q(z | x)``.

    x ``[B, C, H, W]`` -> two ``[B, C, H, W]`` tensors. Where the encoder is unsure (wide posterior) and the
    decoder is sensitive, decoded images disagree, and the std is large.
    """
    mu, logvar = model.encode(x.to(model_device(model)))
    b = x.shape[0]
    z = reparameterize(mu.repeat(n_samples, 1), logvar.repeat(n_samples, 1), generator)  # [S*B, D]
    m = model.decode_mean(z).view(n_samples, b, *x.shape[1:])
    return m.mean(0).cpu(), m.std(0).cpu()


def traversal_codes(base: Tensor, dims: Sequence[int], values: Sequence[float]) -> Tensor:
    """The codes of a latent traversal: ``base [D]`` with ``z[d] = v`` for each ``d`` in ``dims`` and ``v`` in ``values``.

    Returns ``[len(dims) * len(values), D]``, row-major (all values of ``dims[0]`` first). Introduced in chapter 10.
    """
    base = base.detach().flatten()
    bad = [d for d in dims if not 0 <= int(d) < base.numel()]
    if bad:
        raise ValueError(f"dims {bad} out of range for a {base.numel()}-dimensional latent")
    zs = []
    for d in dims:
        for v in values:
            z = base.clone()
            z[int(d)] = float(v)
            zs.append(z)
    return torch.stack(zs)


@torch.no_grad()
def traverse(decode: Callable[[Tensor], Tensor], base: Tensor, dims: Sequence[int],
             values: Sequence[float]) -> Tensor:
    """Latent traversal: decode ``base [D]`` with one coordinate swept at a time (the beta-VAE picture).

    ``decode``: codes ``[N, D]`` -> images ``[N, C, H, W]`` (e.g. ``model.decode_mean``; for a conditional model
    a closure that adds the label). Returns ``[len(dims), len(values), C, H, W]`` on the CPU: row ``i`` sweeps
    dimension ``dims[i]`` over ``values``, every other coordinate stays at ``base``. ``companion.widgets`` draws
    the same grid. Introduced in chapter 10.
    """
    codes = traversal_codes(base, dims, values)  # [R*T, D]
    images = decode(codes)
    if not isinstance(images, Tensor) or images.shape[0] != codes.shape[0]:
        raise ValueError(f"decode(z [{codes.shape[0]}, D]) must return {codes.shape[0]} images, got "
                         f"{list(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    return images.reshape(len(dims), len(values), *images.shape[1:]).cpu()
