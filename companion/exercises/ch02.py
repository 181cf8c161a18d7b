"""Exercise checks for chapter 02 · Linear models and MLPs on pixels.

Every check calls the student's function directly (so a stub's ``NotImplementedError`` reaches
:func:`companion.exercises.result` and reads as *not attempted*), on several inputs including numerically
hard ones (logits of ±1000), and compares with PyTorch's own op or autograd through :func:`expect_close`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import losses, mlp
from . import exercise, expect_close


def _logit_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, logits [B, K], labels [B])``: ordinary, huge, tied and single-row cases."""
    g = torch.Generator().manual_seed(2)
    return [
        ("random logits [8, 10]", torch.randn(8, 10, generator=g) * 3, torch.randint(0, 10, (8,), generator=g)),
        ("logits of ±1000 [2, 3]", torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 999.0]]),
         torch.tensor([0, 2])),
        ("tied logits [3, 4]", torch.full((3, 4), 1000.0), torch.tensor([0, 1, 3])),
        ("one example [1, 5]", torch.tensor([[0.5, -2.0, 3.0, 0.0, 1.0]]), torch.tensor([4])),
    ]


@exercise("02.1", "stable log-softmax", reference=losses.log_softmax)
def check_log_softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> str:
    cases = [(name, z) for name, z, _ in _logit_cases()]
    cases.append(("a batch of sequences [2, 3, 5] (softmax over the last dim)",
                  torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(3)) * 50))
    worst = 0.0
    for name, z in cases:
        yours = fn(z.clone())
        worst = max(worst, expect_close(f"log_softmax on {name}", yours, torch.log_softmax(z, dim=-1), atol=1e-4))
    return f"matches torch.log_softmax on {len(cases)} inputs incl. logits of ±1000 (max error {worst:.1e})"


@exercise("02.2", "cross-entropy from logits", reference=losses.cross_entropy)
def check_cross_entropy(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    worst = 0.0
    for name, z, y in _logit_cases():
        yours = fn(z.clone(), y.clone())
        worst = max(worst, expect_close(f"cross_entropy on {name}", yours, F.cross_entropy(z, y), atol=1e-4))
    return f"matches F.cross_entropy on 4 batches incl. logits of ±1000 (max error {worst:.1e})"


@exercise("02.3", "the gradient of cross-entropy w.r.t. the logits", reference=losses.cross_entropy_grad)
def check_cross_entropy_grad(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    worst = 0.0
    for name, z, y in _logit_cases():
        leaf = z.clone().requires_grad_(True)
        F.cross_entropy(leaf, y).backward()
        yours = fn(z.clone(), y.clone())
        worst = max(worst, expect_close(f"dL/dlogits on {name} (vs autograd)", yours, leaf.grad, atol=1e-6))
    return f"matches autograd's dL/dlogits on 4 batches incl. logits of ±1000 (max error {worst:.1e})"


@exercise("02.4", "permute the pixels of images", reference=mlp.permute_pixels)
def check_permute_pixels(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 2, 4, 5, generator=g)  # [B, C, H, W]
    perm = torch.randperm(20, generator=g)
    expected = torch.stack([torch.stack([img.flatten()[perm].reshape(4, 5) for img in ex]) for ex in x])
    expect_close("permute_pixels on [3, 2, 4, 5] with a random permutation", fn(x.clone(), perm), expected)
    reverse = torch.arange(20).flip(0)
    expect_close("permute_pixels with the reversing permutation (= flipping both axes)",
                 fn(x.clone(), reverse), x.flip(-1).flip(-2))
    inverse = torch.argsort(perm)
    expect_close("permuting with perm, then with argsort(perm) (should give the input back)",
                 fn(fn(x.clone(), perm), inverse), x)
    mnist_like = torch.rand(2, 1, 28, 28, generator=g)
    p784 = torch.randperm(784, generator=g)
    expect_close("permute_pixels on [2, 1, 28, 28]", fn(mnist_like.clone(), p784),
                 mnist_like.flatten(-2)[..., p784].reshape(2, 1, 28, 28))
    return "agrees with indexing on 4 cases; reversing = flipping both axes; argsort(perm) undoes perm"
