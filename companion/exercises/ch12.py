"""Checks for chapter 12 · Discrete latents: VQ-VAE.

Each check calls the student's function first (so a stub's ``NotImplementedError`` passes straight through),
on several inputs including edge cases, and compares with independent references (``torch.cdist``, autograd,
closed forms) and ``companion.vqvae`` via ``expect_close``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from companion import metrics, vqvae
from companion.exercises import exercise, expect_close, forbid


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


_NO_CDIST = ("your function called torch.cdist, which this exercise rules out: expand ||z - e||^2 into "
             "||z||^2 - 2 z.e + ||e||^2 and use one matrix product")


def _no_cdist(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
    """Run the student's function with ``torch.cdist`` (both its names) raising."""
    with forbid(torch, "cdist", _NO_CDIST), forbid(torch.functional, "cdist", _NO_CDIST):
        return fn(*args)


@exercise("12.1", "Nearest-code assignment", reference=vqvae.nearest_code)
def check_nearest_code(fn: Callable[..., torch.Tensor]) -> str:
    z, codebook = _randn(6, 3, seed=0), _randn(4, 3, seed=1)
    out = _no_cdist(fn, z, codebook)
    expect_close("nearest codes of 6 vectors among 4 codes (D = 3)", out,
                 torch.cdist(z, codebook).argmin(dim=1), atol=0.0, rtol=0.0)
    cases = [(200, 16, 8, 2), (50, 512, 16, 3), (1, 5, 2, 4), (7, 1, 4, 5)]  # (N, K, D, seed); K = 1: all zeros
    for n, k, d, seed in cases:
        z, codebook = _randn(n, d, seed=seed), _randn(k, d, seed=seed + 10)
        expected = torch.cdist(z, codebook).argmin(dim=1)
        expect_close(f"nearest codes of {n} vectors among {k} codes (D = {d})", _no_cdist(fn, z, codebook),
                     expected, atol=0.0, rtol=0.0)
    codebook = _randn(5, 4, seed=20)
    on_codes = codebook[[3, 0, 4, 4, 1]]  # vectors sitting exactly on codes find those codes
    expect_close("vectors equal to codes 3, 0, 4, 4, 1", _no_cdist(fn, on_codes, codebook),
                 torch.tensor([3, 0, 4, 4, 1]), atol=0.0, rtol=0.0)
    far = torch.tensor([[10.0, 0.0], [0.0, -10.0]])  # a long code must not win by its dot product alone
    book = torch.tensor([[1.0, 0.0], [30.0, 0.0], [0.0, -9.0]])
    expect_close("z = (10, 0) is nearer (1, 0) than (30, 0): the ||e||^2 term matters", _no_cdist(fn, far, book),
                 torch.tensor([0, 2]), atol=0.0, rtol=0.0)
    return (f"equals torch.cdist(z, codebook).argmin(1) on 5 inputs (K = 1 to 512) and on 2 hand-made cases, "
            f"without calling torch.cdist; first: {out.tolist()}")


@exercise("12.2", "The straight-through estimator", reference=vqvae.straight_through)
def check_straight_through(fn: Callable[..., torch.Tensor]) -> str:
    for seed, shape in enumerate([(2, 4, 3, 3), (5, 8), (1, 1, 1, 1)]):
        z = _randn(*shape, seed=seed).requires_grad_(True)
        z_q = _randn(*shape, seed=seed + 10).requires_grad_(True)
        out = fn(z, z_q)
        expect_close(f"forward value for shape {list(shape)} (must equal z_q)", out, z_q.detach(), atol=1e-6)
        upstream = _randn(*shape, seed=seed + 20)
        (out * upstream).sum().backward()
        if z.grad is None:
            raise AssertionError("no gradient reached z: the output must be computed from z (z + something)")
        expect_close(f"gradient w.r.t. z for shape {list(shape)} (must equal the upstream gradient)", z.grad,
                     upstream, atol=1e-6)
        if z_q.grad is not None and bool(z_q.grad.abs().max() > 0):
            raise AssertionError("z_q received a gradient through the straight-through path: detach (z_q - z)")
    return "value = z_q and d out / d z = identity (the upstream gradient passes unchanged) on 3 shapes; z_q gets none"


