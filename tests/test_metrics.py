"""companion.metrics against independent references: scikit-learn, numpy, closed forms; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import mutual_info_score, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from companion import metrics, train


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- classifiers


def test_accuracy_is_the_training_loops_own():
    assert metrics.accuracy is train.accuracy
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        model.bias.zero_()
    x = torch.tensor([[2.0, 1, 0], [0, 3, 0], [1, 0, 0], [0, 1, 0]])
    y = torch.tensor([0, 1, 1, 1])  # the third is wrong
    assert metrics.accuracy(model, DataLoader(TensorDataset(x, y), batch_size=3)) == 0.75


def test_confusion_matrix_matches_sklearn():
    y, p = torch.randint(0, 10, (500,), generator=_gen(0)), torch.randint(0, 10, (500,), generator=_gen(1))
    c = metrics.confusion_matrix(p, y)
    assert c.dtype == torch.int64 and c.sum() == 500
    assert (c.numpy() == sk_confusion_matrix(y.numpy(), p.numpy(), labels=list(range(10)))).all()
    with pytest.raises(ValueError, match="0..9"):
        metrics.confusion_matrix(torch.tensor([10]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[N\]"):
        metrics.confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 2))


# ----------------------------------------------------------------------------- information


def test_discretize_matches_numpy_histogram_bins():
    x = torch.randn(500, 3, generator=_gen(0), dtype=torch.float64)
    ours = metrics.discretize(x, 20)
    for j in range(3):
        col = x[:, j].numpy()
        ref = np.digitize(col, np.histogram(col, 20)[1][:-1]) - 1  # disentanglement_lib's recipe, 0-based
        assert np.array_equal(ours[:, j].numpy(), ref)
    assert metrics.discretize(torch.ones(5), 4).tolist() == [0] * 5
    assert metrics.discretize(torch.tensor([0.0, 0.5, 1.0]), 2).tolist() == [0, 1, 1]


def test_entropy_and_mutual_information_match_sklearn():
    g = _gen(0)
    a = torch.randint(0, 6, (2000,), generator=g)
    b = (a + torch.randint(0, 3, (2000,), generator=g)) % 6
    c = torch.randint(0, 4, (2000,), generator=g) * 7 + 100  # non-contiguous labels
    for u, v in ((a, b), (a, c), (b, c), (a, a), (c, a // 2)):
        assert metrics.mutual_information(u, v) == pytest.approx(mutual_info_score(u.numpy(), v.numpy()), abs=1e-12)
    assert metrics.entropy(a) == pytest.approx(mutual_info_score(a.numpy(), a.numpy()), abs=1e-12)
    assert metrics.entropy(torch.tensor([0, 1, 2, 3])) == pytest.approx(math.log(4))
    assert metrics.mutual_information(a, torch.zeros_like(a)) == 0.0
    with pytest.raises(ValueError, match="discretize"):
        metrics.entropy(torch.rand(4))
    with pytest.raises(ValueError):
        metrics.mutual_information(a, b[:5])


def _factors(n=5000, k=3, seed=0):
    g = _gen(seed)
    return torch.stack([torch.randint(0, 10, (n,), generator=g) for _ in range(k)], 1).double()


def test_mig_synthetic_cases_with_known_answers():
    v = _factors()
    g = _gen(1)
    perfect = v + 0.1 * torch.rand(v.shape, generator=g, dtype=torch.float64)  # one latent per factor
    r = metrics.mig(perfect, v)
    assert r.score > 0.95 and r.mi.shape == (3, 3) and r.top.tolist() == [0, 1, 2]
    assert torch.allclose(r.entropy, torch.full((3,), math.log(10), dtype=torch.float64), atol=0.02)
    # permuting the latents changes nothing
    assert metrics.mig(perfect[:, [2, 0, 1]], v).score == pytest.approx(r.score)
    # every latent mixes every factor (a rotation): low MIG
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    mixed = (v - 4.5) @ torch.tensor([[0.6, 0.5, 0.62], [-0.7, 0.45, 0.55], [0.4, -0.75, 0.52]], dtype=torch.float64)
    assert metrics.mig(mixed, v).score < 0.2
    assert metrics.mig((v - 4.5) @ q, v).score < 0.3
    # codes independent of the factors: MIG near 0
    noise = torch.randn(5000, 4, generator=g, dtype=torch.float64)
    assert metrics.mig(noise, v).score < 0.05
    # a factor copied into two latents has no gap: its MIG is ~0, the others stay ~1
    dup = torch.cat([perfect, perfect[:, :1] + 0.01], dim=1)
    per = metrics.mig(dup, v).per_factor
    assert per[0] < 0.05 and bool((per[1:] > 0.95).all())


def test_mig_gap_equals_the_sklearn_estimate():
    v = _factors(2000)
    perfect = v + 0.01 * torch.randn(2000, 3, generator=_gen(9), dtype=torch.float64)
    r = metrics.mig(perfect, v)
    assert isinstance(r, metrics.MIGResult)
    z = metrics.discretize(perfect, 20)
    mi = np.array([[mutual_info_score(z[:, i].numpy(), v[:, j].numpy()) for j in range(3)] for i in range(3)])
    h = np.array([mutual_info_score(v[:, j].numpy(), v[:, j].numpy()) for j in range(3)])
    top2 = np.sort(mi, axis=0)[::-1][:2]
    np.testing.assert_allclose(r.per_factor.numpy(), (top2[0] - top2[1]) / h, atol=1e-12)
    with pytest.raises(ValueError, match="share N"):
        metrics.mig(torch.randn(10, 2), torch.zeros(9, 1))


# ----------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_including_ties(seed):
    g = _gen(seed)
    labels = (torch.rand(300, generator=g) < 0.3).long()
    continuous = torch.randn(300, generator=g) + labels
    tied = torch.randint(0, 4, (300,), generator=g) + labels  # many ties
    for s in (continuous, tied):
        assert metrics.auroc(s, labels) == pytest.approx(roc_auc_score(labels.numpy(), s.numpy()), abs=1e-12)


def test_auroc_closed_cases_and_errors():
    y = torch.tensor([0, 0, 1, 1])
    assert metrics.auroc(torch.tensor([0.1, 0.2, 0.3, 0.4]), y) == 1.0
    assert metrics.auroc(torch.tensor([0.4, 0.3, 0.2, 0.1]), y) == 0.0
    assert metrics.auroc(torch.zeros(4), y) == 0.5
    assert metrics.auroc(torch.tensor([1.0, 2.0, 2.0, 3.0]), y.bool()) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="both classes"):
        metrics.auroc(torch.rand(3), torch.ones(3))
    with pytest.raises(ValueError, match="0 or 1"):
        metrics.auroc(torch.rand(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="same length"):
        metrics.auroc(torch.rand(3), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- codes


def test_codebook_usage_and_perplexity_closed_forms():
    assert metrics.codebook_usage(torch.arange(8), 8) == 1.0
    assert metrics.codebook_usage(torch.tensor([1, 1, 3]), 8) == 0.25
    for used in (1, 5, 16):  # uniform use of `used` codes: perplexity = used, whatever K
        assert metrics.perplexity(torch.arange(used).repeat(7), 16) == pytest.approx(used, rel=1e-12)
    assert metrics.perplexity(torch.full((2, 7, 7), 4), 10) == 1.0
    p = np.array([0.5, 0.25, 0.25])
    assert metrics.perplexity(torch.tensor([0, 0, 1, 2]), 99) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    for bad in (torch.tensor([0.5]), torch.tensor([8]), torch.tensor([-1]), torch.tensor([], dtype=torch.long)):
        with pytest.raises(ValueError):
            metrics.perplexity(bad, 8)
    with pytest.raises(ValueError, match="num_codes"):
        metrics.codebook_usage(torch.tensor([0]), 0)


# ----------------------------------------------------------------------------- generated images


class _Columns(nn.Module):
    """Classifies an image by the brightest of its first 10 pixels."""

    def forward(self, x):
        return 50 * x.reshape(x.shape[0], -1)[:, :10]


def test_sample_scores():
    imgs = torch.zeros(20, 1, 28, 28)
    for i in range(20):
        imgs[i, 0, 0, i % 10] = 1.0
    s = metrics.classifier_scores(_Columns(), imgs, batch_size=7)
    assert torch.equal(s["counts"], torch.full((10,), 2))
    assert s["class_entropy"] == pytest.approx(math.log(10), rel=1e-12) and s["confidence"] > 0.99
    one = metrics.classifier_scores(_Columns(), imgs[:1])
    assert one["class_entropy"] == 0.0 and math.copysign(1.0, one["class_entropy"]) == 1.0
    d = metrics.nearest_distance(imgs[:3], imgs, batch_size=2)
    assert torch.allclose(d, torch.zeros(3), atol=1e-3)
    ref = torch.cdist(torch.rand(4, 784, generator=_gen(0)), imgs.reshape(20, -1)).min(1).values
    torch.testing.assert_close(metrics.nearest_distance(torch.rand(4, 1, 28, 28, generator=_gen(0)), imgs), ref)
    assert torch.allclose(metrics.nearest_distance(torch.zeros(2, 1, 28, 28), imgs[:5]), torch.ones(2))
    ev = metrics.evaluate_samples(imgs, _Columns(), imgs)
    assert ev["nn_rmse"] < 1e-3 and set(ev) == {"confidence", "class_entropy", "nn_rmse"}
    with pytest.raises(ValueError, match="differ in size"):
        metrics.nearest_distance(imgs, imgs[:, :, :5])
    with pytest.raises(TypeError, match="reference must be a tensor"):
        metrics.nearest_distance(imgs, [1.0])
