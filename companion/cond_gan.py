"""Conditional and style-based GANs: each system of 2014-2021 reduced to its key idea, small enough for MNIST.

Read top to bottom (smallest piece first):

* **class-conditional GANs.** :class:`ConditionalBatchNorm2d` (BigGAN's class-conditional batch norm: the class
  picks the scale and shift after normalising), :func:`projection_logit` and :class:`ProjectionDiscriminator`
  (Miyato & Koyama 2018: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``, the log density ratio's form),
  :class:`CondGenerator` (chapter 14's DCGAN generator with conditional batch norm), :class:`SelfAttention`
  (SAGAN, as BigGAN uses it), :func:`orthogonal_penalty` (BigGAN's orthogonal regularisation) and
  :func:`truncated_normal` (the truncation trick);
* **style-based generators.** :class:`MappingNetwork` (``z -> w``), :func:`modulated_conv2d` and
  :class:`ModulatedConv2d` (StyleGAN2's modulation / demodulation), :class:`NoiseInput`, :class:`StyleGenerator`
  (a learned constant, styled convolutions, per-layer noise, style mixing, truncation in W), :class:`MinibatchStd`
  and :class:`StyleDiscriminator` (its adversary, which can see a batch's variety);
* **three training ideas.** :func:`fade_in` (ProGAN's alpha blend between resolutions), the alias-free toolkit
  of StyleGAN3 (:func:`lowpass_kernel`, :func:`upsample2`, :func:`downsample2`, :func:`fourier_shift`,
  :class:`ToySynthesis`, :func:`translation_psnr`) and :class:`ADAugment` (adaptive discriminator augmentation
  steered by ``r_t = E[sign(D(real))]``);
* **image-to-image.** :func:`thicken` (a second digit domain), :class:`Translator` and :class:`PatchDiscriminator`
  (CycleGAN's players; the patch discriminator is also VQGAN's), :func:`cycle_loss`, and VQGAN's pieces
  :func:`perceptual_distance`, :func:`adaptive_weight` and :func:`sharpness`.

The loops are ``companion.train.train_gan`` (``conditional=True``, ``augment=``), ``train_cyclegan`` and
``train_vqgan``. Images are ``[B, 1, 28, 28]`` in ``[0, 1]``; labels int64 ``[B]``. Introduced in chapter 16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batching import check_input
from .gan import dcgan_init
from .losses import adaptive_weight, perceptual_distance
from .stable_gan import spectral_norm

__all__ = [
    "ADAugment",
    "CondGANConfig",
    "CondGenerator",
    "ConditionalBatchNorm2d",
    "MappingNetwork",
    "MinibatchStd",
    "ModulatedConv2d",
    "NoiseInput",
    "PatchDiscriminator",
    "ProjectionDiscriminator",
    "SelfAttention",
    "StyleConfig",
    "StyleDiscriminator",
    "StyleGenerator",
    "ToySynthesis",
    "Translator",
    "adaptive_weight",
    "cycle_loss",
    "downsample2",
    "fade_in",
    "fourier_shift",
    "lowpass_kernel",
    "modulated_conv2d",
    "orthogonal_penalty",
    "perceptual_distance",
    "projection_logit",
    "sample_conditional",
    "sharpness",
    "thicken",
    "translation_psnr",
    "truncated_normal",
    "upsample2",
]


# ----------------------------------------------------------------------------------------------
# Class-conditional GANs: conditional batch norm, the projection discriminator, BigGAN's tricks
# ----------------------------------------------------------------------------------------------


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift depend on the class: ``gamma_y * (x - mu) / sigma + beta_y``.

    The statistics ``mu, sigma`` are the usual per-channel batch (or running) ones, with no affine part of their
    own; ``gamma [K, C]`` starts at 1 and ``beta [K, C]`` at 0, so an untrained layer is plain batch norm.
    BigGAN (Brock et al. 2019) makes them linear functions of a shared class embedding (and of z); with one-hot
    classes that is this table. ``forward(x [B, C, H, W], y [B]) -> [B, C, H, W]``. Introduced in chapter 16.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.gamma(y)[:, :, None, None] * self.bn(x) + self.beta(y)[:, :, None, None]


def projection_logit(phi: Tensor, psi: Tensor, class_embedding: Tensor) -> Tensor:
    """The projection discriminator's logit ``psi(phi(x)) + <v_y, phi(x)>`` from its three parts.

    ``phi [B, F]``: the features of ``x``; ``psi [B]``: the unconditional term (a linear map of ``phi``);
    ``class_embedding [B, F]``: ``v_y``, the row of the embedding matrix for each example's class. Miyato & Koyama
    (2018), eq. 3: if ``log p(y | x)`` is a softmax of a linear function of ``phi`` then the optimal logit
    ``log q(x, y) / p(x, y)`` has exactly this form. Returns ``[B]``. Introduced in chapter 16.
    """
    if phi.shape != class_embedding.shape or psi.shape != phi.shape[:1]:
        raise ValueError(f"projection_logit: need phi [B, F], psi [B], class_embedding [B, F], got "
                         f"{list(phi.shape)}, {list(psi.shape)}, {list(class_embedding.shape)}")
    return psi + (class_embedding * phi).sum(dim=1)


class SelfAttention(nn.Module):
    """Self-attention over the positions of a feature map (SAGAN, Zhang et al. 2019; used by BigGAN).

    ``f = W_f x``, ``g = W_g x`` (``C/8`` channels), ``h = W_h x``; ``A = softmax(f^T g)`` over the ``HW`` positions;
    ``out = x + gamma * (h A)`` with ``gamma`` a learned scalar that starts at 0, so the block starts as the
    identity and the network learns how much non-local context to mix in. ``[B, C, H, W] -> [B, C, H, W]``.
    Introduced in chapter 16.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.f = nn.Conv2d(channels, inner, 1, bias=False)
        self.g = nn.Conv2d(channels, inner, 1, bias=False)
        self.h = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def attention(self, x: Tensor) -> Tensor:
        """The attention map ``[B, HW, HW]``: row ``i`` says where position ``i`` looks (rows sum to 1)."""
        f, g = self.f(x).flatten(2), self.g(x).flatten(2)  # [B, C', HW]
        return torch.softmax(f.transpose(1, 2) @ g, dim=-1)  # [B, HW, HW]

    def forward(self, x: Tensor) -> Tensor:
        a = self.attention(x)
        h = self.h(x).flatten(2)  # [B, C, HW]
        return x + self.gamma * (h @ a.transpose(1, 2)).view_as(x)


