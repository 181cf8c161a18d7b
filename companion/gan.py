"""Generative adversarial networks: the optimal discriminator, small MLP GANs for 2-D toys, a DCGAN for MNIST,
and mode counting on mixtures of Gaussians.

Read top to bottom (smallest piece first):

* the game's closed forms (Goodfellow et al. 2014, "Generative Adversarial Nets"): :func:`optimal_discriminator`
  ``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` (Proposition 1) and :func:`js_divergence` between two discrete
  distributions, with the value of the game at ``D*``, ``2 JS(p_data || p_g) - log 4`` (Theorem 1); the losses
  themselves are pure functions in ``companion.losses`` (:func:`companion.losses.discriminator_loss`,
  :func:`~companion.losses.generator_loss_minimax`, :func:`~companion.losses.generator_loss_non_saturating`);
* :class:`ToyGenerator` and :class:`ToyDiscriminator` (with :class:`ToyGANConfig`): MLPs for 2-D point clouds;
* :class:`Generator` and :class:`Discriminator` (with :class:`DCGANConfig`): the DCGAN of Radford et al. (2016)
  scaled to 28x28 digits -- transposed convolutions up from a 7x7 map, batch norm and ReLU in the generator,
  strided convolutions with leaky ReLU in the discriminator, no pooling and no fully connected hidden layers;
* mode counting for mixtures of Gaussians (Srivastava et al. 2017, "VEEGAN"; Metz et al. 2017, "Unrolled GANs"):
  :func:`nearest_mode`, :func:`high_quality`, :func:`mode_counts`, :func:`modes_covered`,
  :func:`high_quality_share` and :func:`mode_report`. The mixtures and their means are in ``companion.toys``.

Shapes: latent codes ``z [B, latent_dim]``; 2-D points ``[B, 2]``; images ``[B, 1, 28, 28]`` in ``[0, 1]``;
discriminator logits ``[B]``. Introduced in chapter 14. The training loop is ``companion.train.train_gan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import _shape
from .batching import check_input

__all__ = [
    "DCGANConfig",
    "Discriminator",
    "Generator",
    "ToyDiscriminator",
    "ToyGANConfig",
    "ToyGenerator",
    "class_coverage",
    "dcgan_init",
    "high_quality",
    "high_quality_share",
    "interpolate",
    "js_divergence",
    "logit_gradients",
    "mode_counts",
    "mode_report",
    "modes_covered",
    "nearest_mode",
    "optimal_discriminator",
    "sample",
]


# ----------------------------------------------------------------------------------------------
# The game's closed forms
# ----------------------------------------------------------------------------------------------


def optimal_discriminator(p_data: Tensor, p_g: Tensor) -> Tensor:
    """The best discriminator for a fixed generator, ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``.

    Goodfellow et al. (2014), Proposition 1: for each ``x`` the value ``a log D + b log(1 - D)`` with
    ``a = p_data(x)``, ``b = p_g(x)`` is maximised at ``D = a / (a + b)``. Where both densities are 0 the
    discriminator is free; this returns 1/2 there. Args: densities (or probabilities) of the same shape, >= 0.
    Returns: the same shape, in ``[0, 1]``. Introduced in chapter 14.
    """
    if p_data.shape != p_g.shape:
        raise ValueError(f"optimal_discriminator: p_data {_shape(p_data)} and p_g {_shape(p_g)} differ in shape")
    if bool((p_data < 0).any()) or bool((p_g < 0).any()):
        raise ValueError("optimal_discriminator: densities must be >= 0")
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence (nats) between discrete distributions along the last dimension.

    ``JS(p || q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, ``0 log 0 = 0``; between 0 (equal)
    and ``log 2`` (disjoint supports). Goodfellow et al. (2014), Theorem 1: the value of the game at the optimal
    discriminator is ``2 JS(p_data || p_g) - log 4``. Args: ``[..., K]`` non-negative, each row summing to 1.
    Returns ``[...]``. Introduced in chapter 14.
    """
    if p.shape != q.shape:
        raise ValueError(f"js_divergence: p {_shape(p)} and q {_shape(q)} differ in shape")
    m = (p + q) / 2

    def kl(a: Tensor) -> Tensor:
        return torch.where(a > 0, a * (a.clamp_min(1e-300).log() - m.clamp_min(1e-300).log()), torch.zeros_like(a))

    return (kl(p).sum(-1) + kl(q).sum(-1)) / 2


