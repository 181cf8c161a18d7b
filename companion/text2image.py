"""Text-to-image with cross-attention (chapter 20): a word tokenizer, a small text encoder, a denoiser whose
pixels attend to the prompt's tokens, classifier-free guidance with the empty prompt, and an attribute classifier
that judges the samples.

Read top to bottom:

* :class:`Tokenizer`: a fixed word vocabulary; :meth:`Tokenizer.encode` turns prompts into token ids ``[B, L]``
  (a ``<start>`` token first, ``<pad>`` after the last word) and a mask ``[B, L]`` (True = a real token); an
  unknown word is an error that names it. The empty prompt ``""`` is just ``<start>``: the "null prompt" of
  classifier-free guidance;
* :class:`TextEncoder`: token and position embeddings and a few pre-LN transformer blocks
  (:class:`companion.layers.TransformerBlock`, chapter 08) whose attention skips the padding; ``[B, L] -> [B, L, D]``;
* :class:`CrossAttention`: ``softmax(Q K^T / sqrt(d) + M) V`` with the queries from the image tokens and the keys
  and values from the text tokens (the mask ``M`` hides the padding); :meth:`CrossAttention.load_torch` copies a
  ``torch.nn.MultiheadAttention(kdim=, vdim=)`` so the two can be compared;
* :class:`CrossAttentionBlock`: GroupNorm, the ``H * W`` pixels as queries, cross-attention, residual;
* :class:`TextUNet`: a small U-Net on 2x2 patches (``pixel_unshuffle``: a 32x32 RGB image is 16x16 with 12
  channels), chapter 18's :class:`companion.unet.TimeResBlock` and self-attention, and cross-attention blocks at the
  8x8 level and in the middle;
* :class:`TextToImage`: tokenizer, encoder and U-Net as one flow-matching velocity model (chapter 19's straight path
  ``x_t = (1 - t) x0 + t eps``, target ``eps - x0``); :meth:`TextToImage.loss` drops prompts to ``""`` for a
  fraction of the batch, :meth:`TextToImage.sample` integrates with :mod:`companion.diffusion`'s flow samplers,
  guided by :func:`companion.diffusion.classifier_free_guidance` with the empty prompt as the unconditional input;
* :class:`AttributeNet`: a small CNN with one head per attribute (shape, colour, size, position): the course's
  stand-in for a CLIP score, the judge of whether an image shows what its prompt says.

Shapes: images ``[B, 3, H, W]`` (``[-1, 1]`` inside the model, ``[0, 1]`` out of :meth:`TextToImage.sample`);
times ``[B]`` in ``[0, 1]``; token ids ``[B, L]`` int64; text features ``[B, L, D]``; masks ``[B, L]`` bool.
Introduced in chapter 20.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import diffusion as D
from . import ops
from ._checks import _check_images, _shape
from .ddpm import to_image_range
from .flow_matching import SAMPLERS, sample_times
from .layers import TransformerBlock
from .unet import AttentionBlock, Downsample2d, TimeResBlock, Upsample2d, timestep_embedding

__all__ = ["PAD", "START", "AttributeNet", "AttributeNetConfig", "CrossAttention", "CrossAttentionBlock", "TextEncoder",
           "TextToImage", "TextToImageConfig", "TextUNet", "Tokenizer", "attribute_agreement", "drop_prompts"]

#: The padding token (id 0) and the start token (id 1) every encoded prompt begins with.
PAD, START = "<pad>", "<start>"


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------


class Tokenizer:
    """A word-level tokenizer over a fixed vocabulary: ``ids = [<start>, w_1, ..., w_n, <pad>, ...]``.

    Words are split on white space after lower-casing; id 0 is ``<pad>``, id 1 ``<start>``, then the words in the
    order given. Real systems split into sub-words (CLIP's byte-pair encoding has 49,408 tokens) so that no word
    is ever unknown; a closed vocabulary is enough for prompts that a program writes.

    Args:
        words: the vocabulary (distinct, no white space, not ``<pad>``/``<start>``).
        max_len: ``L``, the number of token positions (``<start>`` included).

    Introduced in chapter 20.
    """

    def __init__(self, words: Sequence[str], max_len: int = 10) -> None:
        words = tuple(str(w).lower() for w in words)
        if len(set(words)) != len(words) or any(not w or w.split() != [w] or w in (PAD, START) for w in words):
            raise ValueError(f"Tokenizer: words must be distinct single words other than {PAD}/{START}, got {words}")
        if max_len < 2:
            raise ValueError(f"Tokenizer: max_len must be >= 2 (<start> and one word), got {max_len}")
        self.vocab: tuple[str, ...] = (PAD, START, *words)
        self.max_len = int(max_len)
        self._ids = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def from_prompts(cls, prompts: Sequence[str], max_len: int | None = None) -> Tokenizer:
        """The tokenizer whose vocabulary is every word of ``prompts`` (in order of first use) and whose ``max_len``
        fits the longest prompt (or is ``max_len``)."""
        words: dict[str, None] = {}
        for p in prompts:
            words.update(dict.fromkeys(p.lower().split()))
        longest = max((len(p.split()) for p in prompts), default=0)
        return cls(list(words), max_len or longest + 1)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, prompts: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """Token ids int64 ``[B, L]`` and the mask bool ``[B, L]`` (True = ``<start>`` or a word) of ``prompts``.

        Raises:
            TypeError: ``prompts`` is not a string or a sequence of strings.
            ValueError: a word outside the vocabulary (named, with the vocabulary), or a prompt longer than
                ``max_len - 1`` words.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"Tokenizer.encode: prompts must be a string or a list of strings, got {type(prompts).__name__}")
        ids = torch.zeros(len(prompts), self.max_len, dtype=torch.long)
        for b, p in enumerate(prompts):
            words = p.lower().split()
            if len(words) > self.max_len - 1:
                raise ValueError(f"Tokenizer.encode: prompt {p!r} has {len(words)} words, at most {self.max_len - 1} fit")
            unknown = [w for w in words if w not in self._ids or w in (PAD, START)]
            if unknown:
                raise ValueError(f"Tokenizer.encode: unknown word {unknown[0]!r} in {p!r}; the vocabulary is "
                                 f"{', '.join(self.vocab[2:])}")
            ids[b, 0] = 1
            ids[b, 1:1 + len(words)] = torch.tensor([self._ids[w] for w in words], dtype=torch.long)
        return ids, ids != 0

    def decode(self, ids: Tensor) -> list[str]:
        """The prompts of token ids ``[B, L]`` (``<start>`` and ``<pad>`` dropped): the inverse of :meth:`encode`."""
        if ids.ndim != 2 or ids.is_floating_point():
            raise ValueError(f"Tokenizer.decode: ids must be int64 [B, L], got shape {_shape(ids)}, {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(self.vocab)):
            raise ValueError(f"Tokenizer.decode: ids must lie in 0..{len(self.vocab) - 1}")
        return [" ".join(self.vocab[i] for i in row.tolist() if i > 1) for row in ids]


def drop_prompts(ids: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """``ids`` with each prompt replaced by the empty prompt (``<start>`` alone) with probability ``p`` (a new tensor).

    Prompt dropout, the training half of classifier-free guidance: one network learns the conditional and the
    unconditional velocity. Introduced in chapter 20.
    """
    drop = (torch.rand(ids.shape[0], generator=generator) < p).to(ids.device)
    empty = torch.zeros_like(ids)
    empty[:, 0] = 1
    return torch.where(drop[:, None], empty, ids)


# ----------------------------------------------------------------------------------------------
# Text encoder
# ----------------------------------------------------------------------------------------------


class TextEncoder(nn.Module):
    """Token ids to contextual features: ``LN(Blocks(E_tok[ids] + E_pos))``, attention restricted to real tokens.

    Args:
        vocab_size: V.
        max_len: L.
        dim: D, the feature width.
        depth: transformer blocks.
        heads: attention heads, dividing D.

    Shapes: ``ids [B, L], mask [B, L] -> [B, L, D]`` (features at padded positions are computed but meaningless:
    cross-attention masks them out). Introduced in chapter 20.
    """

    def __init__(self, vocab_size: int, max_len: int, dim: int = 64, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.max_len = max_len
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        if ids.ndim != 2 or ids.is_floating_point() or ids.shape[1] > self.max_len or mask.shape != ids.shape:
            raise ValueError(f"TextEncoder: ids must be int64 [B, L <= {self.max_len}] with a mask of the same shape, "
                             f"got ids {_shape(ids)} {ids.dtype}, mask {_shape(mask)}")
        z = self.token(ids) + self.position[: ids.shape[1]]
        keys = mask[:, None, None, :]  # [B, 1, 1, L]: every query reads only the real tokens
        for block in self.blocks:
            z = block(z, mask=keys)
        return self.norm(z)


# ----------------------------------------------------------------------------------------------
# Cross-attention
# ----------------------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x [B, N, D]``, keys and values from ``context [B, L, Dc]``.

    ``head_j = softmax(Q_j K_j^T / sqrt(d) + M) V_j`` with ``Q = x W^Q``, ``K = c W^K``, ``V = c W^V`` and the
    output ``[head_1, ..., head_h] W^O`` (Vaswani et al. 2017, sec. 3.2.3, the encoder-decoder attention; Rombach
    et al. 2022, eq. 3). ``M`` is ``-inf`` at padded text tokens. Each of the N image tokens gets a weighted mean
    of the text tokens' values: the prompt reaches every pixel, with weights that depend on what the pixel is.

    Args:
        dim: D, the query (image) width and the output width.
        context_dim: Dc, the text feature width.
        heads: h, dividing D.

    Shapes: ``x [B, N, D], context [B, L, Dc], mask [B, L] -> [B, N, D]``; with ``return_attention=True`` also
    the weights ``[B, h, N, L]`` (each row sums to 1). Introduced in chapter 20.
    """

    def __init__(self, dim: int, context_dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CrossAttention: heads {heads} does not divide dim {dim}")
        self.dim, self.context_dim, self.heads, self.head_dim = dim, context_dim, heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)  # W^K and W^V stacked
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"CrossAttention: x must be image tokens [B, N, {self.dim}], got shape {_shape(x)}")
        if context.ndim != 3 or context.shape[-1] != self.context_dim or context.shape[0] != x.shape[0]:
            raise ValueError(f"CrossAttention: context must be text features [B, L, {self.context_dim}] with "
                             f"B = {x.shape[0]}, got shape {_shape(context)}")
        B, N, _ = x.shape
        L = context.shape[1]
        if mask is not None and (mask.shape != (B, L) or mask.dtype != torch.bool):
            raise ValueError(f"CrossAttention: mask must be bool [B, L] = [{B}, {L}], got {_shape(mask)} {mask.dtype}")
        q = self.q(x).reshape(B, N, self.heads, self.head_dim).transpose(1, 2)  # [B, h, N, d]
        k, v = self.kv(context).reshape(B, L, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
        keys = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, L]
        if return_attention:
            attn = ops.attention_weights(q, k, keys)  # [B, h, N, L]
            out = attn @ v
        else:
            out = ops.scaled_dot_product_attention(q, k, v, keys)
        out = self.proj(out.transpose(1, 2).reshape(B, N, self.dim))
        return (out, attn) if return_attention else out

    @torch.no_grad()
    def load_torch(self, mha: nn.MultiheadAttention) -> CrossAttention:
        """Copy a ``torch.nn.MultiheadAttention(dim, heads, kdim=context_dim, vdim=context_dim, batch_first=True)``
        into this module; afterwards both compute the same function."""
        if mha.embed_dim != self.dim or mha.num_heads != self.heads or mha.kdim != self.context_dim or mha._qkv_same_embed_dim:
            raise ValueError(f"need nn.MultiheadAttention({self.dim}, {self.heads}, kdim={self.context_dim}, "
                             f"vdim={self.context_dim}), got embed_dim={mha.embed_dim}, kdim={mha.kdim}")
        self.q.weight.copy_(mha.q_proj_weight)
        self.kv.weight.copy_(torch.cat([mha.k_proj_weight, mha.v_proj_weight]))
        D = self.dim
        self.q.bias.copy_(mha.in_proj_bias[:D])
        self.kv.bias.copy_(mha.in_proj_bias[D:])
        self.proj.weight.copy_(mha.out_proj.weight)
        self.proj.bias.copy_(mha.out_proj.bias)
        return self


class CrossAttentionBlock(nn.Module):
    """``x + CrossAttention(GroupNorm(x) as H*W tokens, text)``: the prompt written into a feature map.

    Shapes: ``x [B, C, H, W], context [B, L, Dc], mask [B, L] -> [B, C, H, W]``. Introduced in chapter 20.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = CrossAttention(channels, context_dim, heads)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        B, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]: one query per pixel
        return x + self.attn(tokens, context, mask).transpose(1, 2).reshape(B, C, H, W)


# ----------------------------------------------------------------------------------------------
# The text-conditioned U-Net
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextToImageConfig:
    """A :class:`TextToImage` model.

    Attributes:
        vocab: the tokenizer's words (:class:`Tokenizer`); max_len: its token positions.
        image_channels, image_size: the images (3, 32).
        patch: pixels per side folded into channels before the U-Net (2: 32x32x3 -> 16x16x12).
        widths: channels per U-Net level (each level halves the resolution).
        self_attention_levels: levels with self-attention after each residual block (the middle always has it).
        cross_attention_levels: levels with cross-attention to the text after each residual block (the middle
            always has it); on a CPU it is cheapest at the lowest resolution (8x8: 64 queries per image).
        heads, groups: attention heads and GroupNorm groups of the U-Net.
        text_dim, text_depth, text_heads: the text encoder.
        time_dim: the time embedding width (``None``: ``4 * widths[0]``).
        prompt_dropout: the fraction of training prompts replaced by ``""`` (classifier-free guidance).
        logit_mean, logit_std: the logit-normal training times (chapter 19).
    """

    vocab: tuple[str, ...]
    max_len: int = 10
    image_channels: int = 3
    image_size: int = 32
    patch: int = 2
    widths: tuple[int, ...] = (32, 64)
    self_attention_levels: tuple[int, ...] = (1,)
    cross_attention_levels: tuple[int, ...] = (1,)
    heads: int = 4
    groups: int = 8
    text_dim: int = 64
    text_depth: int = 2
    text_heads: int = 4
    time_dim: int | None = None
    prompt_dropout: float = 0.1
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        inner = self.image_size // self.patch if self.patch >= 1 else 0
        if self.patch < 1 or self.image_size % self.patch or inner % 2 ** (len(self.widths) - 1):
            raise ValueError(f"image_size {self.image_size} must be divisible by patch {self.patch} and then by "
                             f"2 ** (len(widths) - 1) = {2 ** (len(self.widths) - 1)}")
        if not self.widths or any(w % self.groups or w % self.heads for w in self.widths):
            raise ValueError(f"groups {self.groups} and heads {self.heads} must divide every width, got {self.widths}")
        for levels in (self.self_attention_levels, self.cross_attention_levels):
            if any(not 0 <= i < len(self.widths) for i in levels):
                raise ValueError(f"attention levels must index widths (0..{len(self.widths) - 1}), got {levels}")
        if self.text_dim % self.text_heads:
            raise ValueError(f"text_heads {self.text_heads} must divide text_dim {self.text_dim}")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")

    @property
    def embedding_dim(self) -> int:
        return self.time_dim or 4 * self.widths[0]

    def replace(self, **changes: Any) -> TextToImageConfig:
        return replace(self, **changes)


class _Stage(nn.Module):
    """A residual block, optional self-attention, then optional cross-attention to the text."""

    def __init__(self, c_in: int, c_out: int, config: TextToImageConfig, self_attention: bool, cross: bool) -> None:
        super().__init__()
        c = config
        self.res = TimeResBlock(c_in, c_out, c.embedding_dim, c.groups)
        self.attn = AttentionBlock(c_out, c.heads, c.groups) if self_attention else nn.Identity()
        self.cross = CrossAttentionBlock(c_out, c.text_dim, c.heads, c.groups) if cross else None

    def forward(self, h: Tensor, emb: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        h = self.attn(self.res(h, emb))
        return h if self.cross is None else self.cross(h, context, mask)


class TextUNet(nn.Module):
    """The velocity network ``v_theta(x_t, t, text)``: a U-Net over 2x2 patches with cross-attention to the text.

    ``pixel_unshuffle`` folds each ``patch x patch`` block into channels, ``conv_in``, then per level one
    :class:`_Stage` (residual block, then self- and cross-attention where configured) and a downsample; the middle
    is a stage with self-attention and one more residual block; going up, each stage reads the matching skip; out:
    GroupNorm, SiLU, ``conv_out`` and ``pixel_shuffle`` back to full resolution.

    Shapes: ``x [B, C, H, W], t [B], context [B, L, Dc], mask [B, L] -> [B, C, H, W]``. Introduced in chapter 20.
    """

    def __init__(self, config: TextToImageConfig) -> None:
        super().__init__()
        self.config = c = config
        E, widths = c.embedding_dim, c.widths
        self.time_mlp = nn.Sequential(nn.Linear(E, E), nn.SiLU(), nn.Linear(E, E))
        self.conv_in = nn.Conv2d(c.image_channels * c.patch**2, widths[0], 3, padding=1)
        self.down, self.downsample, ch = nn.ModuleList(), nn.ModuleList(), widths[0]
        for i, w in enumerate(widths):
            self.down.append(_Stage(ch, w, c, i in c.self_attention_levels, i in c.cross_attention_levels))
            ch = w
            if i < len(widths) - 1:
                self.downsample.append(Downsample2d(w))
        self.mid = _Stage(ch, ch, c, True, True)
        self.mid2 = TimeResBlock(ch, ch, E, c.groups)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_Stage(ch + w, w, c, i in c.self_attention_levels, i in c.cross_attention_levels))
            ch = w
            if i > 0:
                self.upsample.append(Upsample2d(w))
                ch = w
        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.image_channels * c.patch**2, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        c = self.config
        emb = self.time_mlp(timestep_embedding(t, c.embedding_dim, 1000.0).to(x.dtype))
        h = self.conv_in(F.pixel_unshuffle(x, c.patch))
        skips = []
        for i, stage in enumerate(self.down):
            h = stage(h, emb, context, mask)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.mid(h, emb, context, mask), emb)
        for i, stage in enumerate(self.up):
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, mask)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), c.patch)


