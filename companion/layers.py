"""Reusable blocks, written from scratch: normalisation, positional encodings, attention, the transformer block.

Read top to bottom, smallest piece first (the nanoGPT order):

* batch normalisation: the functional :func:`batch_norm_2d` (training mode) and the layer :class:`BatchNorm2d`
  (running statistics for evaluation), one computation shared by both (chapter 05);
* positional encodings: sinusoidal (:func:`sincos_1d`, :func:`sinusoidal_encoding`, :func:`sincos_2d`) and
  rotary (:func:`rope_angles_1d`, :func:`rope_angles_2d`, :func:`apply_rotary`, :func:`apply_rope_2d`)
  (chapter 08);
* :class:`MultiHeadAttention` on top of ``companion.ops.scaled_dot_product_attention`` (equal to
  ``torch.nn.MultiheadAttention`` after :meth:`MultiHeadAttention.load_torch`), the position-wise
  :class:`FeedForward`, and the pre-LayerNorm :class:`TransformerBlock` with an optional attention mask
  (:func:`causal_mask`): the ViT's block (chapter 08) and, with a causal mask, the VQ-VAE prior's (chapter 12).

Parameters and buffers carry the names of their ``torch.nn`` counterparts where one exists (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), so state dicts load both ways.
Shapes: images ``[B, C, H, W]``; tokens ``[B, T, D]``; per head ``[B, h, T, d]`` with ``d = D / h``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from ._checks import _check_float, _check_tensor, _shape

__all__ = [
    "BatchNorm2d",
    "FeedForward",
    "MultiHeadAttention",
    "TransformerBlock",
    "apply_rope_2d",
    "apply_rotary",
    "batch_norm_2d",
    "causal_mask",
    "rope_angles_1d",
    "rope_angles_2d",
    "sincos_1d",
    "sincos_2d",
    "sinusoidal_encoding",
]


# ----------------------------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------------------------


def _batch_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``x [B, C, H, W]`` over (B, H, W): ``([C], [C])``."""
    return x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), correction=0)  # divide by m, not m - 1


def _normalise(x: Tensor, mean: Tensor, var: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with the per-channel ``[C]`` vectors broadcast over x."""
    x_hat = (x - mean[None, :, None, None]) * torch.rsqrt(var + eps)[None, :, None, None]  # [B, C, H, W]
    return x_hat * gamma[None, :, None, None] + beta[None, :, None, None]


def batch_norm_2d(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """Batch normalisation in training mode (Ioffe & Szegedy 2015, Algorithm 1) for ``x [B, C, H, W]``.

    Per channel ``c``, over the ``m = B H W`` values of the batch::

        mu_c      = 1/m sum x[:, c]                      # batch mean
        sigma^2_c = 1/m sum (x[:, c] - mu_c)^2           # biased batch variance (divide by m, not m - 1)
        x_hat     = (x - mu_c) / sqrt(sigma^2_c + eps)   # zero mean, unit variance per channel
        y         = gamma_c x_hat + beta_c               # scale and shift, learned

    Equal to ``F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)`` and to the training step of
    :class:`BatchNorm2d` (the same computation, which also updates the running statistics).

    Args:
        x: ``[B, C, H, W]`` floating point.
        gamma, beta: ``[C]``.

    Returns:
        ``[B, C, H, W]``. Introduced in chapter 05.
    """
    _check_tensor("batch_norm_2d", x, "x", "a tensor [B, C, H, W]")
    if x.dim() != 4:
        raise ValueError(f"batch_norm_2d expects [B, C, H, W], got shape {tuple(x.shape)}")
    _check_float("batch_norm_2d", x)
    if gamma.shape != (x.shape[1],) or beta.shape != (x.shape[1],):
        raise ValueError(f"gamma and beta must be [C] = [{x.shape[1]}], got {tuple(gamma.shape)} and "
                         f"{tuple(beta.shape)}")
    return _normalise(x, *_batch_statistics(x), gamma, beta, eps)


class BatchNorm2d(nn.Module):
    """Batch normalisation for [B, C, H, W] activations (Ioffe & Szegedy 2015, Algorithm 1).

    Training, per channel c, over the B*H*W values of the batch::

        mu_c     = mean(x[:, c])                       # batch mean
        sigma2_c = mean((x[:, c] - mu_c)^2)            # biased batch variance (divide by n)
        y        = gamma_c * (x - mu_c) / sqrt(sigma2_c + eps) + beta_c
        running_mean <- (1 - momentum) * running_mean + momentum * mu_c
        running_var  <- (1 - momentum) * running_var  + momentum * sigma2_c * n / (n - 1)

    The running variance uses the unbiased estimate (divide by n - 1), as PyTorch does. With
    ``momentum=None`` the running statistics are the cumulative average over all batches seen
    (momentum = 1 / num_batches_tracked). Evaluation (``model.eval()``) normalises with the
    running statistics instead of the batch's, so the output of one image no longer depends on
    the rest of the batch.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability.
        momentum: weight of the newest batch in the running statistics, or None.

    Shapes: input and output [B, C, H, W]; ``weight`` (gamma) and ``bias`` (beta) are [C]. In training mode the
    output is :func:`batch_norm_2d`.

    Introduced in chapter 05.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma: [C]
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta: [C]
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """Forget the running statistics (mean 0, variance 1, no batches seen)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Running statistics reset, gamma = 1, beta = 0."""
        self.reset_running_stats()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"BatchNorm2d expects a 4-D input [B, C, H, W], got shape {list(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) got input of shape {list(x.shape)} with "
                f"{x.shape[1]} channels, expected {self.num_features}"
            )
        if self.training:
            n = x.numel() // x.shape[1]  # values per channel: B*H*W
            if n <= 1:
                raise ValueError(
                    f"BatchNorm2d needs more than 1 value per channel when training, got input {list(x.shape)}"
                )
            mean, var = _batch_statistics(x)  # mu, sigma^2 (biased): [C] each
            self._update_running_stats(mean.detach(), var.detach(), n)
        else:
            mean, var = self.running_mean, self.running_var
        return _normalise(x, mean, var, self.weight, self.bias, self.eps)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: int) -> None:
        """Exponential (or cumulative, momentum=None) average of the batch statistics."""
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)  # cumulative moving average
        else:
            factor = self.momentum
        unbiased_var = var * (n / (n - 1))  # Bessel's correction for the running estimate
        self.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)  # (1 - f) * running + f * batch
        self.running_var.mul_(1.0 - factor).add_(unbiased_var, alpha=factor)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


