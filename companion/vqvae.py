"""Discrete latents: the vector quantiser, the VQ-VAE and an autoregressive prior over its codes.

Read top to bottom (smallest piece first, the nanoGPT order):

* the functional core of vector quantisation (van den Oord et al. 2017, "Neural Discrete Representation
  Learning"): :func:`squared_distances` (the expanded ``||z||^2 - 2 z.e + ||e||^2`` form),
  :func:`nearest_code`, :func:`straight_through` (the straight-through estimator, Bengio et al. 2013),
  :func:`ema_update` (the codebook as an exponential moving average of cluster sums and counts: online k-means,
  van den Oord et al. 2017 appendix A.1 / Razavi et al. 2019), and the diagnostics :func:`codebook_usage` and
  :func:`perplexity`;
* :class:`VectorQuantizer`, the layer: nearest code, straight-through gradient, codebook + commitment loss, an
  optional EMA codebook and dead-code reset;
* :class:`VQVAE` (with :class:`VQVAEConfig`): a convolutional encoder from a 28x28 image to a 7x7 grid of code
  vectors and a transposed-convolution decoder back; :func:`vqvae_loss` (trained by
  ``companion.train.train_vqvae``), :func:`evaluate_vqvae`;
* :class:`CodePrior` (with :class:`PriorConfig`): a tiny causal transformer over the 49 code indices of an image,
  read in raster order, with :meth:`CodePrior.sample`; :func:`prior_loss` (``companion.train.train_prior``);
* the shipped checkpoints ``vqvae_mnist`` and ``vqvae_prior_mnist`` (see ``companion.hub``):
  :func:`build_hub_vqvae` / :func:`train_hub_vqvae` and :func:`build_hub_prior` / :func:`train_hub_prior`.

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

from .losses import bernoulli_log_likelihood
from .vit import MLP, MultiHeadAttention

__all__ = [
    "HUB_CONFIG",
    "PRIOR_CONFIG",
    "CodePrior",
    "PriorConfig",
    "VQVAE",
    "VQVAEConfig",
    "VectorQuantizer",
    "build_hub_prior",
    "build_hub_vqvae",
    "codebook_usage",
    "ema_update",
    "encode_dataset",
    "evaluate_prior",
    "evaluate_vqvae",
    "nearest_code",
    "perplexity",
    "prior_loss",
    "squared_distances",
    "straight_through",
    "train_hub_prior",
    "train_hub_vqvae",
    "vqvae_loss",
]


def _shape(t: Tensor) -> str:
    return str(list(t.shape))


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


def codebook_usage(indices: Tensor, num_codes: int) -> float:
    """Fraction of the ``num_codes`` codes that occur at least once in ``indices`` (any shape, long).

    1.0 means every code was chosen; a codebook with dead codes scores less. Introduced in chapter 12.
    """
    counts = _counts(indices, num_codes)
    return float((counts > 0).float().mean())


def perplexity(indices: Tensor, num_codes: int) -> float:
    """``exp(H(p))`` of the average code usage ``p_k = (# of k in indices) / N``: the effective number of codes.

    ``exp(-sum_k p_k log p_k)`` with ``0 log 0 = 0``. It is ``K'`` when ``K'`` codes are used equally often,
    1 when one code takes everything, and never above ``num_codes``. Introduced in chapter 12.
    """
    counts = _counts(indices, num_codes).double()
    p = counts / counts.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum()  # 0 log 0 = 0: p = 0 makes the product 0
    return float(entropy.exp())


def _counts(indices: Tensor, num_codes: int) -> Tensor:
    if num_codes < 1:
        raise ValueError(f"num_codes must be >= 1, got {num_codes}")
    if indices.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype} (shape {_shape(indices)})")
    flat = indices.reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("indices is empty: usage and perplexity need at least one code index")
    if int(flat.min()) < 0 or int(flat.max()) >= num_codes:
        raise ValueError(f"indices must lie in [0, {num_codes}), got range [{int(flat.min())}, {int(flat.max())}]")
    return torch.bincount(flat, minlength=num_codes)


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

    The codebook ``[K, D]`` starts uniform in ``[-1/K, 1/K]`` (the common choice of VQ-VAE implementations).
    With ``ema=True`` the codes are recomputed from the running sums at every training step: to set the codebook by
    hand, set ``embed_sum`` to ``codebook * cluster_size[:, None]`` as well.
    Shapes: ``z [B, D, H, W] -> z_q [B, D, H, W], indices [B, H, W] (long), loss []``. Introduced in chapter 12.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, reset_dead: bool = False, dead_threshold: int = 20) -> None:
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
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, float(beta)
        self.ema, self.decay, self.eps = bool(ema), float(decay), float(eps)
        self.reset_dead, self.dead_threshold = bool(reset_dead), int(dead_threshold)
        init = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
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
        if not isinstance(z, Tensor) or z.dim() != 4:
            shape = _shape(z) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"VectorQuantizer expects z [B, C, H, W], got {shape}")
        if z.shape[1] != self.code_dim:
            raise ValueError(f"VectorQuantizer: z {_shape(z)} has C = {z.shape[1]} channels but code_dim = "
                             f"{self.code_dim} (codebook [K, D] = {_shape(self.codebook)})")
        if not z.is_floating_point():
            raise ValueError(f"VectorQuantizer: z {_shape(z)} must be floating point, got {z.dtype}")

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``z [B, D, H, W] -> (z_q [B, D, H, W], indices [B, H, W] long, loss scalar)``."""
        self._check(z)
        B, D, H, W = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # [B, D, H, W] -> [B, H, W, D] -> [N, D]
        with torch.no_grad():
            indices = nearest_code(z_flat.detach(), self.codebook.detach())  # [N]
        e = F.embedding(indices, self.codebook)  # [N, D]: the chosen codes (differentiable w.r.t. the codebook)
        commitment = F.mse_loss(z_flat, e.detach())  # ||z - sg[e]||^2: trains the encoder
        if self.ema:
            loss = self.beta * commitment
        else:
            loss = F.mse_loss(e, z_flat.detach()) + self.beta * commitment  # ||sg[z] - e||^2 trains the codes
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
    the :class:`VectorQuantizer`'s arguments. Introduced in chapter 12.
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
                                         reset_dead=c.reset_dead, dead_threshold=c.dead_threshold)
        self.decoder = nn.Sequential(
            nn.Conv2d(c.code_dim, h, 3, padding=1),  # [B, h, 7, 7]
            *[ResBlock(h) for _ in range(c.res_blocks)], nn.ReLU(),
            nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1), nn.ReLU(),  # [B, h/2, 14, 14]
            nn.ConvTranspose2d(h // 2, c.in_channels, 4, stride=2, padding=1),  # [B, 1, 28, 28] logits
        )

    def encode(self, x: Tensor) -> Tensor:
        """``x [B, 1, 28, 28] -> z_e [B, D, 7, 7]`` (continuous, before quantisation)."""
        if x.dim() != 4 or x.shape[1:] != (self.config.in_channels, 28, 28):
            raise ValueError(f"VQVAE expects images [B, {self.config.in_channels}, 28, 28], got {_shape(x)}")
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


