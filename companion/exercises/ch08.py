"""Checks for chapter 08 · Attention and Vision Transformers.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with PyTorch's own ops and ``companion`` via
``expect_close``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from companion import layers, ops, vit
from companion.exercises import exercise, expect_close


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@exercise("08.1", "Scaled dot-product attention", reference=ops.scaled_dot_product_attention)
def check_attention(fn: Callable[..., torch.Tensor]) -> str:
    q, k, v = _randn(5, 8, seed=0), _randn(5, 8, seed=1), _randn(5, 8, seed=2)
    out = fn(q, k, v)
    expect_close("attention of 5 queries over 5 keys, E = 8", out, F.scaled_dot_product_attention(q, k, v))
    err = 0.0
    cases = [((2, 7, 16), (2, 4, 16), (2, 4, 3)),  # more queries than keys, value size 3
             ((2, 3, 6, 8), (2, 3, 9, 8), (2, 3, 9, 8)),  # batch and heads
             ((1, 4), (1, 4), (1, 2))]  # a single key: every query returns v[0]
    for seed, (sq, sk, sv) in enumerate(cases):
        q, k, v = _randn(*sq, seed=3 * seed), _randn(*sk, seed=3 * seed + 1), _randn(*sv, seed=3 * seed + 2)
        err = max(err, expect_close(f"attention with q {list(sq)}, k {list(sk)}, v {list(sv)}", fn(q, k, v),
                                    F.scaled_dot_product_attention(q, k, v)))
    big_q = 40.0 * _randn(4, 32, seed=9)  # scores of a few hundred: exp would overflow without the max shift
    k, v = _randn(6, 32, seed=10), _randn(6, 5, seed=11)
    big = fn(big_q, k, v)
    expect_close("attention with scores in the hundreds (is the softmax stable?)", big,
                 F.scaled_dot_product_attention(big_q, k, v))
    return f"matches F.scaled_dot_product_attention on 5 inputs (batched, S ≠ L, Ev ≠ E, huge scores), max error {err:.1e}"


@exercise("08.2", "Patchify an image batch", reference=vit.patchify)
def check_patchify(fn: Callable[..., torch.Tensor]) -> str:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = fn(x, 2)
    expect_close("patchify of a 4x4 ramp with p = 2", out, vit.patchify(x, 2))
    for seed, (shape, p) in enumerate([((2, 3, 8, 12), 4), ((3, 1, 28, 28), 7), ((2, 2, 6, 6), 1), ((1, 3, 5, 5), 5)]):
        x = _randn(*shape, seed=seed)
        ref = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # [B, C*p*p, N] -> [B, N, C*p*p]
        expect_close(f"patchify of {list(shape)} with p = {p}", fn(x, p), ref, atol=0.0, rtol=0.0)
    first = out[0, 1].tolist()
    return f"equals F.unfold(x, p, stride=p).transpose(1, 2) on 5 inputs (p = 1 to whole image); patch 1 of the ramp = {first}"


@exercise("08.3", "Sinusoidal position encoding", reference=layers.sinusoidal_encoding)
def check_sinusoidal(fn: Callable[..., torch.Tensor]) -> str:
    pe = fn(8, 6)
    expect_close("sinusoidal_encoding(8, 6)", pe, layers.sinusoidal_encoding(8, 6))
    zero = fn(1, 4)
    expect_close("position 0 is (sin 0, cos 0, ...) = (0, 1, 0, 1)", zero, torch.tensor([[0.0, 1.0, 0.0, 1.0]]))
    for n, dim in [(50, 16), (3, 2), (196, 64)]:
        expect_close(f"sinusoidal_encoding({n}, {dim})", fn(n, dim), layers.sinusoidal_encoding(n, dim), atol=1e-5)
    pe = fn(40, 32).double()
    gram = pe @ pe.T  # <PE[m], PE[n]> = sum_i cos((m - n) w_i): a function of m - n only
    expect_close("<PE[m], PE[n]> depends only on m - n", gram[10, 3], float(gram[27, 20]), atol=1e-4)
    return f"5 (n, dim) pairs match; <PE[m], PE[m+7]> = {gram[3, 10].item():.3f} for every m (relative position)"
