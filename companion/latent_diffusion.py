"""Latent diffusion (Rombach et al. 2022), the recipe of Stable Diffusion: compress first, then diffuse the code.

Read top to bottom:

* :class:`LatentAEConfig` and :class:`LatentAutoencoder`: a convolutional autoencoder whose encoder returns a
  diagonal Gaussian ``q(z | x)`` over a *spatial* latent ``[C, H/4, W/4]`` (28x28 digits to ``4 x 7 x 7``),
  trained with a reconstruction loss plus ``kl_weight`` times ``KL(q(z | x) || N(0, I))``: a small weight
  keeps the latent near a standard normal without the blur of a full VAE (``kl_weight = 1``);
* :meth:`LatentAutoencoder.loss`: that objective, ``-companion.losses.bernoulli_elbo`` with ``beta = kl_weight``;
* :func:`encode_latents` / :func:`decode_latents`: images to posterior means and latents back to pixels,
  in batches, without gradients;
* :func:`latent_statistics` and :func:`latent_scale`: the mean and standard deviation of a set of latents and
  the scale factor ``1 / std`` that gives them unit variance (Stable Diffusion's ``0.18215``, measured once on
  a batch of training latents);
* :class:`LatentDiffusion`: a frozen autoencoder, the scale (and shift) of its latents, and any denoising
  network ``net(z, t, y)`` (a :class:`companion.dit.DiT` or a :class:`companion.unet.UNet`), trained with
  chapter 19's class-conditional flow-matching loss on the scaled latents and sampled with
  :mod:`companion.diffusion`'s flow samplers, then decoded.

Shapes: images ``[B, 1, 28, 28]`` in ``[0, 1]``; latents ``[B, C, 7, 7]``; times ``[B]`` in ``[0, 1]``; labels
``[B]``. Introduced in chapter 20.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from . import diffusion as D
from ._checks import _check_images
from .flow_matching import SAMPLERS, TIME_SAMPLINGS, drop_labels, sample_times
from .losses import bernoulli_elbo
from .vae import reparameterize

__all__ = ["LatentAEConfig", "LatentAutoencoder", "LatentDiffusion", "decode_latents", "encode_latents",
           "latent_scale", "latent_statistics"]


@dataclass(frozen=True)
class LatentAEConfig:
    """The latent autoencoder: two stride-2 stages, so the latent is ``latent_channels x H/4 x W/4``.

    Attributes:
        image_channels, image_size: the images (``image_size`` divisible by 4).
        widths: channels of the two stages (full and half resolution).
        latent_channels: channels of the latent.
        kl_weight: the weight of ``KL(q(z | x) || N(0, I))`` next to the reconstruction loss (nats per image).
    """

    image_channels: int = 1
    image_size: int = 28
    widths: tuple[int, int] = (32, 64)
    latent_channels: int = 4
    kl_weight: float = 1e-3

    def __post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"LatentAEConfig: image_size must be divisible by 4, got {self.image_size}")
        if len(self.widths) != 2 or min(self.widths) < 1:
            raise ValueError(f"LatentAEConfig: widths must be two positive channel counts, got {self.widths}")
        if not self.kl_weight >= 0:
            raise ValueError(f"LatentAEConfig: kl_weight must be >= 0, got {self.kl_weight}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, H/4, W/4)``."""
        return (self.latent_channels, self.image_size // 4, self.image_size // 4)

    def replace(self, **changes: Any) -> LatentAEConfig:
        return replace(self, **changes)


class LatentAutoencoder(nn.Module):
    """A KL-regularised convolutional autoencoder with a spatial latent (the first stage of latent diffusion).

    ``encode(x) -> (mean, logvar)``, each ``[B, C, H/4, W/4]``; ``decode(z)`` returns Bernoulli logits
    ``[B, 1, H, W]``; :meth:`loss` is the reconstruction loss plus ``kl_weight`` times the KL term.

    Args:
        config: a :class:`LatentAEConfig`.
    """

    def __init__(self, config: LatentAEConfig | None = None, **changes: Any) -> None:
        super().__init__()
        c = (config or LatentAEConfig()).replace(**changes)
        self.config = c
        w1, w2 = c.widths
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(c.image_channels, w1, 3, padding=1), act(),
            nn.Conv2d(w1, w1, 4, stride=2, padding=1), act(),  # H -> H/2
            nn.Conv2d(w1, w2, 4, stride=2, padding=1), act(),  # H/2 -> H/4
            nn.Conv2d(w2, w2, 3, padding=1), act(),
            nn.Conv2d(w2, 2 * c.latent_channels, 1),  # mean and log-variance per latent element
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c.latent_channels, w2, 3, padding=1), act(),
            nn.Conv2d(w2, w2, 3, padding=1), act(),
            nn.ConvTranspose2d(w2, w1, 4, stride=2, padding=1), act(),  # H/4 -> H/2
            nn.ConvTranspose2d(w1, w1, 4, stride=2, padding=1), act(),  # H/2 -> H
            nn.Conv2d(w1, c.image_channels, 3, padding=1),  # logits
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``q(z | x)``: ``(mean, logvar)``, each ``[B, C, H/4, W/4]``; log-variances clamped to ``[-30, 20]``."""
        c = self.config
        _check_images("LatentAutoencoder.encode", x, c.image_channels, (c.image_size, c.image_size))
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits ``[B, 1, H, W]`` of latents ``z [B, C, H/4, W/4]``."""
        _check_images("LatentAutoencoder.decode", z, self.config.latent_channels, self.config.latent_shape[1:],
                      name="z")
        return self.decoder(z)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(logits, mean, logvar, z)`` with one reparameterised sample ``z ~ q(z | x)``."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, generator)
        return self.decode(z), mean, logvar, z

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``E[-log p(x | z)] + kl_weight * KL(q(z | x) || N(0, I))``, nats per image averaged over the batch."""
        logits, mean, logvar, _ = self(x, generator)
        return -bernoulli_elbo(logits, x, mean, logvar, beta=self.config.kl_weight).mean()


@torch.no_grad()
def encode_latents(autoencoder: LatentAutoencoder, images: Tensor, batch_size: int = 500) -> Tensor:
    """The posterior means ``[N, C, h, w]`` of ``images [N, 1, H, W]`` (in ``[0, 1]``), in batches, on the CPU."""
    dev = next(autoencoder.parameters()).device
    return torch.cat([autoencoder.encode(xb.to(dev))[0].cpu() for xb in images.split(batch_size)])


@torch.no_grad()
def decode_latents(autoencoder: LatentAutoencoder, z: Tensor, batch_size: int = 500) -> Tensor:
    """Images ``[N, 1, H, W]`` in ``[0, 1]`` (the decoder's Bernoulli means) of latents ``z``, on the CPU."""
    dev = next(autoencoder.parameters()).device
    return torch.cat([torch.sigmoid(autoencoder.decode(zb.to(dev))).cpu() for zb in z.split(batch_size)])


def latent_statistics(z: Tensor) -> tuple[float, float]:
    """``(mean, std)`` of every element of a set of latents ``[N, ...]`` (one number each, as Stable Diffusion)."""
    if not isinstance(z, Tensor) or z.ndim < 2 or z.shape[0] < 2:
        raise ValueError(f"latent_statistics: need a batch of latents [N, ...] with N >= 2, "
                         f"got {getattr(z, 'shape', type(z).__name__)}")
    z = z.double()
    return float(z.mean()), float(z.std())


def latent_scale(z: Tensor) -> float:
    """The scale factor ``1 / std(z)`` that gives a set of latents unit variance (Rombach et al. 2022).

    Stable Diffusion measured it once on a batch of its autoencoder's latents (``0.18215``) and multiplies
    every latent by it before diffusion and divides by it before decoding. Introduced in chapter 20.
    """
    return 1.0 / latent_statistics(z)[1]


class LatentDiffusion(nn.Module):
    """Class-conditional flow matching in the latent of a frozen autoencoder.

    The network sees ``z = (mean(q(z | x)) - shift) * scale``; :meth:`loss` is chapter 19's flow-matching loss
    (:func:`companion.diffusion.flow_matching_loss`: straight path ``z_t = (1 - t) z + t eps``, target
    ``eps - z``) with label dropout and logit-normal times; :meth:`sample` integrates the flow from noise with
    :mod:`companion.diffusion`'s samplers (classifier-free guided or not) and decodes.

    Args:
        autoencoder: the first stage, frozen: kept in eval mode, and no gradient reaches it (the loss starts
            from latents that :meth:`to_latent` computed without gradients).
        net: the denoiser, ``net(z_t, t, y) -> velocity`` over latents (a DiT or a U-Net).
        num_classes: labels ``0 .. num_classes - 1``; ``num_classes`` is "no label".
        scale, shift: the latent normalisation (:func:`latent_scale`; ``shift`` 0 as in Stable Diffusion 1-2,
            the latents' mean as in SD3 and FLUX).
        label_dropout, time_sampling: as :class:`companion.flow_matching.FlowMatchingConfig`.
    """

    def __init__(self, autoencoder: LatentAutoencoder, net: nn.Module, *, num_classes: int = 10, scale: float = 1.0,
                 shift: float = 0.0, label_dropout: float = 0.1, time_sampling: str = "logit_normal") -> None:
        super().__init__()
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"LatentDiffusion: time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}")
        if not 0 <= label_dropout < 1:
            raise ValueError(f"LatentDiffusion: label_dropout must be in [0, 1), got {label_dropout}")
        self.autoencoder = autoencoder.eval()
        self.net = net
        self.num_classes, self.label_dropout, self.time_sampling = int(num_classes), float(label_dropout), time_sampling
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()  # the first stage stays frozen
        return self

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.config.latent_shape

    def set_normalisation(self, scale: float, shift: float = 0.0) -> None:
        """Set the latent scale factor and shift (after measuring them on training latents)."""
        self.scale.fill_(float(scale))
        self.shift.fill_(float(shift))

    @torch.no_grad()
    def to_latent(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """What the network is trained on: ``(encoder mean - shift) * scale``, ``[N, C, h, w]``."""
        z = encode_latents(self.autoencoder, images, batch_size).to(self.scale.device)
        return (z - self.shift) * self.scale

    @torch.no_grad()
    def from_latent(self, z: Tensor, batch_size: int = 500) -> Tensor:
        """Images in ``[0, 1]`` of network-space latents: undo the scale and shift, then decode."""
        return decode_latents(self.autoencoder, z / self.scale + self.shift, batch_size)

    def forward(self, z: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The velocity for latents ``z [B, C, h, w]`` at times ``t [B]``, labels ``y [B]`` or ``None``."""
        return self.net(z, t, y)

    def loss(self, z0: Tensor, y: Tensor, generator: torch.Generator | None = None, *,
             t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """Flow matching on network-space latents ``z0`` with labels ``y`` (dropped with ``label_dropout``)."""
        if t is None:
            t = sample_times(z0.shape[0], self.time_sampling, generator=generator)
        if noise is None:
            noise = torch.randn(z0.shape, generator=generator)
        if self.label_dropout:
            y = drop_labels(y, self.label_dropout, self.num_classes, generator)
        return D.flow_matching_loss(self, z0, cond={"y": y.to(z0.device)}, t=t.to(z0.device), noise=noise.to(z0.device))

    def velocity(self, guidance: float = 1.0) -> Callable[..., Tensor]:
        """``self`` at ``guidance = 1``, else the classifier-free guided velocity."""
        return self if guidance == 1 else D.classifier_free_guidance(self, guidance, {"y": None})

    @torch.no_grad()
    def sample(self, noise: Tensor, labels: Tensor | int, sampler: str = "euler", steps: int = 10,
               guidance: float = 1.0, images: bool = True) -> Tensor:
        """Integrate the flow from latent noise ``[B, C, h, w]`` (``t = 1``) to ``t = 0``, then decode.

        Args:
            noise: ``N(0, I)`` latents.
            labels: one class for all, or ``[B]``.
            sampler: ``"euler"``, ``"heun"`` or ``"midpoint"``.
            steps: steps on :func:`companion.diffusion.flow_timesteps`.
            guidance: classifier-free guidance scale (1: conditional).
            images: decode to pixels in ``[0, 1]``; ``False``: return the network-space latents.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"LatentDiffusion.sample: sampler must be one of {', '.join(map(repr, SAMPLERS))}, "
                             f"got {sampler!r}")
        _check_images("LatentDiffusion.sample", noise, self.latent_shape[0], self.latent_shape[1:], name="noise")
        y = torch.as_tensor(labels, dtype=torch.long, device=noise.device).reshape(-1)
        y = y.expand(noise.shape[0]) if y.numel() == 1 else y
        z = SAMPLERS[sampler](self.velocity(guidance), noise, D.flow_timesteps(steps), cond={"y": y})
        return self.from_latent(z) if images else z
