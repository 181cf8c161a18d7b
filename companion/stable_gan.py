"""Stabilising GANs: spectral normalisation from scratch, a critic without batch norm, a generator of residual
blocks, and weight clipping.

Read top to bottom (smallest piece first):

* :func:`power_iteration` and :func:`spectral_norm_estimate`: the largest singular value ``sigma(W)`` of a weight
  matrix by power iteration (Miyato et al. 2018, Algorithm 1); a convolution's kernel ``[out, in, kh, kw]`` is
  read as the matrix ``[out, in * kh * kw]``, as PyTorch does;
* :class:`SpectralNorm` and :func:`spectral_norm`: the weight divided by ``sigma(W)``, kept up to date by one
  power-iteration step per training forward, as a parametrisation (``torch.nn.utils.parametrize``) -- the same
  contract as ``torch.nn.utils.parametrizations.spectral_norm``, written out;
* :class:`StableGANConfig`, :class:`Critic` (strided convolutions and leaky ReLU, no batch norm: a gradient
  penalty is taken per example, and batch norm would couple the examples; optional spectral norm on every layer)
  and :class:`ResGenerator` (a linear map to 7x7, then two up-sampling residual blocks, He et al. 2016, as in
  Miyato et al. 2018's and Gulrajani et al. 2017's ResNet generators, scaled down to 28x28 digits);
* :func:`clip_weights`: the original WGAN's Lipschitz constraint, for comparison.

The losses (LSGAN, Wasserstein, the gradient penalty, R1) are pure functions in ``companion.losses``; the loop is
``companion.train.train_gan``. Shapes: ``z [B, latent_dim]``; images ``[B, 1, 28, 28]`` in ``[0, 1]``; critic
scores ``[B]``. Introduced in chapter 15.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .batching import check_input
from .gan import dcgan_init

__all__ = [
    "Critic",
    "ResBlockUp",
    "ResGenerator",
    "SpectralNorm",
    "StableGANConfig",
    "clip_weights",
    "power_iteration",
    "spectral_norm",
    "spectral_norm_estimate",
]


# ----------------------------------------------------------------------------------------------
# Spectral normalisation (Miyato et al. 2018)
# ----------------------------------------------------------------------------------------------


def _normalize(x: Tensor, eps: float) -> Tensor:
    return x / x.norm().clamp_min(eps)


def power_iteration(weight_mat: Tensor, u: Tensor, v: Tensor, iters: int = 1,
                    eps: float = 1e-12) -> tuple[Tensor, Tensor, Tensor]:
    """``iters`` steps of power iteration on ``W [m, n]`` from ``u [m]``, ``v [n]``; returns ``(sigma, u, v)``.

    Each step: ``u <- W v / |W v|``, then ``v <- W^T u / |W^T u|`` (the order PyTorch uses); then
    ``sigma = u^T W v`` estimates the largest singular value (Miyato et al. 2018, Algorithm 1). ``u`` and ``v``
    converge to the leading singular vectors at a rate ``(sigma_2 / sigma_1)^(2 * iters)``; keeping them between
    calls (a training step changes ``W`` only a little) makes one step per call enough. ``u``, ``v`` returned are
    new tensors without gradient; ``sigma`` is differentiable in ``W``. Introduced in chapter 15.
    """
    if weight_mat.dim() != 2:
        raise ValueError(f"power_iteration: weight_mat must be [m, n], got {list(weight_mat.shape)}")
    if u.shape != weight_mat.shape[:1] or v.shape != weight_mat.shape[1:]:
        raise ValueError(f"power_iteration: need u [{weight_mat.shape[0]}] and v [{weight_mat.shape[1]}], got "
                         f"{list(u.shape)} and {list(v.shape)}")
    with torch.no_grad():
        for _ in range(iters):
            u = _normalize(weight_mat @ v, eps)  # [m]
            v = _normalize(weight_mat.T @ u, eps)  # [n]
    u, v = u.clone(), v.clone()
    sigma = torch.dot(u, weight_mat @ v)  # u^T W v
    return sigma, u, v


def spectral_norm_estimate(weight: Tensor, iters: int = 100, seed: int = 0) -> float:
    """The largest singular value of ``weight`` (a kernel ``[out, ...]`` is read as ``[out, -1]``) by ``iters``
    steps of :func:`power_iteration` from a seeded random start. Introduced in chapter 15."""
    w = weight.detach().flatten(1) if weight.dim() > 1 else weight.detach()[None]
    g = torch.Generator().manual_seed(seed)
    u = _normalize(torch.randn(w.shape[0], generator=g, dtype=w.dtype), 1e-12).to(w.device)
    v = _normalize(torch.randn(w.shape[1], generator=g, dtype=w.dtype), 1e-12).to(w.device)
    sigma, _, _ = power_iteration(w, u, v, iters)
    return float(sigma)


class SpectralNorm(nn.Module):
    """A parametrisation ``W -> W / sigma(W)`` with ``sigma`` from one power-iteration step per training forward.

    Buffers ``u [out]`` and ``v [in * kh * kw]`` hold the running singular vectors; at construction they are
    warmed up with 15 steps, as PyTorch does. In eval mode the vectors are frozen, so the same ``W / sigma`` is used
    on every call. Register it with :func:`spectral_norm`. Introduced in chapter 15.
    """

    def __init__(self, weight: Tensor, n_power_iterations: int = 1, eps: float = 1e-12) -> None:
        super().__init__()
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        self.n_power_iterations, self.eps = n_power_iterations, eps
        w = weight.detach().flatten(1)  # [out, in*kh*kw]
        u = _normalize(weight.new_empty(w.shape[0]).normal_(0, 1), eps)
        v = _normalize(weight.new_empty(w.shape[1]).normal_(0, 1), eps)
        _, u, v = power_iteration(w, u, v, 15, eps)
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)

    def forward(self, weight: Tensor) -> Tensor:
        w = weight.flatten(1)  # [out, in*kh*kw]
        u, v = self._u, self._v
        if self.training:
            _, u, v = power_iteration(w, self._u, self._v, self.n_power_iterations, self.eps)
            self._u.copy_(u)
            self._v.copy_(v)
            # sigma from the fresh copies, not the buffers: the next forward updates the buffers in place, which
            # would invalidate this forward's graph when a step runs the module twice before backward
        sigma = torch.dot(u, w @ v)
        return weight / sigma


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1) -> nn.Module:
    """Register :class:`SpectralNorm` on ``module.<name>`` (a ``Linear`` or ``Conv2d``) and return ``module``.

    After it, ``module.weight`` is ``W / sigma(W)``: every layer's Lipschitz constant (in the l2 norm) is about 1,
    so a stack of them with 1-Lipschitz activations is at most about 1-Lipschitz. Introduced in chapter 15.
    """
    weight = getattr(module, name)
    parametrize.register_parametrization(module, name, SpectralNorm(weight, n_power_iterations))
    return module


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StableGANConfig:
    """Sizes of :class:`ResGenerator` and :class:`Critic` for 28x28 single-channel images.

    ``latent_dim``: size of ``z``; ``g_channels``: channels of the generator's 7x7 map (halved by each of its two
    residual blocks); ``d_channels``: channels of the critic's 14x14 map (its 7x7 map has twice as many);
    ``spectral``: spectral norm on every critic layer. Introduced in chapter 15.
    """

    latent_dim: int = 64
    g_channels: int = 64
    d_channels: int = 32
    in_channels: int = 1
    spectral: bool = False

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.g_channels, self.d_channels, self.in_channels) < 1:
            raise ValueError(f"StableGANConfig sizes must be >= 1, got {self}")
        if self.g_channels % 4:
            raise ValueError(f"g_channels must be a multiple of 4 (two halvings), got {self.g_channels}")

    @classmethod
    def tiny(cls, **overrides: Any) -> StableGANConfig:
        """A small preset for tests and the ci profile: a 16-dimensional latent, 16 and 8 channels."""
        return cls(**{"latent_dim": 16, "g_channels": 16, "d_channels": 8, **overrides})

    def replace(self, **changes: Any) -> StableGANConfig:
        return replace(self, **changes)


class Critic(nn.Module):
    """A convolutional critic for 28x28 images: ``x [B, 1, 28, 28] -> scores [B]``.

    ``Conv 4x4/2 (28 -> 14, c) -> LeakyReLU(0.2) -> Conv 4x4/2 (14 -> 7, 2c) -> LeakyReLU(0.2) -> Linear -> score``:
    the DCGAN discriminator of chapter 14 without its batch norm (Gulrajani et al. 2017, sec. 4: a gradient
    penalty is per example, and batch norm makes each score depend on the whole batch). With ``spectral=True``
    every layer goes through :func:`spectral_norm`. The score is a logit for the standard loss, a regression
    output for LSGAN, a potential for the Wasserstein losses. Introduced in chapter 15.
    """

    def __init__(self, config: StableGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or StableGANConfig()
        h = c.d_channels
        layers = [nn.Conv2d(c.in_channels, h, 4, stride=2, padding=1),  # [B, h, 14, 14]
                  nn.Conv2d(h, 2 * h, 4, stride=2, padding=1),  # [B, 2h, 7, 7]
                  nn.Linear(2 * h * 7 * 7, 1)]  # [B, 2h*49] -> [B, 1]
        for layer in layers:
            dcgan_init(layer)
            if c.spectral:
                spectral_norm(layer)
        self.net = nn.Sequential(layers[0], nn.LeakyReLU(0.2), layers[1], nn.LeakyReLU(0.2), nn.Flatten(), layers[2])

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 1, 28, 28] -> scores [B]``."""
        check_input("Critic", "x", x, (None, self.config.in_channels, 28, 28), like=self.net[0].bias)
        return self.net(x).squeeze(-1)


