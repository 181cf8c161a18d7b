"""The laptop speed-run of chapter 19: class-conditional flow matching in a small autoencoder's latent space.

A generator that trains from scratch in minutes on two CPU cores. Two ideas carry it:

* :class:`LatentCodec`: a convolutional autoencoder ``[B, 1, 28, 28] -> [B, c, 7, 7]`` (196 numbers per image
  instead of 784 when ``c = 4``), trained first, for a short share of the budget, on reconstruction; its latents are shifted and scaled to unit variance (the buffers ``shift`` and
  ``scale``), as latent diffusion does (chapter 20);
* :class:`LatentVelocity`: a residual MLP over the flattened latent, with sinusoidal time features and a
  label embedding (ten classes plus "no label" for classifier-free guidance). Dense matrix products of a few
  hundred columns are what a CPU runs fastest, so every training step sees a large batch.

:class:`LatentFlow` holds both and samples with :mod:`companion.diffusion`'s flow samplers on the straight path
``z_t = (1 - t) z0 + t eps`` (``t = 1`` noise, ``t = 0`` data), guided by
:func:`companion.diffusion.classifier_free_guidance`. Shapes: images ``[B, 1, 28, 28]`` in ``[0, 1]``;
latents ``[B, c, 7, 7]``; times ``[B]`` in ``[0, 1]``; labels ``[B]`` int64. Introduced in chapter 19.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import diffusion as D

__all__ = ["LatentCodec", "LatentFlow", "LatentVelocity", "SpeedrunConfig"]

#: The flow samplers :meth:`LatentFlow.sample` takes, by name.
SAMPLERS = {"euler": D.sample_flow_euler, "heun": D.sample_flow_heun, "midpoint": D.sample_flow_midpoint}


@dataclass(frozen=True)
class SpeedrunConfig:
    """The speed-run's generator.

    Attributes:
        latent_channels: channels ``c`` of the ``7 x 7`` latent.
        codec_width: channels of the autoencoder's 14x14 and 7x7 stages (half of it at 28x28).
        width: hidden width of the velocity MLP.
        depth: residual blocks of the velocity MLP.
        num_classes: classes (the label ``num_classes`` means "no label").
        label_dropout: share of training labels replaced by "no label" (classifier-free guidance).
        time_features: sinusoidal features of the time.
        latent: flow in the autoencoder's latent (``True``) or on the pixels themselves (``False``: the
            codec is skipped and the MLP reads all 784 values; the speed-run's ablation).
        time_sampling: training times ``"logit_normal"`` (Esser et al. 2024) or ``"uniform"``.
    """

    latent_channels: int = 4
    codec_width: int = 32
    width: int = 512
    depth: int = 3
    num_classes: int = 10
    label_dropout: float = 0.1
    time_features: int = 64
    latent: bool = True
    time_sampling: str = "logit_normal"

    def __post_init__(self) -> None:
        for name in ("latent_channels", "codec_width", "width", "depth", "num_classes", "time_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SpeedrunConfig: {name} must be a positive int, got {value!r}")
        if self.time_features % 2:
            raise ValueError(f"SpeedrunConfig: time_features must be even, got {self.time_features}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"SpeedrunConfig: label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.time_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"SpeedrunConfig: time_sampling must be 'logit_normal' or 'uniform', "
                             f"got {self.time_sampling!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape the flow lives in: ``(latent_channels, 7, 7)``, or ``(1, 28, 28)`` on pixels."""
        return (self.latent_channels, 7, 7) if self.latent else (1, 28, 28)


