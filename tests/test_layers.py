"""companion.layers.BatchNorm2d against torch.nn.BatchNorm2d (float64, several steps)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from companion.layers import BatchNorm2d

DTYPE = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(num_features: int = 3, **kwargs) -> tuple[BatchNorm2d, nn.BatchNorm2d]:
    """Ours and PyTorch's, with the same random affine parameters."""
    ours = BatchNorm2d(num_features, **kwargs).to(DTYPE)
    ref = nn.BatchNorm2d(num_features, **kwargs).to(DTYPE)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p_ours, p_ref in ((ours.weight, ref.weight), (ours.bias, ref.bias)):
            p_ref.copy_(torch.randn(num_features, generator=g, dtype=DTYPE))
            p_ours.copy_(p_ref)
    return ours, ref


def _assert_same_state(ours: BatchNorm2d, ref: nn.BatchNorm2d) -> None:
    torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
    torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_training_steps_match_torch(momentum):
    ours, ref = _pair(momentum=momentum)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        x = (torch.randn(4, 3, 5, 6, generator=g, dtype=DTYPE) * (step + 1) + step).requires_grad_()
        upstream = torch.randn(4, 3, 5, 6, generator=g, dtype=DTYPE)
        y_ours, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y_ours, y_ref, **TOL)
        grads_ours = torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], upstream)
        grads_ref = torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], upstream)
        for a, b in zip(grads_ours, grads_ref):
            torch.testing.assert_close(a, b, **TOL)
        _assert_same_state(ours, ref)


def test_eval_uses_running_statistics():
    ours, ref = _pair()
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # collect some statistics
        x = torch.randn(8, 3, 4, 4, generator=g, dtype=DTYPE) * 2 + 1
        ours(x), ref(x)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=DTYPE).requires_grad_()
    y_ours, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y_ours, y_ref, **TOL)
    _assert_same_state(ours, ref)  # eval does not update the statistics
    assert int(ours.num_batches_tracked) == 3
    upstream = torch.randn_like(y_ref)
    for a, b in zip(
        torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], upstream),
        torch.autograd.grad(y_ref, [x, ref.weight, ref.bias], upstream),
    ):
        torch.testing.assert_close(a, b, **TOL)
    # in eval one image's output does not depend on the rest of the batch
    torch.testing.assert_close(ours(x[:1]), y_ours[:1], **TOL)


def test_running_var_is_unbiased():
    bn = BatchNorm2d(1, momentum=1.0).to(DTYPE)  # momentum 1: running stats = last batch's
    x = torch.arange(8, dtype=DTYPE).view(2, 1, 2, 2)
    bn(x)
    torch.testing.assert_close(bn.running_mean, x.mean().view(1))
    torch.testing.assert_close(bn.running_var, x.var(correction=1).view(1))


def test_state_dict_is_interchangeable_with_torch():
    ours, ref = _pair(4)
    ref.train()
    ref(torch.randn(3, 4, 2, 2, dtype=DTYPE))
    ours.load_state_dict(ref.state_dict())
    _assert_same_state(ours, ref)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_gradcheck():
    bn = BatchNorm2d(2).to(DTYPE)
    x = torch.randn(3, 2, 2, 2, dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(bn, (x,))


def test_errors():
    bn = BatchNorm2d(3)
    with pytest.raises(ValueError, match=re.escape("[3, 4, 4]")):
        bn(torch.zeros(3, 4, 4))  # missing the batch dimension
    with pytest.raises(ValueError, match=re.escape("[2, 5, 4, 4]") + ".*3"):
        bn(torch.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(torch.zeros(1, 3, 1, 1))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)
