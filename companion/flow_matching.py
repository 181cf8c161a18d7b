"""Class-conditional flow matching (rectified flow) of chapter 19: a velocity U-Net, its sampler, and reflow.

Read top to bottom:

* :class:`FlowMatchingConfig` and :class:`FlowMatching`: a :class:`companion.unet.UNet` with ``num_classes``
  that predicts the velocity ``v = eps - x0`` of the straight path ``x_t = (1 - t) x0 + t eps`` (``t = 1`` is
  noise, ``t = 0`` data; images scaled to ``[-1, 1]``); :meth:`FlowMatching.loss` is the conditional
  flow-matching loss (:func:`companion.diffusion.flow_matching_loss`) with the label dropped to "no label" for
  a fraction of the batch (so that one network is both conditional and unconditional, as classifier-free
  guidance needs) and times drawn from a logit-normal density (Esser et al. 2024); :meth:`FlowMatching.sample`
  integrates the ODE with :mod:`companion.diffusion`'s flow samplers, guided or not;
* :func:`sample_times`: the training times, ``"uniform"`` or ``"logit_normal"`` (``t = sigmoid(m + s z)``);
* :func:`drop_labels`: label dropout, the training half of classifier-free guidance;
* :func:`reflow_pairs` and :func:`reflow_loss`: rectified flow's reflow (Liu et al. 2023): couple each
  starting noise with the image a trained model carries it to, then train on the straight lines between the
  pairs, so that the new flow's paths are straighter and fewer steps follow them.

Shapes: images ``[B, C, H, W]``; times ``[B]`` float in ``[0, 1]``; labels ``[B]`` int64. Introduced in chapter 19.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import diffusion as D
from .ddpm import to_image_range
from .unet import UNet, UNetConfig

__all__ = ["SAMPLERS", "TIME_SAMPLINGS", "FlowMatching", "FlowMatchingConfig", "drop_labels", "reflow_loss",
           "reflow_pairs", "sample_times"]

#: The flow samplers :meth:`FlowMatching.sample` takes, by name.
SAMPLERS = {"euler": D.sample_flow_euler, "heun": D.sample_flow_heun, "midpoint": D.sample_flow_midpoint}
#: How training times are drawn: uniform on ``[0, 1]`` or logit-normal.
TIME_SAMPLINGS = ("uniform", "logit_normal")


def _default_unet() -> UNetConfig:
    # the U-Net of chapter 18's DDPM, reading times in [0, 1] (x 1000) and ten labels plus "no label"
    return UNetConfig(widths=(16, 32, 32), attention_levels=(2,), heads=4, groups=8, time_scale=1000.0,
                      num_classes=10)


@dataclass(frozen=True)
class FlowMatchingConfig:
    """A class-conditional flow-matching model.

    Attributes:
        unet: the velocity network (``num_classes`` must be set; ``time_scale`` about 1000 for times in ``[0, 1]``).
        label_dropout: the fraction of training labels replaced by "no label" (classifier-free guidance).
        time_sampling: ``"logit_normal"`` (Esser et al. 2024) or ``"uniform"``.
        logit_mean, logit_std: the logit-normal's ``m`` and ``s``: ``t = sigmoid(m + s z)``, ``z ~ N(0, 1)``.
    """

    unet: UNetConfig = field(default_factory=_default_unet)
    label_dropout: float = 0.1
    time_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.unet.num_classes is None:
            raise ValueError("FlowMatchingConfig: the U-Net must be class-conditional (set UNetConfig.num_classes)")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1), got {self.label_dropout}")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}")
        if not self.logit_std > 0:
            raise ValueError(f"logit_std must be > 0, got {self.logit_std}")


def sample_times(n: int, kind: str = "logit_normal", *, mean: float = 0.0, std: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """``n`` training times in ``(0, 1)``: uniform, or logit-normal ``sigmoid(mean + std z)``.

    The logit-normal density puts most times near the middle of the path, where the velocity is hardest to
    predict (near ``t = 0`` the target is almost the noise minus the visible image, near ``t = 1`` almost the
    noise minus the mean image); Esser et al. (2024) found it the best of the densities they compared.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in TIME_SAMPLINGS:
        raise ValueError(f"sample_times: kind must be one of {TIME_SAMPLINGS}, got {kind!r}")
    if kind == "uniform":
        return torch.rand(n, generator=generator)
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator))