@torch.no_grad()
def encode_dataset(model: VQVAE, x: Tensor, batch_size: int = 500) -> Tensor:
    """Code indices of every image: ``x [N, 1, 28, 28] -> [N, 7, 7]`` long (the prior's training data)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model.encode_indices(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


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


class CausalBlock(nn.Module):
    """A pre-LN transformer block whose attention only looks back: ``z + MHA(LN z, causal)``, ``z + MLP(LN z)``.

    The attention is chapter 08's :class:`companion.vit.MultiHeadAttention` with a lower-triangular boolean mask
    (token t may read tokens 0..t). Introduced in chapter 12.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads)
        self.ln2, self.mlp = nn.LayerNorm(dim), MLP(dim, int(round(mlp_ratio * dim)))

    def forward(self, z: Tensor, causal: Tensor) -> Tensor:
        z = z + self.attn(self.ln1(z), attn_mask=causal)
        return z + self.mlp(self.ln2(z))


class CodePrior(nn.Module):
    """An autoregressive prior over a grid of code indices: ``p(k) = prod_t p(k_t | k_<t)``, a tiny causal
    transformer (a GPT, as in the VQGAN "taming transformers" of Esser et al. 2021).

    The grid is read in raster order (row by row). The input is ``[BOS, k_0, ..., k_{T-2}]`` (BOS = token ``K``),
    embedded with learned token and position embeddings; a causal mask lets position t see only positions <= t,
    so ``logits[:, t]`` is the distribution of ``k_t`` given ``k_0..k_{t-1}``: one forward pass scores all 49
    conditionals (teacher forcing), and :meth:`sample` draws the tokens one at a time.

    Shapes: ``forward(indices [B, T] or [B, H, W]) -> logits [B, T, K]``. Introduced in chapter 12.
    """

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or PriorConfig()
        self.tok = nn.Embedding(c.num_codes + 1, c.dim)  # + 1: the BOS token
        self.pos = nn.Parameter(torch.zeros(1, c.seq_len, c.dim))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.blocks = nn.ModuleList(CausalBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.ln = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.num_codes)
        self.register_buffer("causal", torch.ones(c.seq_len, c.seq_len, dtype=torch.bool).tril(), persistent=False)

    def _logits(self, tokens: Tensor) -> Tensor:
        """``tokens [B, t]`` (starting with BOS) -> logits ``[B, t, K]`` for the next token at each position."""
        T = tokens.shape[1]
        z = self.tok(tokens) + self.pos[:, :T]  # [B, t, D]
        for block in self.blocks:
            z = block(z, self.causal[:T, :T])
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


