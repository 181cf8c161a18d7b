"""The DDPM of chapter 18: a U-Net noise predictor with its noise schedule, and the ancestral sampler written out.

Read top to bottom:

* :class:`DDPMConfig` and :class:`DDPM`: a :class:`companion.unet.UNet` that predicts the noise ``eps`` and the
  schedule it was trained with (``T`` steps, ``"linear"`` or ``"cosine"``); :meth:`DDPM.loss` is DDPM's simple
  loss on images scaled to ``[-1, 1]`` (:func:`companion.diffusion.diffusion_loss`), :meth:`DDPM.sample`
  draws images in ``[0, 1]``;
* :func:`to_model_range` / :func:`to_image_range`: ``[0, 1]`` pixels to the ``[-1, 1]`` the model works in, and back;
* :func:`ancestral_sample`: Ho et al.'s Algorithm 2 written out step by step, the same arithmetic as
  :func:`companion.diffusion.sample_ddpm` (the chapter checks they agree), with one switch per classic sampling
  bug in :data:`BUGS` so the chapter can measure each;
* :func:`gaussian_sampler_error`: the exact-Gaussian test of a sampler: run it with the exact noise predictor
  for data ``N(m, s^2)`` and report how far the samples' mean and standard deviation land from ``m`` and ``s``.

Shapes: images ``[B, C, H, W]``; timesteps ``[B]`` int64. Introduced in chapter 18.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import diffusion as D
from .unet import UNet, UNetConfig

__all__ = ["BUGS", "DDPM", "DDPMConfig", "ancestral_sample", "gaussian_sampler_error", "to_image_range",
           "to_model_range"]

#: The sampling bugs :func:`ancestral_sample` can make, each a one-line slip:
#: ``"off_by_one"`` tells the network the timestep below the one ``x`` is at (``t - 1``);
#: ``"wrong_variance"`` scales the fresh noise by the posterior *variance* instead of its square root;
#: ``"no_clip"`` forgets to clip the clean-image estimate to the data range ``[-1, 1]``;
#: ``"alpha_bar_index"`` estimates ``x0`` with ``alpha_bar`` of the level it steps to instead of the one it is at;
#: ``"no_final_step"`` stops before the last, noiseless step and returns the still-noisy ``x`` of the last level.
BUGS = ("off_by_one", "wrong_variance", "no_clip", "alpha_bar_index", "no_final_step")


def _default_unet() -> UNetConfig:
    return UNetConfig(widths=(16, 32, 32), attention_levels=(2,), heads=4, groups=8)


@dataclass(frozen=True)
class DDPMConfig:
    """A DDPM: the noise predictor's :class:`UNetConfig`, the number of steps ``T`` and the ``schedule``.

    Attributes:
        unet: the U-Net (by default widths 16, 32, 32 at 28, 14, 7 pixels, attention at 7x7 and in the middle).
        T: diffusion steps.
        schedule: ``"linear"`` (Ho et al. 2020) or ``"cosine"`` (Nichol & Dhariwal 2021).
    """

    unet: UNetConfig = field(default_factory=_default_unet)
    T: int = 1000
    schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.schedule not in D.NOISE_SCHEDULES:
            raise ValueError(f"schedule must be one of {D.NOISE_SCHEDULES}, got {self.schedule!r}")
        if not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T must be an int >= 1, got {self.T!r}")


def to_model_range(x: Tensor) -> Tensor:
    """Pixels in ``[0, 1]`` to the ``[-1, 1]`` a DDPM is trained on (``2x - 1``)."""
    return 2 * x - 1


def to_image_range(x: Tensor) -> Tensor:
    """A DDPM's ``[-1, 1]`` output back to pixels in ``[0, 1]``, clipped."""
    return ((x + 1) / 2).clamp(0, 1)