def orthogonal_penalty(module: nn.Module, beta: float = 1e-4) -> Tensor:
    """BigGAN's orthogonal regularisation, ``beta * sum_W ||W W^T * (1 - I)||_F^2`` over every conv / linear weight.

    Brock et al. (2019), eq. 3: unlike full orthogonality (``||W W^T - I||``) it leaves the rows' norms free and
    only pushes different filters towards orthogonal ones, which makes the generator smoother in ``z`` and so
    *amenable to truncation*. Each weight ``[out, ...]`` is read as the matrix ``[out, -1]``; with more rows than
    columns the sum is computed from the smaller Gram matrix, ``||W W^T||_F^2 - sum_i ||w_i||^4`` with
    ``||W W^T||_F = ||W^T W||_F``. Introduced in chapter 16.
    """
    total = None
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = m.weight.flatten(1)
            if w.shape[0] <= w.shape[1]:
                gram = w @ w.T
                term = (gram - torch.diag_embed(torch.diagonal(gram))).pow(2).sum()
            else:  # many rows: ||W W^T||_F^2 = ||W^T W||_F^2 (the same eigenvalues), so use the smaller Gram matrix
                term = (w.T @ w).pow(2).sum() - w.pow(2).sum(dim=1).pow(2).sum()
            total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return beta * total


def truncated_normal(n: int, dim: int, threshold: float | None, generator: torch.Generator | None = None) -> Tensor:
    """``[n, dim]`` draws of ``N(0, I)`` with every entry of magnitude above ``threshold`` redrawn (the truncation
    trick, Brock et al. 2019, sec. 3.1); ``threshold=None`` is the plain normal. A smaller threshold trades variety
    for fidelity. Introduced in chapter 16."""
    z = torch.randn(n, dim, generator=generator)
    if threshold is None:
        return z
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    for _ in range(1000):
        bad = z.abs() > threshold
        if not bool(bad.any()):
            break
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
    return z


@dataclass(frozen=True)
class CondGANConfig:
    """Sizes of :class:`CondGenerator` and :class:`ProjectionDiscriminator` for 28x28 digits.

    ``latent_dim``: size of ``z``; ``g_channels``: the generator's 14x14 channels (twice as many at 7x7);
    ``d_channels``: the discriminator's 14x14 channels (twice as many at 7x7); ``num_classes``; ``attention``:
    a :class:`SelfAttention` block on the 7x7 feature maps of both sides (49 positions; at 14x14 it would
    triple the cost of a training step on a CPU); ``spectral``: spectral norm on the discriminator's
    convolutions; ``concat_label``: the generator also reads a one-hot label next to ``z`` in its first layer
    (Mirza & Osindero's conditioning, BigGAN's "shared embedding" concatenated to ``z``). Introduced in chapter 16.
    """

    latent_dim: int = 64
    g_channels: int = 32
    d_channels: int = 32
    num_classes: int = 10
    in_channels: int = 1
    attention: bool = False
    spectral: bool = True
    concat_label: bool = False

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.g_channels, self.d_channels, self.in_channels) < 1 or self.num_classes < 2:
            raise ValueError(f"CondGANConfig sizes must be >= 1 (and num_classes >= 2), got {self}")

    @classmethod
    def tiny(cls, **overrides: Any) -> CondGANConfig:
        """A small preset for tests and the ci profile: 8 channels each side, a 16-dimensional latent."""
        return cls(**{"latent_dim": 16, "g_channels": 8, "d_channels": 8, **overrides})

    def replace(self, **changes: Any) -> CondGANConfig:
        return replace(self, **changes)


