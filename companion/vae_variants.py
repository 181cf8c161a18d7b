"""VAE variants and their uses: the β-VAE, measuring disentanglement (MIG), the conditional VAE, anomaly scores.

Read top to bottom:

* :class:`VAEConfig` with :meth:`VAEConfig.tiny` and :meth:`VAEConfig.conv_tiny` presets (tests, ci);
* building blocks: :func:`one_hot`, the MLP :class:`Encoder` and :class:`Decoder` and the convolutional
  :class:`ConvEncoder` and :class:`ConvDecoder` (all four take an optional conditioning vector, which is all a
  conditional VAE needs — the difference from chapter 10's ``companion.vae.Encoder``/``Decoder``);
* :class:`BetaVAE` — the ELBO with a weight β on its KL term (Higgins et al. 2017), :func:`kl_per_dim` and
  :func:`latent_traversal`; from chapter 10 it reuses :func:`companion.vae.reparameterize`,
  :func:`companion.vae.bernoulli_elbo`, :func:`companion.vae.encode_means` and :func:`companion.vae.traverse`,
  and from ``companion.losses`` every likelihood, KL and :func:`companion.losses.log_mean_exp`;
* measuring disentanglement: :func:`discretize`, :func:`entropy`, :func:`mutual_information` and the mutual
  information gap :func:`mig` (Chen et al. 2018), with :func:`shapes_factor_matrix` for ``data.shapes``;
* :class:`CVAE` — q(z | x, y) and p(x | y, z) (Sohn et al. 2015), :meth:`CVAE.sample` and :func:`style_transfer`;
* anomaly detection: :func:`negative_elbo`, :func:`iwae_nll`, a rank-based :func:`auroc` (Mann–Whitney U) and
  the held-out-digit experiment's scores :func:`anomaly_scores` (the models train with
  ``companion.train.train_vae(..., objective="loss")``, on :meth:`BetaVAE.loss`);
* the shipped checkpoint ``cvae_mnist``: :func:`build_hub_cvae`, :func:`train_hub_cvae` and
  :func:`conditional_accuracy` (samples judged by chapter 04's LeNet);
* the shipped checkpoint ``betavae_shapes``: :class:`BetaSweep` (one conv β-VAE per β), :func:`build_hub_betavae`,
  :func:`train_hub_betavae` and :func:`measure_disentanglement` (MIG, rate, distortion, active latents).

Shapes: images ``[B, C, H, W]`` in ``[0, 1]``; labels int64 ``[B]``; latents ``[B, D]``; per-example terms
``[B]``. Log-likelihoods are Bernoulli (``companion.losses``), in nats. Introduced in chapter 11.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import bernoulli_log_likelihood, gaussian_kl, log_mean_exp, log_normal, log_standard_normal
from .vae import bernoulli_elbo, encode_means, reparameterize, traverse

__all__ = [
    "HUB_CONFIG",
    "SHAPES_BETAS",
    "SHAPES_CONFIG",
    "BetaSweep",
    "BetaVAE",
    "CVAE",
    "ConvDecoder",
    "ConvEncoder",
    "Decoder",
    "Encoder",
    "MIGResult",
    "VAEConfig",
    "auroc",
    "build_hub_betavae",
    "build_hub_cvae",
    "conditional_accuracy",
    "cvae_elbo",
    "discretize",
    "entropy",
    "anomaly_scores",
    "iwae_nll",
    "kl_per_dim",
    "latent_traversal",
    "measure_disentanglement",
    "mig",
    "mutual_information",
    "negative_elbo",
    "one_hot",
    "shapes_factor_matrix",
    "style_transfer",
    "train_hub_betavae",
    "train_hub_cvae",
]


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of a small MLP or convolutional VAE.

    Attributes:
        image_size: side of the square images (28 for MNIST, 32 for ``data.shapes(size=32)``).
        channels: image channels.
        latent_dim: ``D``, the size of z.
        hidden: ``arch="mlp"``: widths of the encoder's hidden layers (the decoder uses them in reverse).
            ``arch="conv"``: ``(c_1, ..., c_L, F)``: ``L`` stride-2 4x4 convolutions with ``c_1..c_L`` channels
            halve the image down to 4x4, a 4x4 convolution without padding turns it into ``F`` features
            (:class:`ConvEncoder`); the decoder mirrors it with transposed convolutions (:class:`ConvDecoder`).
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
    def tiny(cls, num_classes: int = 0) -> VAEConfig:
        """A few-hundred-parameter model on 8x8 images, for tests."""
        return cls(image_size=8, channels=1, latent_dim=3, hidden=(16,), num_classes=num_classes)

    @classmethod
    def conv_tiny(cls, num_classes: int = 0) -> VAEConfig:
        """The convolutional counterpart of :meth:`tiny`: one stride-2 convolution, 8x8 -> 4x4 -> 8 features."""
        return cls(image_size=8, channels=1, latent_dim=3, hidden=(4, 8), num_classes=num_classes, arch="conv")

    def replace(self, **changes: Any) -> VAEConfig:
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


class Encoder(nn.Module):
    """q(z | x[, y]) = N(mu, diag exp(logvar)): an MLP on the flattened image (and the one-hot label).

    ``forward(x [B, C, H, W], c [B, K] or None) -> (mu [B, D], logvar [B, D])``.

    How it differs from chapter 10's :class:`companion.vae.Encoder`: it takes an optional conditioning vector
    ``c`` (the one-hot label of a :class:`CVAE`) and concatenates it to the flattened pixels, uses ReLU instead
    of ELU, and reads its sizes from this module's :class:`VAEConfig` (the shipped ``cvae_mnist`` depends on
    its parameter names, ``net.0.weight`` ...). Without ``c`` it is the same kind of MLP encoder.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp([config.input_dim + config.num_classes, *config.hidden, 2 * config.latent_dim])

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)  # [B, C*H*W]
        if c is not None:
            h = torch.cat([h, c], dim=1)  # [B, C*H*W + K]: the condition is just more input
        mu, logvar = self.net(h).chunk(2, dim=1)  # [B, D] each
        return mu, logvar


