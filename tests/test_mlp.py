"""companion.mlp against PyTorch's own ops, autograd and closed forms; bad inputs; determinism."""

import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from companion import mlp
from companion import train as trainlib


def _logits(seed=0, b=16, k=10, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=dtype) * scale, torch.randint(0, k, (b,), generator=g)


# ----------------------------------------------------------------------------- softmax family


@pytest.mark.parametrize("scale", [1.0, 30.0, 1000.0])
def test_softmax_and_log_softmax_match_torch(scale):
    z, _ = _logits(scale=scale)
    torch.testing.assert_close(mlp.softmax(z), torch.softmax(z, -1))
    torch.testing.assert_close(mlp.log_softmax(z), torch.log_softmax(z, -1))
    assert torch.isfinite(mlp.log_softmax(z)).all()


def test_softmax_other_dim_and_sums_to_one():
    z = torch.randn(3, 5, 7)
    torch.testing.assert_close(mlp.softmax(z, dim=1), torch.softmax(z, 1))
    torch.testing.assert_close(mlp.log_softmax(z, dim=0), torch.log_softmax(z, 0))
    torch.testing.assert_close(mlp.softmax(z).sum(-1), torch.ones(3, 5))


def test_log_softmax_survives_where_naive_overflows():
    z = torch.tensor([[1000.0, 0.0, -1000.0]])
    naive = z.exp() / z.exp().sum(-1, keepdim=True)
    assert torch.isnan(naive).any()
    torch.testing.assert_close(mlp.log_softmax(z), torch.tensor([[0.0, -1000.0, -2000.0]]))


def test_log_softmax_gradient_matches_torch():
    z, _ = _logits(dtype=torch.float64)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    w = torch.randn_like(z)
    (mlp.log_softmax(a) * w).sum().backward()
    (torch.log_softmax(b, -1) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_softmax_rejects_integer_logits():
    with pytest.raises(TypeError, match="floating-point"):
        mlp.softmax(torch.tensor([[1, 2]]))
    with pytest.raises(TypeError, match="floating-point"):
        mlp.log_softmax(torch.tensor([[1, 2]]))


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("scale", [1.0, 1000.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(scale, reduction):
    z, y = _logits(scale=scale)
    torch.testing.assert_close(mlp.cross_entropy(z, y, reduction=reduction),
                               F.cross_entropy(z, y, reduction=reduction))


def test_cross_entropy_closed_form_uniform_logits():
    z = torch.zeros(4, 10)
    assert mlp.cross_entropy(z, torch.tensor([0, 3, 5, 9])).item() == pytest.approx(math.log(10))


def test_cross_entropy_grad_matches_autograd():
    for scale in (1.0, 1000.0):
        z, y = _logits(scale=scale, dtype=torch.float64)
        leaf = z.clone().requires_grad_()
        F.cross_entropy(leaf, y).backward()
        g = mlp.cross_entropy_grad(z, y)
        torch.testing.assert_close(g, leaf.grad)
        torch.testing.assert_close(g.sum(1), torch.zeros(len(z), dtype=torch.float64))


@pytest.mark.parametrize("fn", [mlp.cross_entropy, mlp.cross_entropy_grad])
def test_cross_entropy_bad_inputs_name_shapes(fn):
    with pytest.raises(ValueError, match=r"logits \(4, 10\) and targets \(3,\)"):
        fn(torch.zeros(4, 10), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"logits must be \[B, K\].*\(10,\)"):
        fn(torch.zeros(10), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="0..9"):
        fn(torch.zeros(2, 10), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="integer class indices"):
        fn(torch.zeros(2, 10), torch.tensor([0.0, 1.0]))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        mlp.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), reduction="avg")


# ----------------------------------------------------------------------------- manual backward


def test_manual_backward_matches_autograd():
    g = torch.Generator().manual_seed(0)
    B, D, H, K = 32, 20, 16, 5
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (B,), generator=g)
    params = {"W1": torch.randn(H, D, generator=g, dtype=torch.float64) * 0.3,
              "b1": torch.randn(H, generator=g, dtype=torch.float64) * 0.1,
              "W2": torch.randn(K, H, generator=g, dtype=torch.float64) * 0.3,
              "b2": torch.randn(K, generator=g, dtype=torch.float64) * 0.1}
    loss, grads = mlp.mlp_forward_backward(x, y, **params)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    z = F.relu(x @ leaves["W1"].T + leaves["b1"]) @ leaves["W2"].T + leaves["b2"]
    z.retain_grad()
    ref = F.cross_entropy(z, y)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach())
    for k in params:
        assert grads[k].shape == params[k].shape
        torch.testing.assert_close(grads[k], leaves[k].grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(grads["logits"], z.grad, rtol=0, atol=1e-12)


def test_manual_backward_bad_shapes():
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    W1, b1, W2, b2 = torch.randn(5, 6), torch.zeros(5), torch.randn(3, 5), torch.zeros(3)
    with pytest.raises(ValueError, match=r"W1 \(5, 7\)"):
        mlp.mlp_forward_backward(x, y, torch.randn(5, 7), b1, W2, b2)
    with pytest.raises(ValueError, match=r"x must be \[B, D\]"):
        mlp.mlp_forward_backward(x[None], y, W1, b1, W2, b2)
    with pytest.raises(ValueError, match=r"targets \(3,\)"):
        mlp.mlp_forward_backward(x, y[:3], W1, b1, W2, b2)


# ----------------------------------------------------------------------------- layers and models


def test_linear_matches_nn_linear_and_shares_state_dict():
    torch.manual_seed(0)
    ours, theirs = mlp.Linear(12, 7), nn.Linear(12, 7)
    assert ours.weight.shape == theirs.weight.shape and ours.bias.shape == theirs.bias.shape
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 12)
    torch.testing.assert_close(ours(x), theirs(x))
    assert mlp.Linear(4, 2, bias=False).bias is None


