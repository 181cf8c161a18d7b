"""Normalising flows (chapter 17): RealNVP's affine couplings, their log-determinants and exact log-likelihoods.

Read top to bottom:

* :func:`checkerboard_mask` and :func:`channel_mask`: which half of the input a coupling keeps fixed;
* :class:`AffineCoupling`: ``y = b * x + (1 - b) * (x * exp(s(b x)) + t(b x))`` with the mask ``b``; it is
  invertible in closed form and its Jacobian is triangular, so ``log |det J| = sum (1 - b) s`` (Dinh et al. 2017);
  the last convolution of ``s, t`` starts at zero, so an untrained coupling is the identity;
* :func:`squeeze` / :func:`unsqueeze`: ``[B, C, H, W]`` to ``[B, 4C, H/2, W/2]`` and back (a permutation, log-det 0);
* :class:`RealNVPConfig` and :class:`RealNVP`: checkerboard couplings at full resolution, a squeeze, channel and
  checkerboard couplings at half resolution, a standard-normal base; :meth:`RealNVP.log_prob` is the exact
  ``log p(y)`` by the change of variables, :meth:`RealNVP.sample` draws ``z ~ N(0, T^2 I)`` and inverts;
* :func:`dequantize`, :func:`logit_transform` and :func:`bits_per_dim`: 8-bit pixels to a continuous density
  (uniform dequantisation, Theis et al. 2016), the logit pre-processing with its own log-det, and the
  discrete-data bits/dim that this gives (``companion.metrics.bits_per_dim`` of the NLL in 8-bit units).

Shapes: images ``[B, C, H, W]``; log-densities ``[B]`` (nats). Introduced in chapter 17.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import _check_images, _shape

__all__ = [
    "AffineCoupling",
    "RealNVP",
    "RealNVPConfig",
    "bits_per_dim",
    "channel_mask",
    "checkerboard_mask",
    "dequantize",
    "flow_nll_loss",
    "logit_transform",
    "squeeze",
    "standard_normal_log_prob",
    "unsqueeze",
]

#: the pixel range is squeezed into ``[ALPHA, 1 - ALPHA]`` before the logit (RealNVP's logit pre-processing; RealNVP took α = 0.05 on its natural-image datasets)
ALPHA = 0.05


def checkerboard_mask(channels: int, size: int, parity: int = 0) -> Tensor:
    """``[1, C, H, W]`` mask, 1 where ``(i + j + parity)`` is even: the pixels a checkerboard coupling keeps fixed."""
    if parity not in (0, 1):
        raise ValueError(f"checkerboard_mask: parity must be 0 or 1, got {parity!r}")
    i = torch.arange(size)
    board = ((i[:, None] + i[None, :] + parity) % 2 == 0).float()
    return board.expand(1, channels, size, size).clone()


def channel_mask(channels: int, size: int, parity: int = 0) -> Tensor:
    """``[1, C, H, W]`` mask, 1 on the first half of the channels (``parity=1``: the second half)."""
    if parity not in (0, 1):
        raise ValueError(f"channel_mask: parity must be 0 or 1, got {parity!r}")
    if channels < 2 or channels % 2:
        raise ValueError(f"channel_mask: channels must be even and >= 2, got {channels}")
    m = torch.zeros(1, channels, size, size)
    half = channels // 2
    if parity == 0:
        m[:, :half] = 1
    else:
        m[:, half:] = 1
    return m


class AffineCoupling(nn.Module):
    """One affine coupling layer: the masked half passes through, the other half is scaled and shifted.

    ``forward(x) -> (y, log_det)`` with ``y = b x + (1 - b)(x exp(s) + t)``, ``(s, t) = net(b x)``, and
    ``log_det = sum over pixels of (1 - b) s`` ``[B]``; ``inverse(y)`` undoes it exactly. ``s`` is
    ``scale * tanh(raw)`` (a learned per-channel ``scale``), which keeps early steps from exploding.

    Args:
        mask: ``[1, C, H, W]`` of 0/1 (:func:`checkerboard_mask` or :func:`channel_mask`).
        hidden: channels of the small CNN that computes ``s`` and ``t``.
    """

    def __init__(self, mask: Tensor, hidden: int = 32) -> None:
        super().__init__()
        if mask.dim() != 4 or mask.shape[0] != 1:
            raise ValueError(f"AffineCoupling: mask must be [1, C, H, W], got {_shape(mask)}")
        c = mask.shape[1]
        self.register_buffer("mask", mask.float(), persistent=False)
        self.net = nn.Sequential(
            nn.Conv2d(c + 1, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * c, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))

    def _st(self, x_fixed: Tensor) -> tuple[Tensor, Tensor]:
        b = self.mask
        # the mask itself is an input channel, so the network knows which pixels it is looking at
        h = self.net(torch.cat([x_fixed, b[:, :1].expand(x_fixed.shape[0], 1, *x_fixed.shape[2:])], 1))
        raw_s, t = h.chunk(2, dim=1)
        s = self.scale * torch.tanh(raw_s)
        return s * (1 - b), t * (1 - b)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log_det [B])`` for ``x [B, C, H, W]``."""
        if x.dim() != 4 or x.shape[1:] != self.mask.shape[1:]:
            raise ValueError(f"AffineCoupling: expected x [B, {', '.join(map(str, self.mask.shape[1:]))}], "
                             f"got {_shape(x)}")
        s, t = self._st(x * self.mask)
        y = x * torch.exp(s) + t  # s = t = 0 on the fixed half, so y = x there
        return y, s.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        """``x`` with ``forward(x)[0] == y``: the fixed half gives ``s, t`` again, then ``x = (y - t) exp(-s)``."""
        s, t = self._st(y * self.mask)
        return (y - t) * torch.exp(-s)


