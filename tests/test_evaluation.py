"""Chapter 13's sample metrics against closed forms and independent code, and the feature network's guards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion import evaluation, hub, metrics

# ----------------------------------------------------------------------------- Fréchet distance


def _reference_fd(mu1, s1, mu2, s2):
    """An independent implementation: the trace term from the eigenvalues of S1 S2 (similar to a PSD matrix)."""
    lam = np.linalg.eigvals(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam.real, 0, None)).sum())


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.2, 3, 6), rng.uniform(0.2, 3, 6)
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(closed, rel=1e-9)
    # torch input, float32, gives the same float64 answer
    t = [torch.tensor(a, dtype=torch.float32) for a in (mu1, np.diag(v1), mu2, np.diag(v2))]
    assert metrics.frechet_distance(*t) == pytest.approx(closed, rel=1e-5)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)


def test_frechet_distance_identical_is_zero_and_matches_independent_code():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(400, 16)) * 1.5 + 0.3
    mu_a, s_a, mu_b, s_b = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    assert metrics.frechet_distance(mu_a, s_a, mu_a, s_a) == pytest.approx(0.0, abs=1e-6)
    expected = _reference_fd(mu_a, s_a, mu_b, s_b)
    assert metrics.frechet_distance(mu_a, s_a, mu_b, s_b) == pytest.approx(expected, rel=1e-6)
    assert metrics.distributions._trace_sqrt_product_eigh(s_a, s_b) == pytest.approx(metrics.distributions._trace_sqrt_product(s_a, s_b, 1e-6),
                                                                      rel=1e-7)
    assert metrics.fid_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert metrics.fid_from_features(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_finite_for_singular_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(30, 64)) + 0.1  # N < F: rank-deficient covariances
    d = metrics.fid_from_features(a, b)
    assert math.isfinite(d) and d > 0
    assert d == pytest.approx(_reference_fd(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)),
                              rel=1e-4)
    zero = np.zeros((5, 5))  # both covariances zero: the distance between the means
    assert metrics.frechet_distance(np.ones(5), zero, np.zeros(5), zero) == pytest.approx(5.0, abs=1e-5)


def test_frechet_distance_bad_input():
    with pytest.raises(ValueError, match="imaginary"):
        metrics.frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="share F"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        metrics.frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.fid_from_features(np.zeros((1, 3)), np.zeros((4, 3)))


# ----------------------------------------------------------------------------- KID


def _direct_mmd2(x, y, degree=3, coef0=1.0):
    g = 1.0 / x.shape[1]
    k = lambda a, b: (g * a @ b.T + coef0) ** degree  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    total = sum(kxx[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    total += sum(kyy[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return total - 2 * kxy.sum() / (m * n)


def test_kid_equals_the_direct_unbiased_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) * 1.3 + 0.2
    mean, std = metrics.kid(x, y, subsets=1, subset_size=40)  # one subset = all rows (permuted)
    assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-10) and std == 0.0
    mean2, _ = metrics.kid(x, y, subsets=3, subset_size=100)  # subset_size above N: capped at N
    assert mean2 == pytest.approx(mean, rel=1e-10)


def test_kid_is_unbiased_and_detects_a_shift():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    mean, std = metrics.kid(a, b, subsets=100, subset_size=200)
    assert abs(mean) < std, (mean, std)  # same distribution: the mean over subsets is 0 within one subset's spread
    values = [metrics.kid(a[i:i + 200], b[i:i + 200], subsets=1, subset_size=200)[0] for i in range(0, 2000, 200)]
    assert min(values) < 0 < max(values), values  # an unbiased estimate of 0 takes both signs
    shifted = metrics.kid(a, b + 0.5, subsets=20, subset_size=200)
    assert shifted[0] > 10 * std


# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_direction():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(1000, 8)) * 3.0
    tight = rng.normal(size=(1000, 8)) * 0.3  # packed in the middle of the real data
    p, r = metrics.precision_recall(real, tight, k=3)
    assert p > 0.9 and r < 0.2
    p2, r2 = metrics.precision_recall(tight, real, k=3)  # the roles swapped: low precision, high recall
    assert p2 < 0.2 and r2 > 0.9
    same = metrics.precision_recall(real, rng.normal(size=(1000, 8)) * 3.0)
    assert min(same) > 0.6


def test_precision_recall_against_brute_force():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 0.7
    k = 2

    def radii(s):
        d = np.linalg.norm(s[:, None] - s[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d_fr = np.linalg.norm(fake[:, None] - real[None], axis=-1)  # [F, R]
    precision = (d_fr <= radii(real)[None]).any(1).mean()
    recall = (d_fr.T <= radii(fake)[None]).any(1).mean()
    assert metrics.precision_recall(real, fake, k=k, batch_size=7) == pytest.approx((precision, recall))


# ----------------------------------------------------------------------------- IS, FID_inf, C2ST, bits/dim


def test_inception_score_limits():
    eye = np.eye(10)
    assert metrics.inception_score(eye[np.arange(1000) % 10])[0] == pytest.approx(10.0, rel=1e-6)
    assert metrics.inception_score(eye[np.zeros(100, dtype=int)])[0] == pytest.approx(1.0, rel=1e-6)
    assert metrics.inception_score(np.full((50, 10), 0.1))[0] == pytest.approx(1.0, rel=1e-9)
    mean, std = metrics.inception_score(eye[np.arange(1000) % 5], splits=4)
    assert mean == pytest.approx(5.0, rel=1e-6) and std < 1e-6
    with pytest.raises(ValueError, match="softmax"):
        metrics.inception_score(np.ones((4, 3)))


def test_fid_infinity_recovers_a_line():
    ns = np.array([100, 200, 500, 1000])
    assert metrics.fid_infinity(ns, 2.5 + 40 / ns) == pytest.approx((2.5, 40.0))
    with pytest.raises(ValueError):
        metrics.fid_infinity([100, 100], [1.0, 2.0])


def test_classifier_two_sample_test():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(600, 10)), rng.normal(size=(600, 10))
    null = metrics.classifier_two_sample_test(a, b)
    assert 0.4 < null["accuracy"] < 0.6 and null["p_value"] > 0.01 and null["n_test"] == 600
    unequal = metrics.classifier_two_sample_test(a, b[:200])  # balanced first: chance stays 1/2
    assert unequal["n_test"] == 200 and 0.38 < unequal["accuracy"] < 0.62
    alt = metrics.classifier_two_sample_test(a, b + np.r_[1.0, np.zeros(9)])
    assert alt["accuracy"] > 0.65 and alt["p_value"] < 1e-6


def test_bits_per_dim():
    assert metrics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert metrics.bits_per_dim(torch.tensor([90.0, 100.0]), 784) == pytest.approx(95 / (784 * math.log(2)))


# ----------------------------------------------------------------------------- the feature network


@pytest.fixture(scope="module")
def net():
    return evaluation.feature_extractor()


def test_feature_extractor_is_the_shipped_frozen_checkpoint(net):
    card = hub.card(evaluation.FEATURES_CHECKPOINT)
    assert "MNIST-test[:8000]" in card["data"] and card["metrics"]["test_accuracy"] >= 0.97
    assert sum(p.numel() for p in net.parameters()) == card["parameters"] and card["bytes"] <= 1_000_000
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.rand(5, 1, 28, 28)
    assert net.features(x).shape == (5, 64) and net(x).shape == (5, 10)


def test_fld_guards_its_input(net):
    x = torch.rand(8, 1, 28, 28)
    assert evaluation.fld(x, x, net) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="unsqueeze"):
        evaluation.fld(x[:, 0], x, net)
    with pytest.raises(TypeError, match="floating point"):
        evaluation.fld((x * 255).to(torch.uint8), x, net)
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        evaluation.fld(x * 2 - 1, x, net)
    with pytest.raises(ValueError, match="at least 2"):
        evaluation.fld(x[:1], x, net)
    with pytest.raises(ValueError, match="28x28"):
        evaluation.fld(torch.rand(4, 1, 32, 32), x, net)
    with pytest.raises(TypeError):
        evaluation.fld(x.numpy(), x, net)


def test_corruptions_stay_images():
    x = torch.rand(6, 1, 28, 28)
    for kind, level in (("noise", 0.3), ("blur", 1.5), ("occlude", 10)):
        y = evaluation.corrupt(x, kind, level)
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and not torch.equal(x, y)
    occluded = evaluation.corrupt(torch.ones(3, 1, 28, 28), "occlude", 10)
    assert ((occluded == 0).flatten(1).sum(1) == 100).all()
    assert torch.equal(evaluation.corrupt(x, "noise", 0), x)
    with pytest.raises(ValueError, match="kind"):
        evaluation.corrupt(x, "jpeg", 1)


def test_metrics_on_held_out_digits(net):
    """Noise and blur move FLD, KID, recall and precision the way the chapter says (500 images each)."""
    from companion import data
    try:
        x = data.mnist("test").tensors[0]
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    ref, other = x[8000:8500], x[9000:9500]
    clean = evaluation.sample_metrics(other, ref, net, kid_subsets=10)
    noisy = evaluation.sample_metrics(evaluation.corrupt(other, "noise", 0.5), ref, net, kid_subsets=10)
    assert noisy["fld"] > 5 * clean["fld"] and noisy["kid"] > clean["kid"] + 5 * clean["kid_std"]
    blurred = evaluation.sample_metrics(evaluation.corrupt(other, "blur", 1.5), ref, net, kid_subsets=10)
    assert clean["precision"] > 0.6 and blurred["precision"] < clean["precision"] - 0.2
    assert noisy["recall"] < clean["recall"] - 0.2
    assert clean["is"] > 8