class Decoder(nn.Module):
    """p(x | z[, y]): an MLP from z (and the one-hot label) to Bernoulli logits for every pixel.

    ``forward(z [B, D], c [B, K] or None) -> logits [B, C, H, W]``.

    How it differs from chapter 10's :class:`companion.vae.Decoder`: the conditioning vector ``c`` is
    concatenated to ``z``, so one network draws every class; ReLU instead of ELU; Bernoulli logits only.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _mlp([config.latent_dim + config.num_classes, *reversed(config.hidden), config.input_dim])

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if c is not None:
            z = torch.cat([z, c], dim=1)  # [B, D + K]
        cfg = self.config
        return self.net(z).view(-1, cfg.channels, cfg.image_size, cfg.image_size)


class ConvEncoder(nn.Module):
    """q(z | x[, y]) with a convolutional body: stride-2 4x4 convolutions down to 4x4, then a 4x4 one to 1x1.

    For ``hidden = (32, 32, 32, 64)`` on 32x32 images (the β-VAE of chapter 11, after Burgess et al. 2018)::

        x [B, 1, 32, 32] -> [B, 32, 16, 16] -> [B, 32, 8, 8] -> [B, 32, 4, 4] -> [B, 64, 1, 1] -> (mu, logvar) [B, D]

    ``forward(x [B, C, H, W], c [B, K] or None) -> (mu [B, D], logvar [B, D])``; a condition ``c`` is
    concatenated to the 64 features before the linear head. Chapter 10's conv encoder
    (:class:`companion.vae.Encoder` with ``arch="conv"``) is fixed to 28x28 and two layers; this one takes
    any ``4 * 2**L`` image side and a condition.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.arch != "conv":
            raise ValueError(f"ConvEncoder needs config.arch='conv', got {config.arch!r}")
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