# ----------------------------------------------------------------------------------------------
# Positional encodings: sinusoidal (1-D and 2-D) and rotary (RoPE)
# ----------------------------------------------------------------------------------------------


def sincos_1d(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Sinusoidal encodings of arbitrary (real) positions (Vaswani et al. 2017, sec. 3.5).

    ``PE[m, 2i] = sin(m w_i)``, ``PE[m, 2i+1] = cos(m w_i)`` with ``w_i = base^(-2i / dim)``: one sine-cosine
    pair per frequency, from 1 radian per position down to ``1/base``. Then
    ``PE[m] . PE[n] = sum_i cos((m - n) w_i)`` depends only on the offset ``m - n``.

    Args:
        positions: ``[N]`` positions (any float values).
        dim: the encoding width, even.

    Returns:
        ``[N, dim]`` (float32, or the dtype of float ``positions``). Introduced in chapter 08.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"the sinusoidal encoding needs an even dim >= 2, got {dim}")
    pos = positions.to(torch.float64).reshape(-1, 1)  # [N, 1]
    omega = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [dim/2]: w_i = base^(-2i/dim)
    angles = pos * omega  # [N, dim/2]
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(pos), dim)  # interleave: sin, cos, ...
    return pe.to(positions.dtype if positions.is_floating_point() else torch.float32)


def sinusoidal_encoding(n_positions: int, dim: int, base: float = 10000.0) -> Tensor:
    """The 1-D sinusoidal encoding of positions ``0 .. n_positions-1``: ``[n_positions, dim]`` (float32).

    ``PE[m, 2i] = sin(m / base^(2i/dim))`` and ``PE[m, 2i+1] = cos(m / base^(2i/dim))``
    (Vaswani et al. 2017, sec. 3.5). Introduced in chapter 08.
    """
    return sincos_1d(torch.arange(int(n_positions), dtype=torch.float32), dim, base)


