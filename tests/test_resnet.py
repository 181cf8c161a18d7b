"""companion.resnet against PyTorch's own modules, the paper's parameter counts and closed forms; bad inputs."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from companion import layers, resnet
from companion import train as trainlib
from companion.train import count_parameters


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(("depth", "n"), [(8, 1), (20, 3), (32, 5), (56, 9), (110, 18)])
def test_from_depth_is_6n_plus_2(depth, n):
    cfg = resnet.ResNetConfig.from_depth(depth)
    assert cfg.n == n and cfg.depth == depth and cfg.name == f"ResNet-{depth}"
    assert cfg.replace(skip=False).name == f"plain-{depth}"


def test_bottleneck_depth_is_9n_plus_2_and_tiny_preset():
    cfg = resnet.ResNetConfig.from_depth(29, block="bottleneck")
    assert (cfg.n, cfg.depth, cfg.convs_per_block, cfg.expansion) == (3, 29, 3, 4)
    tiny = resnet.ResNetConfig.tiny()
    assert (tiny.n, tiny.widths, tiny.depth) == (1, (4, 8, 8), 8)
    assert count_parameters(resnet.ResNet(tiny)) == 2518


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(n=0), "positive integer"),
    (dict(widths=(16, 0, 64)), "positive integers"),
    (dict(block="dense"), "block must be one of"),
    (dict(shortcut="C"), "shortcut must be one of"),
    (dict(norm="layer"), "norm must be one of"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet.ResNetConfig(**kwargs)


def test_from_depth_rejects_depths_that_are_not_6n_plus_2():
    with pytest.raises(ValueError, match="not 6n \\+ 2"):
        resnet.ResNetConfig.from_depth(18)
    with pytest.raises(ValueError, match="not 9n \\+ 2"):
        resnet.ResNetConfig.from_depth(21, block="bottleneck")


# ----------------------------------------------------------------------------- shortcuts


@pytest.mark.parametrize(("shape", "c_out", "stride"), [((2, 4, 7, 7), 8, 2), ((1, 3, 6, 5), 3, 1),
                                                        ((2, 2, 9, 4), 5, 3), ((1, 1, 1, 1), 2, 2)])
def test_shortcut_a_is_a_fixed_strided_1x1_conv(shape, c_out, stride):
    x = _randn(*shape, dtype=torch.float64)
    w = torch.zeros(c_out, shape[1], 1, 1, dtype=torch.float64)
    w[: shape[1], :, 0, 0] = torch.eye(shape[1])
    out = resnet.shortcut_a(x, c_out, stride)
    assert torch.equal(out, F.conv2d(x, w, stride=stride))
    branch = nn.Conv2d(shape[1], c_out, 3, stride=stride, padding=1).double()(x)
    assert out.shape == branch.shape, "the shortcut and the 3x3 branch must have the same shape"
    assert count_parameters(resnet.ShortcutA(c_out, stride)) == 0


def test_shortcut_a_rejects_fewer_channels_and_bad_stride():
    with pytest.raises(ValueError, match="can only add channels"):
        resnet.shortcut_a(torch.zeros(1, 8, 4, 4), 4)
    with pytest.raises(ValueError, match="stride"):
        resnet.shortcut_a(torch.zeros(1, 4, 4, 4), 4, 0)


def test_projection_is_conv1x1_then_bn():
    proj = resnet.projection(4, 8, stride=2)
    x = _randn(2, 4, 7, 7)
    expected = F.batch_norm(F.conv2d(x, proj[0].weight, stride=2), None, None, proj[1].weight, proj[1].bias,
                            training=True)
    assert torch.allclose(proj(x), expected, atol=1e-5)
    assert count_parameters(proj) == 4 * 8 + 2 * 8


# ----------------------------------------------------------------------------- blocks


def _functional_basic_block(block, x, skip=True):
    """The block written with F.conv2d / F.batch_norm only (training mode, batch statistics)."""
    def bn(h, m):
        return F.batch_norm(h, None, None, m.weight, m.bias, training=True, eps=m.eps)
    out = F.relu(bn(F.conv2d(x, block.conv1.weight, stride=block.conv1.stride, padding=1), block.bn1))
    out = bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2)
    return F.relu(out + block.shortcut(x)) if skip else F.relu(out)


@pytest.mark.parametrize(("c_in", "c_out", "stride", "kind"), [(8, 8, 1, "A"), (8, 16, 2, "A"), (8, 16, 2, "B")])
def test_basic_block_equals_functional_pytorch(c_in, c_out, stride, kind):
    torch.manual_seed(0)
    block = resnet.BasicBlock(c_in, c_out, stride, shortcut=kind)
    x = _randn(4, c_in, 9, 9)
    assert torch.allclose(block(x), _functional_basic_block(block, x), atol=1e-5)
    plain = resnet.BasicBlock(c_in, c_out, stride, shortcut=kind, skip=False)
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("shortcut")})
    assert plain.shortcut is None
    assert torch.allclose(plain(x), _functional_basic_block(plain, x, skip=False), atol=1e-5)


def test_residual_add_happens_before_the_last_relu():
    torch.manual_seed(0)
    block = resnet.BasicBlock(4, 4).eval()
    x = _randn(2, 4, 5, 5)
    with torch.no_grad():
        branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        assert torch.allclose(block(x), F.relu(branch + x), atol=1e-6)
        assert (block(x) >= 0).all()


@pytest.mark.parametrize(("kind", "c_in", "c_out", "stride", "shortcut"), [
    ("basic", 16, 16, 1, "A"), ("basic", 16, 32, 2, "A"), ("basic", 16, 32, 2, "B"), ("basic", 3, 7, 1, "B"),
    ("bottleneck", 16, 64, 1, "A"), ("bottleneck", 64, 256, 1, "B"), ("bottleneck", 256, 256, 1, "A"),
    ("bottleneck", 256, 512, 2, "B"),
])
def test_block_num_params_matches_pytorch(kind, c_in, c_out, stride, shortcut):
    if kind == "basic":
        block = resnet.BasicBlock(c_in, c_out, stride, shortcut)
    else:
        block = resnet.Bottleneck(c_in, c_out // 4, stride, shortcut)
    projection = isinstance(block.shortcut, nn.Sequential)
    assert count_parameters(block) == resnet.block_num_params(kind, c_in, c_out, projection)
    y = block(_randn(2, c_in, 8, 8))
    assert tuple(y.shape) == (2, c_out, 8 // stride, 8 // stride)


def test_block_num_params_rejects_bad_values():
    with pytest.raises(ValueError, match="kind"):
        resnet.block_num_params("dense", 4, 4)
    with pytest.raises(ValueError, match="divide by 4"):
        resnet.block_num_params("bottleneck", 4, 6)


def test_paper_bottleneck_comparison():
    """He et al. 2016, Fig. 5: a bottleneck on 256 channels costs about as much as a basic block on 64."""
    basic = resnet.block_num_params("basic", 64, 64) - 4 * 64  # conv weights only
    bottleneck = resnet.block_num_params("bottleneck", 256, 256) - 4 * 64 - 2 * 256
    assert (basic, bottleneck) == (73_728, 69_632)


# ----------------------------------------------------------------------------- the network


@pytest.mark.parametrize(("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_parameter_counts_match_the_paper(depth, millions):
    """He et al. 2016, Table 6 (CIFAR-10, 3-channel inputs, option A): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M."""
    model = resnet.ResNet(resnet.ResNetConfig.from_depth(depth, in_channels=3))
    assert round(count_parameters(model) / 1e6, 2 if depth < 100 else 1) == millions
    assert model.weight_layers() == depth


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_plain_twin_has_identical_parameters_with_option_a(depth):
    cfg = resnet.ResNetConfig.from_depth(depth, widths=(4, 8, 16))
    res, plain = resnet.ResNet(cfg), resnet.ResNet(cfg.replace(skip=False))
    assert count_parameters(res) == count_parameters(plain)
    assert [k for k, _ in res.named_parameters()] == [k for k, _ in plain.named_parameters()]
    plain.load_state_dict(res.state_dict())  # the same tensors fit: only the "+ x" differs
    proj = resnet.ResNet(cfg.replace(shortcut="B"))
    assert count_parameters(proj) > count_parameters(res)


def test_shapes_through_the_stages():
    model = resnet.ResNet(resnet.ResNetConfig.tiny())
    x = _randn(3, 1, 28, 28)
    h = model.stem(x)
    sizes = []
    for stage in model.stages:
        h = stage(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(4, 28, 28), (8, 14, 14), (8, 7, 7)]
    assert model(x).shape == (3, 10) and model.features(x).shape == (3, 8)
    bottleneck = resnet.ResNet(resnet.ResNetConfig.tiny(block="bottleneck", in_channels=3, num_classes=5))
    assert bottleneck(_randn(2, 3, 16, 16)).shape == (2, 5)
    assert bottleneck.weight_layers() == bottleneck.config.depth == 11


def test_scratch_batchnorm_network_equals_torch_batchnorm_network():
    cfg = resnet.ResNetConfig.tiny()
    torch.manual_seed(0)
    fast = resnet.ResNet(cfg)
    scratch = resnet.ResNet(cfg.replace(norm="scratch"))
    assert any(isinstance(m, layers.BatchNorm2d) for m in scratch.modules())
    scratch.load_state_dict(fast.state_dict())
    x = _randn(8, 1, 28, 28, seed=1)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))
    g_fast, g_scratch = resnet.gradient_norms(fast, x, y), resnet.gradient_norms(scratch, x, y)
    assert torch.allclose(g_fast["conv"], g_scratch["conv"], rtol=1e-4)
    assert torch.allclose(fast(x), scratch(x), atol=1e-5)  # training mode: batch statistics
    fast.eval(), scratch.eval()
    assert torch.allclose(fast(x), scratch(x), atol=1e-5)  # eval mode: running statistics


def test_zero_init_residual_makes_every_block_the_identity_on_nonnegative_inputs():
    model = resnet.ResNet(resnet.ResNetConfig.tiny(n=2)).zero_init_residual().eval()
    h = model.stem(_randn(2, 1, 12, 12))  # post-ReLU: non-negative
    block = model.stages[0][1]  # stride 1, identity shortcut
    with torch.no_grad():
        assert torch.equal(block(h), h)


def test_block_jacobian_is_relu_mask_times_identity_plus_branch_jacobian():
    """dy/dx = D (I + dF/dx) for y = relu(F(x) + x): the identity path of the gradient."""
    torch.manual_seed(0)
    block = resnet.BasicBlock(2, 2).double().eval()
    x = _randn(1, 2, 3, 3, dtype=torch.float64)

    def branch(v):
        return block.bn2(block.conv2(F.relu(block.bn1(block.conv1(v)))))

    j_block = torch.autograd.functional.jacobian(block, x).reshape(18, 18)
    j_branch = torch.autograd.functional.jacobian(branch, x).reshape(18, 18)
    mask = ((branch(x) + x) > 0).double().flatten()
    assert torch.allclose(j_block, mask[:, None] * (torch.eye(18, dtype=torch.float64) + j_branch), atol=1e-12)


# ----------------------------------------------------------------------------- gradient probe


def test_gradient_norms_equal_autograd_and_change_nothing():
    torch.manual_seed(0)
    model = resnet.ResNet(resnet.ResNetConfig.tiny(n=2))
    x, y = _randn(6, 1, 14, 14), torch.arange(6) % 10
    before = copy.deepcopy(model.state_dict())
    probe = resnet.gradient_norms(model, x, y)
    assert probe["conv"].shape == (model.config.depth - 1,) and probe["input"].shape == (6,)
    assert probe["conv"].dtype == torch.float64
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"probing changed {k}"
    assert all(p.grad is None for p in model.parameters())

    # by hand: run the blocks one by one, keeping every block input's gradient
    model.train()
    h = model.stem(x)
    inputs = []
    for block in model.blocks():
        h.retain_grad()
        inputs.append(h)
        h = block(h)
    F.cross_entropy(model.head(h.mean(dim=(2, 3))), y).backward()
    conv = torch.stack([c.weight.grad.double().norm() for _, c in model.main_convs()])
    rms = torch.stack([t.grad.double().norm() / t[0].numel() ** 0.5 for t in inputs])
    assert torch.allclose(probe["conv"], conv, rtol=1e-5)
    assert torch.allclose(probe["input"], rms, rtol=1e-5)
    model.load_state_dict(before)


def test_plain_gradients_spread_with_depth_residual_ones_do_not():
    """The chapter's finding at small scale: a deep plain net's per-layer gradient norms spread out."""
    x = _randn(32, 1, 14, 14, seed=3)
    y = torch.arange(32) % 10
    spread = {}
    for skip in (False, True):
        torch.manual_seed(0)
        model = resnet.ResNet(resnet.ResNetConfig.from_depth(38, widths=(4, 8, 8), skip=skip))
        g = resnet.gradient_norms(model, x, y)["conv"][1:]  # the blocks' convolutions
        spread[skip] = (g.max() / g.min()).item()
    assert spread[False] > 10 * spread[True]


# ----------------------------------------------------------------------------- training


def _toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, 2:6, 2:6] += 1.0  # class 1 has a bright square
    return TensorDataset(x, y)


def test_train_classifier_learns_and_is_deterministic():
    data = _toy_data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = resnet.ResNet(resnet.ResNetConfig.tiny(num_classes=2))
        history, _ = trainlib.train_classifier(model, data, steps=30, optimizer="sgd", lr=0.05, weight_decay=1e-4,
                                               batch_size=16, schedule="warmup_cosine", shuffle_seed=True,
                                               drop_last=True, progress=False, log_every=1)
        runs.append([r["loss"] for r in history.train if "loss" in r])
    assert runs[0] == runs[1]
    assert len(runs[0]) == 30
    assert trainlib.evaluate_classifier(model, data)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="steps"):
        trainlib.train_classifier(model, data, steps=0)
    with pytest.raises(ValueError, match="empty"):
        trainlib.evaluate_classifier(model, TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))
