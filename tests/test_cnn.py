"""companion.cnn against PyTorch's own ops, brute-force receptive fields and closed forms; bad inputs."""

import importlib.util

import course
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import cnn, exercises, ops
from companion.train import count_parameters


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- pooling

POOL_CASES = [  # (shape, kernel, stride, padding)
    ((2, 3, 8, 8), 2, None, 0),
    ((2, 3, 9, 7), 2, None, 0),  # odd sizes: floor
    ((1, 2, 10, 10), 3, 2, 1),  # overlapping windows with padding
    ((1, 1, 7, 11), (2, 3), (1, 2), (1, 0)),  # rectangular everything
    ((4, 5, 5), 3, 1, 1),  # unbatched
]


@pytest.mark.parametrize(("shape", "k", "s", "p"), POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch_in_value_and_gradient(shape, k, s, p, kind):
    mine_fn, ref_fn = (cnn.max_pool2d, F.max_pool2d) if kind == "max" else (cnn.avg_pool2d, F.avg_pool2d)
    x = _rand(*shape)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = mine_fn(a, k, s, p)
    out_b = ref_fn(b, k, s, p)
    torch.testing.assert_close(out_a, out_b)
    w = _rand(*out_b.shape, seed=1)
    (out_a * w).sum().backward()
    (out_b * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_max_pool_ties_route_the_gradient_like_torch():
    x = torch.tensor([[[[1.0, 1.0, 0.0, 2.0], [1.0, 0.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    cnn.max_pool2d(a, 2).sum().backward()
    F.max_pool2d(b, 2).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert a.grad.sum() == 4  # one winner per window, even with ties


def test_max_pool_of_negative_values_ignores_padding():
    x = -torch.ones(1, 1, 3, 3)
    assert torch.all(cnn.max_pool2d(x, 3, 1, 1) == -1)  # -inf padding, not zeros


@pytest.mark.parametrize("fn", [cnn.max_pool2d, cnn.avg_pool2d])
def test_pooling_rejects_bad_arguments(fn):
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        fn(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="half the kernel"):
        fn(torch.zeros(1, 1, 8, 8), 2, 2, 2)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        fn(torch.zeros(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match=">= 1"):
        fn(torch.zeros(1, 1, 4, 4), 2, 0)
    with pytest.raises(ValueError, match="pair of ints"):
        fn(torch.zeros(1, 1, 4, 4), (2, 2, 2))


# ----------------------------------------------------------------------------- counting


@pytest.mark.parametrize(("c_in", "c_out", "k", "bias", "groups"),
                         [(1, 6, 5, True, 1), (6, 16, 5, True, 1), (3, 64, (3, 5), False, 1), (8, 16, 3, True, 4)])
def test_conv2d_num_params_matches_nn_conv2d(c_in, c_out, k, bias, groups):
    layer = nn.Conv2d(c_in, c_out, k, bias=bias, groups=groups)
    assert cnn.conv2d_num_params(c_in, c_out, k, bias, groups) == count_parameters(layer)


def test_conv2d_num_params_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        cnn.conv2d_num_params(0, 3, 3)
    with pytest.raises(ValueError, match="divide"):
        cnn.conv2d_num_params(3, 6, 3, groups=2)


def test_mlp_num_params_and_matched_mlp():
    m = cnn.matched_mlp(16_522, hidden_layers=3)
    assert count_parameters(m) == cnn.mlp_num_params(m.sizes)
    assert len(m.sizes) == 5 and m.sizes[0] == 784 and m.sizes[-1] == 10
    h = m.sizes[1]
    others = [cnn.mlp_num_params([784, w, w, w, 10]) for w in (h - 1, h + 1)]
    assert all(abs(o - 16_522) >= abs(count_parameters(m) - 16_522) for o in others)  # the closest width
    assert abs(count_parameters(m) - 16_522) / 16_522 < 0.02
    with pytest.raises(ValueError):
        cnn.matched_mlp(100, hidden_layers=0)


def test_receptive_field_closed_forms():
    assert cnn.receptive_field([]) == []
    assert [r for r, _, _ in cnn.receptive_field([(3, 1, 1)] * 5)] == [3, 5, 7, 9, 11]  # 2n + 1
    assert [r for r, _, _ in cnn.receptive_field([(2, 2)] * 4)] == [2, 4, 8, 16]  # 2^n
    assert cnn.receptive_field([(5, 1, 2), (2, 2, 0), (5, 1, 0), (2, 2, 0)]) == [
        (5, 1, 0.0), (6, 2, 0.5), (14, 2, 4.5), (16, 4, 5.5)]  # LeNet-5
    # dilation d spreads a k-tap kernel over d(k - 1) + 1 pixels
    assert cnn.receptive_field([(3, 1, 2, 2)]) == [(5, 1, 0.0)]
    with pytest.raises(ValueError, match="kernel, stride"):
        cnn.receptive_field([(3,)])
    with pytest.raises(ValueError, match="stride >= 1"):
        cnn.receptive_field([(3, 0)])


def _ones_stack(specs):
    """Linear net of all-ones convolutions and average pools: the gradient is positive exactly on the field."""
    layers = []
    for i, (k, s, p, d) in enumerate(specs):
        if i % 3 == 1 and d == 1:
            layers.append(nn.AvgPool2d(k, s, p, count_include_pad=True))
        else:
            conv = nn.Conv2d(1, 1, k, s, p, d, bias=False).double()
            nn.init.ones_(conv.weight)
            layers.append(conv)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("specs", [
    [(5, 1, 2, 1), (2, 2, 0, 1), (5, 1, 0, 1), (2, 2, 0, 1)],
    [(3, 2, 1, 1), (3, 1, 1, 1), (3, 2, 0, 1), (3, 1, 1, 2)],
    [(7, 2, 3, 1), (3, 2, 1, 1), (3, 1, 1, 1), (1, 1, 0, 1), (4, 2, 1, 1)],
])
def test_receptive_field_equals_brute_force_gradient_support(specs):
    net = _ones_stack(specs)
    assert cnn.layer_specs(net) == [tuple(s) for s in specs]
    rf = cnn.receptive_field(specs)[-1]
    size = 64
    out = net(torch.zeros(1, 1, size, size, dtype=torch.float64))
    for unit in (0, out.shape[-1] // 2, out.shape[-1] - 1):
        grad = cnn.effective_receptive_field(net, (1, size, size), inputs=torch.rand(1, 1, size, size).double(),
                                             position=(unit, unit))
        rows = torch.nonzero(grad.sum(1)).flatten()
        lo, hi = cnn.receptive_field_box(rf, unit)
        assert lo <= rows.min().item() and rows.max().item() <= hi  # nothing outside the analytic field
        if 0 <= lo and hi <= size - 1:  # a field inside the image is reached out to both of its ends
            assert rows.min().item() == lo and rows.max().item() == hi
        else:  # at the border the field is clipped (a dilated kernel may also skip the first real pixels)
            assert rows.min().item() >= max(0, lo) and rows.max().item() <= min(size - 1, hi)
    lo, hi = cnn.receptive_field_box(rf, out.shape[-1] // 2)
    assert 0 <= lo and hi <= size - 1, "the middle unit's field should fit in the test image"


def test_layer_specs_reads_lenet_and_rejects_non_square():
    assert cnn.layer_specs(cnn.LeNet()) == [(5, 1, 2, 1), (2, 2, 0, 1), (5, 1, 0, 1), (2, 2, 0, 1)]
    with pytest.raises(ValueError, match="square"):
        cnn.layer_specs(nn.Sequential(nn.Conv2d(1, 1, (3, 5))))


def test_effective_receptive_field_of_lenet_lies_in_the_analytic_box():
    torch.manual_seed(0)
    model = cnn.LeNet(cnn.LeNetConfig.modern()).train()
    erf = cnn.effective_receptive_field(model.features, (1, 28, 28), n=64)
    lo, hi = cnn.receptive_field_box(cnn.receptive_field(cnn.layer_specs(model.features))[-1], 2)
    assert (lo, hi) == (6.0, 21.0)
    nz = torch.nonzero(erf)
    assert nz.min().item() == 6 and nz.max().item() == 21  # zero outside the 16x16 box, reaching its edges
    assert model.features.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # parameter gradients untouched
    with pytest.raises(ValueError, match="spatial map"):
        cnn.effective_receptive_field(model, (1, 28, 28), n=2)
    with pytest.raises(ValueError, match="do not match"):
        cnn.effective_receptive_field(model.features, (1, 28, 28), inputs=torch.zeros(2, 1, 32, 32))


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("config", [cnn.LeNetConfig.classic(), cnn.LeNetConfig.modern()])
def test_lenet_shapes_and_parameter_count(config):
    torch.manual_seed(0)
    model = cnn.LeNet(config)
    assert count_parameters(model) == 61_706
    assert config.map_sizes() == [28, 14, 10, 5]
    x = torch.rand(3, 1, 28, 28)
    maps = model.feature_maps(x)
    assert maps["conv1"].shape == (3, 6, 28, 28) and maps["pool1"].shape == (3, 6, 14, 14)
    assert maps["conv2"].shape == (3, 16, 10, 10) and maps["pool2"].shape == (3, 16, 5, 5)
    assert maps["fc1"].shape == (3, 120) and maps["fc2"].shape == (3, 84)
    torch.testing.assert_close(maps["logits"], model(x))


def test_lenet_with_chapter_03_convolution_gives_the_same_logits():
    torch.manual_seed(0)
    model = cnn.LeNet(cnn.LeNetConfig.modern())
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(model.forward_with_conv(x, ops.conv2d), model(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.forward_with_conv(x, F.conv2d), model(x))


def test_lenet_rejects_bad_inputs_and_configs():
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        cnn.LeNet()(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="activation"):
        cnn.LeNet(cnn.LeNetConfig(activation="swish"))
    with pytest.raises(ValueError, match="pool"):
        cnn.LeNet(cnn.LeNetConfig(pool="median"))
    with pytest.raises(ValueError, match="too small"):
        cnn.LeNet(cnn.LeNetConfig(image_size=8, padding=0))
    lenet32 = cnn.LeNet(cnn.LeNetConfig(image_size=32, padding=0, in_channels=3))  # the 1998 input size
    assert lenet32(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_shallow_cnn_is_local_and_parameter_matched():
    model = cnn.ShallowCNN()
    assert count_parameters(model) == cnn.conv2d_num_params(1, 32, 5) + (32 * 7 * 7 + 1) * 10 == 16_522
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # locality: a pixel only reaches the pooled cells whose 4x4 window its 5x5 neighbourhood touches
    x = torch.zeros(1, 1, 28, 28, requires_grad=True)
    h = model.pool(torch.relu(model.conv(x + 1.0)))
    (g,) = torch.autograd.grad(h[0, :, 0, 0].sum(), x)
    assert torch.nonzero(g[0, 0]).max().item() <= 5  # rows/cols 0..3 of the window, plus the kernel radius 2
    with pytest.raises(ValueError, match="odd"):
        cnn.ShallowCNN(cnn.ShallowCNNConfig(kernel_size=4))
    with pytest.raises(ValueError, match="divide"):
        cnn.ShallowCNN(cnn.ShallowCNNConfig(pool=5))


def test_convolution_is_translation_equivariant():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 5, padding=2, padding_mode="circular")
    x = torch.rand(2, 1, 16, 16)
    shifted = conv(torch.roll(x, (3, -2), dims=(-2, -1)))
    torch.testing.assert_close(shifted, torch.roll(conv(x), (3, -2), dims=(-2, -1)))


# ----------------------------------------------------------------------------- exercise checks


def _solutions():
    path = course.SOLUTIONS / "04_cnns.py"
    spec = importlib.util.spec_from_file_location("solutions_04", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checks_catch_plausible_mistakes():
    sol = _solutions()

    def pool_with_zero_floor(x):  # a ReLU sneaks in: wrong on negative inputs
        return sol.max_pool2x2(x).clamp_min(0)

    def rf_with_new_jump(layers):  # the classic slip: multiply by j_l instead of j_{l-1}
        r, j, start, out = 1, 1, 0.0, []
        for k, s, p in layers:
            j = j * s
            r = r + (k - 1) * j
            start = start + ((k - 1) / 2 - p) * j
            out.append((r, j, start))
        return out

    def params_without_in_channels(c_in, c_out, k, bias=True):
        kh, kw = (k, k) if isinstance(k, int) else k
        return c_out * (kh * kw + int(bias))

    for ex_id, wrong in [("04.1", pool_with_zero_floor), ("04.2", rf_with_new_jump),
                         ("04.3", params_without_in_channels)]:
        res = exercises.result(ex_id, wrong)
        assert res.status == "failed" and "your value" in res.message, res.line()


def test_effective_receptive_field_follows_the_model_dtype():
    net = nn.Conv2d(1, 1, 3).double()
    erf = cnn.effective_receptive_field(net, (1, 7, 7), n=2)
    assert erf.dtype == torch.float64 and erf.shape == (7, 7)
