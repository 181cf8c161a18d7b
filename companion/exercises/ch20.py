"""Checks for chapter 20 · Latent diffusion.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with ``companion.latent_diffusion``, ``companion.dit`` and
``companion.layers`` via ``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from companion import latent_diffusion
from companion.dit import modulate
from companion.exercises import exercise, expect_close
from companion.layers import apply_rope_2d


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@exercise("20.1", "The latent scale factor", reference=latent_diffusion.latent_scale)
def check_latent_scale(fn: Callable[[torch.Tensor], float]) -> str:
    z = 4.0 * _randn(500, 4, 7, 7, seed=0) + 1.5
    s = fn(z)
    expect_close("scale of 4 N(0, 1) + 1.5 latents [500, 4, 7, 7]", float(s), latent_diffusion.latent_scale(z),
                 atol=1e-4, rtol=1e-4)
    expect_close("std of the scaled latents", float((z * float(s)).std()), 1.0, atol=1e-4)
    small = 0.18 * _randn(64, 4, 8, 8, seed=1)
    expect_close("scale of latents with std 0.18 (about 5.5)", float(fn(small)), latent_diffusion.latent_scale(small),
                 atol=1e-3)
    # one number for the whole set, not one per channel: channels with different spreads
    mixed = torch.cat([_randn(100, 1, 7, 7, seed=2), 3 * _randn(100, 1, 7, 7, seed=3)], dim=1)
    expect_close("one scale over all channels (std 1 and 3)", float(fn(mixed)), latent_diffusion.latent_scale(mixed),
                 atol=1e-4)
    return f"scale {float(s):.4f} for latents of std {float(z.std()):.3f}; the scaled set has std 1"


def adaln_zero_update_reference(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, gate: torch.Tensor,
                                f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """x + gate * f(LN(x) * (1 + scale) + shift), LN without learned affine, eps 1e-6."""
    h = modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), shift, scale)
    return x + gate.unsqueeze(1) * f(h)


@exercise("20.2", "The adaLN-Zero residual update", reference=adaln_zero_update_reference)
def check_adaln_zero(fn: Callable[..., torch.Tensor]) -> str:
    x = _randn(3, 5, 8, seed=4)
    shift, scale, gate = _randn(3, 8, seed=5), _randn(3, 8, seed=6), _randn(3, 8, seed=7)
    lin = torch.nn.Linear(8, 8)
    torch.nn.init.normal_(lin.weight, generator=torch.Generator().manual_seed(8))

    def f(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(lin(h))

    with torch.no_grad():
        out = fn(x, shift, scale, gate, f)
        expect_close("x + gate * f(modulate(LN(x), shift, scale)) on [3, 5, 8] tokens", out,
                     adaln_zero_update_reference(x, shift, scale, gate, f), atol=1e-5)
        zero = torch.zeros(3, 8)
        expect_close("gate = 0: the update is the identity", fn(x, shift, scale, zero, f), x, atol=0.0)
        ident = fn(x, zero, zero, torch.ones(3, 8), lambda h: h)
        expect_close("shift = scale = 0, gate = 1, f = identity: x + LN(x)", ident,
                     x + F.layer_norm(x, (8,), eps=1e-6), atol=1e-5)
        # each example has its own modulation: example 0's output does not depend on example 1's shift
        other = shift.clone()
        other[1] += 5
        expect_close("example 0 ignores example 1's shift", fn(x, other, scale, gate, f)[0], out[0], atol=1e-6)
    return "matches the DiT block's update; gate 0 is the identity (adaLN-Zero at initialisation)"


def rope_2d_reference(x: torch.Tensor, h: int, w: int, base: float = 100.0) -> torch.Tensor:
    """Axial 2-D RoPE of tokens on an h x w grid (row-major): companion.layers.apply_rope_2d."""
    return apply_rope_2d(x, h, w, base)


@exercise("20.3", "Two-dimensional rotary positions", reference=rope_2d_reference)
def check_rope_2d(fn: Callable[..., torch.Tensor]) -> str:
    x = _randn(2, 3, 12, 8, seed=9)  # [B, heads, N = 3 x 4, d = 8]
    out = fn(x, 3, 4)
    expect_close("[2, 3, 12, 8] queries on a 3x4 grid, base 100", out, apply_rope_2d(x, 3, 4), atol=1e-5)
    expect_close("norms are kept (rotations)", out.norm(dim=-1), x.norm(dim=-1), atol=1e-4)
    y = _randn(49, 16, seed=10)
    expect_close("[49, 16] tokens on a 7x7 grid, base 10000 (FLUX)", fn(y, 7, 7, 10000.0),
                 apply_rope_2d(y, 7, 7, 10000.0), atol=1e-5)
    expect_close("the token at row 0, column 0 is not rotated", fn(y, 7, 7)[0], y[0], atol=1e-6)
    # relative positions: <R(m) q, R(n) k> depends on the offset only
    q, k = _randn(16, seed=11), _randn(16, seed=12)
    rq, rk = fn(q.expand(49, 16).clone(), 7, 7), fn(k.expand(49, 16).clone(), 7, 7)
    s1 = rq[0 * 7 + 1] @ rk[2 * 7 + 3]  # (0, 1) -> (2, 3)
    s2 = rq[4 * 7 + 2] @ rk[6 * 7 + 4]  # (4, 2) -> (6, 4): the same offset (2, 2)
    expect_close("the score depends only on the offset (2, 2)", s1, s2, atol=1e-4)
    return "matches layers.apply_rope_2d on two grids and bases; scores depend only on the offset"