class ConvDecoder(nn.Module):
    """p(x | z[, y]) with transposed convolutions, the mirror image of :class:`ConvEncoder`.

    For ``hidden = (32, 32, 32, 64)``::

        z [B, D] -> [B, 64] -> [B, 32, 4, 4] -> [B, 32, 8, 8] -> [B, 32, 16, 16] -> logits [B, 1, 32, 32]

    ``forward(z [B, D], c [B, K] or None) -> logits [B, C, H, W]`` (Bernoulli logits, no final activation).
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.arch != "conv":
            raise ValueError(f"ConvDecoder needs config.arch='conv', got {config.arch!r}")
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

    def __init__(self, config: VAEConfig | None = None, beta: float = 1.0) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        if not (isinstance(beta, int | float) and beta >= 0):
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)
        conv = self.config.arch == "conv"
        self.encoder = ConvEncoder(self.config) if conv else Encoder(self.config)
        self.decoder = ConvDecoder(self.config) if conv else Decoder(self.config)

    # -- conditioning
    def _condition(self, y: Tensor | None, batch: int) -> Tensor | None:
        k = self.config.num_classes
        if k == 0:
            if y is not None:
                raise ValueError("this VAE is unconditional (num_classes=0) but got labels y")
            return None
        if y is None:
            raise ValueError(f"this VAE is conditional (num_classes={k}): pass the labels y")
        if y.shape != (batch,):
            raise ValueError(f"labels y must have shape [{batch}], got {list(y.shape)}")
        return one_hot(y, k).to(next(self.parameters()).device)

    def _check_images(self, x: Tensor) -> None:
        cfg = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"expected images [B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}], "
                             f"got {list(x.shape)}")

    # -- the two networks
    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z | x[, y]): ``(mu, logvar)``, each ``[B, D]``."""
        self._check_images(x)
        return self.encoder(x, self._condition(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """p(x | z[, y]): Bernoulli logits ``[B, C, H, W]`` (``sigmoid`` gives the mean image)."""
        return self.decoder(z, self._condition(y, z.shape[0]))

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


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(q(z_j | x) || N(0, 1)) per latent dimension j, averaged over the batch: ``[B, D] -> [D]``.

    A dimension whose KL stays near 0 carries no information about x (it is *inactive*: q equals the prior).
    Introduced in chapter 11.
    """
    if mu.ndim != 2 or mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must both be [B, D], got {list(mu.shape)} and {list(logvar.shape)}")
    b, d = mu.shape
    return gaussian_kl(mu.reshape(-1, 1), logvar.reshape(-1, 1)).view(b, d).mean(0)


@torch.no_grad()
def latent_traversal(model: BetaVAE, z: Tensor, dims: Sequence[int], values: Sequence[float] | Tensor,
                     y: Tensor | int | None = None) -> Tensor:
    """Decode a base code with one coordinate swept at a time: the standard β-VAE picture.

    Args:
        model: a trained :class:`BetaVAE` (or :class:`CVAE`, then pass ``y``).
        z: the base code ``[D]`` (e.g. the posterior mean of one image).
        dims: which latent coordinates to sweep (one row each).
        values: the ``T`` values each coordinate takes (the others stay at ``z``).
        y: the label for a conditional model (an int or a 0-d/1-element tensor).

    Returns:
        mean images ``[len(dims), T, C, H, W]``: chapter 10's :func:`companion.vae.traverse`, reshaped into a
        grid, for a model that may need a label. Introduced in chapter 11.
    """
    if z.ndim != 1 or z.shape[0] != model.config.latent_dim:
        raise ValueError(f"z must be one code [{model.config.latent_dim}], got {list(z.shape)}")
    values = torch.as_tensor(values, dtype=z.dtype).flatten()
    bad = [d for d in dims if not 0 <= int(d) < z.shape[0]]
    if bad:
        raise ValueError(f"dims {bad} out of range for a {z.shape[0]}-dimensional latent")
    device = next(model.parameters()).device
    labels = None  # a conditional model decodes every code with the same label
    if y is not None:
        labels = torch.full((len(dims) * len(values),), int(y), dtype=torch.long, device=device)
    was = model.training
    model.eval()
    # chapter 10's traverse: one row of codes per swept dimension, [R*T, D] -> decoded [R*T, C, H, W]
    imgs = traverse(lambda codes: torch.sigmoid(model.decode(codes, labels)), z.to(device),
                    [int(d) for d in dims], values.tolist())
    model.train(was)
    return imgs.view(len(dims), len(values), *imgs.shape[1:]).cpu()


# ----------------------------------------------------------------------------- measuring disentanglement


def discretize(x: Tensor, bins: int = 20) -> Tensor:
    """Equal-width histogram bins per column: ``[N, D]`` (or ``[N]``) float -> int64 bin indices in ``0..bins-1``.

    Each column is cut into ``bins`` intervals of equal width between its own min and max (the last one closed),
    as ``disentanglement_lib`` does for MIG; a constant column maps to bin 0. Introduced in chapter 11.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    squeeze = x.ndim == 1
    x = x.reshape(x.shape[0], -1).double() if not squeeze else x.double().unsqueeze(1)
    lo, hi = x.min(0).values, x.max(0).values
    width = (hi - lo) / bins
    safe = torch.where(width > 0, width, torch.ones_like(width))
    idx = torch.floor((x - lo) / safe).long().clamp_(0, bins - 1)
    idx[:, width == 0] = 0
    return idx.squeeze(1) if squeeze else idx


def _codes(labels: Tensor) -> Tensor:
    """Map arbitrary integer labels to ``0..n_distinct-1``."""
    if labels.is_floating_point():
        raise ValueError(f"expected integer labels, got {labels.dtype}: discretize() continuous values first")
    return torch.unique(labels.flatten(), return_inverse=True)[1]


def entropy(labels: Tensor) -> float:
    """H(a) = -Σ p log p (nats) of the empirical distribution of integer ``labels [N]``. Introduced in chapter 11."""
    if labels.numel() == 0:
        raise ValueError("entropy of an empty tensor")
    p = torch.bincount(_codes(labels)).double() / labels.numel()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def mutual_information(a: Tensor, b: Tensor) -> float:
    r"""I(a; b) = Σ p(a,b) log(p(a,b) / (p(a) p(b))) in nats, from two integer label vectors ``[N]``.

    The empirical (plug-in) estimate from the contingency table, equal to ``sklearn.metrics.mutual_info_score``.
    Introduced in chapter 11.
    """
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, got {list(a.shape)} and {list(b.shape)}")
    if a.numel() == 0:
        raise ValueError("mutual information of empty tensors")
    ia, ib = _codes(a), _codes(b)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    joint = torch.bincount(ia * nb + ib, minlength=na * nb).view(na, nb).double() / a.numel()  # p(a, b)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float((joint[nz] * (joint[nz].log() - (pa * pb)[nz].log())).sum().clamp_min(0.0))


@dataclass
class MIGResult:
    """The mutual information gap and what it was computed from.

    Attributes:
        score: MIG, the mean of ``per_factor`` (0 = no factor has its own latent, 1 = perfectly axis-aligned).
        per_factor: ``[K]`` normalised gap ``(I(z_a; v_k) - I(z_b; v_k)) / H(v_k)`` between the two most
            informative latents ``a``, ``b`` for each factor ``k``.
        mi: ``[D, K]`` mutual information (nats) between each discretised latent and each factor.
        entropy: ``[K]`` factor entropies H(v_k) (nats).
        top: ``[K]`` index of the most informative latent for each factor.
    """

    score: float
    per_factor: Tensor
    mi: Tensor
    entropy: Tensor
    top: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))


