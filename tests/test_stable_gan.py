"""Chapter 15: spectral norm from scratch against PyTorch, the stabilised losses' closed forms, the penalties on
critics whose input gradient is known, and train_gan's new options."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from companion import losses
from companion import stable_gan as sg
from companion.train import count_parameters, train_gan


def test_power_iteration_finds_the_largest_singular_value():
    g = torch.Generator().manual_seed(0)
    for shape in [(16, 8), (8, 16), (32, 3, 3, 3)]:
        w = torch.randn(*shape, generator=g, dtype=torch.float64)
        exact = torch.linalg.matrix_norm(w.flatten(1), ord=2).item()
        assert abs(sg.spectral_norm_estimate(w, iters=200) - exact) < 1e-3 * exact
    with pytest.raises(ValueError):
        sg.power_iteration(torch.randn(3, 4), torch.randn(4), torch.randn(4))


def test_spectral_norm_matches_pytorchs_parametrization():
    torch.manual_seed(0)
    ours, theirs = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 8, 3)
    theirs.load_state_dict(ours.state_dict())
    sg.spectral_norm(ours)
    torch.nn.utils.parametrizations.spectral_norm(theirs)
    p_ours, p_theirs = ours.parametrizations.weight[0], theirs.parametrizations.weight[0]
    with torch.no_grad():  # same start vectors; then every training forward takes the same power step
        p_ours._u.copy_(p_theirs._u)
        p_ours._v.copy_(p_theirs._v)
    x = torch.randn(2, 3, 9, 9)
    for _ in range(3):
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
        assert torch.allclose(ours.weight, theirs.weight, atol=1e-6)
    ours.eval()
    sigma = torch.linalg.matrix_norm(ours.weight.flatten(1), ord=2).item()
    assert abs(sigma - 1) < 1e-2  # W / sigma(W) has spectral norm 1 (up to the running estimate)
    # gradients flow through sigma(W)
    ours.train()
    ours(x).sum().backward()
    assert ours.parametrizations.weight.original.grad is not None


def test_stabilised_losses_closed_forms():
    real, fake = torch.tensor([1.0, 0.5]), torch.tensor([0.0, -1.0])
    assert math.isclose(losses.lsgan_discriminator_loss(real, fake).item(), 0.5 * 0.125 + 0.5 * 0.5)
    assert math.isclose(losses.lsgan_generator_loss(fake).item(), 0.5 * (1 + 4) / 2)
    assert math.isclose(losses.wasserstein_critic_loss(real, fake).item(), -0.5 - 0.75)
    assert math.isclose(losses.wasserstein_generator_loss(fake).item(), 0.5)
    assert losses.DISCRIMINATOR_LOSSES["lsgan"] is losses.lsgan_discriminator_loss
    assert losses.GENERATOR_LOSSES["wasserstein"] is losses.wasserstein_generator_loss
    with pytest.raises(TypeError):
        losses.wasserstein_critic_loss(torch.tensor([1]), fake)


def test_gradient_penalty_on_a_linear_critic_and_on_interpolates():
    w = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # f(x) = w x has gradient w everywhere, |w| = 5
    critic = lambda x: (x @ w.T).squeeze(-1)  # noqa: E731
    real, fake = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    gp = losses.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert math.isclose(gp.item(), 16.0, rel_tol=1e-9)
    seen = []

    def recording(x):
        seen.append(x.detach().clone())
        return (x ** 2).sum(1)  # gradient 2x: the penalty depends on where it is taken

    real, fake = torch.ones(5, 2, dtype=torch.float64), torch.zeros(5, 2, dtype=torch.float64)
    losses.gradient_penalty(recording, real, fake, generator=torch.Generator().manual_seed(1))
    x_hat = seen[0]
    assert torch.allclose(x_hat[:, 0], x_hat[:, 1]) and bool(((x_hat > 0) & (x_hat < 1)).all())
    assert len(set(x_hat[:, 0].tolist())) == 5, "one epsilon per example"
    # differentiable in the critic's weights (it is part of the critic's loss)
    lin = nn.Linear(2, 1)
    losses.gradient_penalty(lambda x: lin(x).squeeze(-1), torch.randn(4, 2), torch.randn(4, 2)).backward()
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        losses.gradient_penalty(critic, torch.randn(3, 2), torch.randn(4, 2))


def test_r1_penalty_is_the_squared_gradient_norm_on_real_data():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    r1 = losses.r1_penalty(lambda t: (t ** 2).sum(1), x)  # grad 2x, |grad|^2 = 4|x|^2
    assert math.isclose(r1.item(), (4 * 5 + 4 * 1) / 2)


def test_models_shapes_and_spectral_critic():
    c = sg.StableGANConfig.tiny()
    G, D = sg.ResGenerator(c), sg.Critic(c.replace(spectral=True))
    z = torch.randn(3, c.latent_dim)
    x = G(z)
    assert x.shape == (3, 1, 28, 28) and bool((x >= 0).all() and (x <= 1).all())
    assert D(x).shape == (3,)
    assert all(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    D.eval()
    for m in D.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert abs(torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() - 1) < 0.05
    assert count_parameters(sg.ResGenerator()) < 300_000
    with pytest.raises(ValueError):
        sg.StableGANConfig(g_channels=6)


def test_train_gan_options_gp_r1_clip_lsgan():
    torch.manual_seed(0)
    c = sg.StableGANConfig.tiny()
    x = torch.rand(64, 1, 28, 28)
    for kwargs in [dict(loss="wasserstein", penalty="gp"), dict(loss="lsgan"), dict(penalty="r1"),
                   dict(loss="wasserstein", clip=0.01)]:
        G, D = sg.ResGenerator(c), sg.Critic(c)
        h = train_gan(G, D, x, steps=2, d_steps=2, batch_size=16, progress=False, **kwargs)
        row = h.train[-2]
        assert {"score_real", "score_fake", "penalty"} <= set(row)
        assert (row["penalty"] > 0) == ("penalty" in kwargs)
        if "clip" in kwargs:
            assert max(p.abs().max().item() for p in D.parameters()) <= 0.01 + 1e-9
    with pytest.raises(ValueError):
        train_gan(G, D, x, steps=1, penalty="l2", progress=False)
    with pytest.raises(ValueError):
        train_gan(G, D, x, steps=1, d_loss="huber", progress=False)
    # the same seed gives the same run with the penalty's random interpolates
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        G, D = sg.ResGenerator(c), sg.Critic(c)
        runs.append(train_gan(G, D, x, steps=2, batch_size=16, loss="wasserstein", penalty="gp",
                              progress=False).train[-2]["d_loss"])
    assert runs[0] == runs[1]


def test_clip_weights():
    lin = nn.Linear(4, 4)
    nn.init.normal_(lin.weight, 0, 1)
    sg.clip_weights(lin, 0.1)
    assert lin.weight.abs().max().item() <= 0.1 + 1e-7
    with pytest.raises(ValueError):
        sg.clip_weights(lin, 0)
