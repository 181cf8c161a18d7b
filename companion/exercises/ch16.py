"""Checks for chapter 16 · Conditional and style-based GANs.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through), on
several inputs including edge cases, and compares with closed forms and ``companion.cond_gan`` via
``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from companion import cond_gan
from companion.exercises import exercise, expect_close


def _projection(phi: torch.Tensor, psi_weight: torch.Tensor, psi_bias: torch.Tensor, embedding: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
    return cond_gan.projection_logit(phi, phi @ psi_weight + psi_bias, embedding[labels])


@exercise("16.1", "The projection discriminator's logit", reference=_projection)
def check_projection(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(0)
    phi = torch.randn(5, 4, generator=g, dtype=torch.float64)
    w, b = torch.randn(4, generator=g, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    V = torch.randn(3, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2, 0])
    out = fn(phi, w, b, V, y)
    expect_close("logits of 5 examples, 4 features, 3 classes", out,
                 torch.stack([phi[i] @ w + b + V[y[i]] @ phi[i] for i in range(5)]), atol=1e-10)
    zero_v = torch.zeros_like(V)
    expect_close("with a zero embedding the logit is the unconditional psi(phi) = w . phi + b",
                 fn(phi, w, b, zero_v, y), phi @ w + b, atol=1e-10)
    one = fn(phi[:1].expand(3, -1), w, b, V, torch.arange(3))
    expect_close("one image under each of the 3 labels: the logits differ by V_y . phi only",
                 one - one[0], (V @ phi[0]) - V[0] @ phi[0], atol=1e-10)
    return "psi(phi) + V[y] . phi on 5 examples, a zero embedding and one image under every label"


@exercise("16.2", "Modulation and demodulation", reference=cond_gan.modulated_conv2d)
def check_modulated(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    s = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5
    expect_close("3 examples, 4 -> 2 channels, 3x3 kernel, demodulated (vs a loop over examples)",
                 fn(x, w, s, True, 1), cond_gan.modulated_conv2d(x, w, s, True, 1), atol=1e-8)
    expect_close("the same without demodulation (only the styles scale the input channels)",
                 fn(x, w, s, False, 1), torch.stack([F.conv2d(x[i:i + 1], w * s[i][None, :, None, None],
                                                              padding=1)[0] for i in range(3)]), atol=1e-8)
    big = torch.randn(64, 16, 12, 12, generator=g, dtype=torch.float64)
    ww = torch.randn(8, 16, 3, 3, generator=g, dtype=torch.float64)
    ss = torch.rand(64, 16, generator=g, dtype=torch.float64) * 4
    var = fn(big, ww, ss, True, 0).var(dim=(0, 2, 3))
    expect_close("unit-variance inputs give unit-variance outputs after demodulation (per-channel variance)",
                 var, torch.ones(8, dtype=torch.float64), atol=0.12, rtol=0)
    return "equal to the per-example loop with and without demodulation; output variances within 0.12 of 1"


def _truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    return w_avg + psi * (w - w_avg)


@exercise("16.3", "The truncation trick in W", reference=_truncate)
def check_truncate(fn: Callable[..., torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(2)
    w, avg = torch.randn(6, 5, generator=g), torch.randn(5, generator=g)
    expect_close("psi = 0.7 on 6 codes of dimension 5", fn(w, avg, 0.7), avg + 0.7 * (w - avg), atol=1e-6)
    expect_close("psi = 1 leaves w unchanged", fn(w, avg, 1.0), w, atol=1e-6)
    expect_close("psi = 0 gives the average w for every code", fn(w, avg, 0.0), avg.expand(6, -1), atol=1e-6)
    expect_close("psi = -1 reflects w through the average", fn(w, avg, -1.0), 2 * avg - w, atol=1e-6)
    return "w_avg + psi (w - w_avg) at psi = 0.7, 1, 0 and -1"


@exercise("16.4", "The ADA controller", reference=cond_gan.ADAugment.update)
def check_ada(fn: Callable[..., float]) -> str:
    expect_close("r_t = 0.9 above the target 0.6: p rises by 64 * 4 / 20000 from 0",
                 fn(0.0, 0.9, 0.6, 64, 4, 20_000), 64 * 4 / 20_000, atol=1e-12)
    expect_close("r_t = 0.2 below the target: p falls by the same step", fn(0.5, 0.2, 0.6, 64, 4, 20_000),
                 0.5 - 64 * 4 / 20_000, atol=1e-12)
    expect_close("p never goes below 0", fn(0.001, -1.0, 0.6, 64, 4, 20_000), 0.0, atol=1e-12)
    got = fn(0.999, 1.0, 0.6, 64, 4, 20_000)
    if not got < 1.0:
        raise AssertionError(f"p must stay below 1 (an image augmented with probability 1 would leak the "
                             f"augmentations into the generator), got {got}")
    return "p moves by batch * interval / speed in the direction of sign(r_t - target), clamped to [0, 1)"