def mig(codes: Tensor, factors: Tensor, bins: int = 20) -> MIGResult:
    r"""Mutual information gap (Chen et al. 2018, eq. 7), from samples.

    .. math:: \mathrm{MIG} = \frac1K \sum_k \frac{I(z_{j^{(k)}}; v_k) - \max_{j \ne j^{(k)}} I(z_j; v_k)}{H(v_k)},
              \qquad j^{(k)} = \arg\max_j I(z_j; v_k)

    Each latent (e.g. the posterior means) is discretised into ``bins`` equal-width bins; each factor column
    with more than ``bins`` distinct values is discretised the same way, the others (categories such as the
    shape id) are used as they are. MI is the plug-in estimate of :func:`mutual_information`.

    Args:
        codes: ``[N, D]`` latent codes, ``D >= 1``.
        factors: ``[N, K]`` ground-truth factors (see :func:`shapes_factor_matrix`).
        bins: bins per latent and per continuous factor.

    Returns:
        a :class:`MIGResult`. Introduced in chapter 11.

    Raises:
        ValueError: mismatched lengths, or a constant factor (zero entropy: nothing to disentangle).
    """
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(f"codes [N, D] and factors [N, K] must share N, got {list(codes.shape)} and "
                         f"{list(factors.shape)}")
    z = discretize(codes, bins)  # [N, D]
    v = torch.stack([discretize(col, bins) if torch.unique(col).numel() > bins
                     else torch.unique(col, return_inverse=True)[1]
                     for col in factors.unbind(1)], dim=1)  # [N, K]
    d, k = z.shape[1], v.shape[1]
    h = torch.tensor([entropy(v[:, j]) for j in range(k)], dtype=torch.float64)
    if (h <= 0).any():
        raise ValueError(f"factor(s) {(h <= 0).nonzero().flatten().tolist()} are constant: MIG needs H(v) > 0")
    mi = torch.tensor([[mutual_information(z[:, i], v[:, j]) for j in range(k)] for i in range(d)],
                      dtype=torch.float64)  # [D, K]
    top2 = mi.topk(min(2, d), dim=0)  # values [2, K]
    second = top2.values[1] if d > 1 else torch.zeros(k, dtype=torch.float64)
    gap = (top2.values[0] - second) / h
    return MIGResult(score=float(gap.mean()), per_factor=gap, mi=mi, entropy=h, top=top2.indices[0])