def drop_labels(y: Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """``y`` with each label replaced by ``num_classes`` ("no label") with probability ``p`` (a new tensor)."""
    drop = torch.rand(y.shape, generator=generator) < p
    return torch.where(drop.to(y.device), torch.full_like(y, num_classes), y)


class FlowMatching(nn.Module):
    """A class-conditional velocity U-Net ``v_theta(x_t, t, y)`` on the straight path from data to noise.

    ``FlowMatching(config)(x_t, t, y=labels)`` is the velocity (``y=None``: unconditional), so a
    ``FlowMatching`` is the ``model`` of :mod:`companion.diffusion`'s flow samplers.

    Args:
        config: a :class:`FlowMatchingConfig`.
    """

    def __init__(self, config: FlowMatchingConfig | None = None) -> None:
        super().__init__()
        self.config = config or FlowMatchingConfig()
        self.unet = UNet(self.config.unet)

    @property
    def num_classes(self) -> int:
        return int(self.config.unet.num_classes)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The velocity for ``x [B, C, H, W]`` at times ``t [B]`` in ``[0, 1]``, labels ``y [B]`` or ``None``."""
        return self.unet(x, t, y)

    def loss(self, x0: Tensor, y: Tensor, generator: torch.Generator | None = None, *,
             t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The flow-matching loss on ``x0`` in ``[-1, 1]`` with labels ``y``: dropped labels, logit-normal times."""
        c = self.config
        if t is None:
            t = sample_times(x0.shape[0], c.time_sampling, mean=c.logit_mean, std=c.logit_std, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator)
        y = drop_labels(y, c.label_dropout, self.num_classes, generator) if c.label_dropout else y
        return D.flow_matching_loss(self, x0, cond={"y": y.to(x0.device)}, t=t.to(x0.device),
                                    noise=noise.to(x0.device))

    def velocity(self, guidance: float = 1.0) -> Callable[..., Tensor]:
        """The model the samplers integrate: ``self`` at ``guidance = 1``, else classifier-free guided."""
        if guidance == 1:
            return self
        return D.classifier_free_guidance(self, guidance, {"y": None})

    @torch.no_grad()
    def sample(self, x: Tensor, labels: Tensor | int, sampler: str = "euler", steps: int = 20, guidance: float = 1.0,
               shift: float = 1.0, callback: Callable[[dict[str, Any]], None] | None = None,
               images: bool = True) -> Tensor:
        """Integrate the flow from noise ``x [B, C, H, W]`` (``t = 1``) to images (``t = 0``).

        Args:
            x: the starting noise ``N(0, I)``.
            labels: one class for all, or ``[B]`` classes.
            sampler: ``"euler"``, ``"heun"`` or ``"midpoint"``.
            steps: steps on :func:`companion.diffusion.flow_timesteps` (``shift`` spends more near noise).
            guidance: the classifier-free guidance scale (1: conditional, 0: unconditional).
            callback: passed to the sampler.
            images: return pixels in ``[0, 1]`` (clipped); ``False``: the raw ``[-1, 1]``-range sample.

        Raises:
            ValueError: an unknown sampler.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"FlowMatching.sample: sampler must be one of {', '.join(map(repr, SAMPLERS))}, "
                             f"got {sampler!r}")
        y = torch.as_tensor(labels, dtype=torch.long, device=x.device).reshape(-1)
        y = y.expand(x.shape[0]) if y.numel() == 1 else y
        ts = D.flow_timesteps(steps, shift)
        out = SAMPLERS[sampler](self.velocity(guidance), x, ts, cond={"y": y}, callback=callback)
        return to_image_range(out) if images else out


@torch.no_grad()
def reflow_pairs(model: FlowMatching, noise: Tensor, labels: Tensor, *, sampler: str = "heun", steps: int = 10,
                 guidance: float = 1.0, batch_size: int = 250) -> Tensor:
    """The images (``[-1, 1]`` range, unclipped) that ``model`` carries each ``noise`` to: reflow's couplings.

    ``(noise[i], returned[i])`` is one pair of rectified flow's ``(X_1, X_0)``: the ODE's own transport, which
    the straight line between them only approximates; :func:`reflow_loss` trains on those straight lines.
    """
    out = [model.sample(z, y, sampler=sampler, steps=steps, guidance=guidance, images=False)
           for z, y in zip(noise.split(batch_size), labels.split(batch_size), strict=True)]
    return torch.cat(out)


def reflow_loss(model: FlowMatching, x0: Tensor, noise: Tensor, y: Tensor, generator: torch.Generator | None = None,
                t: Tensor | None = None) -> Tensor:
    """The flow-matching loss on fixed pairs ``(x0, noise)``: the target is the pair's own line, ``noise - x0``.

    Same times and label dropout as :meth:`FlowMatching.loss`; only the noise is no longer independent of ``x0``.
    """
    return model.loss(x0, y, generator, t=t, noise=noise)