def logit_gradients(logits: Tensor) -> tuple[Tensor, Tensor]:
    """The two generator losses' gradients with respect to the discriminator's logit ``l`` of a fake, per sample.

    With ``D = sigmoid(l)`` and ``dD/dl = D (1 - D)``:

    * minimax (saturating), ``log(1 - D)``: ``d/dl = -D(1 - D) / (1 - D) = -D``, which goes to 0 as ``D -> 0``;
    * non-saturating, ``-log D``: ``d/dl = -D(1 - D) / D = -(1 - D)``, which goes to -1 as ``D -> 0``.

    Both are negative: descending either loss raises the logit of the fakes. Returns ``(minimax, non_saturating)``,
    each the shape of ``logits``. Introduced in chapter 14.
    """
    d = torch.sigmoid(logits)
    return -d, -(1 - d)


# ----------------------------------------------------------------------------------------------
# MLP generator and discriminator for 2-D toys
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyGANConfig:
    """Sizes of the MLP :class:`ToyGenerator` / :class:`ToyDiscriminator` for 2-D data.

    ``latent_dim``: size of ``z ~ N(0, I)``; ``hidden``: width of every hidden layer; ``depth``: hidden layers
    (each side); ``data_dim``: 2 for points in the plane. Introduced in chapter 14.
    """

    latent_dim: int = 8
    hidden: int = 128
    depth: int = 3
    data_dim: int = 2

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.hidden, self.depth, self.data_dim) < 1:
            raise ValueError(f"ToyGANConfig sizes must be >= 1, got {self}")

    @classmethod
    def tiny(cls, **overrides: Any) -> ToyGANConfig:
        """A small preset for tests and the ci profile: two hidden layers of 32 units."""
        return cls(**{"hidden": 32, "depth": 2, **overrides})

    def replace(self, **changes: Any) -> ToyGANConfig:
        return replace(self, **changes)


