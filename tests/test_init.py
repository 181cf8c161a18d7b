"""companion.init against torch.nn.init: fans, gains, exact bounds, distributions, and the diagnostics hooks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import init

SHAPES = [(64, 32), (16, 8, 3, 3), (8, 3, 5, 5), (32, 16, 3), (4, 2, 1, 1), (10, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(shape):
    assert init.fans(shape) == nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.fans(torch.empty(shape)) == init.fans(torch.Size(shape))


def test_fans_of_a_conv_count_the_kernel():
    fan_in, fan_out = init.fans(nn.Conv2d(16, 32, 3).weight)
    assert (fan_in, fan_out) == (16 * 9, 32 * 9)


@pytest.mark.parametrize("bad", [(5,), (), (0, 3), (3, 0, 3, 3)])
def test_fans_reject_bad_shapes(bad):
    with pytest.raises(ValueError):
        init.fans(bad)


@pytest.mark.parametrize(("name", "param"), [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                             ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                             ("leaky_relu", 0), ("selu", None)])
def test_gain_matches_torch(name, param):
    assert init.gain(name, param) == pytest.approx(nn.init.calculate_gain(name, param), rel=1e-12)


def test_gain_rejects_unknown_names_and_bad_slopes():
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.gain("swish")
    with pytest.raises(ValueError, match="not a number"):
        init.gain("leaky_relu", "0.1")


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3), (8, 3, 5, 5)])
def test_closed_form_stds(shape):
    fan_in, fan_out = init.fans(shape)
    assert init.xavier_std(shape) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)))
    assert init.xavier_std(shape, gain=5 / 3) == pytest.approx(5 / 3 * math.sqrt(2 / (fan_in + fan_out)))
    assert init.kaiming_std(shape) == pytest.approx(math.sqrt(2 / fan_in))
    assert init.kaiming_std(shape, mode="fan_out") == pytest.approx(math.sqrt(2 / fan_out))
    assert init.kaiming_std(shape, "tanh") == pytest.approx(5 / 3 / math.sqrt(fan_in))
    assert init.kaiming_std(shape, "linear") == pytest.approx(1 / math.sqrt(fan_in))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_std(shape, mode="fan_avg")


# (ours, torch's, kwargs for ours, kwargs for torch's)
PAIRS = [
    (init.xavier_uniform_, nn.init.xavier_uniform_, {}, {}),
    (init.xavier_uniform_, nn.init.xavier_uniform_, {"gain": 5 / 3}, {"gain": 5 / 3}),
    (init.xavier_normal_, nn.init.xavier_normal_, {}, {}),
    (init.kaiming_uniform_, nn.init.kaiming_uniform_, {}, {"nonlinearity": "relu"}),
    (init.kaiming_uniform_, nn.init.kaiming_uniform_, {"nonlinearity": "tanh", "mode": "fan_out"},
     {"nonlinearity": "tanh", "mode": "fan_out"}),
    (init.kaiming_normal_, nn.init.kaiming_normal_, {}, {"nonlinearity": "relu"}),
    (init.kaiming_normal_, nn.init.kaiming_normal_, {"nonlinearity": "leaky_relu", "param": 0.2},
     {"nonlinearity": "leaky_relu", "a": 0.2}),
]


@pytest.mark.parametrize(("ours", "theirs", "kw_ours", "kw_theirs"), PAIRS)
@pytest.mark.parametrize("shape", [(64, 48), (32, 16, 3, 3)])
def test_same_generator_gives_the_same_numbers_as_torch(ours, theirs, kw_ours, kw_theirs, shape):
    a, b = torch.empty(shape), torch.empty(shape)
    out = ours(a, generator=torch.Generator().manual_seed(3), **kw_ours)
    theirs(b, generator=torch.Generator().manual_seed(3), **kw_theirs)
    assert out is a, "initialisers work in place and return their argument"
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("ours", "theirs", "kw_ours", "kw_theirs"), PAIRS)
def test_distribution_std_and_bounds_over_large_tensors(ours, theirs, kw_ours, kw_theirs):
    shape = (256, 128, 3, 3)  # 294,912 values: the sample std is within 0.5% of the true one
    a = ours(torch.empty(shape), generator=torch.Generator().manual_seed(0), **kw_ours)
    b = theirs(torch.empty(shape), generator=torch.Generator().manual_seed(1), **kw_theirs)
    assert a.std().item() == pytest.approx(b.std().item(), rel=0.01)
    assert abs(a.mean().item()) < 0.01 * a.std().item()
    uniform = "uniform" in ours.__name__
    if uniform:  # exact bounds: U(-sqrt(3) std, sqrt(3) std) fills the interval
        if "xavier" in ours.__name__:
            std = init.xavier_std(shape, kw_ours.get("gain", 1.0))
        else:
            std = init.kaiming_std(shape, kw_ours.get("nonlinearity", "relu"), kw_ours.get("mode", "fan_in"))
        bound = math.sqrt(3) * std
        assert a.abs().max().item() <= bound
        assert a.abs().max().item() > 0.999 * bound
        assert b.abs().max().item() <= bound * (1 + 1e-6)
    else:  # a normal has about 0.27% of its values beyond 3 std, a uniform none
        beyond = (a.abs() > 3 * a.std()).float().mean().item()
        assert 0.002 < beyond < 0.0035


def test_initialisers_reject_integers_and_non_tensors():
    with pytest.raises(TypeError, match="floating"):
        init.kaiming_normal_(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        init.xavier_uniform_([[0.0, 0.0]])
    with pytest.raises(ValueError):
        init.kaiming_normal_(torch.zeros(5))  # a bias has no fan-in


def test_initialisers_do_not_record_autograd_history():
    w = nn.Parameter(torch.empty(8, 4))
    init.kaiming_normal_(w)
    assert w.grad_fn is None and w.requires_grad


@pytest.mark.parametrize("scheme", init.SCHEMES)
def test_init_weights_applies_one_scheme_and_zeros_biases(scheme):
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256))
    init.init_weights(model, scheme, "relu", std=0.05, generator=torch.Generator().manual_seed(0))
    conv, fc, bn = model[0], model[3], model[4]
    assert conv.bias.abs().sum() == 0 and fc.bias.abs().sum() == 0
    assert torch.equal(bn.weight, torch.ones(256)), "normalisation layers are left alone"
    for layer in (conv, fc):
        w = layer.weight
        expected = {"normal": 0.05, "xavier_uniform": init.xavier_std(w), "xavier_normal": init.xavier_std(w),
                    "kaiming_uniform": init.kaiming_std(w), "kaiming_normal": init.kaiming_std(w)}[scheme]
        assert w.std().item() == pytest.approx(expected, rel=0.1)


def test_init_weights_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown scheme"):
        init.init_weights(nn.Linear(2, 2), "orthogonal")
    with pytest.raises(ValueError, match="std"):
        init.init_weights(nn.Linear(2, 2), "normal")


def _plain(depth=6, width=16, act=nn.ReLU):
    layers = []
    c = 1
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), act()]
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


def test_activation_stats_match_a_manual_forward_pass():
    torch.manual_seed(0)
    model = _plain()
    x = torch.randn(8, 1, 12, 12)
    rows = init.activation_stats(model, x)
    assert [r["layer"] for r in rows] == ["0", "2", "4", "6", "8", "10", "14"]
    assert [r["index"] for r in rows] == list(range(1, 8))
    h = x
    expected = []
    for m in model:
        h = m(h)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            expected.append((h.mean().item(), h.std().item()))
    for r, (mean, std) in zip(rows, expected):
        assert r["mean"] == pytest.approx(mean, rel=1e-5, abs=1e-7)
        assert r["std"] == pytest.approx(std, rel=1e-5)
    assert all(not m._forward_hooks for m in model.modules()), "hooks are removed afterwards"
    torch.testing.assert_close(init.layer_output_stds(model, x), torch.tensor([s for _, s in expected[:-1]]))
    torch.testing.assert_close(init.layer_output_stds(model, x, nn.Linear), torch.tensor([expected[-1][1]]))


def test_layer_output_stds_of_a_model_without_such_layers_is_empty():
    assert init.layer_output_stds(nn.Sequential(nn.ReLU()), torch.randn(2, 3)).shape == (0,)
    with pytest.raises(ValueError, match="no layer"):
        init.activation_stats(nn.Sequential(nn.ReLU()), torch.randn(2, 3))


def test_hooks_are_removed_even_when_the_forward_pass_fails():
    model = _plain()
    with pytest.raises(RuntimeError):
        init.activation_stats(model, torch.randn(2, 3, 8, 8))  # 3 channels into a 1-channel conv
    assert all(not m._forward_hooks for m in model.modules())


def test_gradient_stats_match_autograd_and_leave_grads_alone():
    torch.manual_seed(0)
    model = _plain(depth=4)
    x, y = torch.randn(8, 1, 10, 10), torch.randint(0, 10, (8,))
    rows = init.gradient_stats(model, x, y, F.cross_entropy)
    assert all(p.grad is None for p in model.parameters()), ".grad is left untouched"
    F.cross_entropy(model(x), y).backward()
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(rows) == len(weights) == 5
    for r, w in zip(rows, weights):
        assert r["weight_grad_norm"] == pytest.approx(w.grad.norm().item(), rel=1e-5)
    # the last layer's output gradient is d(mean cross-entropy)/d(logits) = (softmax - onehot) / B
    with torch.no_grad():
        g = (F.softmax(model(x), -1) - F.one_hot(y, 10)) / len(y)
    assert rows[-1]["output_grad_std"] == pytest.approx(g.std().item(), rel=1e-5)


def test_gradient_stats_needs_a_scalar_loss():
    with pytest.raises(ValueError, match="scalar"):
        init.gradient_stats(_plain(2), torch.randn(2, 1, 6, 6), torch.zeros(2, dtype=torch.long),
                            lambda out, y: F.cross_entropy(out, y, reduction="none"))


def test_variance_propagation_kaiming_vs_xavier_in_a_deep_relu_net():
    """The chapter's claim: Kaiming keeps the activation scale, Xavier halves the variance at every ReLU layer."""
    x = torch.randn(64, 256)
    stds = {}
    for scheme in ("kaiming_normal", "xavier_normal"):
        model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(256, 256), nn.ReLU())])
        init.init_weights(model, scheme, "relu", generator=torch.Generator().manual_seed(0))
        stds[scheme] = [r["std"] for r in init.activation_stats(model, x)]
    assert 0.5 < stds["kaiming_normal"][-1] / stds["kaiming_normal"][0] < 2
    ratio = stds["xavier_normal"][-1] / stds["xavier_normal"][0]
    assert 0.5 * 2 ** -9.5 < ratio < 2 * 2 ** -9.5  # 19 layers × a factor 1/sqrt(2) each