def squeeze(x: Tensor) -> Tensor:
    """``[B, C, H, W] -> [B, 4C, H/2, W/2]``: each 2x2 block of pixels becomes four channels (log-det 0)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze: H and W must be even, got {_shape(x)}")
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of :func:`squeeze`: ``[B, 4C, H, W] -> [B, C, 2H, 2W]``."""
    b, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze: channels must be a multiple of 4, got {_shape(x)}")
    c = c4 // 4
    x = x.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c, 2 * h, 2 * w)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r"""``log N(z; 0, I)`` summed over all but the batch dimension: :math:`-\tfrac12 \|z\|^2 - \tfrac D2 \log 2\pi`."""
    d = z[0].numel()
    return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)


@dataclass(frozen=True)
class RealNVPConfig:
    """A :class:`RealNVP`.

    Attributes:
        channels: C of the images.
        image_size: H = W (even).
        hidden: channels of each coupling's CNN.
        full: checkerboard couplings at full resolution (alternating parity).
        half: couplings after the squeeze, at half resolution (channel, checkerboard, channel, ... alternating
            parity and type).
    """

    channels: int = 1
    image_size: int = 28
    hidden: int = 32
    full: int = 4
    half: int = 4

    def __post_init__(self) -> None:
        if self.image_size % 2 or self.image_size < 2:
            raise ValueError(f"image_size must be even and >= 2, got {self.image_size}")
        for k in ("channels", "hidden"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise ValueError(f"{k} must be an int >= 1, got {getattr(self, k)!r}")
        for k in ("full", "half"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 0:
                raise ValueError(f"{k} must be an int >= 0, got {getattr(self, k)!r}")


class RealNVP(nn.Module):
    """A RealNVP flow ``z = f(y)`` with a standard-normal base; exact ``log p(y)`` by the change of variables.

    :meth:`forward` returns ``(z, log_det)`` with ``log_det = log |det df/dy|`` ``[B]``; :meth:`log_prob` is
    ``log N(f(y); 0, I) + log_det``; :meth:`inverse` maps ``z`` back; :meth:`sample` draws images in ``[0, 1]``.
    The model works on logit-space ``y`` (:func:`logit_transform` of dequantised pixels).

    Args:
        config: a :class:`RealNVPConfig`.
    """

    def __init__(self, config: RealNVPConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RealNVPConfig()
        n, h = c.image_size, c.image_size // 2
        self.fine = nn.ModuleList(AffineCoupling(checkerboard_mask(c.channels, n, i % 2), c.hidden)
                                  for i in range(c.full))
        half = []
        for i in range(c.half):
            kind = channel_mask if (i // 2) % 2 == 0 else checkerboard_mask
            half.append(AffineCoupling(kind(4 * c.channels, h, i % 2), c.hidden))
        self.coarse = nn.ModuleList(half)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log_det [B])`` for logit-space images ``y [B, C, H, W]``; ``z`` has ``y``'s shape."""
        c = self.config
        _check_images("RealNVP", y, channels=c.channels, size=(c.image_size, c.image_size))
        log_det = y.new_zeros(y.shape[0])
        x = y
        for layer in self.fine:
            x, ld = layer(x)
            log_det = log_det + ld
        x = squeeze(x)
        for layer in self.coarse:
            x, ld = layer(x)
            log_det = log_det + ld
        return unsqueeze(x), log_det

    def inverse(self, z: Tensor) -> Tensor:
        """The logit-space image ``y`` with ``forward(y)[0] == z``."""
        x = squeeze(z)
        for layer in reversed(self.coarse):
            x = layer.inverse(x)
        x = unsqueeze(x)
        for layer in reversed(self.fine):
            x = layer.inverse(x)
        return x

    def log_prob(self, y: Tensor) -> Tensor:
        """Exact ``log p(y)`` in nats ``[B]``: ``log N(f(y); 0, I) + log |det df/dy|``."""
        z, log_det = self(y)
        return standard_normal_log_prob(z) + log_det

    @torch.no_grad()
    def sample(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Images in ``[0, 1]`` from base noise ``z ~ N(0, I)`` scaled by ``temperature``, inverted and un-logited."""
        if temperature <= 0:
            raise ValueError(f"RealNVP.sample: temperature must be > 0, got {temperature}")
        y = self.inverse(z * temperature)
        return ((torch.sigmoid(y) - ALPHA) / (1 - 2 * ALPHA)).clamp(0, 1)


def dequantize(images: Tensor, generator: torch.Generator | None = None, levels: int = 256) -> Tensor:
    """Uniform dequantisation: pixels ``k / (levels - 1)`` to ``(k + u) / levels``, ``u ~ U[0, 1)``, in ``[0, 1)``.

    Fitting a density to these continuous values bounds the discrete log-likelihood from below
    (``log P(k) >= E_u log p((k + u) / levels) - D log levels``; Theis et al. 2016).

    Raises:
        ValueError: ``images`` outside ``[0, 1]``.
    """
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"dequantize: images must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
    k = torch.round(images * (levels - 1))
    u = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (k + u) / levels


def logit_transform(x: Tensor, alpha: float = ALPHA) -> tuple[Tensor, Tensor]:
    r"""``(y, log_det [B])``: :math:`y = \operatorname{logit}(\alpha + (1 - 2\alpha) x)` and its log-determinant.

    :math:`\log |dy/dx| = \log(1 - 2\alpha) - \log p - \log(1 - p)` per pixel with :math:`p = \alpha + (1 - 2\alpha)x`,
    summed over the image, so that ``log p(x) = log p(y) + log_det``.
    """
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"logit_transform: x must lie in [0, 1], got [{x.min():.3g}, {x.max():.3g}]")
    p = alpha + (1 - 2 * alpha) * x
    y = torch.log(p) - torch.log1p(-p)
    log_det = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    return y, log_det


def bits_per_dim(flow: RealNVP, images: Tensor, generator: torch.Generator | None = None,
                 batch_size: int = 250) -> Tensor:
    r"""Per-image bits/dim of 8-bit ``images [N, C, H, W]`` (values ``k / 255``) under ``flow``: ``[N]``.

    Dequantise, logit, then ``NLL = -(log p(y) + log|dy/dx|) + D log 256`` nats (the density of ``x`` in
    ``[0, 1)`` turned into a probability of the 256 levels), divided by :math:`D \ln 2`. Average it (or pass the
    NLL to ``companion.metrics.bits_per_dim``) for the data set's number.
    """
    d = images[0].numel()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = dequantize(images[i:i + batch_size], generator)
            y, ld = logit_transform(x)
            nll = -(flow.log_prob(y) + ld) + d * math.log(256)
            out.append(nll / (d * math.log(2)))
    return torch.cat(out)


def flow_nll_loss(flow: RealNVP, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The training loss: mean bits/dim of a batch of 8-bit ``images`` (fresh dequantisation noise each call)."""
    d = images[0].numel()
    x = dequantize(images, generator)
    y, ld = logit_transform(x)
    nll = -(flow.log_prob(y) + ld) + d * math.log(256)
    return nll.mean() / (d * math.log(2))

