"""Autoencoders, built bottom-up: shape arithmetic, PCA, the convolutional autoencoder, noise, training, metrics.

Read top to bottom:

* shape arithmetic for a decoder that must undo its encoder: :func:`output_padding_for` (which
  ``output_padding`` makes a transposed convolution land on a target size; built on chapter 03's
  ``ops.conv_output_size`` / ``ops.conv_transpose_output_size``);
* the linear baseline: :class:`PCA` (fit by ``torch.linalg.svd`` of the centred data; encode, decode,
  explained variance), the one-call :func:`pca_reconstruct`, a :class:`LinearAutoencoder` and
  :func:`subspace_overlap` (does a trained linear autoencoder span the principal subspace?);
* the model: :class:`AEConfig` (with :meth:`AEConfig.tiny`), :class:`ConvEncoder` (stride-2 convolutions),
  :class:`ConvDecoder` (transposed convolutions) and :class:`ConvAutoencoder` (``encode``, ``decode``,
  ``forward``, ``reconstruct``);
* reconstruction losses as likelihoods: ``companion.losses.bce_per_image`` (Bernoulli) and
  ``companion.losses.mse_per_image`` (Gaussian);
* corruption for denoising: :func:`mask_pixels` and :func:`add_noise` (``"gaussian"``, ``"masking"``,
  ``"salt_pepper"``) and the denoising objective :func:`denoising_loss` (Vincent et al. 2008);
* the training objective: :func:`reconstruction_loss` (plain or denoising), for ``companion.train.train_autoencoder``;
* what a latent space is good for: :func:`encode_dataset`, :func:`decode_images`, :func:`fit_gaussian` and
  :func:`sample_gaussian` (decode random codes; ``companion.metrics.evaluate_samples`` scores them).

Shapes: images ``x [B, 1, 28, 28]`` in ``[0, 1]``; codes ``z [B, D]``; the decoder returns Bernoulli *logits*
``[B, 1, 28, 28]`` (``reconstruct`` applies the sigmoid); per-image losses are ``[B]``, summed over pixels.
Introduced in chapter 09.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batching import as_images, check_input, map_batches
from .losses import bce_per_image, mse_per_image
from .ops import conv_output_size, conv_transpose_output_size

__all__ = [
    "AEConfig",
    "ConvAutoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "LinearAutoencoder",
    "NOISE_KINDS",
    "PCA",
    "add_noise",
    "decode_images",
    "denoising_loss",
    "encode_dataset",
    "fit_gaussian",
    "mask_pixels",
    "output_padding_for",
    "pca_reconstruct",
    "reconstruction_loss",
    "sample_gaussian",
    "subspace_overlap",
]

NOISE_KINDS = ("gaussian", "masking", "salt_pepper")


# ----------------------------------------------------------------------------------------------
# Shape arithmetic: a decoder must land exactly on the encoder's input size
# ----------------------------------------------------------------------------------------------


def output_padding_for(size: int, target: int, kernel: int, stride: int = 1, padding: int = 0,
                       dilation: int = 1) -> int:
    """The ``output_padding`` that makes a transposed convolution map length ``size`` to length ``target``.

    A stride-``s`` convolution maps ``s`` different input lengths to the same output length (the floor in
    ``ops.conv_output_size``), so its transpose cannot know which one to return; ``output_padding`` adds that
    many rows/columns at the bottom/right. From ``ops.conv_transpose_output_size``::

        target = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 + output_padding

    Args:
        size: input length of the transposed convolution (H or W).
        target: the wanted output length.
        kernel, stride, padding, dilation: the layer's settings along this axis.

    Returns:
        ``output_padding`` in ``[0, max(stride, dilation))`` (PyTorch's constraint).

    Raises:
        ValueError: when no allowed ``output_padding`` reaches ``target``.

    Introduced in chapter 09.
    """
    base = conv_transpose_output_size(size, kernel, stride, padding, 0, dilation)
    op = target - base
    if not 0 <= op < max(stride, dilation):
        raise ValueError(f"a transposed convolution (kernel {kernel}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}) maps {size} to {base}..{base + max(stride, dilation) - 1}, "
                         f"never to {target}")
    return op


# ----------------------------------------------------------------------------------------------
# The linear baseline: PCA from scratch, and the linear autoencoder that finds the same subspace
# ----------------------------------------------------------------------------------------------


def _flat(x: Tensor) -> Tensor:
    """``[N, ...] -> [N, D]`` float (images are flattened row by row)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"expected data [N, ...] with N >= 1, got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1).float()


class PCA:
    r"""Principal component analysis via the SVD of the centred data matrix (Pearson 1901; Hotelling 1933).

    With the centred data :math:`X_c = X - \bar x` (``[N, D]``) and its thin SVD :math:`X_c = U S V^\top`,
    the principal directions are the rows of :math:`V^\top` (unit vectors, by decreasing variance), the
    variance along direction :math:`j` is :math:`S_j^2 / (N - 1)`, the code of ``x`` is
    :math:`z = V_k^\top (x - \bar x)` and the decoding :math:`\hat x = \bar x + V_k z`. By Eckart and Young
    (1936), no rank-:math:`k` affine map reconstructs the data with a smaller squared error.

    Attributes (after :meth:`fit`):
        ``mean_``: ``[D]``; ``components_``: ``[k, D]`` (orthonormal rows); ``singular_values_``: ``[k]``;
        ``explained_variance_``: ``[k]``; ``explained_variance_ratio_``: ``[k]`` (of the total variance);
        ``all_variances_``: ``[min(N, D)]``, every component's variance (for spectra and error curves).

    The names follow ``sklearn.decomposition.PCA``, and ``tests/test_autoencoder.py`` checks the two agree (up
    to the sign of each component, which an SVD leaves free). Introduced in chapter 09.
    """

    def __init__(self, n_components: int | None = None) -> None:
        if n_components is not None and n_components < 1:
            raise ValueError(f"n_components must be >= 1 or None, got {n_components}")
        self.n_components = n_components

    def fit(self, x: Tensor) -> PCA:
        """Fit to data ``x [N, ...]`` (flattened to ``[N, D]``); returns ``self``."""
        X = _flat(x).double()  # float64: the small trailing singular values matter for error curves
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 examples, got {n}")
        k = min(n, d) if self.n_components is None else self.n_components
        if k > min(n, d):
            raise ValueError(f"n_components={k} exceeds min(N, D) = {min(n, d)}")
        mean = X.mean(0)
        _, S, Vt = torch.linalg.svd(X - mean, full_matrices=False)  # X_c = U diag(S) V^T
        var = S.pow(2) / (n - 1)
        self.mean_ = mean.float()
        self.components_ = Vt[:k].float()  # [k, D]
        self.singular_values_ = S[:k].float()
        self.all_variances_ = var.float()
        self.explained_variance_ = var[:k].float()
        self.explained_variance_ratio_ = (var[:k] / var.sum()).float()
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise RuntimeError("PCA is not fitted yet: call .fit(x) first")

    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        """Codes ``[N, k]`` of ``x [N, ...]``: ``(x - mean) @ V_k`` (the first ``k`` fitted components)."""
        self._check_fitted()
        k = self.components_.shape[0] if k is None else k
        flat = _flat(x)
        if flat.shape[1] != self.mean_.shape[0]:
            raise ValueError(f"PCA.encode: x has {flat.shape[1]} features per example (shape {list(x.shape)}) but the "
                             f"PCA was fitted to {self.mean_.shape[0]}")
        return (flat - self.mean_) @ self.components_[:k].T

    def decode(self, z: Tensor) -> Tensor:
        """Flat reconstructions ``[N, D]`` of codes ``z [N, k]``: ``mean + z @ V_k^T``."""
        self._check_fitted()
        k = z.shape[-1]
        if k > self.components_.shape[0]:
            raise ValueError(f"codes have {k} dimensions but only {self.components_.shape[0]} components are fitted")
        return self.mean_ + z @ self.components_[:k]

    def reconstruct(self, x: Tensor, k: int | None = None) -> Tensor:
        """``decode(encode(x, k))`` reshaped like ``x``."""
        return self.decode(self.encode(x, k)).reshape(x.shape)


def pca_reconstruct(x: Tensor, k: int) -> Tensor:
    """Rank-``k`` PCA reconstruction of the rows of ``x [N, D]``, fitted to ``x`` itself: ``[N, D]``.

    Centre, take the SVD ``X_c = U S V^T``, project on the first ``k`` right singular vectors and add the mean
    back: ``x_hat = mean + (x - mean) V_k V_k^T``. Introduced in chapter 09 (exercise 09.1).
    """
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be in [1, min(N, D)] = [1, {min(x.shape)}], got {k}")
    mean = x.mean(0, keepdim=True)
    _, _, Vt = torch.linalg.svd(x - mean, full_matrices=False)
    Vk = Vt[:k].T  # [D, k]
    return mean + (x - mean) @ Vk @ Vk.T


class LinearAutoencoder(nn.Module):
    """``x_hat = W_dec (W_enc x + b_enc) + b_dec``: one linear layer each way, trained with squared error.

    Baldi and Hornik (1989): its global minima span the same subspace as the top-``k`` principal components.
    Shapes: ``x [B, ...]`` flattened to ``[B, D]``; ``encode -> [B, k]``; ``forward -> [B, D]``.
    Introduced in chapter 09.
    """

    def __init__(self, in_features: int = 784, latent_dim: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Linear(in_features, latent_dim)
        self.decoder = nn.Linear(latent_dim, in_features)

    def encode(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1) if isinstance(x, Tensor) and x.ndim >= 1 else x  # [B, ...] -> [B, D]
        check_input("LinearAutoencoder.encode", "x (flattened)", flat, (None, self.encoder.in_features),
                    like=self.encoder.weight)
        return self.encoder(flat)

    def decode(self, z: Tensor) -> Tensor:
        check_input("LinearAutoencoder.decode", "z", z, (None, self.encoder.out_features), like=self.decoder.weight)
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def subspace_overlap(basis: Tensor, components: Tensor) -> float:
    r"""How much of the span of ``basis``'s columns lies in the span of ``components``' rows, in ``[0, 1]``.

    ``basis [D, k]`` (e.g. a linear decoder's weight) is orthonormalised by QR to :math:`Q`; with the
    orthonormal rows :math:`V_k^\top` of ``components [k', D]``, the overlap is
    :math:`\|V_k^\top Q\|_F^2 / k = \frac1k \sum_i \cos^2\theta_i`, the mean squared cosine of the principal
    angles between the two subspaces: 1 when they coincide (for ``k' = k``), 0 when orthogonal.
    Introduced in chapter 09.
    """
    if basis.ndim != 2 or components.ndim != 2 or basis.shape[0] != components.shape[1]:
        raise ValueError(f"need basis [D, k] and components [k', D], got {tuple(basis.shape)} and "
                         f"{tuple(components.shape)}")
    Q, _ = torch.linalg.qr(basis.double())
    return float((components.double() @ Q).pow(2).sum() / basis.shape[1])


# ----------------------------------------------------------------------------------------------
# The convolutional autoencoder
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AEConfig:
    """Hyper-parameters of a :class:`ConvAutoencoder`.

    Attributes:
        latent_dim: D, the size of the code ``z``.
        channels: output channels of the encoder's stride-2 convolutions (the decoder mirrors them).
        kernel_size: every convolution's kernel (padding ``kernel_size // 2``, stride 2).
        image_size: H = W of the input.
        in_channels: C of the input.

    With the defaults, 28 -> 14 -> 7 -> 4 in the encoder and 4 -> 7 -> 14 -> 28 back in the decoder.
    """

    latent_dim: int = 128
    channels: tuple[int, ...] = (16, 32, 64)
    kernel_size: int = 3
    image_size: int = 28
    in_channels: int = 1

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive widths, got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if min(self.map_sizes()) < 1:
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} stride-2 layers")

    def replace(self, **changes: Any) -> AEConfig:
        return replace(self, **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> AEConfig:
        """A very small autoencoder (channels 4, 8, 8; 8 latents) for tests."""
        return cls(**{"latent_dim": 8, "channels": (4, 8, 8), **changes})

    def map_sizes(self) -> list[int]:
        """Spatial size after each encoder layer, input first: ``[28, 14, 7, 4]`` with the defaults."""
        sizes = [self.image_size]
        for _ in self.channels:
            sizes.append(conv_output_size(sizes[-1], self.kernel_size, 2, self.kernel_size // 2))
        return sizes

    def output_paddings(self) -> list[int]:
        """``output_padding`` of each decoder layer so it retraces :meth:`map_sizes` backwards (``[0, 1, 1]``)."""
        sizes = self.map_sizes()[::-1]
        return [output_padding_for(a, b, self.kernel_size, 2, self.kernel_size // 2) for a, b in zip(sizes, sizes[1:])]

    @property
    def flat_features(self) -> int:
        """Features entering the bottleneck: ``channels[-1] * map_sizes()[-1] ** 2`` (64 * 4 * 4 = 1024)."""
        return self.channels[-1] * self.map_sizes()[-1] ** 2


class ConvEncoder(nn.Module):
    """``x [B, C, H, W] -> z [B, D]``: stride-2 convolutions with ReLU, flatten, one linear layer (no activation)."""

    def __init__(self, config: AEConfig) -> None:
        super().__init__()
        k, widths = config.kernel_size, (config.in_channels, *config.channels)
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, k, stride=2, padding=k // 2), nn.ReLU()]  # halves H and W (rounding up)
        self.convs = nn.Sequential(*layers)
        self.to_code = nn.Linear(config.flat_features, config.latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.convs(x)  # [B, c_last, s, s]
        return self.to_code(h.flatten(1))  # [B, c_last*s*s] -> [B, D]


class ConvDecoder(nn.Module):
    """``z [B, D] -> logits [B, C, H, W]``: a linear layer, reshape, then transposed convolutions (stride 2).

    The transposed convolutions mirror the encoder's convolutions, with the ``output_padding`` from
    :meth:`AEConfig.output_paddings` so every size is retraced exactly (4 -> 7 -> 14 -> 28). The last layer has
    no activation: its outputs are Bernoulli logits.
    """

    def __init__(self, config: AEConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        self.from_code = nn.Linear(config.latent_dim, config.flat_features)
        widths = (*config.channels[::-1], config.in_channels)
        layers: list[nn.Module] = []
        for i, (a, b, op) in enumerate(zip(widths, widths[1:], config.output_paddings())):
            layers.append(nn.ConvTranspose2d(a, b, k, stride=2, padding=k // 2, output_padding=op))  # doubles H, W
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        s = self.config.map_sizes()[-1]
        h = F.relu(self.from_code(z)).view(z.shape[0], self.config.channels[-1], s, s)  # [B, c_last, s, s]
        return self.deconvs(h)  # [B, C, H, W] logits

    def forward_with(self, z: Tensor, conv_transpose: Callable[..., Tensor]) -> Tensor:
        """The same forward pass with ``conv_transpose(x, weight, bias, stride, padding, output_padding)`` for
        every ``nn.ConvTranspose2d`` (e.g. chapter 03's ``companion.ops.conv_transpose2d``)."""
        s = self.config.map_sizes()[-1]
        h = F.relu(self.from_code(z)).view(z.shape[0], self.config.channels[-1], s, s)
        for m in self.deconvs:
            if isinstance(m, nn.ConvTranspose2d):
                h = conv_transpose(h, m.weight, m.bias, stride=m.stride, padding=m.padding,
                                   output_padding=m.output_padding)
            else:
                h = m(h)
        return h


class ConvAutoencoder(nn.Module):
    """An undercomplete convolutional autoencoder: ``x -> z = encode(x) -> logits = decode(z)``.

    ``ConvAutoencoder(latent_dim=16)`` or ``ConvAutoencoder(AEConfig.tiny())``; keyword arguments override the
    config's fields. Shapes: ``x [B, 1, 28, 28]`` in ``[0, 1]``; ``encode -> [B, D]``; ``decode`` and
    ``forward -> logits [B, 1, 28, 28]``; ``reconstruct -> sigmoid(logits)`` in ``(0, 1)``.
    Introduced in chapter 09.
    """

    def __init__(self, config: AEConfig | None = None, **changes: Any) -> None:
        super().__init__()
        self.config = (config or AEConfig()).replace(**changes)
        self.encoder = ConvEncoder(self.config)
        self.decoder = ConvDecoder(self.config)

    def encode(self, x: Tensor) -> Tensor:
        """Codes ``[B, D]`` of images ``[B, C, H, W]``."""
        c, s = self.config.in_channels, self.config.image_size
        check_input("ConvAutoencoder.encode", "x", x, (None, c, s, s), like=self.encoder.to_code.weight)
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits ``[B, C, H, W]`` of codes ``z [B, D]``."""
        check_input("ConvAutoencoder.decode", "z", z, (None, self.config.latent_dim), like=self.decoder.from_code.weight)
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel probabilities ``sigmoid(decode(encode(x)))`` (eval mode, no gradients)."""
        return torch.sigmoid(self(x))


# ----------------------------------------------------------------------------------------------
# Corruption and the denoising objective
# ----------------------------------------------------------------------------------------------


def mask_pixels(x: Tensor, level: float, generator: torch.Generator | None = None) -> Tensor:
    """Masking noise: set each pixel to 0 independently with probability ``level`` (Vincent et al. 2008).

    Draws ``u = torch.rand(x.shape, generator=generator)`` (on ``x``'s device and dtype) and zeroes the pixels
    where ``u < level``; ``[B, ...] -> [B, ...]``. Introduced in chapter 09 (exercise 09.3).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"mask_pixels: x must be a floating-point tensor, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"level must be a probability in [0, 1], got {level}")
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * (u >= level).to(x.dtype)


def add_noise(x: Tensor, kind: str = "gaussian", level: float = 0.5,
              generator: torch.Generator | None = None) -> Tensor:
    """Corrupt images ``x [B, ...]`` in ``[0, 1]``; the result stays in ``[0, 1]``.

    * ``"gaussian"``: ``clamp(x + level * eps, 0, 1)`` with ``eps ~ N(0, I)`` (``level`` is the std);
    * ``"masking"``: :func:`mask_pixels` (each pixel zeroed with probability ``level``);
    * ``"salt_pepper"``: each pixel replaced, with probability ``level``, by 0 or 1 (a fair coin).

    ``level = 0`` returns ``x`` unchanged. Introduced in chapter 09.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"add_noise: x must be a floating-point tensor of images, got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    if kind == "masking":
        return mask_pixels(x, level, generator)
    if kind == "gaussian":
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + level * eps).clamp(0.0, 1.0)
    if level > 1:
        raise ValueError(f"salt_pepper level is a probability in [0, 1], got {level}")
    hit = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < level
    salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def denoising_loss(model: nn.Module, x: Tensor, kind: str = "gaussian", level: float = 0.5,
                   generator: torch.Generator | None = None) -> Tensor:
    r"""The denoising autoencoder's objective: reconstruct the *clean* ``x`` from a corrupted copy.

    :math:`\mathcal L = \mathbb E_{\tilde x \sim q(\tilde x \mid x)}\,[-\log p(x \mid \tilde x)]`, one draw of the
    corruption per image: ``mean(bce_per_image(model(add_noise(x)), x))``, a scalar in nats per image.
    ``level = 0`` gives the plain autoencoder's loss. Introduced in chapter 09.
    """
    x_tilde = add_noise(x, kind, level, generator) if level > 0 else x
    return bce_per_image(model(x_tilde), x).mean()


# ----------------------------------------------------------------------------------------------
# The training objective (the loop is ``companion.train.train_autoencoder``)
# ----------------------------------------------------------------------------------------------


def reconstruction_loss(loss: str = "bce", noise: tuple[str, float] | None = None,
                        seed: int = 0) -> Callable[[nn.Module, Sequence[Tensor]], Tensor]:
    """The training objective ``loss_fn(model, batch) -> loss`` of an autoencoder, for ``companion.train``.

    ``loss="bce"``: :func:`bce_per_image` of the model's logits (nats per image); ``"mse"``: :func:`mse_per_image`
    of its reconstruction (which may be flat, ``[B, D]``). ``noise=(kind, level)`` makes it a denoising
    autoencoder's :func:`denoising_loss` (bce only), its corruption drawn from a generator seeded with
    ``seed + 1`` on the batch's device (made at the first call). The mean over the batch is returned.

    Introduced in chapter 09.
    """
    if loss not in ("bce", "mse"):
        raise ValueError(f"loss must be 'bce' or 'mse', got {loss!r}")
    if noise is not None and loss != "bce":
        raise ValueError("a denoising autoencoder is trained with loss='bce' here")
    gen: list[torch.Generator] = []

    def loss_fn(m: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        xb = batch[0]
        if noise is not None:
            if not gen:
                gen.append(torch.Generator(device=xb.device).manual_seed(seed + 1))
            return denoising_loss(m, xb, noise[0], noise[1], gen[0])
        out = m(xb)
        if loss == "bce":
            return bce_per_image(out, xb).mean()
        return mse_per_image(out, xb.reshape(out.shape)).mean()

    return loss_fn


# ----------------------------------------------------------------------------------------------
# The latent space: codes, a Gaussian fitted to them, random decodes and how good they are
# ----------------------------------------------------------------------------------------------


def encode_dataset(model: nn.Module, data: Any, batch_size: int = 500) -> Tensor:
    """Codes ``model.encode(x)`` of every image in ``data`` (tensor or ``TensorDataset``): ``[N, D]`` on the CPU.

    Introduced in chapter 09.
    """
    return map_batches(model, model.encode, as_images(data), batch_size=batch_size)


def decode_images(model: nn.Module, z: Tensor, batch_size: int = 500) -> Tensor:
    """Pixel probabilities ``sigmoid(model.decode(z))`` for codes ``z [N, D]``: ``[N, C, H, W]`` on the CPU.

    Introduced in chapter 09.
    """
    return map_batches(model, lambda zb: torch.sigmoid(model.decode(zb)), z, batch_size=batch_size)


def fit_gaussian(z: Tensor) -> tuple[Tensor, Tensor]:
    r"""Maximum-likelihood-style Gaussian fit to codes ``z [N, D]``: ``(mean [D], cov [D, D])``.

    :math:`\mu = \frac1N \sum_n z_n`, :math:`\Sigma = \frac{1}{N-1} \sum_n (z_n - \mu)(z_n - \mu)^\top`
    (the unbiased covariance, as ``torch.cov``). Introduced in chapter 09.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"need codes [N, D] with N >= 2, got shape {tuple(z.shape)}")
    z = z.double()
    mean = z.mean(0)
    zc = z - mean
    return mean.float(), (zc.T @ zc / (z.shape[0] - 1)).float()


def sample_gaussian(mean: Tensor, cov: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    r"""``n`` draws from :math:`\mathcal N(\mu, \Sigma)`: ``[n, D]``.

    Uses the eigendecomposition :math:`\Sigma = Q \Lambda Q^\top` and :math:`z = \mu + Q \Lambda^{1/2}\epsilon`,
    which also works when :math:`\Sigma` is singular (fewer codes than dimensions); negative round-off
    eigenvalues are set to 0. Introduced in chapter 09.
    """
    if cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"cov must be [D, D] for mean [D], got {tuple(cov.shape)} and {tuple(mean.shape)}")
    evals, evecs = torch.linalg.eigh(cov.double())
    scale = evecs * evals.clamp_min(0).sqrt()  # [D, D]: columns q_j * sqrt(lambda_j)
    eps = torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)
    return (mean.double() + eps @ scale.T).float()