class CondGenerator(nn.Module):
    """A class-conditional DCGAN generator: ``(z [B, latent_dim], y [B]) -> x [B, 1, 28, 28]`` in ``[0, 1]``.

    ``[z, one-hot y] -> Linear -> [B, 2c, 7, 7] -> CBN -> ReLU -> [self-attention] -> ConvT 4x4/2 (14x14, c) ->
    CBN -> ReLU -> ConvT 4x4/2 (28x28) -> sigmoid``: chapter 14's generator with every batch norm made class-conditional
    (:class:`ConditionalBatchNorm2d`), so the label enters at every resolution. Introduced in chapter 16.
    """

    def __init__(self, config: CondGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or CondGANConfig()
        self.latent_dim, self.num_classes = c.latent_dim, c.num_classes
        h = c.g_channels
        self.project = nn.Linear(c.latent_dim + (c.num_classes if c.concat_label else 0), 2 * h * 7 * 7, bias=False)
        self.bn1 = ConditionalBatchNorm2d(2 * h, c.num_classes)
        self.up1 = nn.ConvTranspose2d(2 * h, h, 4, stride=2, padding=1, bias=False)  # 7 -> 14
        self.bn2 = ConditionalBatchNorm2d(h, c.num_classes)
        self.attn = SelfAttention(2 * h) if c.attention else nn.Identity()  # at 7x7
        self.up2 = nn.ConvTranspose2d(h, c.in_channels, 4, stride=2, padding=1)  # 14 -> 28
        for m in (self.project, self.up1, self.up2):
            dcgan_init(m)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        check_input("CondGenerator", "z", z, (None, self.latent_dim), like=self.project.weight)
        if self.config.concat_label:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        h = self.project(z).view(z.shape[0], 2 * self.config.g_channels, 7, 7)
        h = self.up1(self.attn(F.relu(self.bn1(h, y))))  # [B, c, 14, 14]
        return torch.sigmoid(self.up2(F.relu(self.bn2(h, y))))


class ProjectionDiscriminator(nn.Module):
    """``(x [B, 1, 28, 28], y [B]) -> logits [B]``: ``psi(phi(x)) + <embed(y), phi(x)>`` (Miyato & Koyama 2018).

    ``phi``: ``Conv 4x4/2 (c) -> LeakyReLU -> Conv 4x4/2 (2c) -> LeakyReLU -> [self-attention]``,
    flattened (``[B, 2c * 49]``); ``psi``: a linear map to one number; ``embed``: one vector per class. With
    ``spectral=True`` both convolutions are spectrally normalised (chapter 15's
    :func:`companion.stable_gan.spectral_norm`); ``psi`` and ``embed`` are not (the paper normalises them too, but in
    a network this small the unit-norm class term is too weak and the labels are learned far more slowly). Compared with concatenating a one-hot label to the input, the
    label enters as an inner product at the end, which is the form the optimal log-ratio takes.
    Introduced in chapter 16.
    """

    def __init__(self, config: CondGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or CondGANConfig()
        h = c.d_channels
        norm = spectral_norm if c.spectral else (lambda m: m)
        self.conv1 = norm(nn.Conv2d(c.in_channels, h, 4, stride=2, padding=1))  # [B, h, 14, 14]
        self.conv2 = norm(nn.Conv2d(h, 2 * h, 4, stride=2, padding=1))  # [B, 2h, 7, 7]
        self.attn = SelfAttention(2 * h) if c.attention else nn.Identity()  # at 7x7
        # psi and the class embedding stay unnormalised: with a small network, a unit-norm embedding makes the class
        # term <v_y, phi> too small next to the real/fake term, and the labels are learned far more slowly
        self.psi = nn.Linear(2 * h * 49, 1)
        self.embed = nn.Embedding(c.num_classes, 2 * h * 49)
        for m in (self.conv1, self.conv2, self.psi):
            dcgan_init(m)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def features(self, x: Tensor) -> Tensor:
        """``phi(x)``: ``[B, 1, 28, 28] -> [B, 2c * 49]``."""
        check_input("ProjectionDiscriminator", "x", x, (None, self.config.in_channels, 28, 28), like=self.conv1.bias)
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        return self.attn(h).flatten(1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        phi = self.features(x)
        return projection_logit(phi, self.psi(phi).squeeze(-1), self.embed(y))


@torch.no_grad()
def sample_conditional(generator: nn.Module, labels: Tensor, seed: int = 0, truncation: float | None = None,
                       batch_size: int = 500) -> Tensor:
    """Images of the given ``labels [n]`` from a conditional generator, ``z`` drawn on the CPU from ``seed`` with
    :func:`truncated_normal` (``truncation`` the threshold, ``None`` for none), in eval mode; on the CPU.
    Introduced in chapter 16."""
    labels = torch.as_tensor(labels).long()
    z = truncated_normal(len(labels), generator.latent_dim, truncation, torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    was = generator.training
    generator.eval()
    out = torch.cat([generator(z[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)).cpu()
                     for i in range(0, len(z), batch_size)])
    generator.train(was)
    return out


# ----------------------------------------------------------------------------------------------
# Style-based generators (StyleGAN, StyleGAN2)
# ----------------------------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    """``z [B, latent_dim] -> w [B, w_dim]``: normalise ``z`` to unit root-mean-square, then ``depth`` linear layers
    with leaky ReLU (Karras et al. 2019 use eight; a small model needs fewer). ``W`` need not be Gaussian: the
    network can unwarp the data's factors instead of following ``z``'s fixed distribution.

    Two details decide whether the styles vary at all. **Initialisation**: every layer starts with He's variance for
    leaky ReLU (``2 / ((1 + 0.2^2) fan_in)``) and zero bias, so ``w`` keeps roughly unit spread; PyTorch's default
    ``nn.Linear`` initialisation shrinks it about 2.5-fold per layer, the styles ``s = A w + 1`` are then nearly one
    constant and every ``z`` draws the same image. **Learning rate**: StyleGAN trains the mapping 100 times slower
    than the rest (``lr_multiplier = 0.01``); the parameters are stored divided by ``lr_multiplier`` and multiplied
    back in :meth:`forward`, and since Adam's step does not depend on a parameter's scale, the effective weights move
    ``lr_multiplier`` times slower. Introduced in chapter 16."""

    def __init__(self, latent_dim: int, w_dim: int, depth: int, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        if not lr_multiplier > 0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}")
        self.lr_multiplier = lr_multiplier
        dims = [latent_dim] + [w_dim] * depth
        std = [math.sqrt(2 / (1 + 0.2 ** 2) / d_in) for d_in in dims[:-1]]
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(d_out, d_in) * s / lr_multiplier)
                                         for d_in, d_out, s in zip(dims[:-1], dims[1:], std)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(d_out)) for d_out in dims[1:]])

    def forward(self, z: Tensor) -> Tensor:
        h = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for weight, bias in zip(self.weights, self.biases):
            h = F.leaky_relu(F.linear(h, weight * self.lr_multiplier, bias * self.lr_multiplier), 0.2)
        return h


def modulated_conv2d(x: Tensor, weight: Tensor, style: Tensor, demodulate: bool = True, padding: int = 0,
                     eps: float = 1e-8) -> Tensor:
    """StyleGAN2's modulated convolution, one kernel per example (Karras et al. 2020, eqs. 1-3).

    Modulation: ``w'_{oik} = s_i * w_{oik}`` scales each *input* channel by the example's style ``s [B, C_in]``.
    Demodulation: ``w''_{oik} = w'_{oik} / sqrt(sum_{i,k} w'_{oik}^2 + eps)``; for inputs with i.i.d. unit-variance
    entries each output channel then has unit variance again, which replaces AdaIN's normalisation of the
    activations by a normalisation of the weights (no more "droplets"). Implemented as a grouped convolution with
    the batch folded into the channels. ``x [B, C_in, H, W]``, ``weight [C_out, C_in, k, k]`` -> ``[B, C_out, H', W']``.
    Introduced in chapter 16.
    """
    B, C_in, H, W = x.shape
    C_out = weight.shape[0]
    if style.shape != (B, C_in) or weight.shape[1] != C_in:
        raise ValueError(f"modulated_conv2d: need x [B, C_in, H, W], weight [C_out, C_in, k, k], style [B, C_in]; "
                         f"got {list(x.shape)}, {list(weight.shape)}, {list(style.shape)}")
    w = weight[None] * style[:, None, :, None, None]  # [B, C_out, C_in, k, k]
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + eps)
    out = F.conv2d(x.reshape(1, B * C_in, H, W), w.reshape(B * C_out, C_in, *weight.shape[2:]), padding=padding,
                   groups=B)
    return out.view(B, C_out, *out.shape[2:])


class NoiseInput(nn.Module):
    """Adds per-pixel Gaussian noise times a learned per-channel strength (starts at 0): StyleGAN's source of
    stochastic detail (Karras et al. 2019, sec. 3.2). ``noise`` can be passed to fix it. In training mode the noise
    is fresh on every call; in eval mode it is one constant map (seed 0, the same for every example: StyleGAN2's
    ``noise_mode="const"``), so that the same ``z`` always gives the same image. Introduced in chapter 16."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None and self.training:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        elif noise is None:
            noise = torch.randn(1, 1, *x.shape[2:], generator=torch.Generator().manual_seed(0)).to(x)
        return x + self.strength[None, :, None, None] * noise


class ModulatedConv2d(nn.Module):
    """A styled layer: affine ``w -> s`` (bias 1, weights of variance ``1 / w_dim``, so styles start at 1 and vary
    with ``w``), :func:`modulated_conv2d`, optional nearest
    x2 up-sampling before it, noise, bias and leaky ReLU (all but the last only when ``activate``).
    ``forward(x, w [B, w_dim], noise=None)``. It computes :func:`modulated_conv2d`'s map in the cheaper
    equivalent form ``d_o * (W conv (s * x))`` (one shared kernel, the style on the input, the demodulation
    ``d_o = 1 / sqrt(sum_i s_i^2 sum_k w_oik^2)`` on the output). Introduced in chapter 16."""

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel) / math.sqrt(c_in * kernel * kernel))
        self.affine = nn.Linear(w_dim, c_in)
        nn.init.normal_(self.affine.weight, 0.0, 1 / math.sqrt(w_dim))  # a unit-spread w gives unit-spread styles
        nn.init.ones_(self.affine.bias)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.demodulate, self.upsample, self.activate = demodulate, upsample, activate
        self.noise = NoiseInput(c_out) if activate else None

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None = None) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        s = self.affine(w)  # [B, C_in]
        # the same map as modulated_conv2d, computed as scale-input / shared conv / scale-output (StyleGAN2's
        # non-fused form): (w * s) conv x == w conv (s * x), and the demodulation is one factor per output channel
        h = F.conv2d(x * s[:, :, None, None], self.weight, padding=self.weight.shape[-1] // 2)
        if self.demodulate:
            d = torch.rsqrt((s.pow(2) @ self.weight.pow(2).sum(dim=(2, 3)).T) + 1e-8)  # [B, C_out]
            h = h * d[:, :, None, None]
        if self.noise is not None:
            h = self.noise(h, noise)
        h = h + self.bias[None, :, None, None]
        return F.leaky_relu(h, 0.2) if self.activate else h


@dataclass(frozen=True)
class StyleConfig:
    """Sizes of :class:`StyleGenerator`: ``latent_dim`` (z), ``w_dim``, ``mapping_depth``, ``channels`` at 7, 14
    and 28 pixels, ``mixing`` (the probability of style-mixing regularisation during training), ``w_avg_decay``
    (the running mean of ``w`` used by truncation) and ``mapping_lr_multiplier`` (how much slower the mapping
    trains, :class:`MappingNetwork`). Introduced in chapter 16."""

    latent_dim: int = 64
    w_dim: int = 64
    mapping_depth: int = 3
    channels: tuple[int, int, int] = (64, 32, 16)
    mixing: float = 0.5
    w_avg_decay: float = 0.995
    mapping_lr_multiplier: float = 0.01

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.w_dim, self.mapping_depth, *self.channels) < 1 or len(self.channels) != 3:
            raise ValueError(f"StyleConfig sizes must be >= 1 with three channel counts, got {self}")
        if not 0 <= self.mixing <= 1:
            raise ValueError(f"mixing must lie in [0, 1], got {self.mixing}")

    @classmethod
    def tiny(cls, **overrides: Any) -> StyleConfig:
        """A small preset for tests and the ci profile."""
        return cls(**{"latent_dim": 16, "w_dim": 16, "mapping_depth": 2, "channels": (16, 8, 8), **overrides})

    def replace(self, **changes: Any) -> StyleConfig:
        return replace(self, **changes)


