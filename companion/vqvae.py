"""Discrete latents: the vector quantiser, the VQ-VAE and an autoregressive prior over its codes.

Read top to bottom (smallest piece first, the nanoGPT order):

* the functional core of vector quantisation (van den Oord et al. 2017, "Neural Discrete Representation
  Learning"): :func:`squared_distances` (the expanded ``||z||^2 - 2 z.e + ||e||^2`` form),
  :func:`nearest_code`, :func:`straight_through` (the straight-through estimator, Bengio et al. 2013),
  :func:`ema_update` (the codebook as an exponential moving average of cluster sums and counts: online k-means,
  van den Oord et al. 2017 appendix A.1 / Razavi et al. 2019); the diagnostics ``codebook_usage`` and
  ``perplexity`` live in ``companion.metrics``, the codebook and commitment terms in ``companion.losses``;
* :class:`VectorQuantizer`, the layer: nearest code, straight-through gradient, codebook + commitment loss, an
  optional EMA codebook and dead-code reset;
* :class:`VQVAE` (with :class:`VQVAEConfig`): a convolutional encoder from a 28x28 image to a 7x7 grid of code
  vectors and a transposed-convolution decoder back; :func:`vqvae_loss` (for ``companion.train.train_vqvae``),
  :func:`evaluate_vqvae` and :func:`tokenize` (every image of a data set as its grid of code indices);
* :class:`CodePrior` (with :class:`PriorConfig`): a tiny causal transformer over the 49 code indices of an image,
  read in raster order, with :meth:`CodePrior.sample`; :func:`prior_loss` (for ``companion.train.train_prior``);

Shapes: images ``[B, 1, 28, 28]`` in ``[0, 1]``; encoder outputs ``z_e`` and quantised ``z_q``: ``[B, D, 7, 7]``
(``D = code_dim``); code indices ``[B, 7, 7]`` (long, in ``[0, K)``); the codebook ``[K, D]``; flattened vectors
``[N, D]`` with ``N = B * 7 * 7``; prior tokens ``[B, 49]`` (row-major: token ``t`` is grid cell
``(t // 7, t % 7)``). Introduced in chapter 12.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _shape
from .batching import check_input, map_batches
from .layers import TransformerBlock, causal_mask
from .losses import bernoulli_log_likelihood, codebook_loss, commitment_loss
from .metrics import codebook_usage, perplexity

__all__ = [
    "CodePrior",
    "PriorConfig",
    "VQVAE",
    "VQVAEConfig",
    "VectorQuantizer",
    "ema_update",
    "evaluate_prior",
    "evaluate_vqvae",
    "nearest_code",
    "prior_loss",
    "squared_distances",
    "straight_through",
    "tokenize",
    "vqvae_loss",
]


# ----------------------------------------------------------------------------------------------
# The functional core
# ----------------------------------------------------------------------------------------------


def squared_distances(z: Tensor, codebook: Tensor) -> Tensor:
    """Squared Euclidean distance of every vector to every code, ``||z_i - e_k||^2``, by expanding the square.

    Equation: ``||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2``: one matrix product ``z @ codebook.T`` does the work
    (``N K D`` multiply-adds) and no ``[N, K, D]`` difference tensor is ever built. The result can be slightly
    negative (by rounding) where ``z`` sits on a code.

    Args:
        z: ``[N, D]`` vectors; codebook: ``[K, D]`` codes.

    Returns:
        ``[N, K]``. Equals ``torch.cdist(z, codebook) ** 2`` up to rounding. Introduced in chapter 12.
    """
    if z.dim() != 2 or codebook.dim() != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"squared_distances: need z [N, D] and codebook [K, D] with the same D, "
                         f"got z {_shape(z)} and codebook {_shape(codebook)}")
    if z.dtype != codebook.dtype:
        raise TypeError(f"squared_distances: z is {z.dtype} but the codebook is {codebook.dtype}")
    z_sq = z.pow(2).sum(dim=1, keepdim=True)  # [N, 1]
    e_sq = codebook.pow(2).sum(dim=1)[None, :]  # [1, K]
    return z_sq - 2.0 * (z @ codebook.t()) + e_sq  # [N, 1] - [N, K] + [1, K] -> [N, K]


def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code for every vector: ``k*(z_i) = argmin_k ||z_i - e_k||^2`` (ties: lowest index).

    Args:
        z: ``[N, D]``; codebook: ``[K, D]``.

    Returns:
        ``[N]`` long. Introduced in chapter 12.
    """
    return squared_distances(z, codebook).argmin(dim=1)


