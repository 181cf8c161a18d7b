"""``companion.flow_matching``: the class-conditional velocity model, its loss, sampler, guidance and reflow."""

import pytest
import torch

from companion import diffusion as D
from companion import flow_matching as fm
from companion.unet import UNetConfig


def tiny(**changes):
    unet = UNetConfig.tiny(time_scale=1000.0, num_classes=10)
    return fm.FlowMatching(fm.FlowMatchingConfig(unet=unet, **changes))


def test_config_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="class-conditional"):
        fm.FlowMatchingConfig(unet=UNetConfig.tiny())
    with pytest.raises(ValueError, match="label_dropout"):
        fm.FlowMatchingConfig(label_dropout=1.0)
    with pytest.raises(ValueError, match="time_sampling"):
        fm.FlowMatchingConfig(time_sampling="beta")


def test_logit_normal_times_concentrate_in_the_middle():
    g = torch.Generator().manual_seed(0)
    t = fm.sample_times(20000, "logit_normal", generator=g)
    u = fm.sample_times(20000, "uniform", generator=g)
    assert 0 < float(t.min()) and float(t.max()) < 1
    assert abs(float(t.median()) - 0.5) < 0.02
    mid = lambda s: float(((s > 0.25) & (s < 0.75)).float().mean())  # noqa: E731
    assert mid(t) > mid(u) + 0.1  # logit-normal: ~71% in the middle half, uniform 50%
    with pytest.raises(ValueError):
        fm.sample_times(3, "cosine")


def test_drop_labels_replaces_about_p_with_the_null_label():
    y = torch.randint(0, 10, (10000,), generator=torch.Generator().manual_seed(0))
    d = fm.drop_labels(y, 0.1, 10, torch.Generator().manual_seed(1))
    dropped = d == 10
    assert abs(float(dropped.float().mean()) - 0.1) < 0.02
    assert torch.equal(d[~dropped], y[~dropped]) and torch.equal(fm.drop_labels(y, 0.0, 10), y)


def test_loss_is_flow_matching_loss_on_the_straight_path():
    torch.manual_seed(0)
    m = tiny(label_dropout=0.0)
    x0, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 3])
    t, z = torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.randn(4, 1, 28, 28)
    ours = m.loss(x0, y, t=t, noise=z)
    lib = D.flow_matching_loss(m, x0, cond={"y": y}, t=t, noise=z)
    assert torch.allclose(ours, lib)
    tt = t.reshape(-1, 1, 1, 1)
    by_hand = (m((1 - tt) * x0 + tt * z, t, y) - (z - x0)).square().mean()
    assert torch.allclose(ours, by_hand)
    ours.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_sample_shapes_range_guidance_and_refusals():
    torch.manual_seed(0)
    m = tiny().eval()
    x = torch.randn(3, 1, 28, 28)
    for s in fm.SAMPLERS:
        out = m.sample(x, [0, 1, 2], sampler=s, steps=2)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(m.sample(x, 4, steps=2), m.sample(x, torch.tensor([4, 4, 4]), steps=2))
    raw1 = m.sample(x, 1, steps=1, images=False)
    assert torch.allclose(raw1, x - m(x, torch.ones(3), torch.full((3,), 1)))  # one Euler step: x - v
    # guidance mixes the conditional and unconditional velocity: u + s (c - u)
    g = m.sample(x, 1, steps=1, guidance=3.0, images=False)
    c, u = m(x, torch.ones(3), torch.full((3,), 1)), m(x, torch.ones(3), None)
    assert torch.allclose(g, x - (u + 3.0 * (c - u)), atol=1e-6)
    with pytest.raises(ValueError, match="sampler"):
        m.sample(x, 0, sampler="rk4")


def test_exact_velocity_of_gaussian_data_samples_the_gaussian():
    """The flow samplers on the exact velocity of N(m, s^2) give N(m, s^2): what the network must learn."""
    model = D.gaussian_velocity_model(0.3, 0.5)
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = D.sample_flow_euler(model, x, D.flow_timesteps(50))
    assert abs(float(out.mean()) - 0.3) < 0.02 and abs(float(out.std()) - 0.5) < 0.02


def test_reflow_pairs_are_the_models_transport_and_reflow_loss_uses_them():
    torch.manual_seed(0)
    m = tiny().eval()
    z, y = torch.randn(5, 1, 28, 28), torch.arange(5)
    x0 = fm.reflow_pairs(m, z, y, sampler="euler", steps=2, batch_size=2)
    assert torch.allclose(x0, m.sample(z, y, sampler="euler", steps=2, images=False), atol=1e-6)
    student = tiny(label_dropout=0.0)  # trains on the pair's own line: target z - x0
    t = torch.full((5,), 0.5)
    loss = fm.reflow_loss(student, x0, z, y, t=t)
    assert torch.allclose(loss, D.flow_matching_loss(student, x0, cond={"y": y}, t=t, noise=z))


def test_a_few_steps_of_training_lower_the_loss():
    torch.manual_seed(0)
    m = tiny(label_dropout=0.0)
    x0 = torch.zeros(16, 1, 28, 28) - 1  # a blank image: velocity eps + 1
    y = torch.zeros(16, dtype=torch.long)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = m.loss(x0, y, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_shipped_fm_mnist_draws_the_asked_digits():
    """The shipped model at its card's sampler, steps and guidance: lenet_mnist agrees with the labels, and FLD on
    fresh noise is near the card's (N = 200 here, so the bound is loose)."""
    from companion import evaluation, hub
    from companion.recipes import flow_matching as flow

    try:
        hub.heldout("fm_mnist")
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    card = hub.card("fm_mnist")["metrics"]
    model = hub.load_model("fm_mnist")
    x, labels = flow.card_samples(model, 200, sampler=card["sampler"], steps=card["sampling_steps"],
                                  guidance=card["guidance"], seed=7)
    assert flow.class_agreement(x, labels) > card["class_agreement"] - 0.08
    reference, _ = flow.reference_sets(200)
    assert evaluation.fld(x, reference) < 3 * card["fld"] + 1.5