class StyleGenerator(nn.Module):
    """A style-based generator for 28x28 digits (Karras et al. 2019, 2020, scaled down).

    ``z -> MappingNetwork -> w``; synthesis from a learned constant ``[c0, 7, 7]`` through five styled 3x3 layers
    (7x7, then up to 14x14 twice, then up to 28x28 twice) and a styled 1x1 output layer without demodulation,
    then a sigmoid: :attr:`num_ws` = 6 style inputs, each fed its own copy of ``w`` (or a different one for style
    mixing). In training mode it keeps a running mean ``w_avg`` and, with probability ``mixing``, switches to a
    second ``z``'s ``w`` at a random layer (style-mixing regularisation). ``forward(z)`` is the plain sample;
    :meth:`mapping`, :meth:`synthesis`, :meth:`truncate` and :meth:`mix` expose the parts. Introduced in chapter 16.
    """

    num_ws = 6

    def __init__(self, config: StyleConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or StyleConfig()
        self.latent_dim = c.latent_dim
        c0, c1, c2 = c.channels
        self.mapping = MappingNetwork(c.latent_dim, c.w_dim, c.mapping_depth, c.mapping_lr_multiplier)
        self.const = nn.Parameter(torch.randn(1, c0, 7, 7))
        self.layers = nn.ModuleList([
            ModulatedConv2d(c0, c0, 3, c.w_dim),  # 7x7
            ModulatedConv2d(c0, c1, 3, c.w_dim, upsample=True), ModulatedConv2d(c1, c1, 3, c.w_dim),  # 14x14
            ModulatedConv2d(c1, c2, 3, c.w_dim, upsample=True), ModulatedConv2d(c2, c2, 3, c.w_dim),  # 28x28
        ])
        self.to_image = ModulatedConv2d(c2, 1, 1, c.w_dim, demodulate=False, activate=False)
        self.register_buffer("w_avg", torch.zeros(c.w_dim))

    def synthesis(self, ws: Tensor, noise: list[Tensor | None] | None = None) -> Tensor:
        """``ws [B, num_ws, w_dim] -> images [B, 1, 28, 28]``; ``noise``: one map (or ``None``) per styled layer."""
        if ws.dim() != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"synthesis: ws must be [B, {self.num_ws}, w_dim], got {list(ws.shape)}")
        h = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            h = layer(h, ws[:, i], None if noise is None else noise[i])
        return torch.sigmoid(self.to_image(h, ws[:, -1]))

    def truncate(self, w: Tensor, psi: float) -> Tensor:
        """The truncation trick in W: ``w_avg + psi (w - w_avg)`` (psi = 1 leaves w, psi = 0 gives the mean face)."""
        return self.w_avg + psi * (w - self.w_avg)

    def mix(self, z1: Tensor, z2: Tensor, crossover: int, psi: float = 1.0) -> Tensor:
        """Style mixing: layers ``< crossover`` take ``z1``'s ``w`` (coarse: pose, shape), the rest ``z2``'s."""
        w1, w2 = self.truncate(self.mapping(z1), psi), self.truncate(self.mapping(z2), psi)
        ws = w1[:, None].repeat(1, self.num_ws, 1)
        ws[:, crossover:] = w2[:, None]
        return self.synthesis(ws)

    def forward(self, z: Tensor, psi: float = 1.0) -> Tensor:
        check_input("StyleGenerator", "z", z, (None, self.latent_dim), like=self.const)
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.lerp_(w.mean(0), 1 - self.config.w_avg_decay)
        ws = self.truncate(w, psi)[:, None].repeat(1, self.num_ws, 1)
        if self.training and self.config.mixing > 0 and float(torch.rand(())) < self.config.mixing:
            w2 = self.mapping(torch.randn_like(z))
            cut = int(torch.randint(1, self.num_ws, ()))
            ws[:, cut:] = w2[:, None]
        return self.synthesis(ws)