class TextToImage(nn.Module):
    """A text-conditioned flow-matching model: :class:`Tokenizer`, :class:`TextEncoder` and :class:`TextUNet`.

    ``model(x_t, t, context=..., context_mask=...)`` is the velocity for text features from :meth:`encode_text`,
    so a ``TextToImage`` is the ``model`` of :mod:`companion.diffusion`'s flow samplers (``cond`` carries the two
    text tensors). The encoder is trained together with the U-Net (Stable Diffusion freezes a pretrained CLIP
    text encoder instead; here the prompts are too few and too simple to need one).

    Args:
        config: a :class:`TextToImageConfig`.

    Introduced in chapter 20.
    """

    def __init__(self, config: TextToImageConfig) -> None:
        super().__init__()
        self.config = c = config
        self.tokenizer = Tokenizer(c.vocab, c.max_len)
        self.text = TextEncoder(len(self.tokenizer), c.max_len, c.text_dim, c.text_depth, c.text_heads)
        self.unet = TextUNet(c)

    def encode_text(self, prompts: str | Sequence[str], batch: int | None = None) -> tuple[Tensor, Tensor]:
        """Text features ``[B, L, D]`` and mask ``[B, L]`` of ``prompts`` (one prompt is repeated ``batch`` times)."""
        ids, mask = self.tokenizer.encode(prompts)
        if batch is not None and ids.shape[0] == 1:
            ids, mask = ids.expand(batch, -1), mask.expand(batch, -1)
        dev = self.unet.conv_in.weight.device
        return self.encode_ids(ids.to(dev), mask.to(dev))

    def encode_ids(self, ids: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Text features of token ids ``[B, L]`` (the mask defaults to ``ids != <pad>``)."""
        mask = ids != 0 if mask is None else mask
        return self.text(ids, mask), mask

    def forward(self, x: Tensor, t: Tensor | float, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """The velocity for ``x [B, C, H, W]`` at times ``t [B]`` (or a scalar) given text features ``[B, L, D]``."""
        c = self.config
        _check_images("TextToImage", x, c.image_channels, (c.image_size, c.image_size))
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        if t.shape != (x.shape[0],):
            raise ValueError(f"TextToImage: t must be a scalar or one time per image, got shape {_shape(t)}")
        return self.unet(x, t, context, context_mask)

    def loss(self, x0: Tensor, ids: Tensor, generator: torch.Generator | None = None, *,
             t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """The flow-matching loss on ``x0`` in ``[-1, 1]`` with prompts as token ids ``[B, L]``: prompt dropout to
        ``""``, logit-normal times, then :func:`companion.diffusion.flow_matching_loss`."""
        c = self.config
        if t is None:
            t = sample_times(x0.shape[0], "logit_normal", mean=c.logit_mean, std=c.logit_std, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator)
        ids = drop_prompts(ids, c.prompt_dropout, generator) if c.prompt_dropout else ids
        context, mask = self.encode_ids(ids.to(x0.device))
        return D.flow_matching_loss(self, x0, cond={"context": context, "context_mask": mask}, t=t.to(x0.device),
                                    noise=noise.to(x0.device))

    def velocity(self, guidance: float, batch: int) -> Callable[..., Tensor]:
        """The model the samplers integrate: ``self``, or classifier-free guided with ``""`` as the null prompt."""
        if guidance == 1:
            return self
        null, null_mask = self.encode_text("", batch)
        return D.classifier_free_guidance(self, guidance, {"context": null, "context_mask": null_mask})

    @torch.no_grad()
    def sample(self, x: Tensor, prompts: str | Sequence[str], sampler: str = "heun", steps: int = 16,
               guidance: float = 1.0, callback: Callable[[dict[str, Any]], None] | None = None,
               images: bool = True) -> Tensor:
        """Integrate the flow from noise ``x [B, C, H, W]`` (``t = 1``) to images of ``prompts`` (one, or ``B``).

        Args:
            x: the starting noise ``N(0, I)``.
            prompts: one prompt for all images or one per image.
            sampler: ``"euler"``, ``"heun"`` or ``"midpoint"`` (:data:`companion.flow_matching.SAMPLERS`).
            steps: steps on :func:`companion.diffusion.flow_timesteps`.
            guidance: the classifier-free guidance scale (1: conditional, 0: the empty prompt's).
            callback: passed to the sampler.
            images: pixels in ``[0, 1]`` (clipped); ``False``: the raw ``[-1, 1]``-range sample.

        Raises:
            ValueError: an unknown sampler, a prompt count that is neither 1 nor ``B``, or an unknown word.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"TextToImage.sample: sampler must be one of {', '.join(map(repr, SAMPLERS))}, "
                             f"got {sampler!r}")
        B = x.shape[0]
        n_prompts = 1 if isinstance(prompts, str) else len(prompts)
        if n_prompts not in (1, B):
            raise ValueError(f"TextToImage.sample: give one prompt or one per image ({B}), got {n_prompts}")
        context, mask = self.encode_text(prompts, B)
        out = SAMPLERS[sampler](self.velocity(guidance, B), x, D.flow_timesteps(steps),
                                cond={"context": context, "context_mask": mask}, callback=callback)
        return to_image_range(out) if images else out


# ----------------------------------------------------------------------------------------------
# The judge: an attribute classifier
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeNetConfig:
    """An :class:`AttributeNet`: ``classes`` per attribute (shape 3, colour 3, size 2, position 4), conv widths."""

    classes: tuple[int, ...] = (3, 3, 2, 4)
    widths: tuple[int, ...] = (16, 32, 64)
    image_channels: int = 3
    image_size: int = 32

    def __post_init__(self) -> None:
        if not self.classes or any(k < 2 for k in self.classes):
            raise ValueError(f"classes must be a tuple of class counts >= 2, got {self.classes}")
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(f"image_size {self.image_size} must be divisible by 2 ** len(widths)")


class AttributeNet(nn.Module):
    """A small CNN with one classification head per attribute: ``[B, 3, H, W] -> [B, sum(classes)]`` logits.

    Three conv-ReLU-maxpool stages, global average and max pooling, one linear layer whose outputs are split into
    the attributes' logits (:meth:`split`); :meth:`predict` gives the labels ``[B, A]``. Introduced in chapter 20.
    """

    def __init__(self, config: AttributeNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or AttributeNetConfig()
        layers: list[nn.Module] = []
        ch = c.image_channels
        for w in c.widths:
            layers += [nn.Conv2d(ch, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            ch = w
        self.features = nn.Sequential(*layers)
        side = c.image_size // 2 ** len(c.widths)
        self.head = nn.Linear(ch * side * side, sum(c.classes))

    def forward(self, x: Tensor) -> Tensor:
        c = self.config
        _check_images("AttributeNet", x, c.image_channels, (c.image_size, c.image_size))
        return self.head(self.features(x).flatten(1))

    def split(self, logits: Tensor) -> list[Tensor]:
        """The logits ``[B, sum(classes)]`` as one ``[B, k]`` tensor per attribute."""
        return list(logits.split(list(self.config.classes), dim=1))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Predicted labels int64 ``[B, A]`` of images ``x`` in ``[0, 1]``."""
        return torch.stack([lg.argmax(1) for lg in self.split(self(x))], dim=1)

    def loss(self, x: Tensor, labels: Tensor) -> Tensor:
        """Mean over attributes of the cross-entropy of each head with its labels ``[B, A]``."""
        parts = self.split(self(x))
        return sum(F.cross_entropy(lg, labels[:, a]) for a, lg in enumerate(parts)) / len(parts)


@torch.no_grad()
def attribute_agreement(judge: AttributeNet, images: Tensor, labels: Tensor,
                        names: Sequence[str] = ("shape", "colour", "size", "position")) -> dict[str, float]:
    """How often ``judge`` sees in ``images`` the attributes ``labels [B, A]`` asked for.

    Returns ``{"all": share with every attribute right, name: share with that attribute right, ...}``.
    Introduced in chapter 20.
    """
    if labels.ndim != 2 or labels.shape != (images.shape[0], len(judge.config.classes)):
        raise ValueError(f"attribute_agreement: labels must be [B, {len(judge.config.classes)}] with B = "
                         f"{images.shape[0]}, got shape {_shape(labels)}")
    pred = torch.cat([judge.predict(xb) for xb in images.split(500)])
    right = pred == labels.to(pred.device)
    out = {"all": float(right.all(1).float().mean())}
    out.update({n: float(right[:, a].float().mean()) for a, n in enumerate(names)})
    return out
