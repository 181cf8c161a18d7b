"""companion.ddpm: the DDPM wrapper, the written-out ancestral sampler and its bugs, the exact-Gaussian test."""

import pytest
import torch

from companion import diffusion as D
from companion.ddpm import (
    DDPM,
    DDPMConfig,
    ancestral_sample,
    gaussian_sampler_error,
    to_image_range,
    to_model_range,
)
from companion.unet import UNetConfig


def tiny() -> DDPM:
    torch.manual_seed(0)
    return DDPM(DDPMConfig(unet=UNetConfig.tiny(), T=50))


def test_ancestral_sample_is_sample_ddpm_without_clipping():
    model = tiny().eval()
    ab = model.alpha_bar
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for ts in (None, D.spaced_timesteps(50, 7)):
        a = ancestral_sample(model, x, ab, ts, clip=False, generator=torch.Generator().manual_seed(1))
        b = D.sample_ddpm(model, x, ab, ts, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(a, b, atol=1e-5)


def test_the_correct_sampler_passes_the_gaussian_test_and_the_bugs_are_caught():
    ok = gaussian_sampler_error(None, n=5000)
    assert ok["mean_error"] < 0.02 and ok["std_error"] < 0.04
    full = {b: gaussian_sampler_error(b, n=5000) for b in ("wrong_variance", "off_by_one")}
    assert full["wrong_variance"]["std_error"] > 0.5  # far too little fresh noise
    assert full["off_by_one"]["std_error"] < 0.04  # a slip of one step in 1,000 is below what 5,000 samples see
    ts = D.spaced_timesteps(1000, 20)
    short = {b: gaussian_sampler_error(b, n=5000, timesteps=ts) for b in (None, "alpha_bar_index")}
    assert short[None]["std_error"] > 0.2  # beta tilde on 20 steps: far too narrow, even without a bug
    assert short["alpha_bar_index"]["mean_error"] > 0.02 > short[None]["mean_error"]
    with pytest.raises(ValueError, match="bug must be"):
        ancestral_sample(tiny(), torch.zeros(1, 1, 28, 28), tiny().alpha_bar, bug="typo")


def test_model_range_round_trip_and_sample_range():
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(to_image_range(to_model_range(x)), x)
    model = tiny().eval()
    out = model.sample(torch.randn(2, 1, 28, 28), steps=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    out = model.sample(torch.randn(2, 1, 28, 28), "ddim", steps=4)
    assert out.shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="sampler must be"):
        model.sample(torch.randn(1, 1, 28, 28), "euler")
    loss = model.loss(to_model_range(x), generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="schedule"):
        DDPMConfig(schedule="quadratic")