class MinibatchStd(nn.Module):
    """ProGAN's and StyleGAN's minibatch standard deviation (Karras et al. 2018, sec. 3): split the batch into groups
    of ``group`` examples, take each feature's standard deviation across a group, average it to one number per
    group and append it as an extra constant channel. A discriminator that sees this can tell a batch of near-copies
    (a collapsed generator) from a varied real batch. ``[B, C, H, W] -> [B, C + 1, H, W]``; ``B`` must be a
    multiple of ``group`` (or smaller than it: then the whole batch is one group). Introduced in chapter 16."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        if group < 1:
            raise ValueError(f"group must be >= 1, got {group}")
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        g = min(self.group, B)
        if B % g:
            raise ValueError(f"MinibatchStd: the batch ({B}) must be a multiple of group ({g})")
        y = x.reshape(g, B // g, C, H, W)  # example i sits in group i % (B // g)
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B // g]
        return torch.cat([x, std.repeat(g)[:, None, None, None].expand(B, 1, H, W)], dim=1)


class StyleDiscriminator(nn.Module):
    """The discriminator ``stylegan_mnist`` trains against: ``x [B, 1, 28, 28] -> logits [B]``.

    ``Conv 4x4/2 (c) -> LeakyReLU -> Conv 4x4/2 (2c) -> LeakyReLU -> MinibatchStd -> Conv 3x3 (2c) -> LeakyReLU ->
    Linear``: chapter 15's batch-norm-free critic with StyleGAN's minibatch-stddev layer and one more convolution
    that can read it. No batch norm, so the R1 penalty is per example. Introduced in chapter 16."""

    def __init__(self, channels: int = 32, group: int = 4) -> None:
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(1, c, 4, stride=2, padding=1)  # [B, c, 14, 14]
        self.conv2 = nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)  # [B, 2c, 7, 7]
        self.mbstd = MinibatchStd(group)
        self.conv3 = nn.Conv2d(2 * c + 1, 2 * c, 3, padding=1)  # [B, 2c, 7, 7]
        self.out = nn.Linear(2 * c * 49, 1)
        for m in (self.conv1, self.conv2, self.conv3, self.out):
            dcgan_init(m)

    def forward(self, x: Tensor) -> Tensor:
        check_input("StyleDiscriminator", "x", x, (None, 1, 28, 28), like=self.conv1.bias)
        h = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        h = F.leaky_relu(self.conv3(self.mbstd(h)), 0.2)
        return self.out(h.flatten(1)).squeeze(-1)


# ----------------------------------------------------------------------------------------------
# ProGAN's fade-in, StyleGAN3's alias-free layers, ADA
# ----------------------------------------------------------------------------------------------


def fade_in(low: Tensor, high: Tensor, alpha: float) -> Tensor:
    """ProGAN's smooth hand-over to a new resolution (Karras et al. 2018, fig. 2): ``(1 - alpha) up(low) +
    alpha high``, with ``low [B, C, H, W]`` the old output up-sampled (nearest) to ``high``'s ``[B, C, 2H, 2W]``.
    ``alpha`` goes from 0 to 1 while the new layers train. Introduced in chapter 16."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    up = F.interpolate(low, size=high.shape[-2:], mode="nearest")
    return (1 - alpha) * up + alpha * high