# ----------------------------------------------------------------------------------------------
# The shipped checkpoints ``vqvae_mnist`` and ``vqvae_prior_mnist`` (companion.hub recipes)
# ----------------------------------------------------------------------------------------------

#: The shipped VQ-VAE: 64 channels, one residual block per side, K = 128 codes of D = 16, dead-code reset.
HUB_CONFIG = VQVAEConfig(hidden=64, res_blocks=1, code_dim=16, num_codes=128, reset_dead=True)
#: The shipped prior over its 7x7 codes: D = 64, two blocks, four heads, MLP ratio 2.
PRIOR_CONFIG = PriorConfig(num_codes=HUB_CONFIG.num_codes, dim=64, depth=2, heads=4, mlp_ratio=2.0)
_HUB_STEPS = {"ci": 60, "cpu": 2000, "gpu": 8000}
_PRIOR_STEPS = {"ci": 60, "cpu": 1500, "gpu": 8000}
_BATCH = 64


def _check_profile(profile: str) -> str:
    if profile not in ("ci", "cpu", "gpu"):
        raise ValueError(f"profile must be 'ci', 'cpu' or 'gpu', got {profile!r}")
    return "cuda" if profile == "gpu" and torch.cuda.is_available() else "cpu"


def build_hub_vqvae() -> VQVAE:
    """The untrained model of checkpoint ``vqvae_mnist``: ``VQVAE(HUB_CONFIG)``. Introduced in chapter 12."""
    torch.manual_seed(0)
    return VQVAE(HUB_CONFIG)


def train_hub_vqvae(profile: str = "cpu") -> tuple[VQVAE, dict[str, Any]]:
    """Train checkpoint ``vqvae_mnist`` at ``profile`` and return ``(model, card info)``.

    The recipe: :func:`build_hub_vqvae`; Adam (lr 2e-3), warm-up then cosine decay, batch 64, seed 0, on the
    training split of :func:`companion.data.mnist_splits` (offline: MNIST-test[:8000]); metrics on the held-out
    split: codebook usage, perplexity, reconstruction MSE and BCE per pixel. Introduced in chapter 12.
    """
    from . import data
    from .train import train_vqvae

    device = _check_profile(profile)
    train, test, desc = data.mnist_splits(profile, n_train=2000 if profile == "ci" else None)
    steps = _HUB_STEPS[profile]
    model = build_hub_vqvae()
    history = train_vqvae(model, train, vqvae_loss, steps=steps, batch_size=_BATCH, lr=2e-3, seed=0, device=device,
                          desc=f"vqvae_mnist ({profile})")
    model = model.cpu().eval()
    m = evaluate_vqvae(model, test.tensors[0])
    c = HUB_CONFIG
    info = {
        "description": f"VQ-VAE on MNIST, chapter 12: conv encoder 28x28 -> 7x7 grid of D={c.code_dim} vectors "
                       f"({c.hidden} channels, {c.res_blocks} residual block per side), K={c.num_codes} codes, "
                       f"beta={c.beta}, codebook learned by gradient, dead-code reset after {c.dead_threshold} unused "
                       f"batches ({int(model.quantizer.resets)} resets); Bernoulli decoder; Adam lr 2e-3, warm-up + "
                       f"cosine, batch {_BATCH}, {steps} steps over {len(train)} images, seed 0. Metrics on the held-out "
                       f"split ({len(test)} images): codebook_usage and perplexity of the codes chosen for them, "
                       f"per-pixel reconstruction MSE and BCE.",
        "data": desc,
        "steps": int(history.train[-1]["step"]),
        "metrics": {"codebook_usage": round(m["usage"], 4), "perplexity": round(m["perplexity"], 2),
                    "test_mse": round(m["mse"], 5), "test_bce": round(m["bce"], 5)},
    }
    return model, info


