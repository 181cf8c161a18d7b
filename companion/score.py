"""Score matching and Langevin dynamics (chapter 17): learn ``grad log p`` from noisy data, then sample with it.

Read top to bottom:

* :func:`geometric_sigmas`: the noise levels ``sigma_max = sigma_1 > ... > sigma_L = sigma_min`` (Song & Ermon 2019);
* :func:`dsm_loss`: denoising score matching (Vincent 2011) at random levels, weighted by ``sigma^2``:
  ``E || sigma s(x + sigma z, sigma) + z ||^2``; its minimiser is the score of the *noised* data;
* :func:`gaussian_score`, :func:`mixture_score`, :func:`mixture_log_density`: exact scores of Gaussians and of
  isotropic Gaussian mixtures noised by ``sigma`` (the 2-D toys' ground truth);
* :class:`ToyScoreNet`: an MLP ``s(x, sigma)`` for 2-D points, conditioned on ``log sigma``;
* :class:`ScoreNetConfig` and :class:`ScoreNet`: a noise-conditional score network for images, a
  :class:`companion.unet.UNet` reading ``log sigma`` as its "time", output divided by ``sigma``;
* :func:`langevin_step` and :func:`annealed_langevin`: ``x <- x + (a/2) s(x) + sqrt(a) z``, run for ``steps`` at
  each level with ``a_i = eps sigma_i^2 / sigma_L^2``, as a pure function with a ``callback``, and an optional
  final denoising step ``x + sigma_L^2 s(x, sigma_L)`` (Tweedie's formula).

Shapes: points ``[N, D]`` or images ``[B, C, H, W]``; ``sigma`` a float or ``[B]``. Introduced in chapter 17.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .unet import UNet, UNetConfig

__all__ = [
    "ScoreNet",
    "ScoreNetConfig",
    "ToyScoreNet",
    "annealed_langevin",
    "dsm_loss",
    "gaussian_score",
    "geometric_sigmas",
    "langevin_step",
    "mixture_log_density",
    "mixture_score",
]


def geometric_sigmas(sigma_max: float, sigma_min: float, levels: int) -> Tensor:
    """``[levels]`` float64 noise levels from ``sigma_max`` down to ``sigma_min``, a geometric sequence."""
    if not (sigma_max > 0 and sigma_min > 0):
        raise ValueError(f"geometric_sigmas: sigmas must be > 0, got sigma_max={sigma_max}, sigma_min={sigma_min}")
    if sigma_min > sigma_max:
        raise ValueError(f"geometric_sigmas: sigma_min ({sigma_min}) must not exceed sigma_max ({sigma_max})")
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"geometric_sigmas: levels must be an int >= 1, got {levels!r}")
    if levels == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), levels, dtype=torch.float64))


def _per_example(sigma: Tensor | float, x: Tensor) -> Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or one per example [{x.shape[0]}], got shape {tuple(s.shape)}")
    return s.reshape(-1, *([1] * (x.dim() - 1)))


def dsm_loss(score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigmas: Tensor, *,
             sigma: Tensor | None = None, noise: Tensor | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    r"""Denoising score matching (Vincent 2011), weighted by :math:`\sigma^2` across levels (Song & Ermon 2019).

    With :math:`\tilde x = x + \sigma z` the target score is :math:`\nabla_{\tilde x} \log q(\tilde x \mid x) =
    -z/\sigma`, and :math:`\sigma^2 \|s - (-z/\sigma)\|^2 = \|\sigma s + z\|^2`, summed over the dimensions of
    an example and averaged over the batch (halved, as in the papers).

    Args:
        score_fn: ``score_fn(x_noisy, sigma [B]) -> score`` shaped like ``x``.
        x: clean data ``[B, ...]``.
        sigmas: the ``[L]`` noise levels to draw from (uniformly), when ``sigma`` is not given.
        sigma: ``[B]`` levels to use instead of drawing them.
        noise: ``z`` to use instead of drawing it.
        generator: for the draws.
    """
    if x.dim() < 2:
        raise ValueError(f"dsm_loss: x must be [B, ...] with B examples, got shape {tuple(x.shape)}")
    if sigma is None:
        sigmas = torch.as_tensor(sigmas)
        if sigmas.dim() != 1 or sigmas.numel() < 1 or bool((sigmas <= 0).any()):
            raise ValueError("dsm_loss: sigmas must be a non-empty 1-D tensor of positive noise levels")
        idx = torch.randint(0, len(sigmas), (x.shape[0],), generator=generator)
        sigma = sigmas[idx].to(x.dtype).to(x.device)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    if noise.shape != x.shape:
        raise ValueError(f"dsm_loss: noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
    s = _per_example(sigma, x)
    score = score_fn(x + s * noise, s.reshape(-1))
    return 0.5 * (s * score + noise).flatten(1).pow(2).sum(1).mean()


def gaussian_score(x: Tensor, mean: Tensor | float, std: Tensor | float) -> Tensor:
    r"""The score of :math:`N(\mu, \mathrm{diag}(s^2))`: :math:`-(x - \mu) / s^2`."""
    return -(x - torch.as_tensor(mean, dtype=x.dtype)) / torch.as_tensor(std, dtype=x.dtype) ** 2


def _mixture_parts(x: Tensor, means: Tensor, std: float, sigma: Tensor | float, weights: Tensor | None):
    if x.dim() != 2 or means.dim() != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(f"mixture: x must be [N, D] and means [K, D] with the same D, got {tuple(x.shape)} and "
                         f"{tuple(means.shape)}")
    k, d = means.shape
    var = std**2 + _per_example(sigma, x).reshape(-1, 1) ** 2  # [N, 1]: noise adds its variance to each component
    w = torch.full((k,), 1.0 / k, dtype=x.dtype) if weights is None else torch.as_tensor(weights, dtype=x.dtype)
    if w.shape != (k,) or bool((w < 0).any()):
        raise ValueError(f"mixture: weights must be [K={k}] non-negative, got {tuple(w.shape)}")
    w = w / w.sum()
    diff = x[:, None, :] - means.to(x.dtype)[None]  # [N, K, D]
    logits = torch.log(w)[None] - 0.5 * diff.pow(2).sum(-1) / var - 0.5 * d * torch.log(2 * math.pi * var)
    return diff, var, logits


def mixture_log_density(x: Tensor, means: Tensor, std: float, sigma: Tensor | float = 0.0,
                        weights: Tensor | None = None) -> Tensor:
    """``log p_sigma(x) [N]`` of the mixture of ``N(mean_k, std^2 I)`` (weights ``weights``) noised by ``sigma``."""
    _, _, logits = _mixture_parts(x, means, std, sigma, weights)
    return torch.logsumexp(logits, dim=1)


def mixture_score(x: Tensor, means: Tensor, std: float, sigma: Tensor | float = 0.0,
                  weights: Tensor | None = None) -> Tensor:
    r"""The exact score ``[N, D]`` of that noised mixture: :math:`\sum_k r_k(x)\,(\mu_k - x) / (s^2 + \sigma^2)`
    with responsibilities :math:`r_k`."""
    diff, var, logits = _mixture_parts(x, means, std, sigma, weights)
    r = torch.softmax(logits, dim=1)  # [N, K]
    return -(r[..., None] * diff).sum(1) / var


class ToyScoreNet(nn.Module):
    """``s(x, sigma)`` for 2-D points: an MLP on ``[x, log sigma]``, its output divided by ``sigma``.

    Args:
        dim: D of the points.
        hidden: width of the two hidden layers.
    """

    def __init__(self, dim: int = 2, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The score estimate ``[N, D]`` at points ``x [N, D]`` and level(s) ``sigma``."""
        s = _per_example(sigma, x)
        return self.net(torch.cat([x, torch.log(s)], 1)) / s