def straight_through(z: Tensor, z_q: Tensor) -> Tensor:
    """The straight-through estimator: the value of ``z_q``, the gradient of ``z``.

    ``z + sg[z_q - z]`` equals ``z_q`` in the forward pass; in the backward pass the stop-gradient ``sg`` hides the
    difference, so ``d out / d z = I`` (the Jacobian of quantisation, zero almost everywhere, is replaced by the
    identity) and ``z_q`` receives no gradient through this path. Bengio et al. (2013); van den Oord et al.
    (2017), eq. 3. Shapes: any, equal. Introduced in chapter 12.
    """
    if z.shape != z_q.shape:
        raise ValueError(f"straight_through: z {_shape(z)} and z_q {_shape(z_q)} must have the same shape")
    return z + (z_q - z).detach()


def ema_update(cluster_size: Tensor, embed_sum: Tensor, z: Tensor, indices: Tensor, decay: float,
               eps: float = 1e-5) -> tuple[Tensor, Tensor, Tensor]:
    """One exponential-moving-average codebook step: online k-means (van den Oord et al. 2017, app. A.1).

    With ``n_k`` the number of vectors assigned to code k in this batch and ``s_k`` their sum:

    1. ``N_k <- decay * N_k + (1 - decay) * n_k`` (running count, ``cluster_size``);
    2. ``m_k <- decay * m_k + (1 - decay) * s_k`` (running sum, ``embed_sum``);
    3. Laplace smoothing, so a code with ``N_k = 0`` never divides by zero:
       ``N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j``;
    4. ``e_k = m_k / N~_k``, the running mean of the vectors the code was chosen for (the k-means M-step).

    Args:
        cluster_size: ``[K]`` running counts; embed_sum: ``[K, D]`` running sums.
        z: ``[N, D]`` this batch's vectors; indices: ``[N]`` long, their codes.
        decay: gamma in ``[0, 1)``; eps: the Laplace smoothing constant.

    Returns:
        ``(cluster_size [K], embed_sum [K, D], codebook [K, D])``, new tensors (the inputs are not modified).
        Introduced in chapter 12.
    """
    K, D = embed_sum.shape
    if cluster_size.shape != (K,) or z.dim() != 2 or z.shape[1] != D or indices.shape != (z.shape[0],):
        raise ValueError(f"ema_update: need cluster_size [K], embed_sum [K, D], z [N, D], indices [N]; got "
                         f"{_shape(cluster_size)}, {_shape(embed_sum)}, {_shape(z)}, {_shape(indices)}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    one_hot = F.one_hot(indices.long(), K).to(z.dtype)  # [N, K]
    n = one_hot.sum(dim=0)  # [K]: this batch's count per code
    s = one_hot.t() @ z  # [K, N] @ [N, D] -> [K, D]: this batch's sum per code
    cluster_size = decay * cluster_size + (1.0 - decay) * n
    embed_sum = decay * embed_sum + (1.0 - decay) * s
    total = cluster_size.sum()
    smoothed = (cluster_size + eps) / (total + K * eps) * total  # [K], same total, never 0
    return cluster_size, embed_sum, embed_sum / smoothed[:, None]


# ----------------------------------------------------------------------------------------------
# The vector quantiser
# ----------------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """Vector quantisation with a straight-through gradient (van den Oord et al. 2017).

    ``forward(z)`` replaces every vector ``z[b, :, h, w]`` by its nearest code ``e_k`` and returns
    ``(z_q, indices, loss)``:

    * ``z_q = z + sg[e_k - z]`` (:func:`straight_through`): the value of the code, the gradient of ``z``;
    * ``loss = ||sg[z] - e||^2 + beta ||z - sg[e]||^2`` (means over all elements): the *codebook* term moves the
      codes towards the encoder outputs, the *commitment* term keeps the encoder near its codes (eq. 3);
    * with ``ema=True`` the codes are not learned by gradient: in training mode each forward updates them as an
      exponential moving average of the vectors assigned to them (:func:`ema_update`, Laplace-smoothed), and the
      codebook term is dropped from the loss (only ``beta * commitment`` remains);
    * with ``reset_dead=True`` (training mode only) a code not chosen in ``dead_threshold`` consecutive training
      batches is re-initialised to a random encoder output of the current batch (Dhariwal et al. 2020, "Jukebox").

    Args:
        num_codes: K. code_dim: D, the channels of ``z``. beta: the commitment weight (0.25 in the paper).
        ema: EMA codebook instead of a learned one. decay: gamma of the EMA. eps: its Laplace smoothing.
        reset_dead: re-initialise dead codes. dead_threshold: batches without use before a code counts as dead.
        init_range: the codebook starts uniform in ``[-init_range, init_range]``; ``None`` means ``1/K``.

    The codebook ``[K, D]`` starts uniform in ``[-1/K, 1/K]`` by default (the common choice of VQ-VAE
    implementations); pass ``init_range`` to start codebooks of different sizes from the same range.
    With ``ema=True`` the codes are recomputed from the running sums at every training step: to set the codebook by
    hand, set ``embed_sum`` to ``codebook * cluster_size[:, None]`` as well.
    Shapes: ``z [B, D, H, W] -> z_q [B, D, H, W], indices [B, H, W] (long), loss []``. Introduced in chapter 12.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, reset_dead: bool = False, dead_threshold: int = 20,
                 init_range: float | None = None) -> None:
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"need num_codes >= 1 and code_dim >= 1, got {num_codes} and {code_dim}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if dead_threshold < 1:
            raise ValueError(f"dead_threshold must be >= 1, got {dead_threshold}")
        if init_range is not None and not init_range > 0:
            raise ValueError(f"init_range must be > 0 (or None for 1/K), got {init_range}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, float(beta)
        self.ema, self.decay, self.eps = bool(ema), float(decay), float(eps)
        self.reset_dead, self.dead_threshold = bool(reset_dead), int(dead_threshold)
        a = 1.0 / num_codes if init_range is None else float(init_range)
        init = torch.empty(num_codes, code_dim).uniform_(-a, a)
        if self.ema:  # updated by moving averages, not by the optimiser
            self.register_buffer("codebook", init)
            # The averages start as if every code had been chosen once, at its initial position.
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # Training batches since each code was last chosen (for the dead-code reset).
        self.register_buffer("unused_steps", torch.zeros(num_codes, dtype=torch.long))
        self.register_buffer("resets", torch.zeros((), dtype=torch.long))  # codes re-initialised so far

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, code_dim={self.code_dim}, beta={self.beta}, ema={self.ema}, "
                f"reset_dead={self.reset_dead}")

    def _check(self, z: Tensor) -> None:
        check_input("VectorQuantizer", "z", z, (None, self.code_dim, None, None), like=self.codebook)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``z [B, D, H, W] -> (z_q [B, D, H, W], indices [B, H, W] long, loss scalar)``."""
        self._check(z)
        B, D, H, W = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # [B, D, H, W] -> [B, H, W, D] -> [N, D]
        with torch.no_grad():
            indices = nearest_code(z_flat.detach(), self.codebook.detach())  # [N]
        e = F.embedding(indices, self.codebook)  # [N, D]: the chosen codes (differentiable w.r.t. the codebook)
        commitment = commitment_loss(z_flat, e)  # ||z - sg[e]||^2: trains the encoder
        if self.ema:
            loss = self.beta * commitment
        else:
            loss = codebook_loss(z_flat, e) + self.beta * commitment  # ||sg[z] - e||^2 trains the codes
        z_q_flat = straight_through(z_flat, e)  # value e, gradient of z
        if self.training:
            with torch.no_grad():
                self._update(z_flat.detach(), indices)
        z_q = z_q_flat.reshape(B, H, W, D).permute(0, 3, 1, 2)  # back to [B, D, H, W]
        return z_q, indices.reshape(B, H, W), loss

    @torch.no_grad()
    def _update(self, z_flat: Tensor, indices: Tensor) -> None:
        """Training-mode bookkeeping after a batch: EMA codebook step, unused-step counters, dead-code reset."""
        if self.ema:
            size, total, codebook = ema_update(self.cluster_size, self.embed_sum, z_flat, indices, self.decay, self.eps)
            self.cluster_size.copy_(size)
            self.embed_sum.copy_(total)
            self.codebook.copy_(codebook)
        used = torch.bincount(indices, minlength=self.num_codes) > 0
        self.unused_steps.add_(1).masked_fill_(used, 0)
        if not self.reset_dead:
            return
        dead = (self.unused_steps >= self.dead_threshold).nonzero().flatten()
        if dead.numel() == 0:
            return
        n = z_flat.shape[0]
        pick = torch.randperm(n, device=z_flat.device)[:dead.numel()] if n >= dead.numel() else \
            torch.randint(0, n, (dead.numel(),), device=z_flat.device)
        fresh = z_flat[pick]  # [n_dead, D]: random encoder outputs of this batch
        self.codebook.data[dead] = fresh
        if self.ema:  # restart the code's averages at its new position, as if chosen once there
            self.cluster_size[dead] = 1.0
            self.embed_sum[dead] = fresh
        self.unused_steps[dead] = 0
        self.resets.add_(dead.numel())

    def lookup(self, indices: Tensor) -> Tensor:
        """Codes for a grid of indices: ``[B, H, W]`` long -> ``[B, D, H, W]`` (what the decoder reads)."""
        if indices.dim() != 3:
            raise ValueError(f"lookup expects indices [B, H, W], got {_shape(indices)}")
        if indices.is_floating_point() or indices.dtype == torch.bool:
            raise TypeError(f"lookup: indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)  # [B, H, W, D] -> [B, D, H, W]


# ----------------------------------------------------------------------------------------------
# The VQ-VAE
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VQVAEConfig:
    """Sizes of a :class:`VQVAE` for 28x28 images (a 7x7 grid of codes).

    ``hidden``: channels of the encoder/decoder; ``res_blocks``: residual blocks at 7x7 on each side; the rest are
    the :class:`VectorQuantizer`'s arguments (``init_range=None``: the codebook starts in ``[-1/K, 1/K]``).
    Introduced in chapter 12.
    """

    in_channels: int = 1
    hidden: int = 64
    res_blocks: int = 1
    code_dim: int = 16
    num_codes: int = 128
    beta: float = 0.25
    ema: bool = False
    decay: float = 0.99
    reset_dead: bool = True
    dead_threshold: int = 20
    init_range: float | None = None

    def __post_init__(self) -> None:
        if self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"hidden must be even and >= 2, got {self.hidden}")
        if self.res_blocks < 0:
            raise ValueError(f"res_blocks must be >= 0, got {self.res_blocks}")

    @classmethod
    def tiny(cls, **overrides: Any) -> VQVAEConfig:
        """A small preset for tests, the ci profile and the chapter's sweep: 32 channels, no residual blocks."""
        return cls(**{"hidden": 32, "res_blocks": 0, **overrides})

    def replace(self, **changes: Any) -> VQVAEConfig:
        return replace(self, **changes)