def build_hub_prior() -> CodePrior:
    """The untrained model of checkpoint ``vqvae_prior_mnist``: ``CodePrior(PRIOR_CONFIG)``. Chapter 12."""
    torch.manual_seed(0)
    return CodePrior(PRIOR_CONFIG)


def train_hub_prior(profile: str = "cpu") -> tuple[CodePrior, dict[str, Any]]:
    """Train checkpoint ``vqvae_prior_mnist``: the causal transformer over the codes of the shipped ``vqvae_mnist``.

    Loads ``vqvae_mnist`` with :func:`companion.hub.load_model` (its sha256 is checked and written on the card),
    encodes the training images to 7x7 code grids, and trains :func:`build_hub_prior` with AdamW (lr 1e-3,
    weight decay 0.01), warm-up then cosine decay, batch 64, seed 0. Metric: held-out negative log-likelihood
    in bits per image (49 tokens) against the uniform prior's ``49 log2 K``. Introduced in chapter 12.
    """
    from . import data, hub
    from .train import train_prior

    device = _check_profile(profile)
    vq = hub.load_model("vqvae_mnist")
    vq_sha = hub.card("vqvae_mnist")["sha256"]
    train, test, desc = data.mnist_splits(profile, n_train=2000 if profile == "ci" else None)
    train_idx, test_idx = encode_dataset(vq, train.tensors[0]), encode_dataset(vq, test.tensors[0])
    steps = _PRIOR_STEPS[profile]
    model = build_hub_prior()
    history = train_prior(model, train_idx, prior_loss, steps=steps, batch_size=_BATCH, lr=1e-3, seed=0, device=device,
                          desc=f"vqvae_prior_mnist ({profile})")
    model = model.cpu().eval()
    m = evaluate_prior(model, test_idx)
    c = PRIOR_CONFIG
    uniform = c.seq_len * math.log2(c.num_codes)
    info = {
        "description": f"Autoregressive prior over the 7x7 codes of vqvae_mnist (sha256 {vq_sha}), chapter 12: a "
                       f"causal transformer (GPT) over the 49 tokens in raster order with a BOS token, D={c.dim}, "
                       f"{c.depth} pre-LN blocks, {c.heads} heads, MLP ratio {c.mlp_ratio:g}, learned positions; "
                       f"AdamW lr 1e-3, wd 0.01, warm-up + cosine, batch {_BATCH}, {steps} steps over the codes of "
                       f"{len(train)} images, seed 0. Metric: held-out NLL of the codes of {len(test)} images in "
                       f"bits per image (uniform prior: {uniform:.1f} bits).",
        "data": desc + f"; codes from vqvae_mnist sha256 {vq_sha[:12]}",
        "steps": int(history.train[-1]["step"]),
        "metrics": {"test_bits_per_image": round(m["bits_per_image"], 2),
                    "test_nats_per_token": round(m["nats_per_token"], 4),
                    "uniform_bits_per_image": round(uniform, 2)},
    }
    return model, info


def config_dict(model: VQVAE | CodePrior) -> dict[str, Any]:
    """The model's config as a plain dict (for printing)."""
    return asdict(model.config)