@pytest.mark.parametrize(("init", "var"), [("kaiming", 2.0), ("lecun", 1.0)])
def test_linear_init_variance(init, var):
    torch.manual_seed(0)
    w = mlp.Linear(1000, 500, init=init).weight
    assert w.var().item() == pytest.approx(var / 1000, rel=0.05)
    assert mlp.Linear(10, 3, init="zeros").weight.abs().sum().item() == 0.0


def test_kaiming_keeps_relu_activations_alive_with_depth():
    torch.manual_seed(0)
    h = torch.randn(512, 256)
    stds = {}
    for init in ("kaiming", "lecun"):
        a = h
        for _ in range(10):
            a = torch.relu(mlp.Linear(256, 256, init=init)(a))
        stds[init] = a.std().item()
    assert 0.3 < stds["kaiming"] < 3.0 and stds["lecun"] < 0.1


def test_linear_bad_inputs():
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 4\], got shape \(2, 5\)"):
        mlp.Linear(4, 3)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="init"):
        mlp.Linear(4, 3, init="xavier")
    with pytest.raises(ValueError, match="positive"):
        mlp.Linear(0, 3)


def test_softmax_regression_shapes_and_templates():
    m = mlp.SoftmaxRegression()
    assert sum(p.numel() for p in m.parameters()) == 7850
    assert m(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert m(torch.rand(5, 784)).shape == (5, 10)
    assert m.templates().shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match=r"784 features.*\(5, 1, 14, 14\)"):
        m(torch.rand(5, 1, 14, 14))


def test_mlp_shapes_params_and_activations():
    m = mlp.MLP((784, 256, 128, 10))
    assert sum(p.numel() for p in m.parameters()) == 235_146
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert [layer.init for layer in m.layers] == ["kaiming", "kaiming", "lecun"]
    assert [layer.init for layer in mlp.MLP((4, 8, 2), "tanh").layers] == ["lecun", "lecun"]
    for act in ("relu", "gelu", "tanh", "sigmoid", "identity"):
        assert mlp.MLP((6, 5, 3), act)(torch.randn(2, 6)).shape == (2, 3)
    with pytest.raises(ValueError, match="activation"):
        mlp.MLP((4, 2), "swish")
    with pytest.raises(ValueError, match="at least two"):
        mlp.MLP((4,))
    with pytest.raises(ValueError, match="784 features"):
        m(torch.rand(3, 1, 27, 27))


def test_mlp_is_deterministic_given_the_seed():
    torch.manual_seed(3)
    a = mlp.MLP((20, 8, 4))
    torch.manual_seed(3)
    b = mlp.MLP((20, 8, 4))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_mlp_forward_matches_the_manual_forward():
    torch.manual_seed(0)
    m = mlp.MLP((6, 5, 3))
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 1])
    l1, l2 = m.layers
    loss, _ = mlp.mlp_forward_backward(x, y, l1.weight, l1.bias, l2.weight, l2.bias)
    torch.testing.assert_close(loss, mlp.cross_entropy(m(x), y))


# ----------------------------------------------------------------------------- experiments


def test_permute_pixels_matches_indexing_and_inverts():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 5, generator=g)
    perm = torch.randperm(20, generator=g)
    out = mlp.permute_pixels(x, perm)
    assert out.shape == x.shape
    torch.testing.assert_close(out[1, 2].flatten(), x[1, 2].flatten()[perm])
    torch.testing.assert_close(mlp.permute_pixels(out, torch.argsort(perm)), x)
    torch.testing.assert_close(mlp.permute_pixels(x, torch.arange(20).flip(0)), x.flip(-1).flip(-2))
    flat = x.reshape(2, -1)[:, :20]
    torch.testing.assert_close(mlp.permute_pixels(flat, perm), flat[:, perm])