class ResBlockUp(nn.Module):
    """An up-sampling residual block, ``[B, c_in, H, W] -> [B, c_out, 2H, 2W]``:
    ``x -> BN, ReLU, upsample x2, conv 3x3, BN, ReLU, conv 3x3`` plus the shortcut ``upsample x2, conv 1x1``.

    Nearest-neighbour up-sampling followed by a convolution instead of a transposed convolution (no
    checkerboard), as in the ResNet generators of Gulrajani et al. (2017) and Miyato et al. (2018).
    Introduced in chapter 15.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")  # [B, c_in, 2H, 2W]
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))  # [B, c_out, 2H, 2W]
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResGenerator(nn.Module):
    """A residual generator for 28x28 images: ``z [B, latent_dim] -> x [B, 1, 28, 28]`` in ``[0, 1]``.

    ``Linear -> [B, c, 7, 7] -> ResBlockUp (c/2, 14x14) -> ResBlockUp (c/4, 28x28) -> BN, ReLU -> conv 3x3 ->
    sigmoid`` with ``c = g_channels``. Introduced in chapter 15.
    """

    def __init__(self, config: StableGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or StableGANConfig()
        self.latent_dim = c.latent_dim
        h = c.g_channels
        self.project = nn.Linear(c.latent_dim, h * 7 * 7)
        self.blocks = nn.Sequential(ResBlockUp(h, h // 2), ResBlockUp(h // 2, h // 4))  # 7 -> 14 -> 28
        self.out = nn.Sequential(nn.BatchNorm2d(h // 4), nn.ReLU(), nn.Conv2d(h // 4, c.in_channels, 3, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        """``z [B, latent_dim] -> images [B, 1, 28, 28]`` in ``[0, 1]``."""
        check_input("ResGenerator", "z", z, (None, self.latent_dim), like=self.project.weight)
        h = self.project(z).view(z.shape[0], self.config.g_channels, 7, 7)  # [B, c, 7, 7]
        return torch.sigmoid(self.out(self.blocks(h)))


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """Clamp every parameter of ``module`` to ``[-c, c]`` in place: the original WGAN's crude way to bound the
    critic's Lipschitz constant (Arjovsky et al. 2017, Algorithm 1, ``c = 0.01``). Introduced in chapter 15."""
    if c <= 0:
        raise ValueError(f"clip must be > 0, got {c}")
    for p in module.parameters():
        p.clamp_(-c, c)
