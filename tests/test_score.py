"""``companion.score``: DSM's minimiser is the noised data's score, Langevin samples the right Gaussian."""

import math

import pytest
import torch

from companion import score


def test_dsm_minimiser_is_the_true_score_for_gaussian_data():
    """For x ~ N(m, s^2) noised by sigma, the best *linear* score a x + b fitted by DSM is -(x - m)/(s^2 + sigma^2)."""
    g = torch.Generator().manual_seed(0)
    m, s, sigma = 0.7, 0.5, 0.3
    x = m + s * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    xt = x + sigma * z
    # minimise E|sigma (a xt + b) + z|^2 in closed form: least squares of -z/sigma on [xt, 1]
    A = torch.cat([xt, torch.ones_like(xt)], 1)
    a, b = torch.linalg.lstsq(A, -z / sigma).solution.reshape(-1).tolist()
    var = s**2 + sigma**2
    assert math.isclose(a, -1 / var, rel_tol=0.02) and math.isclose(b, m / var, rel_tol=0.03)
    # and dsm_loss is smallest at the true score (compare with a perturbed one), on the same draws
    true = lambda v, sg: score.gaussian_score(v, m, math.sqrt(s**2 + sigma**2))  # noqa: E731
    off = lambda v, sg: 1.1 * true(v, sg)  # noqa: E731
    sig = torch.full((len(x),), sigma, dtype=torch.float64)
    assert score.dsm_loss(true, x, None, sigma=sig, noise=z) < score.dsm_loss(off, x, None, sigma=sig, noise=z)


def test_mixture_score_is_the_gradient_of_its_log_density():
    means = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    logp = score.mixture_log_density(x, means, 0.4, sigma=0.2, weights=torch.tensor([0.3, 0.7]))
    (grad,) = torch.autograd.grad(logp.sum(), x)
    s = score.mixture_score(x.detach(), means, 0.4, sigma=0.2, weights=torch.tensor([0.3, 0.7]))
    assert torch.allclose(grad, s, atol=1e-10)


def test_annealed_langevin_on_a_known_gaussian_score_returns_its_mean_and_std():
    """Exact score of N(m, s^2) noised by each sigma; 20,000 chains; mean within 0.02, std within 5 %."""
    m, s = 1.5, 0.4
    sigmas = score.geometric_sigmas(3.0, 0.01, 10)
    fn = lambda x, sg: score.gaussian_score(x, m, torch.sqrt(s**2 + sg[:, None] ** 2))  # noqa: E731
    x0 = torch.rand(20_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 6 - 3
    calls = []
    out = score.annealed_langevin(fn, x0, sigmas, steps=100, eps=2e-5, generator=torch.Generator().manual_seed(1),
                                  callback=calls.append)
    assert abs(float(out.mean()) - m) < 0.02 and abs(float(out.std()) / s - 1) < 0.05
    assert len(calls) == 1000 and calls[-1]["level"] == 9 and math.isclose(calls[0]["step_size"], 2e-5 * 300**2)
    assert torch.equal(x0, x0.clone()), "the start is not modified"


def test_langevin_step_is_the_formula():
    x, sc, z = torch.tensor([1.0]), torch.tensor([-2.0]), torch.tensor([0.5])
    assert torch.allclose(score.langevin_step(sc, x, 0.04, z), torch.tensor([1.0 - 0.04 + 0.2 * 0.5]))


def test_score_nets_shapes_and_the_sigma_division():
    torch.manual_seed(0)
    net = score.ToyScoreNet()
    assert net(torch.randn(7, 2), 0.5).shape == (7, 2)
    assert net(torch.randn(7, 2), torch.full((7,), 0.5)).shape == (7, 2)
    from companion.unet import UNetConfig

    m = score.ScoreNet(score.ScoreNetConfig(unet=UNetConfig.tiny(), levels=4))
    x = torch.rand(2, 1, 28, 28)
    assert m(x, 0.1).shape == x.shape and m.sigmas.shape == (4,)
    out = m.sample(x, steps=1)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert m.loss(x).dim() == 0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="must not exceed"):
        score.geometric_sigmas(0.1, 1.0, 5)
    with pytest.raises(ValueError, match="levels must be an int"):
        score.geometric_sigmas(1.0, 0.1, 0)
    fn = lambda x, sg: -x  # noqa: E731
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        score.annealed_langevin(fn, torch.zeros(2, 1), torch.tensor([1.0]), steps=0, eps=1e-3)
    with pytest.raises(ValueError, match="decreasing"):
        score.annealed_langevin(fn, torch.zeros(2, 1), torch.tensor([0.1, 1.0]), steps=1, eps=1e-3)
    with pytest.raises(ValueError, match="eps must be > 0"):
        score.annealed_langevin(fn, torch.zeros(2, 1), torch.tensor([1.0]), steps=1, eps=0)
    with pytest.raises(ValueError, match="sigma must be a float or one per example"):
        score.dsm_loss(fn, torch.zeros(4, 2), None, sigma=torch.ones(3))
    with pytest.raises(ValueError, match="sigmas must be a non-empty"):
        score.dsm_loss(fn, torch.zeros(4, 2), torch.tensor([]))
    with pytest.raises(ValueError, match="same D"):
        score.mixture_score(torch.zeros(3, 2), torch.zeros(2, 3), 0.1)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        score.langevin_step(torch.zeros(1), torch.zeros(1), 0.0, torch.zeros(1))
