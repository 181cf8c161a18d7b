"""companion.vgg: parameter counts against nn.Conv2d, receptive fields, the models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion import cnn, init, vgg
from companion.layers import BatchNorm2d


@pytest.mark.parametrize(("n", "c_in", "c_out", "k", "bias"),
                         [(1, 1, 8, 3, True), (2, 16, 16, 3, True), (3, 3, 64, 3, False), (4, 8, 4, 5, True)])
def test_conv_stack_params_match_nn_conv2d(n, c_in, c_out, k, bias):
    stack = nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=bias),
                          *[nn.Conv2d(c_out, c_out, k, bias=bias) for _ in range(n - 1)])
    assert vgg.conv_stack_params(n, c_in, c_out, k, bias) == sum(p.numel() for p in stack.parameters())


def test_two_3x3_convs_have_fewer_parameters_than_one_5x5_with_the_same_receptive_field():
    c = 64
    assert vgg.conv_stack_params(2, c, c, 3, bias=False) == 18 * c * c
    assert vgg.conv_stack_params(1, c, c, 5, bias=False) == 25 * c * c
    assert vgg.conv_stack_params(3, c, c, 3, bias=False) == 27 * c * c < vgg.conv_stack_params(1, c, c, 7, bias=False)
    with pytest.raises(ValueError):
        vgg.conv_stack_params(0, 1, 1)


@pytest.mark.parametrize(("depth", "stages"), [(2, (1, 1)), (4, (2, 2)), (8, (4, 4)), (5, (2, 3)), (3, (1, 2))])
def test_with_depth_spreads_the_convolutions_over_the_stages(depth, stages):
    cfg = vgg.VGGConfig.with_depth(depth, width=4)
    assert cfg.stages == stages and cfg.widths == (4, 8) and cfg.depth == depth


def test_config_validation():
    with pytest.raises(ValueError, match="head"):
        vgg.VGGConfig(head="mlp")
    with pytest.raises(ValueError, match="same"):
        vgg.VGGConfig(stages=(1, 1), widths=(8,))
    with pytest.raises(ValueError, match=">= 1"):
        vgg.VGGConfig(stages=(0, 1), widths=(8, 16))
    with pytest.raises(ValueError, match="image"):
        vgg.VGGConfig(stages=(1,) * 6, widths=(2,) * 6)
    with pytest.raises(ValueError, match="depth"):
        vgg.VGGConfig.with_depth(1)


@pytest.mark.parametrize("depth", [2, 4, 8, 16])
def test_receptive_field_closed_form_and_agrees_with_the_built_model(depth):
    cfg = vgg.VGGConfig.with_depth(depth, width=2)
    n = depth // 2
    assert vgg.receptive_field_size(cfg) == 6 * n + 4
    assert vgg.config_layer_specs(cfg) == cnn.layer_specs(vgg.VGG(cfg))  # the specs, without building the model
    assert cnn.receptive_field(cnn.layer_specs(vgg.VGG(cfg)))[-1][0] == vgg.receptive_field_size(cfg)


def test_receptive_field_is_measured_by_gradients():
    """A unit of the last stage of a VGG-8 depends on exactly the 28x28 box the recurrence predicts."""
    torch.manual_seed(0)
    cfg = vgg.VGGConfig.with_depth(8, width=2)
    model = vgg.VGG(cfg).double()
    inputs = torch.randn(4, 1, 56, 56, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    erf = cnn.effective_receptive_field(model.features, (1, 56, 56), inputs=inputs)
    rows, cols = torch.nonzero(erf > 0, as_tuple=True)
    assert rows.max() - rows.min() + 1 <= vgg.receptive_field_size(cfg)
    assert cols.max() - cols.min() + 1 <= vgg.receptive_field_size(cfg)
    assert rows.max() - rows.min() + 1 > vgg.receptive_field_size(cfg) - 4  # reaches (almost) the edges


@pytest.mark.parametrize("head", ["flatten", "gap"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_shapes_names_and_parameter_count(batch_norm, head):
    cfg = vgg.VGGConfig(stages=(2, 3), widths=(4, 8), batch_norm=batch_norm, head=head)
    model = vgg.VGG(cfg)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    names = [n for n, _ in model.features.named_children()]
    assert names[:3] == (["conv1_1", "bn1_1", "relu1_1"] if batch_norm else ["conv1_1", "relu1_1", "conv1_2"])
    assert "pool2" in names
    bn = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert len(bn) == (5 if batch_norm else 0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all((m.bias is None) == batch_norm for m in convs), "no conv bias in front of a batch norm"
    expected = (vgg.conv_stack_params(2, 1, 4, bias=not batch_norm) + vgg.conv_stack_params(3, 4, 8, bias=not batch_norm)
                + (2 * (4 + 4 + 8 + 8 + 8) if batch_norm else 0) + (8 if head == "gap" else 8 * 7 * 7) * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_vgg_is_kaiming_initialised():
    torch.manual_seed(0)
    model = vgg.VGG(vgg.VGGConfig(stages=(1, 1), widths=(64, 128)))
    w = model.features.conv2_1.weight
    assert w.std().item() == pytest.approx(init.kaiming_std(w), rel=0.05)
    assert model.features.conv2_1.bias.abs().sum() == 0


def test_tiny_preset_and_with_batch_norm():
    cfg = vgg.VGGConfig.tiny()
    assert cfg.depth == 2 and not cfg.batch_norm and cfg.with_batch_norm().batch_norm
    out = vgg.VGG(cfg.with_batch_norm())(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)


def test_vgg_trains_one_step_and_eval_output_does_not_depend_on_the_batch():
    torch.manual_seed(0)
    model = vgg.VGG(vgg.VGGConfig.tiny(batch_norm=True))
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss0 = F.cross_entropy(model(x), y)
    loss0.backward()
    opt.step()
    assert int(model.features.bn1_1.num_batches_tracked) == 1
    model.eval()
    torch.testing.assert_close(model(x[:1]), model(x)[:1])


@pytest.mark.parametrize("activation", ["relu", "tanh", "linear"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_plain_net(activation, batch_norm):
    net = vgg.plain_net(5, 6, activation, batch_norm)
    assert net(torch.randn(2, 1, 9, 9)).shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in net) == 5
    assert sum(isinstance(m, BatchNorm2d) for m in net) == (5 if batch_norm else 0)
    assert net.conv1.padding == (1, 1)
    with pytest.raises(ValueError, match="activation"):
        vgg.plain_net(2, activation="gelu")
    with pytest.raises(ValueError, match="depth"):
        vgg.plain_net(0)