def lowpass_kernel(taps: int = 12, cutoff: float = 0.25, beta: float = 8.0) -> Tensor:
    """A 1-D Kaiser-windowed sinc low-pass filter with ``taps`` coefficients summing to 1; ``cutoff`` in cycles per
    sample (0.5 is Nyquist). StyleGAN3 (Karras et al. 2021) uses such filters around every non-linearity.
    Introduced in chapter 16."""
    n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    h = 2 * cutoff * torch.sinc(2 * cutoff * n) * torch.kaiser_window(taps, periodic=False, beta=beta,
                                                                      dtype=torch.float64)
    return (h / h.sum()).float()


def _filter2d(x: Tensor, k: Tensor) -> Tensor:
    """Separable circular filtering of ``x [B, C, H, W]`` with the 1-D kernel ``k`` (a 'same'-size output)."""
    taps = len(k)
    left = (taps - 1) // 2
    right = taps - 1 - left
    C = x.shape[1]
    k = k.to(x)
    x = F.pad(x, (left, right, 0, 0), mode="circular")
    x = F.conv2d(x, k.view(1, 1, 1, taps).repeat(C, 1, 1, 1), groups=C)
    x = F.pad(x, (0, 0, left, right), mode="circular")
    return F.conv2d(x, k.view(1, 1, taps, 1).repeat(C, 1, 1, 1), groups=C)


