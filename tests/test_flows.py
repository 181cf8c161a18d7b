"""``companion.flows``: couplings invert, their log-determinants are the Jacobian's, the likelihood is exact."""

import math

import pytest
import torch

from companion import flows


def _trained_like(coupling: flows.AffineCoupling, seed: int = 0) -> flows.AffineCoupling:
    """Give the (zero-initialised) last layer random weights, so the coupling is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in coupling.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return coupling


@pytest.mark.parametrize("mask", [flows.checkerboard_mask(1, 6, 0), flows.checkerboard_mask(1, 6, 1),
                                  flows.channel_mask(4, 3, 0), flows.channel_mask(4, 3, 1)])
def test_coupling_inverts_to_1e_5_and_keeps_the_masked_half(mask):
    layer = _trained_like(flows.AffineCoupling(mask, hidden=8))
    x = torch.randn(5, *mask.shape[1:])
    y, _ = layer(x)
    assert not torch.allclose(y, x)
    assert torch.allclose(layer.inverse(y), x, atol=1e-5)
    assert torch.equal(y * mask, x * mask), "the fixed half passes through unchanged"


def test_coupling_log_det_matches_the_autograd_jacobian():
    layer = _trained_like(flows.AffineCoupling(flows.checkerboard_mask(1, 4, 0), hidden=4)).double()
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.reshape(1, 1, 4, 4))[0].reshape(-1), x.reshape(-1))
    _, log_det = layer(x)
    assert torch.allclose(log_det[0], torch.linalg.slogdet(jac)[1], atol=1e-8)


def test_whole_flow_log_det_matches_the_jacobian_and_inverts():
    torch.manual_seed(0)
    flow = flows.RealNVP(flows.RealNVPConfig(image_size=4, hidden=4, full=2, half=4)).double()
    for i, layer in enumerate([*flow.fine, *flow.coarse]):
        _trained_like(layer, seed=i)
    y = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, 1, 4, 4))[0].reshape(-1), y.reshape(-1))
    z, log_det = flow(y)
    assert torch.allclose(log_det[0], torch.linalg.slogdet(jac)[1], atol=1e-8)
    assert torch.allclose(flow.inverse(z), y, atol=1e-8)


def test_identity_couplings_give_the_standard_normal_log_density():
    flow = flows.RealNVP(flows.RealNVPConfig(image_size=8, hidden=4, full=2, half=2))  # last layers start at zero
    y = torch.randn(3, 1, 8, 8)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(y).flatten(1).sum(1)
    assert torch.allclose(flow.log_prob(y), expected, atol=1e-4)


def test_squeeze_round_trip_and_logit_log_det():
    x = torch.randn(2, 3, 4, 6)
    assert flows.squeeze(x).shape == (2, 12, 2, 3) and torch.equal(flows.unsqueeze(flows.squeeze(x)), x)
    u = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    y, ld = flows.logit_transform(u)
    jac = torch.autograd.functional.jacobian(lambda v: flows.logit_transform(v.reshape(1, 1, 2, 2))[0].reshape(-1),
                                             u[0].reshape(-1))
    assert math.isclose(float(ld[0]), float(torch.linalg.slogdet(jac)[1]), abs_tol=1e-9)


def test_bits_per_dim_of_the_untrained_flow_is_near_the_uniform_8_bits():
    flow = flows.RealNVP(flows.RealNVPConfig(image_size=4, hidden=4, full=1, half=0))
    x = torch.randint(0, 256, (200, 1, 4, 4)).float() / 255
    bpd = flows.bits_per_dim(flow, x, torch.Generator().manual_seed(0))
    assert bpd.shape == (200,) and 7.0 < float(bpd.mean()) < 10.0
    deq = flows.dequantize(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(deq * 256), torch.round(x * 255)), "dequantised values stay in their bin"


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="parity must be 0 or 1"):
        flows.checkerboard_mask(1, 4, 2)
    with pytest.raises(ValueError, match="channels must be even"):
        flows.channel_mask(3, 4)
    with pytest.raises(ValueError, match="image_size must be even"):
        flows.RealNVPConfig(image_size=7)
    flow = flows.RealNVP(flows.RealNVPConfig(image_size=4, hidden=4, full=1, half=1))
    with pytest.raises(ValueError):
        flow(torch.randn(2, 1, 6, 6))
    with pytest.raises(ValueError, match="must lie in"):
        flows.dequantize(torch.full((1, 1, 2, 2), 2.0))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        flow.sample(torch.randn(1, 1, 4, 4), temperature=0)
    with pytest.raises(ValueError, match=r"mask must be \[1, C, H, W\]"):
        flows.AffineCoupling(torch.ones(4, 4))