class DDPM(nn.Module):
    """A noise-prediction U-Net ``eps_theta(x_t, t)`` and the schedule it was trained with.

    ``DDPM(config)(x_t, t)`` is the U-Net's noise prediction (so a ``DDPM`` is the ``model`` of every sampler in
    :mod:`companion.diffusion`); :attr:`alpha_bar` is its ``[T]`` table (float64, recomputed, not stored).

    Args:
        config: a :class:`DDPMConfig`.
    """

    def __init__(self, config: DDPMConfig | None = None) -> None:
        super().__init__()
        self.config = config or DDPMConfig()
        self.unet = UNet(self.config.unet)

    @property
    def alpha_bar(self) -> Tensor:
        """``[T]`` float64 ``alpha_bar`` of the model's schedule."""
        return D.alpha_bar(D.betas(self.config.T, self.config.schedule))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """The noise prediction for ``x [B, C, H, W]`` at timesteps ``t [B]``."""
        return self.unet(x, t)

    def loss(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """DDPM's simple loss on a batch ``x0`` in ``[-1, 1]``: uniform ``t``, ``eps ~ N(0, I)``, MSE on ``eps``."""
        return D.diffusion_loss(self, x0, self.alpha_bar.to(x0.device), generator=generator)

    @torch.no_grad()
    def sample(self, x: Tensor, sampler: str = "ancestral", steps: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Images in ``[0, 1]`` from starting noise ``x [B, C, H, W]``.

        Args:
            x: the starting noise ``N(0, I)``.
            sampler: ``"ancestral"`` (:func:`ancestral_sample`, with clipping) or ``"ddim"``.
            steps: how many timesteps to visit (trailing spacing); ``None``: all ``T``.
            generator: for the ancestral sampler's fresh noise.
        """
        T = self.config.T
        ts = D.spaced_timesteps(T, steps) if steps is not None else None
        ab = self.alpha_bar.to(x.device)
        if sampler == "ancestral":
            out = ancestral_sample(self, x, ab, ts, generator=generator)
        elif sampler == "ddim":
            out = D.sample_ddim(self, x, ab, ts)
        else:
            raise ValueError(f"DDPM.sample: sampler must be 'ancestral' or 'ddim', got {sampler!r}")
        return to_image_range(out)


@torch.no_grad()
def ancestral_sample(model: Callable[..., Tensor], x: Tensor, alpha_bar: Tensor, timesteps: Tensor | None = None, *,
                     clip: bool = True, bug: str | None = None, generator: torch.Generator | None = None,
                     callback: Callable[[dict[str, Any]], None] | None = None) -> Tensor:
    """DDPM's ancestral sampler (Ho et al. 2020, Algorithm 2), one visible line per piece of the maths.

    For each visited timestep ``t`` (down to the clean data, ``t_prev = -1``, ``alpha_bar = 1``):
    ``eps = model(x, t)``; ``x0 = (x - sqrt(1 - ab_t) eps) / sqrt(ab_t)``, clipped to ``[-1, 1]`` if ``clip``;
    ``x <- mean(x0, x) + sqrt(beta_tilde) z`` with the posterior mean and variance of
    :func:`companion.diffusion.ddpm_posterior` (on a spaced subset, ``beta = 1 - ab_t / ab_prev``); no noise on
    the last step. With ``clip=False`` and ``bug=None`` it is :func:`companion.diffusion.sample_ddpm`.

    Args:
        model: ``model(x, t) -> eps``.
        x: ``[B, ...]`` starting noise.
        alpha_bar: ``[T]`` table.
        timesteps: decreasing timesteps to visit; default all ``T``.
        clip: clip the ``x0`` estimate to ``[-1, 1]`` (the data range).
        bug: ``None`` or one of :data:`BUGS`.
        generator: for the fresh noise.
        callback: called with ``{"i", "t", "x", "x0_pred"}`` before each step.

    Returns:
        The sample, shaped like ``x``.
    """
    if bug is not None and bug not in BUGS:
        raise ValueError(f"ancestral_sample: bug must be None or one of {BUGS}, got {bug!r}")
    ab_table = alpha_bar.double()
    T = ab_table.shape[0]
    ts = list(range(T - 1, -1, -1)) if timesteps is None else [int(t) for t in timesteps]
    prevs = ts[1:] + [-1]
    clip = clip and bug != "no_clip"
    for i, (t, t_prev) in enumerate(zip(ts, prevs, strict=True)):
        if bug == "no_final_step" and t_prev < 0:
            break  # the slip: the loop ends one step early and x still holds the last level's noise
        ab = float(ab_table[t])
        ab_prev = 1.0 if t_prev < 0 else float(ab_table[t_prev])
        t_net = max(t - 1, 0) if bug == "off_by_one" else t
        eps = model(x, torch.full((x.shape[0],), t_net, dtype=torch.long, device=x.device))
        ab_x0 = ab_prev if bug == "alpha_bar_index" else ab
        x0 = (x - math.sqrt(1 - ab_x0) * eps) / math.sqrt(ab_x0)
        if clip:
            x0 = x0.clamp(-1, 1)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x0})
        beta = 1 - ab / ab_prev
        mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)) * x
        var = (1 - ab_prev) / (1 - ab) * beta
        if t_prev < 0:
            x = mean
        else:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = mean + (var if bug == "wrong_variance" else math.sqrt(var)) * noise
    return x


def gaussian_sampler_error(bug: str | None = None, *, mean: float = 0.2, std: float = 0.25, n: int = 20000,
                           T: int = 1000, schedule: str = "linear", clip: bool = True,
                           timesteps: Tensor | None = None, seed: int = 0) -> dict[str, float]:
    """The exact-Gaussian test: sample ``n`` scalars with the exact noise predictor of ``N(mean, std^2)``.

    A correct sampler fed :func:`companion.diffusion.gaussian_eps_model` returns ``N(mean, std^2)`` up to the
    discretisation of ``T`` steps; a bug shows as a wrong mean or standard deviation.

    Returns:
        ``{"mean", "std", "mean_error", "std_error"}``: the samples' mean and std, ``|mean - m|`` and
        ``|std - s| / s`` (relative).
    """
    ab = D.alpha_bar(D.betas(T, schedule))
    model = D.gaussian_eps_model(mean, std, ab)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    out = ancestral_sample(model, x, ab, timesteps, clip=clip, bug=bug, generator=g)
    m, s = float(out.mean()), float(out.std())
    return {"mean": m, "std": s, "mean_error": abs(m - mean), "std_error": abs(s - std) / std}