def sincos_2d(h: int, w: int, dim: int, base: float = 10000.0) -> Tensor:
    """Fixed 2-D sinusoidal encodings of an ``h x w`` grid, row-major: ``[h*w, dim]``.

    The first ``dim/2`` channels encode the row and the last ``dim/2`` the column, each with :func:`sincos_1d`
    (as in MAE, He et al. 2022, and "Better plain ViT baselines", Beyer et al. 2022). The dot product of
    two encodings is then a function of the row offset plus one of the column offset.

    Introduced in chapter 08.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")  # [h, w] each
    return torch.cat([sincos_1d(rows.flatten(), dim // 2, base), sincos_1d(cols.flatten(), dim // 2, base)], dim=1)


def rope_angles_1d(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Rotation angles of 1-D RoPE (Su et al. 2024, eq. 15): ``theta[m, i] = m * base^(-2i / dim)``.

    Args:
        positions: ``[N]`` positions.
        dim: the (head) dimension being rotated, even: ``dim / 2`` planes, one angle each.

    Returns:
        ``[N, dim/2]`` angles in radians. Introduced in chapter 08.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: dim must be even, got {dim}")
    omega = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # [dim/2]
    return (positions.to(torch.float64).reshape(-1, 1) * omega).float()  # [N, dim/2]


def rope_angles_2d(h: int, w: int, dim: int, base: float = 100.0) -> Tensor:
    """Angles of axial 2-D RoPE (Heo et al. 2024) for an ``h x w`` grid, row-major: ``[h*w, dim/2]``.

    The first ``dim/4`` planes turn with the row index and the last ``dim/4`` with the column index, each with
    the 1-D frequencies of a ``dim/2``-dimensional RoPE. Introduced in chapter 08.
    """
    if dim % 4:
        raise ValueError(f"2-D RoPE needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # [h, w] each
    return torch.cat([rope_angles_1d(rows.flatten(), dim // 2, base), rope_angles_1d(cols.flatten(), dim // 2, base)],
                     dim=1)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate consecutive pairs ``(x[2i], x[2i+1])`` of the last dim by ``angles[..., i]`` (RoPE).

    ``(a, b) -> (a cos t - b sin t, a sin t + b cos t)``: multiplication by ``e^(i t)`` when the pair is read
    as the complex number ``a + ib``. Rotations preserve norms, and ``<R(s) q, R(t) k> = <q, R(t - s) k>``.

    Args:
        x: ``[..., N, d]`` with d even.
        angles: ``[N, d/2]`` (broadcast over the leading dims of x).

    Returns:
        a tensor shaped like ``x``. Introduced in chapter 08.
    """
    if x.shape[-1] % 2 or angles.shape[-1] * 2 != x.shape[-1] or angles.shape[-2] != x.shape[-2]:
        raise ValueError(f"apply_rotary: x {list(x.shape)} needs angles [N, d/2] = "
                         f"[{x.shape[-2]}, {x.shape[-1] // 2}], got {list(angles.shape)}")
    pairs = x.reshape(*x.shape[:-1], -1, 2)  # [..., N, d/2, 2]
    a, b = pairs[..., 0], pairs[..., 1]  # [..., N, d/2] each
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # [N, d/2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).reshape(x.shape)


def apply_rope_2d(x: Tensor, h: int, w: int, base: float = 100.0) -> Tensor:
    """Axial 2-D RoPE of tokens on an ``h x w`` grid (row-major): ``x [..., h*w, d] -> same shape``.

    Introduced in chapter 08.
    """
    return apply_rotary(x, rope_angles_2d(h, w, x.shape[-1], base).to(x.device))


# ----------------------------------------------------------------------------------------------
# Attention, feed-forward, the transformer block
# ----------------------------------------------------------------------------------------------