def test_permuted_mlp_equals_mlp_with_permuted_first_layer():
    torch.manual_seed(0)
    m = mlp.MLP((16, 8, 3))
    x = torch.rand(5, 1, 4, 4)
    perm = torch.randperm(16)
    m2 = mlp.MLP((16, 8, 3))
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        m2.layers[0].weight.copy_(m.layers[0].weight[:, perm])
    torch.testing.assert_close(m2(mlp.permute_pixels(x, perm)), m(x))


def test_permute_pixels_bad_inputs():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"perm must be \[16\]"):
        mlp.permute_pixels(x, torch.arange(15))
    with pytest.raises(ValueError, match="permutation of 0..15"):
        mlp.permute_pixels(x, torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] or \[B, D\]"):
        mlp.permute_pixels(torch.rand(1, 4, 4), torch.arange(16))


def test_shift_images_moves_content_and_fills_zeros():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    right_down = mlp.shift_images(x, 1, 2)
    assert right_down[0, 0, 4, 3] == 1.0 and right_down.sum() == 1.0
    left_up = mlp.shift_images(x, -2, -1)
    assert left_up[0, 0, 1, 0] == 1.0
    torch.testing.assert_close(mlp.shift_images(x, 0, 0), x)
    y = torch.arange(25.0).reshape(5, 5)
    s = mlp.shift_images(y, 2, 0)
    assert (s[:, :2] == 0).all()
    torch.testing.assert_close(s[:, 2:], y[:, :3])
    torch.testing.assert_close(mlp.shift_images(mlp.shift_images(y, 0, 3), 0, -3)[:2], y[:2])


def test_shift_images_bad_inputs():
    with pytest.raises(ValueError, match="out of frame"):
        mlp.shift_images(torch.zeros(1, 5, 5), 5, 0)
    with pytest.raises(ValueError, match="whole pixels"):
        mlp.shift_images(torch.zeros(1, 5, 5), 0.5, 0)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W\]"):
        mlp.shift_images(torch.zeros(5), 1, 0)


def _blobs(n=256, seed=0):
    """Two well-separated classes of 4x4 images: bright left half vs bright right half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.3
    x[y == 0, :, :, :2] += 0.7
    x[y == 1, :, :, 2:] += 0.7
    return TensorDataset(x, y)


def test_train_classifier_learns_and_is_deterministic():
    train, test = _blobs(), _blobs(seed=1)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = mlp.MLP((16, 8, 2))
        history, acc = trainlib.train_classifier(model, train, test, epochs=3, batch_size=32, lr=1e-2,
                                                 criterion=mlp.cross_entropy, progress=False)
        results.append((acc, history.series("loss")[1]))
    assert results[0][0] > 0.95
    assert results[0] == results[1]
    assert len(history.eval) == 3
    torch.manual_seed(0)
    history, acc = trainlib.train_classifier(mlp.MLP((16, 8, 2)), train, test, epochs=3, batch_size=32, lr=1e-2,
                                             criterion=mlp.cross_entropy, progress=False, eval_every=2)
    assert [r["epoch"] for r in history.eval if "test_accuracy" in r] == [2, 3]
    assert acc == results[0][0]
    with pytest.raises(ValueError, match="eval_every"):
        trainlib.train_classifier(mlp.MLP((16, 2)), train, test, epochs=1, eval_every=0, progress=False)


# ----------------------------------------------------------------------------- hub recipe


def test_build_hub_mlp_shape_and_size():
    m = mlp.build_hub_mlp()
    assert m.sizes == mlp.HUB_SIZES == (784, 256, 128, 10)
    n = sum(p.numel() for p in m.parameters())
    assert n == 235_146 and n * 4 < 1_000_000
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert set(m.state_dict()) == {f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}


def test_train_hub_mlp_rejects_unknown_profile():
    with pytest.raises(ValueError, match="profile"):
        mlp.train_hub_mlp("laptop")


def test_train_hub_mlp_ci_runs_quickly():
    from companion import data

    try:
        data.mnist("test")
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    start = time.perf_counter()
    model, info = mlp.train_hub_mlp("ci")
    assert set(info) >= {"description", "data", "steps", "metrics"}
    assert info["steps"] > 0 and 0.5 < info["metrics"]["test_accuracy"] <= 1.0
    assert "MNIST" in info["data"]
    assert not model.training
    assert time.perf_counter() - start < 30


def test_shipped_checkpoint_loads_if_present():
    from companion import hub

    weights, card_path = hub.paths("mlp_mnist")
    if not weights.is_file():
        pytest.skip("mlp_mnist is not shipped yet (python -m companion.hub retrain mlp_mnist)")
    model = hub.load_model("mlp_mnist")
    card = hub.card("mlp_mnist")
    assert card["parameters"] == 235_146 and card["bytes"] < 1_048_576
    assert card["metrics"]["test_accuracy"] > 0.9
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