def _mlp(sizes: list[int], act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class ToyGenerator(nn.Module):
    """``z [B, latent_dim] -> x [B, data_dim]``: an MLP with ReLU hidden layers and a linear output.

    Introduced in chapter 14."""

    def __init__(self, config: ToyGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ToyGANConfig()
        self.latent_dim = c.latent_dim
        self.net = _mlp([c.latent_dim] + [c.hidden] * c.depth + [c.data_dim], nn.ReLU)

    def forward(self, z: Tensor) -> Tensor:
        check_input("ToyGenerator", "z", z, (None, self.latent_dim), like=self.net[0].weight)
        return self.net(z)


class ToyDiscriminator(nn.Module):
    """``x [B, data_dim] -> logits [B]``: an MLP with ReLU hidden layers; ``sigmoid(logit)`` is ``D(x)``.

    Introduced in chapter 14."""

    def __init__(self, config: ToyGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ToyGANConfig()
        self.net = _mlp([c.data_dim] + [c.hidden] * c.depth + [1], nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        check_input("ToyDiscriminator", "x", x, (None, self.config.data_dim), like=self.net[0].weight)
        return self.net(x).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# DCGAN for 28x28 images
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DCGANConfig:
    """Sizes of the DCGAN :class:`Generator` and :class:`Discriminator` for 28x28 single-channel images.

    ``latent_dim``: size of ``z``; ``g_channels``: channels of the generator's 14x14 map (its 7x7 map has twice
    as many); ``d_channels``: channels of the discriminator's 14x14 map (its 7x7 map has twice as many).
    Introduced in chapter 14.
    """

    latent_dim: int = 64
    g_channels: int = 32
    d_channels: int = 32
    in_channels: int = 1

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.g_channels, self.d_channels, self.in_channels) < 1:
            raise ValueError(f"DCGANConfig sizes must be >= 1, got {self}")

    @classmethod
    def tiny(cls, **overrides: Any) -> DCGANConfig:
        """A small preset for tests and the ci profile: 8 channels each side, a 16-dimensional latent."""
        return cls(**{"latent_dim": 16, "g_channels": 8, "d_channels": 8, **overrides})

    def replace(self, **changes: Any) -> DCGANConfig:
        return replace(self, **changes)


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN initialisation (Radford et al. 2016, sec. 4): conv weights ``N(0, 0.02)``, batch-norm scales
    ``N(1, 0.02)``, biases 0. Use as ``model.apply(dcgan_init)``. Introduced in chapter 14."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """The DCGAN generator for 28x28 images: ``z [B, latent_dim] -> x [B, 1, 28, 28]`` in ``[0, 1]``.

    ``Linear -> [B, 2c, 7, 7] -> BN -> ReLU -> ConvT 4x4/2 (7 -> 14, c channels) -> BN -> ReLU -> ConvT 4x4/2
    (14 -> 28) -> sigmoid`` with ``c = g_channels``: every upsampling is a learned transposed convolution
    (chapter 03), batch norm everywhere but the output (Radford et al. 2016, sec. 3). The paper ends in tanh on
    data in ``[-1, 1]``; a sigmoid on data in ``[0, 1]`` is the same map up to an affine change of units.
    Weights are initialised with :func:`dcgan_init`. Introduced in chapter 14.
    """

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DCGANConfig()
        self.latent_dim = c.latent_dim
        h = c.g_channels
        self.project = nn.Linear(c.latent_dim, 2 * h * 7 * 7, bias=False)  # BN follows: no bias needed
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * h), nn.ReLU(),  # [B, 2h, 7, 7]
            nn.ConvTranspose2d(2 * h, h, 4, stride=2, padding=1, bias=False),  # [B, h, 14, 14]
            nn.BatchNorm2d(h), nn.ReLU(),
            nn.ConvTranspose2d(h, c.in_channels, 4, stride=2, padding=1),  # [B, 1, 28, 28] logits of the pixels
        )
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        """``z [B, latent_dim] -> images [B, 1, 28, 28]`` in ``[0, 1]``."""
        check_input("Generator", "z", z, (None, self.latent_dim), like=self.project.weight)
        h = self.project(z).view(z.shape[0], 2 * self.config.g_channels, 7, 7)  # [B, 2h*49] -> [B, 2h, 7, 7]
        return torch.sigmoid(self.net(h))


class Discriminator(nn.Module):
    """The DCGAN discriminator for 28x28 images: ``x [B, 1, 28, 28] -> logits [B]``.

    ``Conv 4x4/2 (28 -> 14, c channels) -> LeakyReLU(0.2) -> Conv 4x4/2 (14 -> 7, 2c) -> BN -> LeakyReLU(0.2) ->
    Linear -> logit`` with ``c = d_channels``: strided convolutions instead of pooling, no batch norm on the input
    layer, leaky ReLU throughout (Radford et al. 2016, sec. 3). Weights are initialised with :func:`dcgan_init`.
    Introduced in chapter 14.
    """

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DCGANConfig()
        h = c.d_channels
        self.net = nn.Sequential(
            nn.Conv2d(c.in_channels, h, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # [B, h, 14, 14]
            nn.Conv2d(h, 2 * h, 4, stride=2, padding=1, bias=False),  # [B, 2h, 7, 7]
            nn.BatchNorm2d(2 * h), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * h * 7 * 7, 1),  # [B, 2h*49] -> [B, 1]
        )
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 1, 28, 28] -> logits [B]``; ``sigmoid(logits)`` is the probability that ``x`` is real."""
        check_input("Discriminator", "x", x, (None, self.config.in_channels, 28, 28), like=self.net[0].weight)
        return self.net(x).squeeze(-1)


@torch.no_grad()
def sample(generator: nn.Module, n: int, seed: int = 0, batch_size: int = 500) -> Tensor:
    """``n`` samples ``G(z)``, ``z ~ N(0, I)`` drawn on the CPU from ``seed`` (the same on every device), in eval
    mode (batch norm uses its running statistics). Returns them on the CPU. Introduced in chapter 14."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device = next(generator.parameters()).device
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(z[i:i + batch_size].to(device)).cpu() for i in range(0, n, batch_size)])
    generator.train(was_training)
    return out


def interpolate(z0: Tensor, z1: Tensor, steps: int, spherical: bool = True) -> Tensor:
    """Latent codes from ``z0`` to ``z1`` (both ``[D]``): ``[steps, D]``, endpoints included.

    ``spherical=True``: slerp, ``sin((1-t) w) / sin(w) z0 + sin(t w) / sin(w) z1`` with ``w`` the angle between
    them (White 2016, "Sampling generative networks"): for Gaussian ``z`` the norm stays near ``sqrt(D)``, where
    the generator was trained, while the midpoint of a straight line is shorter by about ``1/sqrt(2)``.
    ``spherical=False``: the straight line. Introduced in chapter 14.
    """
    if z0.shape != z1.shape or z0.dim() != 1:
        raise ValueError(f"interpolate: need z0, z1 of the same shape [D], got {_shape(z0)} and {_shape(z1)}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)[:, None]  # [steps, 1]
    if not spherical:
        return (1 - t) * z0 + t * z1
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega) < 1e-6:  # (nearly) parallel: slerp is the straight line
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


# ----------------------------------------------------------------------------------------------
# Mode counting on mixtures of Gaussians (VEEGAN, unrolled GANs)
# ----------------------------------------------------------------------------------------------


def _check_points(who: str, samples: Tensor, centres: Tensor) -> None:
    if samples.dim() != 2 or centres.dim() != 2 or samples.shape[1] != centres.shape[1] or len(centres) == 0:
        raise ValueError(f"{who}: need samples [N, d] and centres [K, d] with the same d, got {_shape(samples)} "
                         f"and {_shape(centres)}")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError(f"{who}: samples contain NaN or infinite values (did the training diverge?)")


def nearest_mode(samples: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the nearest mode and the distance to it for every sample: ``[N, d], [K, d] -> ([N] long, [N])``.

    Introduced in chapter 14."""
    _check_points("nearest_mode", samples, centres)
    d = torch.cdist(samples.double(), centres.double())  # [N, K]
    dist, idx = d.min(dim=1)
    return idx, dist.to(samples.dtype)


def high_quality(samples: Tensor, centres: Tensor, std: float, k: float = 3.0) -> Tensor:
    """Which samples are *high quality*: within ``k`` standard deviations (3 by default) of the nearest mode.

    Srivastava et al. (2017), sec. 5.1. Returns ``[N]`` bool. Introduced in chapter 14."""
    if std <= 0 or k <= 0:
        raise ValueError(f"need std > 0 and k > 0, got std={std}, k={k}")
    return nearest_mode(samples, centres)[1] <= k * std


def mode_counts(samples: Tensor, centres: Tensor, std: float, k: float = 3.0) -> Tensor:
    """How many high-quality samples fall on each mode (each sample within ``k std`` of its nearest mode counts
    for that mode): ``[K]`` long, summing to the number of high-quality samples. Introduced in chapter 14."""
    idx, dist = nearest_mode(samples, centres)
    if std <= 0 or k <= 0:
        raise ValueError(f"need std > 0 and k > 0, got std={std}, k={k}")
    return torch.bincount(idx[dist <= k * std], minlength=len(centres))


def modes_covered(samples: Tensor, centres: Tensor, std: float, min_count: int = 20, k: float = 3.0) -> int:
    """The number of modes with at least ``min_count`` high-quality samples (within ``k std`` of the mode).

    The "modes" column of Srivastava et al. (2017, table 1) and Metz et al. (2017): a mode a generator visits
    with only a handful of stray points does not count. Introduced in chapter 14."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    return int((mode_counts(samples, centres, std, k) >= min_count).sum())


def high_quality_share(samples: Tensor, centres: Tensor, std: float, k: float = 3.0) -> float:
    """The fraction of samples within ``k`` standard deviations of some mode (Srivastava et al. 2017, table 1).

    Introduced in chapter 14."""
    return float(high_quality(samples, centres, std, k).double().mean())


def mode_report(samples: Tensor, centres: Tensor, std: float, min_count: int = 20, k: float = 3.0) -> dict[str, Any]:
    """``{"modes": int, "of": K, "high_quality": float, "counts": [K] list}`` for one set of samples.

    Also ``"js_to_uniform"``: the Jensen-Shannon divergence (nats) between the share of high-quality samples on
    each mode and the uniform mixture weights (0 when the covered modes are equally visited, ``log 2`` at most).
    Introduced in chapter 14."""
    counts = mode_counts(samples, centres, std, k)
    total = int(counts.sum())
    K = len(centres)
    share = counts.double() / total if total else torch.zeros(K, dtype=torch.float64)
    js = float(js_divergence(share, torch.full((K,), 1.0 / K, dtype=torch.float64))) if total else math.log(2)
    return {"modes": int((counts >= min_count).sum()), "of": K,
            "high_quality": float(total / len(samples)), "counts": counts.tolist(), "js_to_uniform": js}


# ----------------------------------------------------------------------------------------------
# Judging image samples with a classifier
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def class_coverage(images: Tensor, classifier: nn.Module, num_classes: int = 10, threshold: float = 0.05,
                   batch_size: int = 500) -> dict[str, Any]:
    """What a trained classifier says about generated images ``[N, 1, 28, 28]``: which classes appear, how often,
    and how sure it is.

    Returns ``{"share": [K] list (fraction of samples predicted as each class), "min_share", "classes_covered"
    (classes with a share >= threshold), "confidence" (mean of the top softmax probability), "n"}``. A generator
    that drops a digit shows it as a share near 0; blurry or broken digits lower the confidence. The classifier
    was trained on real digits, so both numbers are proxies: a digit it cannot read is not necessarily a bad one.
    Introduced in chapter 14.
    """
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"class_coverage: need images [N, C, H, W] with N >= 1, got {_shape(images)}")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    probs = torch.cat([torch.softmax(classifier(images[i:i + batch_size].to(device)).float(), dim=-1).cpu()
                       for i in range(0, len(images), batch_size)])  # [N, K]
    classifier.train(was_training)
    conf, pred = probs.max(dim=1)
    share = torch.bincount(pred, minlength=num_classes).double() / len(images)
    return {"share": share.tolist(), "min_share": float(share.min()),
            "classes_covered": int((share >= threshold).sum()), "confidence": float(conf.double().mean()),
            "n": len(images)}