def upsample2(x: Tensor, k: Tensor) -> Tensor:
    """x2 up-sampling by zero insertion and low-pass filtering (gain 4 keeps the mean): ``[B,C,H,W] -> [B,C,2H,2W]``.
    Introduced in chapter 16."""
    B, C, H, W = x.shape
    up = x.new_zeros(B, C, 2 * H, 2 * W)
    up[:, :, ::2, ::2] = x
    return 4 * _filter2d(up, k)


def downsample2(x: Tensor, k: Tensor) -> Tensor:
    """Low-pass filtering then keeping every other pixel: ``[B, C, 2H, 2W] -> [B, C, H, W]``. Introduced in
    chapter 16."""
    return _filter2d(x, k)[:, :, ::2, ::2]


def fourier_shift(x: Tensor, dx: float, dy: float) -> Tensor:
    """Translate ``x [..., H, W]`` by ``(dx, dy)`` pixels (any real numbers) as a periodic, band-limited signal: the
    phase ramp ``exp(-2 pi i (k_x dx / W + k_y dy / H))`` in the Fourier domain. Integer shifts equal
    ``torch.roll``. Introduced in chapter 16."""
    H, W = x.shape[-2:]

    def ramp(n: int, d: float) -> Tensor:
        p = torch.exp(-2j * math.pi * torch.fft.fftfreq(n, dtype=torch.float64) * d)
        if n % 2 == 0:  # the Nyquist frequency has no direction: keep the real part (exact for integer shifts)
            p[n // 2] = p[n // 2].real.clone()
        return p

    phase = ramp(H, dy)[:, None] * ramp(W, dx)[None, :]
    X = torch.fft.fft2(x.double())
    return torch.fft.ifft2(X * phase).real.to(x.dtype)


class ToySynthesis(nn.Module):
    """A small fully convolutional stack to measure translation equivariance: ``depth`` layers of a circular 3x3
    convolution and a leaky ReLU, ``[B, C, H, W] -> [B, C, H, W]``.

    ``alias_free=False`` applies the leaky ReLU at the feature map's own rate: its new high frequencies fold back
    (alias) and a sub-pixel shift of the input no longer shifts the output. ``alias_free=True`` wraps it as
    StyleGAN3 does: up-sample x2 with a low-pass filter, apply the non-linearity there, low-pass and down-sample
    back. Introduced in chapter 16.
    """

    def __init__(self, channels: int = 8, depth: int = 4, alias_free: bool = False, taps: int = 12) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular")
                                   for _ in range(depth))
        self.alias_free = alias_free
        self.register_buffer("kernel", lowpass_kernel(taps, 0.25))

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
            if self.alias_free:
                x = downsample2(F.leaky_relu(upsample2(x, self.kernel), 0.2), self.kernel)
            else:
                x = F.leaky_relu(x, 0.2)
        return x


def translation_psnr(net: nn.Module, x: Tensor, dx: float, dy: float = 0.0) -> float:
    """PSNR (dB) between ``net(shift(x))`` and ``shift(net(x))`` for the shift ``(dx, dy)`` by
    :func:`fourier_shift` (StyleGAN3's EQ-T metric, with the peak taken as the output's range): infinite for an
    exactly equivariant network. Introduced in chapter 16."""
    with torch.no_grad():
        a = net(fourier_shift(x, dx, dy))
        b = fourier_shift(net(x), dx, dy)
        mse = (a - b).double().pow(2).mean()
        peak = (b.max() - b.min()).double()
    return float(10 * torch.log10(peak ** 2 / mse.clamp_min(1e-30)))


