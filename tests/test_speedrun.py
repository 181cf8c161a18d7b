"""The laptop speed-run's generator (companion.speedrun), its time-budgeted recipe and the shipped speedrun_mnist."""

import pytest
import torch

from companion import generate, hub
from companion.recipes import speedrun as S
from companion.speedrun import LatentFlow, SpeedrunConfig


def tiny() -> LatentFlow:
    torch.manual_seed(0)
    return LatentFlow(SpeedrunConfig(codec_width=8, width=32, depth=1))


@pytest.mark.parametrize("field,value", [("width", 0), ("depth", 1.5), ("time_features", 7), ("label_dropout", 1.0)])
def test_config_rejects_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        SpeedrunConfig(**{field: value})


def test_codec_shapes_and_unit_variance_latents():
    m = tiny()
    x = torch.rand(64, 1, 28, 28)
    assert m.codec.raw(x).shape == (64, 4, 7, 7)
    m.codec.fit_scale(x)
    with torch.no_grad():
        z = m.codec.encode(x)
        images = m.codec.decode(z)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
    assert images.shape == (64, 1, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1


def test_velocity_starts_at_zero_and_null_label_is_a_label():
    m = tiny()
    z = torch.randn(5, 4, 7, 7)
    assert torch.equal(m(z, torch.rand(5)), torch.zeros_like(z))  # zero-initialised output layer
    torch.nn.init.normal_(m.velocity_net.out[1].weight)
    none = m(z, 0.3, None)
    null = m(z, 0.3, torch.full((5,), 10))
    assert torch.allclose(none, null)
    assert not torch.allclose(m(z, 0.3, torch.zeros(5, dtype=torch.long)), none)


def test_loss_is_the_flow_matching_target():
    m = tiny()
    torch.nn.init.normal_(m.velocity_net.out[1].weight)
    z0, y = torch.randn(8, 4, 7, 7), torch.arange(8) % 10
    a = m.loss(z0, y, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the loss's own draws, in its order: times, noise, dropout
    t = torch.sigmoid(torch.randn(8, generator=g))
    noise = torch.randn(z0.shape, generator=g)
    drop = torch.rand(8, generator=g) < m.config.label_dropout
    yy = torch.where(drop, torch.full_like(y, 10), y)
    tb = t.view(-1, 1, 1, 1)
    expected = (m((1 - tb) * z0 + tb * noise, t, yy) - (noise - z0)).pow(2).mean()
    assert torch.allclose(a, expected)


def test_sample_refuses_bad_noise_and_sampler():
    m = tiny()
    with pytest.raises(ValueError, match=r"noise must be \[B, 4, 7, 7\]"):
        m.sample(torch.randn(2, 1, 28, 28), 3)
    with pytest.raises(ValueError, match="sampler"):
        m.sample(torch.randn(2, 4, 7, 7), 3, sampler="rk4")


def test_generate_is_deterministic_and_checks_labels():
    m = tiny().eval()
    a = generate(m, 6, labels=torch.arange(6), steps=2, progress=False)
    b = generate(m, 6, labels=torch.arange(6), steps=2, progress=False, batch_size=4)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b)
    with pytest.raises(ValueError, match="label"):
        generate(m, 2, labels=torch.tensor([0, 10]), progress=False)
    with pytest.raises(ValueError, match="prompt"):
        generate(m, 2, labels=torch.tensor([0, 1]), prompt="a seven", progress=False)


def test_fit_needs_a_budget_or_step_counts():
    with pytest.raises(ValueError, match="budget"):
        S.fit_speedrun(tiny(), torch.rand(8, 1, 28, 28), torch.arange(8), codec_steps=2)


def test_fixed_step_runs_repeat_exactly():
    x, y = torch.rand(64, 1, 28, 28).round(), torch.arange(64) % 10
    runs = []
    for _ in range(2):
        m = tiny()
        S.fit_speedrun(m, x, y, codec_steps=3, flow_steps=4, progress=False)
        runs.append(m.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_budget_turns_into_steps(monkeypatch):
    per_step = iter([0.001, 0.002])  # seconds per codec step, then per flow step, as the calibration would time them
    monkeypatch.setattr(S, "calibrate", lambda step: next(per_step))
    m = tiny()
    run = S.fit_speedrun(m, torch.rand(300, 1, 28, 28).round(), torch.arange(300) % 10, budget=2.0, progress=False)
    # codec: SAFETY x (12 % of 2 s, less what has passed) / 1 ms; flow: SAFETY x (what is left) / 2 ms
    assert 150 <= run["codec_steps"] <= int(S.SAFETY * S.CODEC_SHARE * 2.0 / 0.001)
    assert run["flow_steps"] <= int(S.SAFETY * 2.0 / 0.002) and run["flow_steps"] >= 2


def test_shipped_speedrun_card_and_a_slice_remeasured():
    card = hub.card("speedrun_mnist")
    m = card["metrics"]
    assert card["seen"]["train"] == "mnist-test[0:8000]" and card["seen"]["heldout"] == "mnist-test[8000:10000]"
    assert m["samples"] == 2000 and card["bytes"] <= 5_000_000
    model = hub.load_model("speedrun_mnist")
    x, labels = S.samples(model, 200)
    from companion.recipes.flow_matching import class_agreement
    # the card's agreement, re-measured on its first 200 samples (the same noise), within sampling error
    assert class_agreement(x, labels) >= m["class_agreement"] - 0.04


def test_pixel_ablation_flows_on_the_pixels():
    torch.manual_seed(0)
    m = LatentFlow(SpeedrunConfig(codec_width=8, width=32, depth=1, latent=False, time_sampling="uniform"))
    x = torch.rand(4, 1, 28, 28)
    assert m.latent_shape == (1, 28, 28) and torch.allclose(m.decode(m.encode(x)), x, atol=1e-6)
    assert m.sample(torch.randn(2, 1, 28, 28), 1, steps=2).shape == (2, 1, 28, 28)
    run = S.fit_speedrun(m, x.round(), torch.arange(4), codec_steps=5, flow_steps=2, progress=False)
    assert run["codec_steps"] == 0 and run["codec_history"] is None