def _call_unmutated(fn: Callable[..., object], args: tuple, what: str) -> object:
    """Call ``fn(*args)`` and fail, naming the argument, if it changed any tensor argument in place."""
    names = ("cluster_size", "embed_sum", "z", "indices")
    before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    out = fn(*args)
    for name, a, b in zip(names, args, before):
        if isinstance(a, torch.Tensor) and not torch.equal(a, b):
            raise AssertionError(f"{what}: your function changed its input {name} in place (an in-place update "
                                 "such as mul_, add_, index_add_ or x[...] = ...); return new tensors instead")
    return out


@exercise("12.3", "The EMA codebook update", reference=vqvae.ema_update)
def check_ema_update(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> str:
    K, D = 5, 3
    size, total = torch.ones(K), _randn(K, D, seed=0)
    z = _randn(40, D, seed=1)
    idx = torch.randint(0, K - 1, (40,), generator=torch.Generator().manual_seed(2))  # code K-1 is never chosen
    ref = vqvae.ema_update(size.clone(), total.clone(), z.clone(), idx.clone(), 0.9, 1e-5)  # before the student runs
    out = _call_unmutated(fn, (size, total, z, idx, 0.9, 1e-5), "one step (decay 0.9)")
    if not isinstance(out, tuple) or len(out) != 3:
        raise AssertionError(f"return (cluster_size, embed_sum, codebook), got {type(out).__name__}")
    for name, yours, expected in zip(("cluster_size", "embed_sum", "codebook"), out, ref):
        expect_close(f"{name} after one step (decay 0.9)", yours, expected, atol=1e-5)
    # decay = 0 and no smoothing: a used code jumps to the mean of its vectors (a k-means step)
    _, _, codebook = _call_unmutated(fn, (torch.ones(K), torch.zeros(K, D), z, idx, 0.0, 1e-12), "decay 0")
    for k in range(K - 1):
        expect_close(f"decay 0: code {k} = mean of the vectors assigned to it", codebook[k], z[idx == k].mean(0),
                     atol=1e-4)
    for decay, eps, seed in [(0.99, 1e-5, 3), (0.5, 1e-2, 4)]:
        size, total = torch.rand(K, generator=torch.Generator().manual_seed(seed)) + 0.5, _randn(K, D, seed=seed)
        args = (size, total, _randn(30, D, seed=seed + 1),
                torch.randint(0, K, (30,), generator=torch.Generator().manual_seed(seed + 2)), decay, eps)
        expected = vqvae.ema_update(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        yours = _call_unmutated(fn, args, f"decay {decay}")
        for name, y, e in zip(("cluster_size", "embed_sum", "codebook"), yours, expected):
            expect_close(f"{name} with decay {decay}, eps {eps}", y, e, atol=1e-5)
    return ("running counts, sums and Laplace-smoothed means match on 3 cases, inputs left unchanged; "
            "with decay 0 each code is its cluster mean")


@exercise("12.4", "Perplexity of code usage", reference=metrics.perplexity)
def check_perplexity(fn: Callable[..., float]) -> str:
    uniform = torch.arange(64).repeat(3)  # every one of 64 codes three times
    value = fn(uniform, 64)
    expect_close("all 64 codes used equally often", value, 64.0, atol=1e-6, rtol=1e-6)
    expect_close("a single code used every time", fn(torch.full((100,), 7), 16), 1.0, atol=1e-6, rtol=1e-6)
    expect_close("two codes used equally, 510 never (unused codes add nothing)",
                 fn(torch.tensor([3, 9, 3, 9]), 512), 2.0, atol=1e-6, rtol=1e-6)
    skewed = torch.tensor([0] * 6 + [1] * 3 + [2])  # p = (0.6, 0.3, 0.1)
    h = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
    expect_close("p = (0.6, 0.3, 0.1)", fn(skewed, 4), math.exp(h), atol=1e-6, rtol=1e-6)
    grid = torch.randint(0, 32, (8, 7, 7), generator=torch.Generator().manual_seed(0))  # [B, H, W] indices
    expect_close("random [8, 7, 7] grid of indices, K = 32", fn(grid, 32), metrics.perplexity(grid, 32),
                 atol=1e-6, rtol=1e-6)
    return f"uniform over 64 codes gives {float(value):.3f}, one code 1, two codes 2, a skewed p exp(H) = {math.exp(h):.3f}"
