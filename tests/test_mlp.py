"""companion.mlp against PyTorch's own ops, autograd and closed forms; bad inputs; determinism."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from companion import mlp
from companion import train as trainlib

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