def shapes_factor_matrix(factors: dict[str, Tensor], names: Sequence[str] | None = None) -> Tensor:
    """Stack ``data.shapes``' factor dict into a float64 ``[N, K]`` matrix for :func:`mig`.

    Args:
        factors: the dict returned by ``data.shapes`` (``shape``, ``scale``, ``rotation``, ``pos_x``, ``pos_y``).
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

    def __init__(self, config: VAEConfig | None = None, beta: float = 1.0) -> None:
        config = config or VAEConfig(num_classes=10)
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
        encoder: ``encoder(x, onehot [B, K]) -> (mu, logvar)``, each ``[B, D]`` (an :class:`Encoder`).
        decoder: ``decoder(z [B, D], onehot [B, K]) -> logits [B, C, H, W]`` (a :class:`Decoder`).
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


def _score_batches(model: BetaVAE, x: Tensor, y: Tensor | None, batch_size: int,
                   score: Callable[[Tensor, Tensor | None, Tensor, Tensor], Tensor]) -> Tensor:
    """``score(xb, yb, mu, logvar) -> [B]`` over batches of ``x`` in eval mode, encoded once per batch; ``[N]``."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for sl in _batches(x.shape[0], batch_size):
        xb = x[sl].to(device)
        yb = None if y is None else y[sl].to(device)
        out.append(score(xb, yb, *model.encode(xb, yb)).cpu())
    model.train(was)
    return torch.cat(out)


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

    def score(xb: Tensor, yb: Tensor | None, mu: Tensor, logvar: Tensor) -> Tensor:
        rec = sum(bernoulli_log_likelihood(model.decode(reparameterize(mu, logvar, generator=generator), yb), xb)
                  for _ in range(n_samples))
        return gaussian_kl(mu, logvar) - rec / n_samples

    return _score_batches(model, x, y, batch_size, score)


