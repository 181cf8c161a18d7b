"""VAE variants and their uses: the β-VAE, measuring disentanglement (MIG), the conditional VAE, anomaly scores.

Read top to bottom:

* :class:`CondVAEConfig` with :meth:`CondVAEConfig.tiny` and :meth:`CondVAEConfig.conv_tiny` presets (tests, ci):
  the sizes of every VAE of this chapter, conditional (``num_classes > 0``) or not;
* building blocks: :func:`one_hot`, the MLP :class:`CondEncoder` and :class:`CondDecoder` and the convolutional
  :class:`CondConvEncoder` and :class:`CondConvDecoder` (all four take an optional conditioning vector, which is all a
  conditional VAE needs — the difference from chapter 10's ``companion.vae.Encoder``/``Decoder``);
* :class:`BetaVAE` — the ELBO with a weight β on its KL term (Higgins et al. 2017); from chapter 10 it reuses
  ``companion.vae.reparameterize``, ``encode_means``, ``kl_per_dimension``, ``traverse`` (pass
  :meth:`BetaVAE.decode_mean`) and ``iwae_nll`` (:meth:`BetaVAE.sampled_terms` makes it work here, with labels
  for a CVAE), and from ``companion.losses`` every likelihood, KL and ``bernoulli_elbo``;
* measuring disentanglement: :func:`shapes_factor_matrix` turns ``toys.shapes``' factors into the matrix that
  ``companion.metrics.mig`` (the mutual information gap, Chen et al. 2018) reads;
* :class:`CVAE` — q(z | x, y) and p(x | y, z) (Sohn et al. 2015), :meth:`CVAE.sample` and :func:`style_transfer`;
* anomaly detection: the score :func:`negative_elbo`, ranked by ``companion.metrics.auroc``, and the
  held-out-digit experiment's scores :func:`anomaly_scores` (the model is trained with
  ``companion.train.train_vae(..., objective="loss")``, on :meth:`BetaVAE.loss`);
* judging a CVAE: :func:`conditional_accuracy` (samples judged by chapter 04's LeNet);
* the β experiment: :class:`BetaSweep` (one conv β-VAE per β, the shape of checkpoint ``betavae_shapes``) and
  :func:`measure_disentanglement` (MIG, rate, distortion, active latents).

Shapes: images ``[B, C, H, W]`` in ``[0, 1]``; labels int64 ``[B]``; latents ``[B, D]``; per-example terms
``[B]``. Log-likelihoods are Bernoulli (``companion.losses``), in nats. Introduced in chapter 11.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batching import check_input, map_batches
from .losses import bernoulli_elbo, bernoulli_log_likelihood, gaussian_kl, log_normal, log_standard_normal
from .metrics import auroc, mig
from .vae import encode_means, kl_per_dimension, reparameterize

__all__ = [
    "BetaSweep",
    "BetaVAE",
    "CVAE",
    "CondConvDecoder",
    "CondConvEncoder",
    "CondDecoder",
    "CondEncoder",
    "CondVAEConfig",
    "anomaly_scores",
    "conditional_accuracy",
    "cvae_elbo",
    "measure_disentanglement",
    "negative_elbo",
    "one_hot",
    "shapes_factor_matrix",
    "style_transfer",
]


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CondVAEConfig:
    """Sizes of a small MLP or convolutional VAE.

    Attributes:
        image_size: side of the square images (28 for MNIST, 32 for ``toys.shapes(size=32)``).
        channels: image channels.
        latent_dim: ``D``, the size of z.
        hidden: ``arch="mlp"``: widths of the encoder's hidden layers (the decoder uses them in reverse).
            ``arch="conv"``: ``(c_1, ..., c_L, F)``: ``L`` stride-2 4x4 convolutions with ``c_1..c_L`` channels
            halve the image down to 4x4, a 4x4 convolution without padding turns it into ``F`` features
            (:class:`CondConvEncoder`); the decoder mirrors it with transposed convolutions (:class:`CondConvDecoder`).
            So ``image_size`` must be ``4 * 2**L``: ``(32, 32, 32, 64)`` for 32x32 images.
        num_classes: ``K > 0`` for a conditional VAE (one-hot labels into encoder and decoder), else 0.
        arch: ``"mlp"`` or ``"conv"``.
    """

    image_size: int = 28
    channels: int = 1
    latent_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)
    num_classes: int = 0
    arch: str = "mlp"

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "latent_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive integers, got {self.hidden!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {self.num_classes!r}")
        if self.arch not in ("mlp", "conv"):
            raise ValueError(f"arch must be 'mlp' or 'conv', got {self.arch!r}")
        if self.arch == "conv":
            n_down = len(self.hidden) - 1
            if n_down < 1 or self.image_size != 4 * 2**n_down:
                raise ValueError(f"arch='conv' with hidden={self.hidden} halves the image {max(n_down, 0)} time(s) "
                                 f"down to 4x4, so it needs image_size = {4 * 2**max(n_down, 1)} "
                                 f"(and at least two entries in hidden), got image_size={self.image_size}")

    @property
    def input_dim(self) -> int:
        """Pixels per image, ``C * H * W``."""
        return self.channels * self.image_size * self.image_size

    @classmethod
    def tiny(cls, num_classes: int = 0) -> CondVAEConfig:
        """A few-hundred-parameter model on 8x8 images, for tests."""
        return cls(image_size=8, channels=1, latent_dim=3, hidden=(16,), num_classes=num_classes)

    @classmethod
    def conv_tiny(cls, num_classes: int = 0) -> CondVAEConfig:
        """The convolutional counterpart of :meth:`tiny`: one stride-2 convolution, 8x8 -> 4x4 -> 8 features."""
        return cls(image_size=8, channels=1, latent_dim=3, hidden=(4, 8), num_classes=num_classes, arch="conv")

    def replace(self, **changes: Any) -> CondVAEConfig:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- building blocks


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """Labels int ``[B]`` in ``0..K-1`` -> float32 one-hot ``[B, K]``. Introduced in chapter 11.

    Raises:
        ValueError: a label outside ``0..K-1`` or labels that are not a 1-D integer tensor.
    """
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got "
                         f"{labels.dtype if isinstance(labels, Tensor) else type(labels).__name__}"
                         f"{list(labels.shape) if isinstance(labels, Tensor) else ''}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), num_classes).to(torch.float32)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CondEncoder(nn.Module):
    """q(z | x[, y]) = N(mu, diag exp(logvar)): an MLP on the flattened image (and the one-hot label).

    ``forward(x [B, C, H, W], c [B, K] or None) -> (mu [B, D], logvar [B, D])``.

    How it differs from chapter 10's :class:`companion.vae.Encoder`: it takes an optional conditioning vector
    ``c`` (the one-hot label of a :class:`CVAE`) and concatenates it to the flattened pixels, uses ReLU instead
    of ELU, and reads its sizes from this module's :class:`CondVAEConfig` (the shipped ``cvae_mnist`` depends on
    its parameter names, ``net.0.weight`` ...). Without ``c`` it is the same kind of MLP encoder.
    """

    def __init__(self, config: CondVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp([config.input_dim + config.num_classes, *config.hidden, 2 * config.latent_dim])

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)  # [B, C*H*W]
        if c is not None:
            h = torch.cat([h, c], dim=1)  # [B, C*H*W + K]: the condition is just more input
        mu, logvar = self.net(h).chunk(2, dim=1)  # [B, D] each
        return mu, logvar


class CondDecoder(nn.Module):
    """p(x | z[, y]): an MLP from z (and the one-hot label) to Bernoulli logits for every pixel.

    ``forward(z [B, D], c [B, K] or None) -> logits [B, C, H, W]``.

    How it differs from chapter 10's :class:`companion.vae.Decoder`: the conditioning vector ``c`` is
    concatenated to ``z``, so one network draws every class; ReLU instead of ELU; Bernoulli logits only.
    """

    def __init__(self, config: CondVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp([config.latent_dim + config.num_classes, *reversed(config.hidden), config.input_dim])

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)  # [B, D + K]
        cfg = self.config
        return self.net(z).view(-1, cfg.channels, cfg.image_size, cfg.image_size)


class CondConvEncoder(nn.Module):
    """q(z | x[, y]) with a convolutional body: stride-2 4x4 convolutions down to 4x4, then a 4x4 one to 1x1.

    For ``hidden = (32, 32, 32, 64)`` on 32x32 images (the β-VAE of chapter 11, after Burgess et al. 2018)::

        x [B, 1, 32, 32] -> [B, 32, 16, 16] -> [B, 32, 8, 8] -> [B, 32, 4, 4] -> [B, 64, 1, 1] -> (mu, logvar) [B, D]

    ``forward(x [B, C, H, W], c [B, K] or None) -> (mu [B, D], logvar [B, D])``; a condition ``c`` is
    concatenated to the 64 features before the linear head. Chapter 10's conv encoder
    (:class:`companion.vae.Encoder` with ``arch="conv"``) is fixed to 28x28 and two layers; this one takes
    any ``4 * 2**L`` image side and a condition.
    """

    def __init__(self, config: CondVAEConfig) -> None:
        super().__init__()
        if config.arch != "conv":
            raise ValueError(f"CondConvEncoder needs config.arch='conv', got {config.arch!r}")
        self.config = config
        *chans, features = config.hidden
        layers: list[nn.Module] = []
        for a, b in zip([config.channels, *chans[:-1]], chans):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU()]  # halves H and W
        layers += [nn.Conv2d(chans[-1], features, 4), nn.ReLU(), nn.Flatten()]  # [B, F, 4, 4] -> [B, F]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features + config.num_classes, 2 * config.latent_dim)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.body(x)  # [B, F]
        if c is not None:
            h = torch.cat([h, c], dim=1)  # [B, F + K]
        mu, logvar = self.head(h).chunk(2, dim=1)  # [B, D] each
        return mu, logvar


class CondConvDecoder(nn.Module):
    """p(x | z[, y]) with transposed convolutions, the mirror image of :class:`CondConvEncoder`.

    For ``hidden = (32, 32, 32, 64)``::

        z [B, D] -> [B, 64] -> [B, 32, 4, 4] -> [B, 32, 8, 8] -> [B, 32, 16, 16] -> logits [B, 1, 32, 32]

    ``forward(z [B, D], c [B, K] or None) -> logits [B, C, H, W]`` (Bernoulli logits, no final activation).
    """

    def __init__(self, config: CondVAEConfig) -> None:
        super().__init__()
        if config.arch != "conv":
            raise ValueError(f"CondConvDecoder needs config.arch='conv', got {config.arch!r}")
        self.config = config
        *chans, features = config.hidden
        chans = chans[::-1]
        layers: list[nn.Module] = [
            nn.Linear(config.latent_dim + config.num_classes, features), nn.ReLU(),
            nn.Unflatten(1, (features, 1, 1)),
            nn.ConvTranspose2d(features, chans[0], 4), nn.ReLU(),  # [B, c_L, 4, 4]
        ]
        outs = [*chans[1:], config.channels]
        for i, (a, b) in enumerate(zip(chans, outs)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))  # doubles H and W
            if i < len(outs) - 1:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)  # [B, D + K]
        return self.body(z)


# ----------------------------------------------------------------------------- the β-VAE


class BetaVAE(nn.Module):
    """A VAE whose loss weights the KL term by β (Higgins et al. 2017); β = 1 is the plain VAE of chapter 10.

    The per-example objective is ``E_q[log p(x|z)] - β KL(q(z|x) || N(0, I))`` (maximised), estimated with one
    reparameterised sample. With ``config.num_classes > 0`` every method takes labels ``y`` as well (that is
    :class:`CVAE`). Introduced in chapter 11.
    """

    def __init__(self, config: CondVAEConfig | None = None, beta: float = 1.0) -> None:
        super().__init__()
        self.config = config or CondVAEConfig()
        if not (isinstance(beta, int | float) and beta >= 0):
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        conv = self.config.arch == "conv"
        self.encoder = CondConvEncoder(self.config) if conv else CondEncoder(self.config)
        self.decoder = CondConvDecoder(self.config) if conv else CondDecoder(self.config)

    # -- conditioning
    def _condition(self, y: Tensor | None, batch: int) -> Tensor | None:
        k, who = self.config.num_classes, type(self).__name__
        if k == 0:
            if y is not None:
                raise ValueError(f"{who}: this VAE is unconditional (num_classes=0) but got labels y")
            return None
        if y is None:
            raise ValueError(f"{who}: this VAE is conditional (num_classes={k}): pass the labels y")
        if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            got = y.dtype if isinstance(y, Tensor) else type(y).__name__
            raise TypeError(f"{who}: labels y must be an integer tensor [{batch}], got {got}")
        if y.shape != (batch,):
            raise ValueError(f"{who}: labels y must have shape [{batch}], got {list(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(f"{who}: labels y must lie in 0..{k - 1}, got range [{int(y.min())}, {int(y.max())}]")
        return one_hot(y, k).to(next(self.parameters()).device)

    # -- the two networks
    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z | x[, y]): ``(mu, logvar)``, each ``[B, D]``."""
        cfg = self.config
        check_input(f"{type(self).__name__}.encode", "x", x, (None, cfg.channels, cfg.image_size, cfg.image_size),
                    like=next(self.parameters()))
        return self.encoder(x, self._condition(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """p(x | z[, y]): Bernoulli logits ``[B, C, H, W]`` (``sigmoid`` gives the mean image)."""
        check_input(f"{type(self).__name__}.decode", "z", z, (None, self.config.latent_dim),
                    like=next(self.parameters()))
        return self.decoder(z, self._condition(y, z.shape[0]))

    def decode_mean(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The mean image ``sigmoid(decode(z[, y]))`` ``[B, C, H, W]`` (what ``companion.vae.traverse`` draws)."""
        return torch.sigmoid(self.decode(z, y))

    def forward(self, x: Tensor, y: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits [B, C, H, W], mu [B, D], logvar [B, D])`` for one reparameterised sample z."""
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar, generator=generator)
        return self.decode(z, y), mu, logvar

    def elbo_terms(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(log p(x|z) [B], KL(q(z|x) || p(z)) [B])``: one-sample reconstruction term, analytic KL."""
        logits, mu, logvar = self(x, y, generator=generator)
        return bernoulli_log_likelihood(logits, x), gaussian_kl(mu, logvar)

    def sampled_terms(self, x: Tensor, mu: Tensor, logvar: Tensor, k: int, generator: torch.Generator | None = None,
                      y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """For ``k`` samples ``z_i ~ q(z|x[, y])``: ``log p(x|z_i[, y])`` and ``log q(z_i|x) - log p(z_i)``, ``[k, B]`` each.

        The same contract as chapter 10's ``VAE.sampled_terms`` (noise drawn sample-major), so
        ``companion.vae.iwae_nll(model, x, y=y)`` works for this model too.
        """
        b = x.shape[0]
        mu_r, lv_r = mu.repeat(k, 1), logvar.repeat(k, 1)  # [k*B, D], sample-major
        eps = torch.randn(mu_r.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = reparameterize(mu_r, lv_r, eps=eps)
        y_r = None if y is None else y.repeat(k)
        rec = bernoulli_log_likelihood(self.decode(z, y_r), x.repeat(k, 1, 1, 1)).view(k, b)
        kl = (log_normal(z, mu_r, lv_r) - log_standard_normal(z)).view(k, b)
        return rec, kl

    def loss(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The β-weighted negative ELBO averaged over the batch, and its two parts as metrics (nats/image)."""
        rec, kl = self.elbo_terms(x, y)
        loss = -(rec - self.beta * kl).mean()
        return loss, {"rec": -rec.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from the model: z ~ N(0, I), return the mean image ``sigmoid(decode(z))``."""
        if self.config.num_classes:
            raise ValueError("a conditional VAE samples with sample(labels, generator)")
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))


# ----------------------------------------------------------------------------- measuring disentanglement


def shapes_factor_matrix(factors: dict[str, Tensor], names: Sequence[str] | None = None) -> Tensor:
    """Stack ``toys.shapes``' factor dict into a float64 ``[N, K]`` matrix for :func:`mig`.

    Args:
        factors: the dict returned by ``toys.shapes`` (``shape``, ``scale``, ``rotation``, ``pos_x``, ``pos_y``).
        names: which factors, in which order (default: all, in the dict's order).

    The ``shape`` column keeps its 3 values, which :func:`mig` treats as categories (a column with at most
    ``bins`` distinct values is not re-binned). Introduced in chapter 11.
    """
    names = list(names or factors.keys())
    missing = [n for n in names if n not in factors]
    if missing:
        raise KeyError(f"no factor(s) {missing}; have {sorted(factors)}")
    return torch.stack([factors[n].double() for n in names], dim=1)


# ----------------------------------------------------------------------------- the conditional VAE


class CVAE(BetaVAE):
    r"""Conditional VAE (Sohn et al. 2015): q(z | x, y), p(x | y, z) and the prior p(z) = N(0, I).

    The label enters both networks as a one-hot vector concatenated to their inputs. The ELBO becomes

    .. math:: \log p(x \mid y) \ge \mathbb{E}_{q(z|x,y)}[\log p(x \mid y, z)] - \mathrm{KL}(q(z|x,y) \,\|\, p(z)),

    so z only has to carry what y does not say: the *style*. Every method takes the labels ``y [B]``.
    Introduced in chapter 11.
    """

    def __init__(self, config: CondVAEConfig | None = None, beta: float = 1.0) -> None:
        config = config or CondVAEConfig(num_classes=10)
        if config.num_classes < 1:
            raise ValueError("a CVAE needs config.num_classes >= 1")
        super().__init__(config, beta)

    @torch.no_grad()
    def sample(self, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:  # type: ignore[override]
        """One image per label: z ~ N(0, I) (drawn from ``generator``), mean image ``sigmoid(decode(z, y))``.

        labels int64 ``[N]`` -> images ``[N, C, H, W]`` in [0, 1].
        """
        device = next(self.parameters()).device
        z = torch.randn(labels.shape[0], self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z, labels.to(device))).cpu()


def cvae_elbo(x: Tensor, y: Tensor, encoder: nn.Module, decoder: nn.Module, eps: Tensor,
              num_classes: int) -> Tensor:
    r"""The conditional ELBO per example, one reparameterised sample: the CVAE's training objective.

    .. math:: \mathrm{ELBO}(x, y) = \log p(x \mid y, z) - \mathrm{KL}(q(z \mid x, y) \,\|\, \mathcal N(0, I)),
              \qquad z = \mu(x, y) + \sigma(x, y) \odot \varepsilon

    Args:
        x: images ``[B, C, H, W]`` in [0, 1].
        y: labels int64 ``[B]``.
        encoder: ``encoder(x, onehot [B, K]) -> (mu, logvar)``, each ``[B, D]`` (an :class:`CondEncoder`).
        decoder: ``decoder(z [B, D], onehot [B, K]) -> logits [B, C, H, W]`` (a :class:`CondDecoder`).
        eps: the standard-normal noise ``[B, D]``.
        num_classes: K.

    Returns:
        ``[B]`` (nats; Bernoulli likelihood, analytic KL). Introduced in chapter 11.
    """
    c = one_hot(y, num_classes).to(x.dtype)  # [B, K]: the condition goes into both networks
    mu, logvar = encoder(x, c)
    z = reparameterize(mu, logvar, eps=eps)
    return bernoulli_elbo(decoder(z, c), x, mu, logvar)  # chapter 10's ELBO, now conditioned on y


@torch.no_grad()
def style_transfer(model: CVAE, x: Tensor, y: Tensor, targets: Sequence[int] | Tensor) -> Tensor:
    """Encode each image with its own label, then decode its style code with every target label.

    z = mean of q(z | x, y); output[b, t] = sigmoid(decode(z_b, targets[t])). ``x [B, C, H, W]``, ``y [B]``
    -> ``[B, T, C, H, W]``. Introduced in chapter 11.
    """
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    mu, _ = model.encode(x.to(device), y.to(device))  # [B, D]
    b, t = mu.shape[0], targets.shape[0]
    z = mu.repeat_interleave(t, dim=0)  # [B*T, D]: each code T times
    labels = targets.repeat(b).to(device)  # [B*T]
    imgs = torch.sigmoid(model.decode(z, labels))
    model.train(was)
    return imgs.view(b, t, *imgs.shape[1:]).cpu()


# ----------------------------------------------------------------------------- anomaly detection


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.no_grad()
def negative_elbo(model: BetaVAE, x: Tensor, y: Tensor | None = None, n_samples: int = 1,
                  generator: torch.Generator | None = None, batch_size: int = 1024) -> Tensor:
    r"""-ELBO per image (nats; β = 1 whatever the model was trained with): an upper bound on -log p(x).

    .. math:: -\mathrm{ELBO}(x) = -\tfrac1S \sum_s \log p(x \mid z_s) + \mathrm{KL}(q(z|x) \,\|\, p(z)),
              \quad z_s \sim q(z \mid x)

    Args:
        model: a trained VAE (labels ``y`` for a conditional one).
        x: images ``[N, C, H, W]``.
        n_samples: S, samples of z per image for the reconstruction term (the KL is analytic).
        generator: makes the samples repeatable.

    Returns:
        ``[N]``; higher means "less likely under the model" — the anomaly score. Introduced in chapter 11.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")

    def score(xb: Tensor, yb: Tensor | None) -> Tensor:
        mu, logvar = model.encode(xb, yb)  # encoded once per batch, decoded n_samples times
        rec = sum(bernoulli_log_likelihood(model.decode(reparameterize(mu, logvar, generator=generator), yb), xb)
                  for _ in range(n_samples))
        return gaussian_kl(mu, logvar) - rec / n_samples

    return map_batches(model, score, x, y, batch_size=batch_size)


# ----------------------------------------------------------------------------- training


# ----------------------------------------------------------------------------- judging a conditional VAE


@torch.no_grad()
def conditional_accuracy(model: CVAE, classifier: nn.Module, n_per_class: int = 100,
                         seed: int = 0) -> tuple[float, Tensor]:
    """How often a classifier recognises a CVAE sample as the class it was conditioned on.

    Draws ``n_per_class`` samples for each label (z from a generator seeded with ``seed``), classifies the mean
    images, returns ``(accuracy, per-class accuracy [K])``. Introduced in chapter 11.
    """
    k = model.config.num_classes
    labels = torch.arange(k).repeat_interleave(n_per_class)
    images = model.sample(labels, generator=torch.Generator().manual_seed(seed))
    was = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    pred = torch.cat([classifier(images[sl].to(device)).argmax(-1).cpu() for sl in _batches(len(labels), 1000)])
    classifier.train(was)
    hit = (pred == labels).double()
    return float(hit.mean()), hit.view(k, n_per_class).mean(1)


# ----------------------------------------------------------------------------- the β-VAE sweep


class BetaSweep(nn.Module):
    """β-VAEs that differ only in β (same config, same initial weights), stored as one module.

    ``sweep[beta]`` is the :class:`BetaVAE` trained with that β; ``sweep.betas`` lists them in order.
    The checkpoint ``betavae_shapes`` is one such sweep. Introduced in chapter 11.
    """

    def __init__(self, config: CondVAEConfig, betas: Sequence[float], seed: int | None = 0) -> None:
        super().__init__()
        if not betas or len(set(betas)) != len(betas):
            raise ValueError(f"betas must be a non-empty sequence of distinct values, got {betas!r}")
        self.config = config
        self.betas = tuple(float(b) for b in betas)
        models = []
        for b in self.betas:
            if seed is not None:
                torch.manual_seed(seed)  # the same initial weights for every β: only β differs
            models.append(BetaVAE(config, beta=b))
        self.models = nn.ModuleList(models)

    def __getitem__(self, beta: float) -> BetaVAE:
        if float(beta) not in self.betas:
            raise KeyError(f"no model for beta={beta}; have {self.betas}")
        return self.models[self.betas.index(float(beta))]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.betas)


@torch.no_grad()
def measure_disentanglement(model: BetaVAE, x: Tensor, factors: Tensor, bins: int = 20, seed: int = 0,
                            active_threshold: float = 0.1) -> dict[str, Any]:
    """Everything the β experiment reports about one trained (unconditional) model on images with known factors.

    Args:
        model: a trained :class:`BetaVAE`.
        x: images ``[N, C, H, W]``.
        factors: ``[N, K]`` ground-truth factors (:func:`shapes_factor_matrix`).
        bins: bins per latent for :func:`mig`.
        seed: the draw of z for the one-sample distortion.
        active_threshold: a latent with mean KL above this (nats) counts as active.

    Returns:
        ``{"mig": MIGResult on the posterior means (the ``disentanglement_lib`` convention), "mig_sampled":
        MIGResult on one sample z ~ q(z|x) per image (the stochastic encoder, as Chen et al. 2018 define
        I(z_j; v_k)), "mu" [N, D], "z" [N, D], "kl_dims" [D], "rate", "distortion", "active"}``: rate = mean
        KL(q(z|x) || p(z)), distortion = mean -log p(x|z) at that same z (nats per image), active = how many
        latents have ``kl_dims > active_threshold``. Introduced in chapter 11.
    """
    mu, logvar = encode_means(model, x)  # chapter 10's batched encoder pass, [N, D] each
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(seed))  # one z ~ q(z|x) per image
    device = next(model.parameters()).device
    rec = torch.cat([bernoulli_log_likelihood(model.decode(z[sl].to(device)).cpu(), x[sl])
                     for sl in _batches(x.shape[0], 1000)])
    kl_dims = kl_per_dimension(mu, logvar)
    return {"mig": mig(mu, factors, bins), "mig_sampled": mig(z, factors, bins), "mu": mu, "z": z,
            "kl_dims": kl_dims, "rate": float(kl_dims.sum()), "distortion": float(-rec.mean()),
            "active": int((kl_dims > active_threshold).sum())}


def anomaly_scores(model: BetaVAE, digit: int, x_test: Tensor, y_test: Tensor, n_samples: int = 4,
                   seed: int = 0) -> dict[str, Any]:
    """Score a test set by -ELBO under a VAE trained without ``digit``, and measure the AUROC.

    The held-out digit plays the anomaly (label 1), all other test digits the normal data (label 0); the
    ELBO averages ``n_samples`` posterior samples drawn from a generator seeded with ``seed``.

    Returns:
        ``{"digit", "auroc", "scores" [N], "is_anomaly" [N] bool}``. Introduced in chapter 11.
    """
    if not bool((y_test == digit).any()):
        raise ValueError(f"the test set has no digit {digit}")
    scores = negative_elbo(model, x_test, n_samples=n_samples, generator=torch.Generator().manual_seed(seed))
    is_anomaly = y_test == digit
    return {"digit": int(digit), "auroc": auroc(scores, is_anomaly.long()), "scores": scores,
            "is_anomaly": is_anomaly}