class ResBlock(nn.Module):
    """``x + Conv1x1(ReLU(Conv3x3(ReLU(x))))``, the residual block of the VQ-VAE paper (sec. 4.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class VQVAE(nn.Module):
    """A VQ-VAE for 28x28 images (van den Oord et al. 2017): encoder -> vector quantiser -> decoder.

    Encoder: ``Conv 4x4/2 (28 -> 14) -> ReLU -> Conv 4x4/2 (14 -> 7) -> [ResBlock] -> ReLU -> Conv 1x1 -> z_e
    [B, D, 7, 7]``. Decoder (the mirror): ``Conv 3x3 -> [ResBlock] -> ReLU -> ConvT 4x4/2 (7 -> 14) -> ReLU ->
    ConvT 4x4/2 (14 -> 28)``, giving Bernoulli logits ``[B, 1, 28, 28]``. Each image becomes 49 code indices.

    ``forward(x)`` returns ``(logits, indices, vq_loss)``. Introduced in chapter 12.
    """

    def __init__(self, config: VQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or VQVAEConfig()
        h = c.hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(c.in_channels, h // 2, 4, stride=2, padding=1), nn.ReLU(),  # [B, h/2, 14, 14]
            nn.Conv2d(h // 2, h, 4, stride=2, padding=1),  # [B, h, 7, 7]
            *[ResBlock(h) for _ in range(c.res_blocks)], nn.ReLU(),
            nn.Conv2d(h, c.code_dim, 1),  # [B, D, 7, 7]: one code vector per cell
        )
        self.quantizer = VectorQuantizer(c.num_codes, c.code_dim, beta=c.beta, ema=c.ema, decay=c.decay,
                                         reset_dead=c.reset_dead, dead_threshold=c.dead_threshold,
                                         init_range=c.init_range)
        self.decoder = nn.Sequential(
            nn.Conv2d(c.code_dim, h, 3, padding=1),  # [B, h, 7, 7]
            *[ResBlock(h) for _ in range(c.res_blocks)], nn.ReLU(),
            nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1), nn.ReLU(),  # [B, h/2, 14, 14]
            nn.ConvTranspose2d(h // 2, c.in_channels, 4, stride=2, padding=1),  # [B, 1, 28, 28] logits
        )

    #: the grid of codes a 28x28 image becomes (two stride-2 convolutions: 28 -> 14 -> 7)
    grid = (7, 7)

    def encode(self, x: Tensor) -> Tensor:
        """``x [B, 1, 28, 28] -> z_e [B, D, 7, 7]`` (continuous, before quantisation)."""
        check_input("VQVAE.encode", "x", x, (None, self.config.in_channels, 28, 28), like=self.quantizer.codebook)
        return self.encoder(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, 1, 28, 28] -> (logits [B, 1, 28, 28], indices [B, 7, 7], vq_loss scalar)``."""
        z_q, indices, vq_loss = self.quantizer(self.encode(x))
        return self.decoder(z_q), indices, vq_loss

    @torch.no_grad()
    def encode_indices(self, x: Tensor) -> Tensor:
        """``x [B, 1, 28, 28] -> indices [B, 7, 7]``: the image as 49 tokens (no codebook update)."""
        z = self.encode(x)
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        return nearest_code(z_flat, self.quantizer.codebook).reshape(z.shape[0], z.shape[2], z.shape[3])

    def decode_indices(self, indices: Tensor) -> Tensor:
        """``indices [B, 7, 7] -> logits [B, 1, 28, 28]``: decode a grid of tokens (e.g. sampled by a prior)."""
        if not isinstance(indices, Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            got = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
            raise TypeError(f"VQVAE.decode_indices: indices must be an integer tensor [B, 7, 7], got {got}")
        if indices.dim() != 3 or tuple(indices.shape[1:]) != self.grid:
            raise ValueError(f"VQVAE.decode_indices: indices must be [B, {self.grid[0]}, {self.grid[1]}] (the grid "
                             f"of a 28x28 image), got {_shape(indices)}")
        return self.decoder(self.quantizer.lookup(indices))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """``x -> sigmoid(decoder(quantise(encoder(x))))`` in ``[0, 1]``, without touching the codebook."""
        return torch.sigmoid(self.decode_indices(self.encode_indices(x)))


def vqvae_loss(model: VQVAE, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """The VQ-VAE objective on a batch ``(x, ...)``: reconstruction + VQ loss, for :func:`companion.train.fit`.

    ``recon = -log p(x | z_q) / (number of pixels)`` with a Bernoulli decoder
    (:func:`companion.losses.bernoulli_log_likelihood`, i.e. binary cross-entropy per pixel), plus the quantiser's
    codebook and commitment
    terms. Also reports the batch's ``usage`` and ``perplexity``. Introduced in chapter 12.
    """
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    logits, indices, vq = model(x)
    recon = -bernoulli_log_likelihood(logits, x).mean() / x[0].numel()
    K = model.config.num_codes
    return recon + vq, {"recon": recon.item(), "vq": vq.item(), "usage": codebook_usage(indices, K),
                        "perplexity": perplexity(indices, K)}


@torch.no_grad()
def evaluate_vqvae(model: VQVAE, x: Tensor, batch_size: int = 500) -> dict[str, float]:
    """Held-out metrics of a :class:`VQVAE` on images ``x [N, 1, 28, 28]`` (eval mode, codebook untouched).

    Returns ``mse`` (per pixel, of ``sigmoid(logits)``), ``bce`` (per pixel), ``usage`` and ``perplexity`` of the
    codes chosen for ``x``. Introduced in chapter 12.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sq = ce = 0.0
    all_idx = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        idx = model.encode_indices(xb)
        logits = model.decode_indices(idx)
        sq += F.mse_loss(torch.sigmoid(logits), xb, reduction="sum").item()
        ce += -bernoulli_log_likelihood(logits, xb).sum().item()
        all_idx.append(idx.cpu())
    model.train(was_training)
    idx = torch.cat(all_idx)
    n = x.numel()
    K = model.config.num_codes
    return {"mse": sq / n, "bce": ce / n, "usage": codebook_usage(idx, K), "perplexity": perplexity(idx, K)}


def tokenize(model: VQVAE, x: Tensor, batch_size: int = 500) -> Tensor:
    """Every image as its grid of code indices: ``x [N, 1, 28, 28] -> [N, 7, 7]`` long (the prior's training data).

    :meth:`VQVAE.encode_indices` in batches, in eval mode (the codebook is not touched). Introduced in chapter 12.
    """
    return map_batches(model, model.encode_indices, x, batch_size=batch_size)


# ----------------------------------------------------------------------------------------------
# An autoregressive prior over the codes: a tiny causal transformer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of a :class:`CodePrior`: ``num_codes`` K, grid ``height x width`` (49 tokens), width ``dim``,
    ``depth`` blocks of ``heads`` heads, MLP ratio. Introduced in chapter 12."""

    num_codes: int = 128
    height: int = 7
    width: int = 7
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.num_codes < 1 or self.height < 1 or self.width < 1:
            raise ValueError(f"need num_codes, height, width >= 1, got {self.num_codes}, {self.height}, {self.width}")
        if self.dim % self.heads:
            raise ValueError(f"heads {self.heads} does not divide dim {self.dim}")

    @property
    def seq_len(self) -> int:
        return self.height * self.width

    @classmethod
    def tiny(cls, **overrides: Any) -> PriorConfig:
        """A small preset for tests and the ci profile: D = 32, two blocks, two heads."""
        return cls(**{"dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, **overrides})


class CodePrior(nn.Module):
    """An autoregressive prior over a grid of code indices: ``p(k) = prod_t p(k_t | k_<t)``, a tiny causal
    transformer (a GPT, as in the VQGAN "taming transformers" of Esser et al. 2021).

    The grid is read in raster order (row by row). The input is ``[BOS, k_0, ..., k_{T-2}]`` (BOS = token ``K``),
    embedded with learned token and position embeddings; a causal mask lets position t see only positions <= t,
    so ``logits[:, t]`` is the distribution of ``k_t`` given ``k_0..k_{t-1}``: one forward pass scores all 49
    conditionals (teacher forcing), and :meth:`sample` draws the tokens one at a time. The blocks are chapter 08's
    :class:`companion.layers.TransformerBlock` with :func:`companion.layers.causal_mask`.

    Shapes: ``forward(indices [B, T] or [B, H, W]) -> logits [B, T, K]``. Introduced in chapter 12.
    """

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or PriorConfig()
        self.tok = nn.Embedding(c.num_codes + 1, c.dim)  # + 1: the BOS token
        self.pos = nn.Parameter(torch.zeros(1, c.seq_len, c.dim))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.tok.weight, std=0.02)
        # chapter 08's pre-LN block; the causal mask below makes it autoregressive
        self.blocks = nn.ModuleList(TransformerBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_codes)
        self.register_buffer("causal", causal_mask(c.seq_len), persistent=False)  # [T, T]: t reads 0..t

    def _logits(self, tokens: Tensor) -> Tensor:
        """``tokens [B, t]`` (starting with BOS) -> logits ``[B, t, K]`` for the next token at each position."""
        T = tokens.shape[1]
        z = self.tok(tokens) + self.pos[:, :T]  # [B, t, D]
        for block in self.blocks:
            z = block(z, mask=self.causal[:T, :T])
        return self.head(self.ln(z))

    def forward(self, indices: Tensor) -> Tensor:
        """``indices [B, T]`` or ``[B, H, W]`` (long) -> logits ``[B, T, K]``; ``logits[:, t]`` predicts ``k_t``."""
        c = self.config
        seq = indices.reshape(indices.shape[0], -1) if indices.dim() == 3 else indices
        if seq.dim() != 2 or seq.shape[1] != c.seq_len:
            raise ValueError(f"CodePrior expects indices [B, {c.seq_len}] or [B, {c.height}, {c.width}], "
                             f"got {_shape(indices)}")
        if seq.is_floating_point() or (seq.numel() and (int(seq.min()) < 0 or int(seq.max()) >= c.num_codes)):
            raise ValueError(f"CodePrior: indices must be integers in [0, {c.num_codes})")
        bos = torch.full((seq.shape[0], 1), c.num_codes, dtype=torch.long, device=seq.device)
        return self._logits(torch.cat([bos, seq[:, :-1].long()], dim=1))  # shift right by one

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` grids of codes, token by token: ``k_t ~ softmax(logits_t / temperature)``.

        Returns ``[n, H, W]`` long. ``temperature < 1`` sharpens every conditional (likelier, less varied
        samples). ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        c = self.config
        device = self.pos.device
        was_training = self.training
        self.eval()
        tokens = torch.full((n, 1), c.num_codes, dtype=torch.long, device=device)  # [n, 1]: BOS
        for _ in range(c.seq_len):
            logits = self._logits(tokens)[:, -1] / temperature  # [n, K]: the next token's distribution
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)  # [n, 1]
            tokens = torch.cat([tokens, nxt], dim=1)
        self.train(was_training)
        return tokens[:, 1:].reshape(n, c.height, c.width)


def prior_loss(model: CodePrior, batch: Any) -> tuple[Tensor, dict[str, float]]:
    """Mean negative log-likelihood per token (nats) of a batch of code grids; also ``bits_per_image``."""
    idx = batch[0] if isinstance(batch, (list, tuple)) else batch
    logits = model(idx)  # [B, T, K]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx.reshape(-1))
    return nll, {"bits_per_image": nll.item() * model.config.seq_len / math.log(2)}


@torch.no_grad()
def evaluate_prior(model: CodePrior, indices: Tensor, batch_size: int = 500) -> dict[str, float]:
    """Held-out NLL of code grids ``[N, H, W]``: ``nats_per_token`` and ``bits_per_image`` (49 tokens).

    Compare ``bits_per_image`` with ``49 log2 K``, the cost of a uniform prior. Introduced in chapter 12.
    """
    was_training = model.training
    model.eval()
    device = model.pos.device
    total = 0.0
    for i in range(0, len(indices), batch_size):
        idx = indices[i:i + batch_size].to(device)
        logits = model(idx)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx.reshape(-1), reduction="sum").item()
    model.train(was_training)
    per_token = total / indices.numel()
    return {"nats_per_token": per_token, "bits_per_image": per_token * model.config.seq_len / math.log(2)}


def config_dict(model: VQVAE | CodePrior) -> dict[str, Any]:
    """The model's config as a plain dict (for printing)."""
    return asdict(model.config)