@torch.no_grad()
def iwae_nll(model: BetaVAE, x: Tensor, y: Tensor | None = None, k: int = 16,
             generator: torch.Generator | None = None, batch_size: int = 256) -> Tensor:
    r"""Importance-weighted estimate of -log p(x) (Burda et al. 2016) with ``k`` samples from q(z|x), per image.

    .. math:: -\log \frac1k \sum_{s=1}^k \frac{p(x \mid z_s)\, p(z_s)}{q(z_s \mid x)}

    Its expectation is a tighter bound than :func:`negative_elbo` and decreases towards -log p(x) as k grows.
    ``x [N, C, H, W]`` -> ``[N]``. The same estimate as chapter 10's :func:`companion.vae.iwae_nll` (and the same
    :func:`companion.losses.log_mean_exp`), for a model that may take labels ``y``. Introduced in chapter 11.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def score(xb: Tensor, yb: Tensor | None, mu: Tensor, logvar: Tensor) -> Tensor:
        log_w = []
        for _ in range(k):
            z = reparameterize(mu, logvar, generator=generator)
            log_w.append(bernoulli_log_likelihood(model.decode(z, yb), xb) + log_standard_normal(z)
                         - log_normal(z, mu, logvar))
        return -log_mean_exp(torch.stack(log_w), dim=0)  # log_w [k, B] -> [B]

    return _score_batches(model, x, y, batch_size, score)


def auroc(scores: Tensor, labels: Tensor) -> float:
    r"""Area under the ROC curve from the ranks of the scores (Mann–Whitney U), ties counted as one half.

    .. math:: \mathrm{AUROC} = P(s_+ > s_-) + \tfrac12 P(s_+ = s_-)
              = \frac{R_+ - n_+(n_+ + 1)/2}{n_+\, n_-}

    where :math:`R_+` is the sum of the positives' ranks among all scores (tied scores share their mean rank).

    Args:
        scores: ``[N]``, higher = more likely positive (an anomaly).
        labels: ``[N]`` in {0, 1} (or bool), 1 = positive.

    Returns:
        a float in [0, 1]: 1 = every positive outranks every negative, 0.5 = chance. Introduced in chapter 11.

    Raises:
        ValueError: mismatched shapes, labels other than 0/1, or only one class present.
    """
    scores = torch.as_tensor(scores).detach().flatten().double()
    labels = torch.as_tensor(labels).detach().flatten()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same length, got {scores.numel()} and {labels.numel()}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positive(s) and {n_neg} negative(s)")
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of the last member of each tie group
    mid = last - (counts.double() - 1) / 2  # the group's mean rank
    rank_sum = mid[inverse][pos].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


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


# ----------------------------------------------------------------------------- the shipped checkpoint

HUB_CONFIG = VAEConfig(image_size=28, channels=1, latent_dim=2, hidden=(512, 256), num_classes=10)
#: epochs and training images per profile for ``cvae_mnist`` (``None`` = the whole training split)
HUB_SCHEDULE = {"ci": {"epochs": 1, "n_train": 1000}, "cpu": {"epochs": 20, "n_train": None},
                "gpu": {"epochs": 20, "n_train": None}}
HUB_LR = 1e-3
HUB_BATCH = 128


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


def build_hub_cvae() -> CVAE:
    """The untrained model of checkpoint ``cvae_mnist``: ``CVAE(HUB_CONFIG)``. Introduced in chapter 11."""
    torch.manual_seed(0)
    return CVAE(HUB_CONFIG)


def train_hub_cvae(profile: str = "cpu") -> tuple[CVAE, dict[str, Any]]:
    """Train checkpoint ``cvae_mnist`` at ``profile`` and return ``(model, card info)``.

    The recipe: :func:`build_hub_cvae`, Adam (lr 1e-3), batch 128, seed 0, Bernoulli likelihood on the grey
    levels, on the training split of :func:`companion.data.mnist_splits` (offline: MNIST-test[:8000]). Metrics:
    ``conditional_accuracy`` (100 samples per digit classified by the shipped ``lenet_mnist``) and the mean
    ``test_neg_elbo`` (nats) on the evaluation split. Introduced in chapter 11.
    """
    from . import data, hub
    from .train import train_vae

    if profile not in HUB_SCHEDULE:
        raise ValueError(f"profile must be one of {sorted(HUB_SCHEDULE)}, got {profile!r}")
    epochs, n_train = HUB_SCHEDULE[profile]["epochs"], HUB_SCHEDULE[profile]["n_train"]
    train, test, desc = data.mnist_splits(profile, n_train=n_train)
    device = "cuda" if profile == "gpu" and torch.cuda.is_available() else "cpu"
    model = build_hub_cvae().to(device)
    x, y = train.tensors
    history = train_vae(model, x.to(device), y.to(device), objective="loss", epochs=epochs, batch_size=HUB_BATCH,
                        lr=HUB_LR, seed=0, desc=f"cvae_mnist ({profile})")
    model = model.cpu().eval()
    acc, _ = conditional_accuracy(model, hub.load_model("lenet_mnist"), n_per_class=100, seed=0)
    xt, yt = test.tensors
    nelbo = negative_elbo(model, xt, yt, n_samples=1, generator=torch.Generator().manual_seed(0)).mean().item()
    info = {
        "description": f"conditional VAE (MLP {HUB_CONFIG.hidden}, latent {HUB_CONFIG.latent_dim}, one-hot label "
                       f"into encoder and decoder) on MNIST, chapter 11: Adam lr {HUB_LR:g}, batch {HUB_BATCH}, "
                       f"{epochs} epoch(s), seed 0, Bernoulli likelihood on grey levels; conditional_accuracy = "
                       "share of 100 samples per digit that lenet_mnist classifies as their condition",
        "data": desc,
        "steps": int(history.train[-1]["step"]),
        "metrics": {"conditional_accuracy": round(acc, 4), "test_neg_elbo": round(nelbo, 2)},
    }
    return model, info


# ----------------------------------------------------------------------------- the shipped β-VAE sweep

#: the convolutional β-VAE of chapter 11's experiment: 32x32 shapes, 10 latents, ~134k parameters
SHAPES_CONFIG = VAEConfig(image_size=32, channels=1, latent_dim=10, hidden=(32, 32, 32, 64), arch="conv")
#: the values of β compared in the experiment (one model each, all in checkpoint ``betavae_shapes``)
SHAPES_BETAS = (1.0, 4.0, 16.0)
#: training images, optimiser steps per model, batch size and learning rate of ``betavae_shapes`` per profile
SHAPES_SCHEDULE = {"ci": {"n_train": 512, "steps": 20}, "cpu": {"n_train": 30_000, "steps": 8000},
                   "gpu": {"n_train": 30_000, "steps": 8000}}
SHAPES_BATCH, SHAPES_LR = 64, 1e-3
#: the evaluation set every MIG in the chapter and the card is measured on: ``data.shapes(5000, 32, seed=1)``
SHAPES_EVAL = {"n": 5000, "size": 32, "seed": 1}


class BetaSweep(nn.Module):
    """β-VAEs that differ only in β (same config, same initial weights), stored as one module.

    ``sweep[beta]`` is the :class:`BetaVAE` trained with that β; ``sweep.betas`` lists them in order.
    The checkpoint ``betavae_shapes`` is one such sweep. Introduced in chapter 11.
    """

    def __init__(self, config: VAEConfig = SHAPES_CONFIG, betas: Sequence[float] = SHAPES_BETAS,
                 seed: int | None = 0) -> None:
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
    kl_dims = kl_per_dim(mu, logvar)
    return {"mig": mig(mu, factors, bins), "mig_sampled": mig(z, factors, bins), "mu": mu, "z": z,
            "kl_dims": kl_dims, "rate": float(kl_dims.sum()), "distortion": float(-rec.mean()),
            "active": int((kl_dims > active_threshold).sum())}


def build_hub_betavae() -> BetaSweep:
    """The untrained models of checkpoint ``betavae_shapes``: ``BetaSweep(SHAPES_CONFIG, SHAPES_BETAS)``."""
    return BetaSweep(SHAPES_CONFIG, SHAPES_BETAS, seed=0)


def train_hub_betavae(profile: str = "cpu") -> tuple[BetaSweep, dict[str, Any]]:
    """Train checkpoint ``betavae_shapes`` at ``profile``: one conv β-VAE per β in :data:`SHAPES_BETAS`.

    The recipe: :func:`build_hub_betavae` (identical initial weights), Adam (lr ``SHAPES_LR``), batch
    ``SHAPES_BATCH``, seed 0, the same number of steps for every β, Bernoulli likelihood, on
    ``data.shapes(n_train, size=32, seed=0)``. Metrics (per β, on ``SHAPES_EVAL``, a different seed): MIG
    and its per-factor gaps, the normalised mutual information ``I(z_j; v_k) / H(v_k)`` of each factor's best
    latent, rate, distortion and active latents. Introduced in chapter 11.
    """
    from . import data
    from .train import train_vae

    if profile not in SHAPES_SCHEDULE:
        raise ValueError(f"profile must be one of {sorted(SHAPES_SCHEDULE)}, got {profile!r}")
    n_train, steps = SHAPES_SCHEDULE[profile]["n_train"], SHAPES_SCHEDULE[profile]["steps"]
    x, _ = data.shapes(n_train, size=SHAPES_CONFIG.image_size, seed=0)
    x_eval, f_eval = data.shapes(SHAPES_EVAL["n"], size=SHAPES_EVAL["size"], seed=SHAPES_EVAL["seed"])
    names = list(f_eval)
    factors = shapes_factor_matrix(f_eval, names)
    device = "cuda" if profile == "gpu" and torch.cuda.is_available() else "cpu"
    sweep = build_hub_betavae().to(device)
    metrics: dict[str, Any] = {}
    epochs = math.ceil(steps * SHAPES_BATCH / n_train) + 1
    for beta, model in zip(sweep.betas, sweep.models):
        train_vae(model, x.to(device), objective="loss", epochs=epochs, max_steps=steps, batch_size=SHAPES_BATCH,
                  lr=SHAPES_LR, seed=0, desc=f"betavae_shapes beta={beta:g} ({profile})", log_every=100)
        r = measure_disentanglement(model.cpu().eval(), x_eval, factors)
        m = r["mig"]
        metrics[f"beta_{beta:g}"] = {
            "mig": round(m.score, 4),
            "mig_sampled": round(r["mig_sampled"].score, 4),
            "mig_per_factor": {n: round(float(v), 4) for n, v in zip(names, m.per_factor)},
            "mig_sampled_per_factor": {n: round(float(v), 4) for n, v in zip(names, r["mig_sampled"].per_factor)},
            "best_latent_mi_over_entropy": {n: round(float(m.mi[int(m.top[k]), k] / m.entropy[k]), 4)
                                            for k, n in enumerate(names)},
            "rate_nats": round(r["rate"], 2), "distortion_nats": round(r["distortion"], 2), "active_latents": r["active"],
        }
        model.to(device)
    sweep = sweep.cpu().eval()
    info = {
        "description": f"{len(sweep)} convolutional beta-VAEs (conv {SHAPES_CONFIG.hidden[:-1]} -> "
                       f"{SHAPES_CONFIG.hidden[-1]} features, latent {SHAPES_CONFIG.latent_dim}, 32x32) that differ "
                       f"only in beta {list(sweep.betas)}, chapter 11: same initial weights, Adam lr {SHAPES_LR:g}, "
                       f"batch {SHAPES_BATCH}, {steps} steps each, seed 0, Bernoulli likelihood; metrics on "
                       f"data.shapes({SHAPES_EVAL['n']}, size={SHAPES_EVAL['size']}, seed={SHAPES_EVAL['seed']}): "
                       "MIG (20 bins) on the posterior means and on one sample z ~ q(z|x), per-factor gaps, "
                       "best latent's I(z; v) / H(v) (means)",
        "data": f"procedural dSprites-style shapes: data.shapes({n_train}, size={SHAPES_CONFIG.image_size}, seed=0) "
                f"(factors shape, scale, rotation, pos_x, pos_y) [profile {profile}]",
        "steps": steps,
        "metrics": metrics,
    }
    return sweep, info