class ADAugment(nn.Module):
    """Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with limited data").

    ``augment(x)``: each image independently, with probability ``p`` per transform, is translated by up to
    ``max_shift`` pixels (zero fill), gets a random contrast factor in ``[0.6, 1.4]`` and has a square of side
    ``cutout`` zeroed; every transform is differentiable in ``x``, and both the reals and the fakes the
    discriminator sees go through it (the generator's gradient too), so the augmentations do not leak into the
    samples as long as ``p`` stays well below 1. ``observe(real_logits)`` accumulates the overfitting heuristic
    ``r_t = E[sign(D(x_real))]``; every ``interval`` calls it moves ``p`` by ``sign(r_t - target) * B * interval /
    speed`` (``speed`` images to go from 0 to 1), clamped to ``[0, 1)``. ``log`` keeps ``(r_t, p)`` per update.
    Introduced in chapter 16.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, speed: int = 20_000, max_shift: int = 3,
                 cutout: int = 10, p: float = 0.0, adaptive: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.target, self.interval, self.speed = target, interval, speed
        self.max_shift, self.cutout, self.p, self.adaptive = max_shift, cutout, float(p), adaptive
        self.generator = torch.Generator().manual_seed(seed)
        self._signs: list[float] = []
        self._count = 0
        self.log: list[tuple[float, float]] = []

    @staticmethod
    def update(p: float, r_t: float, target: float, batch: int, interval: int, speed: int) -> float:
        """One step of the controller: ``p + sign(r_t - target) * batch * interval / speed``, clamped to [0, 1)."""
        step = batch * interval / speed
        return min(max(p + math.copysign(step, r_t - target) if r_t != target else p, 0.0), 1.0 - 1e-6)

    def observe(self, real_logits: Tensor) -> None:
        self._signs.append(float(torch.sign(real_logits.detach()).mean()))
        self._count += len(real_logits)
        if len(self._signs) >= self.interval:
            r_t = sum(self._signs) / len(self._signs)
            if self.adaptive:
                self.p = self.update(self.p, r_t, self.target, self._count // len(self._signs), self.interval,
                                     self.speed)
            self.log.append((r_t, self.p))
            self._signs, self._count = [], 0

    def forward(self, x: Tensor) -> Tensor:
        if self.p <= 0:
            return x
        B, _, H, W = x.shape
        g = self.generator
        dev = x.device

        def mask() -> Tensor:
            return (torch.rand(B, generator=g) < self.p).to(dev)

        # translation by integers, zero fill (differentiable: a gather of x)
        m = mask()
        sx = torch.randint(-self.max_shift, self.max_shift + 1, (B,), generator=g).to(dev) * m
        sy = torch.randint(-self.max_shift, self.max_shift + 1, (B,), generator=g).to(dev) * m
        pad = self.max_shift
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = (torch.arange(H, device=dev)[None, :] - sy[:, None] + pad)  # [B, H]
        cols = (torch.arange(W, device=dev)[None, :] - sx[:, None] + pad)  # [B, W]
        bi = torch.arange(B, device=dev)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        # contrast around the image mean
        m = mask()
        c = torch.where(m, (0.6 + 0.8 * torch.rand(B, generator=g)).to(dev), torch.ones(B, device=dev))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c[:, None, None, None] + mean
        # cutout
        m = mask()
        cy = torch.randint(0, H, (B,), generator=g).to(dev)
        cx = torch.randint(0, W, (B,), generator=g).to(dev)
        yy = torch.arange(H, device=dev)[None, :, None]
        xx = torch.arange(W, device=dev)[None, None, :]
        half = self.cutout // 2
        hole = ((yy - cy[:, None, None]).abs() <= half) & ((xx - cx[:, None, None]).abs() <= half) & m[:, None, None]
        return x * (~hole)[:, None].to(x.dtype)


# ----------------------------------------------------------------------------------------------
# Image-to-image: CycleGAN and VQGAN's pieces
# ----------------------------------------------------------------------------------------------


def thicken(x: Tensor, size: int = 3) -> Tensor:
    """A second digit domain: grey-scale dilation of ``x [B, 1, H, W]`` by a ``size x size`` square (a max filter),
    which thickens every stroke. Introduced in chapter 16."""
    return F.max_pool2d(x, size, stride=1, padding=size // 2)


class Translator(nn.Module):
    """A small image-to-image generator for CycleGAN, ``[B, 1, 28, 28] -> [B, 1, 28, 28]`` in ``[0, 1]``: a 3x3
    convolution to ``channels``, a 4x4/2 convolution down to 14x14, ``blocks`` residual blocks, a transposed
    convolution back up and a 3x3 convolution to one channel, sigmoid (Zhu et al. 2017 use the same shape at
    256x256 with nine blocks). Introduced in chapter 16."""

    def __init__(self, channels: int = 16, blocks: int = 2) -> None:
        super().__init__()
        c = channels
        self.down = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(2 * c, 2 * c, 3, padding=1)) for _ in range(blocks))
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),
                                nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.down(x)
        for block in self.blocks:
            h = F.relu(h + block(h))
        return torch.sigmoid(self.up(h))


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (Isola et al. 2017; CycleGAN's and VQGAN's): ``[B, 1, 28, 28] -> [B, 7, 7]`` logits,
    one per overlapping patch (a receptive field of 22 pixels), so it judges local texture and sharpness rather
    than the whole digit. Conv 4x4/2 (c), conv 4x4/2 (2c), conv 3x3 to one channel; leaky ReLU; spectral norm on
    every layer. Introduced in chapter 16."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(spectral_norm(nn.Conv2d(1, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                                 spectral_norm(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                                 spectral_norm(nn.Conv2d(2 * c, 1, 3, padding=1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


def cycle_loss(g_ab: nn.Module, g_ba: nn.Module, a: Tensor, b: Tensor) -> Tensor:
    """CycleGAN's cycle-consistency loss (Zhu et al. 2017, eq. 2): ``E|G_BA(G_AB(a)) - a| + E|G_AB(G_BA(b)) - b|``.

    Without it nothing ties a translated image to its source: any map onto the other domain fools the
    discriminator. Introduced in chapter 16."""
    return (g_ba(g_ab(a)) - a).abs().mean() + (g_ab(g_ba(b)) - b).abs().mean()


def sharpness(x: Tensor) -> Tensor:
    """High-frequency energy per image: the mean squared response of the 3x3 discrete Laplacian, ``[B, 1, H, W] ->
    [B]``. A blurry reconstruction has less of it than the real digit. Introduced in chapter 16."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(x, k.view(1, 1, 3, 3)).pow(2).flatten(1).mean(1)