class LatentCodec(nn.Module):
    """``encode: [B, 1, 28, 28] in [0, 1] -> [B, c, 7, 7]`` (unit-variance latents) and ``decode`` back (logits)."""

    def __init__(self, config: SpeedrunConfig) -> None:
        super().__init__()
        w, c = config.codec_width, config.latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w // 2, 3, 1, 1), nn.SiLU(), nn.Conv2d(w // 2, w, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(w, w, 4, 2, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, c, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(c, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(),
            nn.ConvTranspose2d(w, w, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.SiLU(),
            nn.Conv2d(w // 2, 1, 3, 1, 1))
        # the latent standardisation, set once from the training latents by :meth:`fit_scale`
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def raw(self, images: Tensor) -> Tensor:
        """The encoder's latent before standardisation."""
        return self.encoder(images)

    def encode(self, images: Tensor) -> Tensor:
        """Unit-variance latents of ``images [B, 1, 28, 28]`` in ``[0, 1]``."""
        return (self.encoder(images) - self.shift) / self.scale

    def logits(self, z: Tensor) -> Tensor:
        """Pixel logits of standardised latents ``z``."""
        return self.decoder(z * self.scale + self.shift)

    def decode(self, z: Tensor) -> Tensor:
        """Images in ``[0, 1]`` of standardised latents ``z``."""
        return torch.sigmoid(self.logits(z))

    @torch.no_grad()
    def fit_scale(self, images: Tensor, batch_size: int = 1000) -> tuple[float, float]:
        """Set ``shift``/``scale`` to the mean and std of the raw latents of ``images``; returns them."""
        raw = torch.cat([self.raw(xb) for xb in images.split(batch_size)])
        self.shift.fill_(float(raw.mean()))
        self.scale.fill_(float(raw.std()))
        return float(self.shift), float(self.scale)


def time_features(t: Tensor, n: int, max_period: float = 1000.0) -> Tensor:
    """Sinusoidal features ``[B, n]`` of times ``t [B]`` in ``[0, 1]`` (scaled by ``max_period``, as a DDPM's steps)."""
    freqs = torch.exp(-math.log(max_period) * torch.arange(n // 2, device=t.device, dtype=torch.float32) / (n // 2))
    angles = (t.float() * max_period)[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class LatentVelocity(nn.Module):
    """``v(z_t, t, y)``: a residual MLP over the flattened latent; ``y=None`` (or ``num_classes``) is "no label"."""

    def __init__(self, config: SpeedrunConfig) -> None:
        super().__init__()
        self.config = config
        d, w = math.prod(config.shape), config.width
        self.inp = nn.Linear(d, w)
        self.time = nn.Sequential(nn.Linear(config.time_features, w), nn.SiLU(), nn.Linear(w, w))
        self.label = nn.Embedding(config.num_classes + 1, w)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(w), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w)) for _ in range(config.depth))
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, d))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, z: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        b = z.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32, device=z.device).reshape(-1).expand(b)
        if y is None:
            y = torch.full((b,), self.config.num_classes, dtype=torch.long, device=z.device)
        h = self.inp(z.flatten(1)) + self.time(time_features(t, self.config.time_features)) + self.label(y)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view_as(z)


class LatentFlow(nn.Module):
    """The speed-run's generator: a :class:`LatentCodec` and a :class:`LatentVelocity` over its latents."""

    def __init__(self, config: SpeedrunConfig | None = None) -> None:
        super().__init__()
        self.config = config or SpeedrunConfig()
        self.codec = LatentCodec(self.config)
        self.velocity_net = LatentVelocity(self.config)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, z: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        return self.velocity_net(z, t, y)

    def codec_loss(self, images: Tensor, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
        """Reconstruction loss (binary cross-entropy) through a latent with a little noise added."""
        z = self.codec.raw(images)
        z = z + noise * torch.randn(z.shape, generator=generator).to(z.device)
        return F.binary_cross_entropy_with_logits(self.codec.decoder(z), images) + 1e-3 * z.pow(2).mean()

    def loss(self, z0: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Flow-matching loss on standardised latents ``z0``: logit-normal times, labels dropped to "no label"."""
        b = z0.shape[0]
        if self.config.time_sampling == "uniform":
            t = torch.rand(b, generator=generator).to(z0.device)
        else:
            t = torch.sigmoid(torch.randn(b, generator=generator)).to(z0.device)
        noise = torch.randn(z0.shape, generator=generator).to(z0.device)
        drop = (torch.rand(b, generator=generator) < self.config.label_dropout).to(y.device)
        y = torch.where(drop, torch.full_like(y, self.config.num_classes), y)
        tb = t.view(-1, *([1] * (z0.dim() - 1)))
        z_t = (1 - tb) * z0 + tb * noise
        return (self(z_t, t, y) - (noise - z0)).pow(2).mean()

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.config.shape

    def encode(self, images: Tensor) -> Tensor:
        """What the flow is trained on: unit-variance latents, or on pixels the images scaled to ``[-1, 1]``."""
        return self.codec.encode(images) if self.config.latent else 2 * images - 1

    def decode(self, z: Tensor) -> Tensor:
        """Images in ``[0, 1]`` from what the flow produces."""
        return self.codec.decode(z) if self.config.latent else ((z + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def sample(self, noise: Tensor, labels: Tensor | int, sampler: str = "heun", steps: int = 10,
               guidance: float = 1.0, callback: Callable[[dict[str, Any]], None] | None = None) -> Tensor:
        """Images ``[B, 1, 28, 28]`` in ``[0, 1]`` from latent noise ``[B, c, 7, 7]`` and labels.

        Raises:
            ValueError: an unknown sampler, or noise of the wrong shape.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"LatentFlow.sample: sampler must be one of {', '.join(map(repr, SAMPLERS))}, "
                             f"got {sampler!r}")
        if noise.dim() != 4 or tuple(noise.shape[1:]) != self.latent_shape:
            raise ValueError(f"LatentFlow.sample: noise must be [B, {', '.join(map(str, self.latent_shape))}], "
                             f"got {list(noise.shape)}")
        y = torch.as_tensor(labels, dtype=torch.long, device=noise.device).reshape(-1)
        y = y.expand(noise.shape[0]) if y.numel() == 1 else y
        model = self if guidance == 1 else D.classifier_free_guidance(self, guidance, {"y": None})
        z = SAMPLERS[sampler](model, noise, D.flow_timesteps(steps), cond={"y": y}, callback=callback)
        return self.decode(z.float())