def _default_unet() -> UNetConfig:
    return UNetConfig(widths=(16, 32, 32), attention_levels=(), heads=4, groups=8, time_scale=50.0)


@dataclass(frozen=True)
class ScoreNetConfig:
    """A noise-conditional score network for images in ``[0, 1]``.

    Attributes:
        unet: the U-Net (widths 16, 32, 32; no attention except the middle's); it reads ``log sigma`` as its
            time, scaled by ``time_scale``.
        sigma_max: the largest noise level (about the largest distance between two training images, in units
            of a pixel's range: ``1``).
        sigma_min: the smallest.
        levels: L, the number of levels (geometric).
    """

    unet: UNetConfig = field(default_factory=_default_unet)
    sigma_max: float = 1.0
    sigma_min: float = 0.01
    levels: int = 10

    def __post_init__(self) -> None:
        geometric_sigmas(self.sigma_max, self.sigma_min, self.levels)  # raises on bad values


class ScoreNet(nn.Module):
    r"""``s_theta(x, sigma) = UNet(x, log sigma) / sigma``: the score of the data noised by ``sigma``.

    Dividing by :math:`\sigma` makes the network predict :math:`-z`, of unit size at every level (NCSNv2's
    parametrisation, Song & Ermon 2020). :attr:`sigmas` is the ``[L]`` float64 table; :meth:`sample` runs
    :func:`annealed_langevin` and returns images in ``[0, 1]``.

    Args:
        config: a :class:`ScoreNetConfig`.
    """

    def __init__(self, config: ScoreNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or ScoreNetConfig()
        self.unet = UNet(self.config.unet)
        # the Langevin step size the model was tuned to sample with (saved with the weights)
        self.register_buffer("langevin_eps", torch.tensor(5e-5, dtype=torch.float64))

    @property
    def sigmas(self) -> Tensor:
        """``[L]`` float64 noise levels, largest first."""
        c = self.config
        return geometric_sigmas(c.sigma_max, c.sigma_min, c.levels)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The score estimate for ``x [B, C, H, W]`` at ``sigma`` (a float or ``[B]``)."""
        s = _per_example(sigma, x)
        return self.unet(x, torch.log(s.reshape(-1))) / s

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """:func:`dsm_loss` over this model's levels on a batch ``x`` in ``[0, 1]``."""
        return dsm_loss(self, x, self.sigmas, generator=generator)

    @torch.no_grad()
    def sample(self, x: Tensor, steps: int = 3, eps: float | None = None, denoise: bool = True,
               generator: torch.Generator | None = None) -> Tensor:
        """Images in ``[0, 1]`` by :func:`annealed_langevin` from ``x`` (e.g. ``U[0, 1)`` noise), ``steps`` per level.

        ``eps=None`` uses :attr:`langevin_eps`, the step size stored with the weights.
        """
        eps = float(self.langevin_eps) if eps is None else eps
        out = annealed_langevin(self, x, self.sigmas.to(x.dtype), steps=steps, eps=eps, denoise=denoise,
                                generator=generator)
        return out.clamp(0, 1)


def langevin_step(score: Tensor, x: Tensor, step_size: float, noise: Tensor) -> Tensor:
    r"""One step of (unadjusted) Langevin dynamics: :math:`x + \tfrac{a}{2} s(x) + \sqrt{a}\, z`."""
    if step_size <= 0:
        raise ValueError(f"langevin_step: step_size must be > 0, got {step_size}")
    return x + 0.5 * step_size * score + math.sqrt(step_size) * noise


@torch.no_grad()
def annealed_langevin(score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigmas: Tensor, *, steps: int,
                      eps: float, denoise: bool = False, generator: torch.Generator | None = None,
                      callback: Callable[[dict[str, Any]], None] | None = None) -> Tensor:
    r"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), a pure function of its inputs.

    For each level :math:`\sigma_i` (largest first) take ``steps`` Langevin steps with
    :math:`a_i = \epsilon\, \sigma_i^2 / \sigma_L^2`; with ``denoise`` finish with
    :math:`x + \sigma_L^2 s(x, \sigma_L)`, the posterior mean of the clean point (Tweedie's formula).

    Args:
        score_fn: ``score_fn(x, sigma [B]) -> score`` shaped like ``x``.
        x: ``[B, ...]`` starting points (not modified).
        sigmas: ``[L]`` decreasing noise levels.
        steps: Langevin steps per level, ``>= 1``.
        eps: the step size at the smallest level, ``> 0``.
        denoise: add the final denoising step.
        generator: for the fresh noise.
        callback: called after each step with ``{"level", "step", "sigma", "step_size", "x"}``.

    Returns:
        The samples, shaped like ``x``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"annealed_langevin: steps must be an int >= 1, got {steps!r}")
    if not eps > 0:
        raise ValueError(f"annealed_langevin: eps must be > 0, got {eps}")
    sig = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if sig.numel() < 1 or bool((sig <= 0).any()) or bool((sig[1:] > sig[:-1]).any()):
        raise ValueError("annealed_langevin: sigmas must be positive and decreasing (largest first)")
    sigma_last = float(sig[-1])
    x = x.clone()
    for i, s in enumerate(sig.tolist()):
        a = eps * s**2 / sigma_last**2
        level = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
        for k in range(steps):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = langevin_step(score_fn(x, level), x, a, z)
            if callback is not None:
                callback({"level": i, "step": k, "sigma": s, "step_size": a, "x": x})
    if denoise:
        level = torch.full((x.shape[0],), sigma_last, dtype=x.dtype, device=x.device)
        x = x + sigma_last**2 * score_fn(x, level)
    return x