def causal_mask(n: int, device: torch.device | str | None = None) -> Tensor:
    """The lower-triangular boolean mask ``M[t, s] = (s <= t)``: token t may attend to tokens 0..t only.

    ``[n, n]`` bool, for :class:`MultiHeadAttention` / :class:`TransformerBlock` (True = may attend).
    Introduced in chapter 12.
    """
    return torch.ones(int(n), int(n), dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017, sec. 3.2.2) with one fused qkv projection.

    ``head_j = softmax(Q_j K_j^T / sqrt(d) + M) V_j`` with ``Q_j = X W_j^Q`` etc., and the output
    ``[head_1, ..., head_h] W^O``. The attention itself is ``companion.ops.scaled_dot_product_attention``.

    Args:
        dim: D, the token width.
        heads: h, dividing D.
        bias: biases on the projections.

    Shapes: ``x [B, T, D] -> [B, T, D]``; with ``return_attention=True`` also ``[B, h, T, T]``.
    Introduced in chapter 08.
    """

    def __init__(self, dim: int, heads: int, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads {heads} does not divide dim {dim}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)  # W^Q, W^K, W^V stacked: rows [0, D), [D, 2D), [2D, 3D)
        self.proj = nn.Linear(dim, dim, bias=bias)  # W^O

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, rope_angles: Tensor | None = None,
                n_prefix: int = 0, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Self-attention over the tokens of ``x``.

        Args:
            x: ``[B, T, D]``.
            attn_mask: bool (True = may attend) or additive float mask, broadcastable to ``[B, h, T, T]``.
            rope_angles: ``[T - n_prefix, d/2]`` rotary angles applied to q and k of the last tokens.
            n_prefix: leading tokens (a CLS token) that are not rotated.
            return_attention: also return the attention weights ``[B, h, T, T]``.
        """
        self._check(x)  # floating-point tokens [B, T, D]
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim)  # [B, T, 3, h, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, T, d]
        if rope_angles is not None:  # rotate queries and keys of the patch tokens by their grid positions
            q = torch.cat([q[..., :n_prefix, :], apply_rotary(q[..., n_prefix:, :], rope_angles)], dim=-2)
            k = torch.cat([k[..., :n_prefix, :], apply_rotary(k[..., n_prefix:, :], rope_angles)], dim=-2)
        if return_attention:
            attn = ops.attention_weights(q, k, attn_mask)  # [B, h, T, T], rows sum to 1
            out = attn @ v  # [B, h, T, d]
        else:
            out = ops.scaled_dot_product_attention(q, k, v, attn_mask)  # [B, h, T, d]
        out = self.proj(out.transpose(1, 2).reshape(B, T, D))  # concatenate heads: [B, T, h, d] -> [B, T, D]
        return (out, attn) if return_attention else out

    def _check(self, x: Tensor) -> None:
        """Refuse anything but floating-point tokens ``[B, T, dim]``, naming the expected and the given shape."""
        _check_tensor("MultiHeadAttention", x, "x", f"a tensor [B, T, {self.dim}]")
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MultiHeadAttention(dim={self.dim}): x must be tokens [B, T, {self.dim}], "
                             f"got shape {_shape(x)}")
        _check_float("MultiHeadAttention", x)

    @torch.no_grad()
    def load_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention(dim, heads, batch_first=True)`` into this module.

        PyTorch keeps W^Q, W^K, W^V stacked in ``in_proj_weight [3D, D]`` in the same order as ``qkv``, and
        W^O in ``out_proj``; afterwards both modules compute the same function.
        """
        if mha.embed_dim != self.dim or mha.num_heads != self.heads or mha.in_proj_weight is None:
            raise ValueError(f"need nn.MultiheadAttention({self.dim}, {self.heads}) with equal q/k/v sizes, "
                             f"got embed_dim={mha.embed_dim}, num_heads={mha.num_heads}")
        self.qkv.weight.copy_(mha.in_proj_weight)
        self.proj.weight.copy_(mha.out_proj.weight)
        if self.qkv.bias is not None:
            self.qkv.bias.copy_(mha.in_proj_bias)
            self.proj.bias.copy_(mha.out_proj.bias)
        return self


class FeedForward(nn.Module):
    """The transformer's position-wise feed-forward network: ``Linear(D, H) -> GELU -> Linear(H, D)``, per token.

    Vaswani et al. (2017, sec. 3.3) with the GELU of ViT (Dosovitskiy et al. 2021); the same weights for every
    token. Shapes: ``[..., D] -> [..., D]``. Introduced in chapter 08.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # [B, T, D] -> [B, T, H] -> [B, T, D]


class TransformerBlock(nn.Module):
    """A pre-LayerNorm transformer block (Xiong et al. 2020; the ViT and GPT-2 layout):

    ``z = z + MHA(LN(z), mask)``, then ``z = z + FeedForward(LN(z))``. The residual stream is never normalised,
    so the identity path from input to output is clean (chapter 07's argument, now for transformers). Without a
    mask every token attends to every token (the ViT, chapter 08); with :func:`causal_mask` token t reads only
    tokens 0..t (the autoregressive prior of chapter 12).

    Args:
        dim: D.
        heads: h, dividing D.
        mlp_ratio: the feed-forward width is ``round(mlp_ratio * D)``.

    Submodules ``ln1, attn, ln2, mlp`` (their names are the state-dict keys of the shipped checkpoints).
    Shapes: ``z [B, T, D] -> [B, T, D]``; with ``return_attention=True`` also ``[B, h, T, T]``.
    Introduced in chapter 08.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), MultiHeadAttention(dim, heads)
        self.ln2, self.mlp = nn.LayerNorm(dim), FeedForward(dim, int(round(mlp_ratio * dim)))

    def forward(self, z: Tensor, mask: Tensor | None = None, rope_angles: Tensor | None = None, n_prefix: int = 0,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``z [B, T, D] -> z [B, T, D]`` (and the attention ``[B, h, T, T]`` with ``return_attention=True``).

        ``mask``, ``rope_angles`` and ``n_prefix`` are passed to :meth:`MultiHeadAttention.forward`.
        """
        a = self.attn(self.ln1(z), attn_mask=mask, rope_angles=rope_angles, n_prefix=n_prefix,
                      return_attention=return_attention)
        a, attn = a if return_attention else (a, None)
        z = z + a
        z = z + self.mlp(self.ln2(z))
        return (z, attn) if return_attention else z
