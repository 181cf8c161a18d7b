"""companion.diffusion against independent float64 references written here from the papers' formulas.

* schedules, ``alpha_bar``, ``q_sample``, the posterior and the DDIM step: plain-Python ``math`` loops over the
  equations of Ho et al. 2020, Nichol & Dhariwal 2021 and Song et al. 2021 (the posterior also by Bayes' rule
  on two Gaussians, a derivation independent of eq. 7);
* the timestep spacings: the lists of Lin et al. 2024, Table 2 (T = 1000, 10 steps; the paper counts t from 1);
* every sampler: for Gaussian data N(m, s^2) the exact ε-predictor and flow velocity are known in closed form
  (written again here, independently of ``companion.diffusion.exact``); a correct sampler with enough steps
  returns samples with mean m and standard deviation s. The tolerance is ``TOL = 0.03 s`` on both, with
  N = 20,000 samples per dimension: Monte-Carlo error (one standard error: 0.007 s on the mean, 0.005 s on the
  std) plus a small discretisation bias. The deterministic samplers are also checked sample by sample against
  the exact ODE map from noise to data, and their error must shrink at the order of the method.
"""

from __future__ import annotations

import math

import pytest
import torch

from companion import diffusion as d

F64 = torch.float64
M = torch.tensor([1.5, -0.5], dtype=F64)  # data mean per dimension
S = torch.tensor([0.5, 2.0], dtype=F64)  # data std per dimension (one narrower, one wider than the noise)
N = 20_000
TOL = 0.03  # in units of s, for both the sample mean and the sample std


# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------


def ref_linear(T):
    """Ho et al. 2020, section 4: betas linear from 1e-4 to 0.02."""
    return [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)] if T > 1 else [1e-4]


def ref_cosine(T, s=0.008):
    """Nichol & Dhariwal 2021, eq. 17 and the clipping of section 3.2."""
    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    return [min(1 - f(t + 1) / f(t), 0.999) for t in range(T)]  # paper's beta_{t+1} = 1 - abar(t+1)/abar(t)


def ref_alpha_bar(betas):
    out, p = [], 1.0
    for b in betas:
        p *= 1 - b
        out.append(p)
    return out


def exact_eps(m, s, ab_table):
    """The optimal ε-predictor for N(m, s^2): E[eps | x_t] = sqrt(1-ab)(x_t - sqrt(ab) m) / (ab s^2 + 1 - ab)."""
    def model(x, t, **cond):
        ab = ab_table[t].reshape(-1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s**2 + 1 - ab)

    return model


def exact_velocity(m, s):
    """E[eps - x0 | x_t] on x_t = (1 - t) x0 + t eps, from the joint Gaussian of (x0, eps, x_t)."""
    def model(x, t, **cond):
        t = t.reshape(-1, 1)
        var = (1 - t) ** 2 * s**2 + t**2  # Var(x_t)
        e_eps = t / var * (x - (1 - t) * m)  # E[eps | x_t]
        e_x0 = m + (1 - t) * s**2 / var * (x - (1 - t) * m)  # E[x0 | x_t]
        return e_eps - e_x0

    return model


@pytest.fixture(scope="module")
def noise():
    return torch.randn(N, 2, dtype=F64, generator=torch.Generator().manual_seed(0))


def schedule(name, T=1000):
    return d.alpha_bar(d.betas(T, name))


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 7, 1000])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_betas_match_the_papers(name, T):
    b = d.betas(T, name)
    ref = torch.tensor(ref_linear(T) if name == "linear" else ref_cosine(T), dtype=F64)
    assert b.dtype == F64 and b.shape == (T,)
    torch.testing.assert_close(b, ref, rtol=1e-12, atol=1e-15)
    assert bool((b > 0).all() and (b < 1).all())


def test_schedule_end_points():
    lin, cos = d.betas(1000, "linear"), d.betas(1000, "cosine")
    assert lin[0].item() == pytest.approx(1e-4) and lin[-1].item() == pytest.approx(0.02)
    assert cos[-1].item() == 0.999  # clipped
    assert d.alpha_bar(lin)[-1].item() == pytest.approx(4.036e-5, rel=1e-3)  # ~ pure noise at t = T-1
    assert d.betas(10, "cosine", dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_is_the_running_product(name):
    b = d.betas(1000, name)
    ab = d.alpha_bar(b.float())  # float32 input is promoted: the product is taken in float64
    assert ab.dtype == F64
    torch.testing.assert_close(ab, torch.tensor(ref_alpha_bar(b.float().double().tolist()), dtype=F64),
                               rtol=1e-12, atol=1e-300)
    assert bool((ab[1:] < ab[:-1]).all())


def test_cosine_alpha_bar_follows_its_closed_form():
    """Away from the clipped end, alpha_bar(t) = f(t+1)/f(0) exactly (Nichol & Dhariwal 2021, eq. 17)."""
    T, s = 1000, 0.008
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    ab = schedule("cosine", T)
    torch.testing.assert_close(ab[:-1], torch.tensor([f[t + 1] / f[0] for t in range(T - 1)], dtype=F64),
                               rtol=1e-10, atol=0)


def test_snr_sigmas_and_round_trips():
    ab = schedule("cosine")
    r = d.snr(ab)
    assert bool((r[1:] < r[:-1]).all())  # the SNR falls monotonically
    torch.testing.assert_close(d.alpha_bar_from_snr(r), ab, rtol=1e-12, atol=0)
    torch.testing.assert_close(d.sigmas(ab), 1 / r.sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(r, ab / (1 - ab), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# Timestep spacings: Lin et al. 2024, Table 2 (1-indexed there)
# ----------------------------------------------------------------------------------------------

LIN_TABLE_2 = {  # T = 1000, S = 10, timesteps as the paper prints them (t = 1 .. T)
    "linspace": [1000, 889, 778, 667, 556, 445, 334, 223, 112, 1],
    "leading": [901, 801, 701, 601, 501, 401, 301, 201, 101, 1],
    "trailing": [1000, 900, 800, 700, 600, 500, 400, 300, 200, 100],
}


@pytest.mark.parametrize("spacing", d.SPACINGS)
def test_spacings_reproduce_lin_et_al_table_2(spacing):
    ts = d.spaced_timesteps(1000, 10, spacing)
    assert ts.dtype == torch.int64
    assert (ts + 1).tolist() == LIN_TABLE_2[spacing]


@pytest.mark.parametrize(("steps", "leading", "trailing"), [
    (1, [1], [1000]), (2, [501, 1], [1000, 500]), (4, [751, 501, 251, 1], [1000, 750, 500, 250])])
def test_spacings_few_steps(steps, leading, trailing):
    """Leading never visits the last timestep; trailing always starts there (1-indexed as in Lin et al.)."""
    assert (d.spaced_timesteps(1000, steps, "leading") + 1).tolist() == leading
    assert (d.spaced_timesteps(1000, steps, "trailing") + 1).tolist() == trailing


def test_spacings_small_T():
    assert d.spaced_timesteps(10, 3, "leading").tolist() == [6, 3, 0]
    assert d.spaced_timesteps(10, 3, "trailing").tolist() == [9, 6, 2]
    assert d.spaced_timesteps(10, 3, "linspace").tolist() == [9, 4, 0]  # round(4.5) = 4 (half to even)
    for spacing in d.SPACINGS:  # steps = T visits every timestep
        assert d.spaced_timesteps(6, 6, spacing).tolist() == [5, 4, 3, 2, 1, 0]
        assert d.spaced_timesteps(6, 1, spacing).numel() == 1


# ----------------------------------------------------------------------------------------------
# The forward process, the posterior, the conversions and the DDIM step
# ----------------------------------------------------------------------------------------------


def test_q_sample_matches_eq_4():
    ab = schedule("linear")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 1, 3, 3, dtype=F64, generator=g), torch.randn(4, 1, 3, 3, dtype=F64, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    out = d.q_sample(x0, t, ab, eps)
    for i, ti in enumerate(t.tolist()):
        a = ref_alpha_bar(ref_linear(1000))[ti]
        torch.testing.assert_close(out[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * eps[i], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d.q_sample(x0, 10, ab, eps), d.q_sample(x0, torch.full((4,), 10), ab, eps))
    assert d.q_sample(x0.float(), t, ab, eps.float()).dtype == torch.float32


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddpm_posterior_matches_bayes_rule(name):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0): multiply the two Gaussians in x_{t-1}."""
    b = d.betas(1000, name)
    bl, abl = b.tolist(), ref_alpha_bar(b.tolist())
    g = torch.Generator().manual_seed(2)
    x0, xt = torch.randn(5, 3, dtype=F64, generator=g), torch.randn(5, 3, dtype=F64, generator=g)
    t = torch.tensor([1, 2, 100, 700, 999])
    mean, var = d.ddpm_posterior(x0, xt, t, b)
    assert mean.shape == (5, 3) and var.shape == (5, 1)
    for i, ti in enumerate(t.tolist()):
        beta, a_prev = bl[ti], abl[ti - 1]
        # q(x_t | x_{t-1}) = N(sqrt(1 - beta) x_{t-1}, beta); q(x_{t-1} | x0) = N(sqrt(a_prev) x0, 1 - a_prev)
        precision = (1 - beta) / beta + 1 / (1 - a_prev)
        ref_mean = (math.sqrt(1 - beta) / beta * xt[i] + math.sqrt(a_prev) / (1 - a_prev) * x0[i]) / precision
        torch.testing.assert_close(mean[i], ref_mean, rtol=1e-10, atol=1e-12)
        assert var[i].item() == pytest.approx(1 / precision, rel=1e-10)
        # and eq. 7 as printed (beta tilde)
        assert var[i].item() == pytest.approx((1 - a_prev) / (1 - abl[ti]) * beta, rel=1e-10)
    mean0, var0 = d.ddpm_posterior(x0, xt, 0, b)  # t = 0: the posterior is the point x0
    torch.testing.assert_close(mean0, x0, rtol=1e-12, atol=1e-12)
    assert var0.abs().max().item() < 1e-15


def test_prediction_conversions_round_trip():
    ab = schedule("cosine")
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(6, 2, 4, 4, dtype=F64, generator=g), torch.randn(6, 2, 4, 4, dtype=F64, generator=g)
    t = torch.tensor([0, 1, 200, 500, 900, 998])
    xt = d.q_sample(x0, t, ab, eps)
    close = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d.eps_to_x0(xt, eps, t, ab), x0, **close)
    torch.testing.assert_close(d.x0_to_eps(xt, x0, t, ab), eps, **close)
    v = d.v_target(x0, eps, t, ab)
    torch.testing.assert_close(d.v_to_x0(xt, v, t, ab), x0, **close)
    torch.testing.assert_close(d.v_to_eps(xt, v, t, ab), eps, **close)
    torch.testing.assert_close(d.eps_to_v(xt, eps, t, ab), v, **close)
    # (x_t, v) is (x0, eps) rotated: the norms agree example by example (Salimans & Ho 2022)
    torch.testing.assert_close(xt.square() + v.square(), x0.square() + eps.square(), **close)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_eq_12(eta):
    ab = schedule("linear")
    abl = ref_alpha_bar(ref_linear(1000))
    g = torch.Generator().manual_seed(4)
    xt, eps, z = (torch.randn(3, 5, dtype=F64, generator=g) for _ in range(3))
    t, tp = torch.tensor([999, 500, 20]), torch.tensor([899, 0, -1])
    out = d.ddim_step(xt, eps, t, tp, ab, eta=eta, noise=z)
    for i in range(3):
        a_t, a_p = abl[t[i]], (abl[tp[i]] if tp[i] >= 0 else 1.0)
        x0 = (xt[i] - math.sqrt(1 - a_t) * eps[i]) / math.sqrt(a_t)
        sigma = eta * math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)
        ref = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p - sigma**2) * eps[i] + sigma * z[i]
        torch.testing.assert_close(out[i], ref, rtol=1e-10, atol=1e-10)
    # the step to t_prev = -1 lands on the predicted x0, whatever eta
    torch.testing.assert_close(out[2], d.eps_to_x0(xt[2:], eps[2:], 20, ab)[0], rtol=1e-10, atol=1e-10)


def test_ddim_with_eta_one_is_the_ddpm_posterior():
    b = d.betas(1000, "cosine")
    ab = d.alpha_bar(b)
    g = torch.Generator().manual_seed(5)
    xt, eps, z = (torch.randn(4, 3, dtype=F64, generator=g) for _ in range(3))
    t = torch.tensor([1, 50, 400, 999])
    mean, var = d.ddpm_posterior(d.eps_to_x0(xt, eps, t, ab), xt, t, b)
    torch.testing.assert_close(d.ddim_step(xt, eps, t, t - 1, ab, eta=1.0, noise=z), mean + var.sqrt() * z,
                               rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Samplers against the exact Gaussian models
# ----------------------------------------------------------------------------------------------

EPS_SAMPLERS = [  # (sampler, schedule, T, steps (None: every timestep), options)
    (d.sample_ddpm, "cosine", 250, None, {}),  # Algorithm 2 over the whole chain
    (d.sample_ddpm, "linear", 1000, 250, {"variance": "beta"}),  # a respaced chain
    (d.sample_ddim, "cosine", 1000, 250, {"eta": 1.0}),
    (d.sample_ddim, "linear", 1000, 200, {}),
    (d.sample_euler, "cosine", 1000, 100, {}),
    (d.sample_heun, "linear", 1000, 25, {}),
    (d.sample_heun, "cosine", 1000, 200, {}),  # the first step, from sigma ~ 2e4, needs a fine grid (docstring)
    (d.sample_dpmpp_2m, "linear", 1000, 30, {}),
    (d.sample_dpmpp_2m, "cosine", 1000, 20, {}),
]


def assert_gaussian(y, what):
    mean_err = ((y.mean(0) - M) / S).abs().max().item()
    std_err = (y.std(0) / S - 1).abs().max().item()
    assert mean_err < TOL and std_err < TOL, f"{what}: mean error {mean_err:.4f} s, std error {std_err:.4f} s"


@pytest.mark.parametrize(("sampler", "name", "T", "steps", "options"), EPS_SAMPLERS,
                         ids=[f"{s.__name__}-{n}-{k}" for s, n, _, k, _ in EPS_SAMPLERS])
def test_eps_sampler_recovers_the_gaussian(sampler, name, T, steps, options, noise):
    ab = schedule(name, T)
    ts = None if steps is None else d.spaced_timesteps(T, steps)
    y = sampler(exact_eps(M, S, ab), noise, ab, ts, generator=torch.Generator().manual_seed(1), **options)
    assert y.shape == noise.shape and y.dtype == F64
    assert_gaussian(y, sampler.__name__)


FLOW_SAMPLERS = [(d.sample_flow_euler, 100), (d.sample_flow_heun, 10), (d.sample_flow_midpoint, 10)]


@pytest.mark.parametrize(("sampler", "steps"), FLOW_SAMPLERS, ids=[s.__name__ for s, _ in FLOW_SAMPLERS])
def test_flow_sampler_recovers_the_gaussian(sampler, steps, noise):
    y = sampler(exact_velocity(M, S), noise, d.flow_timesteps(steps))
    assert_gaussian(y, sampler.__name__)


def ode_error(y, x, ab_last=None):
    """Largest distance (in units of s) from where the exact probability-flow ODE sends the noise x.

    For Gaussian data the ODE map is affine: x0 = m + s (x_T - sqrt(ab) m) / sqrt(ab s^2 + 1 - ab) at the first
    level ab (ab = 0 for the flow path, whose t = 1 is exactly the noise).
    """
    ab = torch.tensor(0.0 if ab_last is None else ab_last, dtype=F64)
    exact = M + S * (x - ab.sqrt() * M) / (ab * S**2 + 1 - ab).sqrt()
    return ((y - exact).abs() / S).max().item()


@pytest.mark.parametrize(("sampler", "order", "steps"), [
    (d.sample_euler, 1, 50), (d.sample_ddim, 1, 50), (d.sample_heun, 2, 25), (d.sample_dpmpp_2m, 2, 10)])
def test_deterministic_eps_samplers_converge_at_their_order(sampler, order, steps, noise):
    """Doubling the steps divides the error by about 2 (first order) or 4 (second order)."""
    ab = schedule("linear")
    x = noise[:2000]
    errors = [ode_error(sampler(exact_eps(M, S, ab), x, ab, d.spaced_timesteps(1000, n)), x, ab[-1].item())
              for n in (steps, 2 * steps)]
    assert errors[1] < 0.2, errors
    assert errors[1] / errors[0] < (0.6 if order == 1 else 0.35), errors


@pytest.mark.parametrize(("sampler", "order"), [
    (d.sample_flow_euler, 1), (d.sample_flow_heun, 2), (d.sample_flow_midpoint, 2)])
def test_flow_samplers_converge_at_their_order(sampler, order, noise):
    x = noise[:2000]
    errors = [ode_error(sampler(exact_velocity(M, S), x, d.flow_timesteps(n)), x) for n in (10, 20)]
    assert errors[1] < (0.35 if order == 1 else 0.01), errors
    assert errors[1] / errors[0] < (0.6 if order == 1 else 0.35), errors


def test_euler_is_ddim_with_eta_zero(noise):
    """Karras et al. 2022: DDIM is Euler's method on the ODE in sigma; both code paths agree to rounding."""
    ab = schedule("cosine")
    ts = d.spaced_timesteps(1000, 30, "leading")
    model = exact_eps(M, S, ab)
    torch.testing.assert_close(d.sample_euler(model, noise[:500], ab, ts), d.sample_ddim(model, noise[:500], ab, ts),
                               rtol=1e-9, atol=1e-9)


def test_ddim_eta_one_is_ddpm_with_the_same_noise(noise):
    ab = schedule("linear")
    ts = d.spaced_timesteps(1000, 40)
    model = exact_eps(M, S, ab)
    a = d.sample_ddpm(model, noise[:500], ab, ts, generator=torch.Generator().manual_seed(7))
    b = d.sample_ddim(model, noise[:500], ab, ts, eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ancestral_samplers_are_reproducible_with_a_seed(noise):
    ab = schedule("cosine", 50)
    model = exact_eps(M, S, ab)
    run = lambda seed: d.sample_ddpm(model, noise[:100], ab, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(3), run(3)) and not torch.equal(run(3), run(4))


def test_callback_sees_every_step_and_model_calls_are_counted(noise):
    ab = schedule("linear")
    ts = d.spaced_timesteps(1000, 8)
    calls = []

    def model(x, t, **cond):
        calls.append((t.dtype, t.shape, cond))
        return exact_eps(M, S, ab)(x, t)

    seen = []
    d.sample_heun(model, noise[:10], ab, ts, cond={"y": 3}, callback=seen.append)
    assert [s["i"] for s in seen] == list(range(8)) and [s["t"] for s in seen] == ts.tolist()
    assert set(seen[0]) == {"i", "t", "x", "x0_pred"} and seen[0]["x0_pred"].shape == (10, 2)
    assert len(calls) == 2 * 8 - 1  # Heun: two calls per step, one on the last
    assert calls[0] == (torch.int64, (10,), {"y": 3})
    flow_seen = []
    d.sample_flow_midpoint(exact_velocity(M, S), noise[:10], d.flow_timesteps(4), callback=flow_seen.append)
    assert [s["t"] for s in flow_seen] == [1.0, 0.75, 0.5, 0.25]


def test_samplers_keep_float32(noise):
    ab = schedule("linear")
    x = noise[:64].float()
    m32, s32 = M.float(), S.float()
    assert d.sample_dpmpp_2m(d.gaussian_eps_model(m32, s32, ab), x, ab, d.spaced_timesteps(1000, 10)).dtype == torch.float32
    assert d.sample_flow_heun(d.gaussian_velocity_model(m32, s32), x, d.flow_timesteps(5)).dtype == torch.float32


def test_image_shaped_samples(noise):
    ab = schedule("cosine", 100)
    x = torch.randn(3, 1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = d.sample_ddim(d.gaussian_eps_model(0.5, 0.1, ab), x, ab, d.spaced_timesteps(100, 10))
    assert y.shape == (3, 1, 4, 4)


def test_package_exact_models_equal_the_closed_forms(noise):
    ab = schedule("cosine")
    t = torch.randint(0, 1000, (N,), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.gaussian_eps_model(M, S, ab)(noise, t), exact_eps(M, S, ab)(noise, t))
    tf = torch.rand(N, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(d.gaussian_velocity_model(M, S)(noise, tf), exact_velocity(M, S)(noise, tf))


def test_to_eps_model_samples_an_x0_or_v_model_alike(noise):
    ab = schedule("linear")
    eps_model = exact_eps(M, S, ab)
    x0_model = lambda x, t: d.eps_to_x0(x, eps_model(x, t), t, ab)  # noqa: E731
    v_model = lambda x, t: d.eps_to_v(x, eps_model(x, t), t, ab)  # noqa: E731
    ts = d.spaced_timesteps(1000, 20)
    ref = d.sample_dpmpp_2m(eps_model, noise[:200], ab, ts)
    for model, kind in ((x0_model, "x0"), (v_model, "v"), (eps_model, "eps")):
        out = d.sample_dpmpp_2m(d.to_eps_model(model, ab, kind), noise[:200], ab, ts)
        torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance
# ----------------------------------------------------------------------------------------------


def conditional(x, t, y=None):
    """A toy conditional model: y=None is the unconditional branch."""
    shift = 0.0 if y is None else y.to(x.dtype)[:, None]
    return 0.3 * x + shift + t.to(x.dtype)[:, None] * 1e-3


def test_guidance_scale_one_is_conditional_and_zero_unconditional(noise):
    x, t, y = noise[:8], torch.full((8,), 10), torch.arange(8)
    for scale, ref in ((1.0, conditional(x, t, y=y)), (0.0, conditional(x, t))):
        guided = d.classifier_free_guidance(conditional, scale, uncond={"y": None})
        torch.testing.assert_close(guided(x, t, y=y), ref, rtol=0, atol=0)
    guided = d.classifier_free_guidance(conditional, 3.0, uncond={"y": None})
    u, c = conditional(x, t), conditional(x, t, y=y)
    torch.testing.assert_close(guided(x, t, y=y), u + 3.0 * (c - u))


def test_guided_model_runs_in_a_sampler(noise):
    ab = schedule("cosine", 100)
    guided = d.classifier_free_guidance(lambda x, t, y=None: exact_eps(M if y is None else M + y, S, ab)(x, t),
                                        2.0, uncond={"y": None})
    y = d.sample_ddim(guided, noise[:1000], ab, d.spaced_timesteps(100, 50), cond={"y": 1.0})
    # eps is affine in the data mean, so guiding N(M + 1) against N(M) with scale 2 is the exact model of N(M + 2)
    assert ((y.mean(0) - M - 2) / S).abs().max().item() < 0.1


# ----------------------------------------------------------------------------------------------
# Bad input gives clear errors
# ----------------------------------------------------------------------------------------------


def test_bad_schedules():
    with pytest.raises(ValueError, match="schedule must be one of 'linear', 'cosine', got 'quadratic'"):
        d.betas(10, "quadratic")
    with pytest.raises(ValueError, match="T .* must be positive, got 0"):
        d.betas(0)
    with pytest.raises(TypeError, match="T .* must be an integer"):
        d.betas(10.5)
    with pytest.raises(ValueError, match=r"betas must lie in \[0, 1\)"):
        d.alpha_bar(torch.tensor([0.1, 1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"1-D tensor \[T\]"):
        d.alpha_bar(torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="spacing must be one of"):
        d.spaced_timesteps(10, 2, "uniform")
    with pytest.raises(ValueError, match="steps must be <= T = 10, got 11"):
        d.spaced_timesteps(10, 11)
    with pytest.raises(ValueError, match="shift must be > 0"):
        d.flow_timesteps(5, shift=0)


def test_bad_timesteps_and_shapes():
    ab = schedule("linear", 100)
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"q_sample: t must lie in 0..99 .* got values in 0..100"):
        d.q_sample(x, torch.tensor([0, 100]), ab, x)
    with pytest.raises(ValueError, match="t must lie in 0..99"):
        d.q_sample(x, -1, ab, x)
    with pytest.raises(TypeError, match="t must hold integer timesteps"):
        d.q_sample(x, torch.tensor([0.5, 0.2]), ab, x)
    with pytest.raises(ValueError, match=r"noise must have the shape of x0 \[2, 3\], got \[2, 4\]"):
        d.q_sample(x, 3, ab, torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"one timestep per example, \[B\] with B = 2, got shape \[3\]"):
        d.q_sample(x, torch.tensor([1, 2, 3]), ab, x)
    with pytest.raises(TypeError, match="x0 must be floating point"):
        d.q_sample(x.long(), 3, ab, x)
    with pytest.raises(ValueError, match="t_prev must be earlier than t"):
        d.ddim_step(x, x, 5, 5, ab)
    with pytest.raises(ValueError, match="pass noise"):
        d.ddim_step(x, x, 5, 4, ab, eta=1.0)
    with pytest.raises(ValueError, match="eta must be >= 0"):
        d.ddim_step(x, x, 5, 4, ab, eta=-1.0)
    with pytest.raises(ValueError, match=r"x0 must have the shape of x_t"):
        d.ddpm_posterior(torch.zeros(2, 2, dtype=F64), x, 3, d.betas(100))


def test_bad_sampler_input():
    ab = schedule("linear", 100)
    x = torch.zeros(4, 2, dtype=F64)
    model = exact_eps(M, S, ab)
    with pytest.raises(ValueError, match="timesteps must be strictly decreasing"):
        d.sample_ddim(model, x, ab, [10, 20, 5])
    with pytest.raises(ValueError, match="timesteps must lie in 0..99"):
        d.sample_euler(model, x, ab, [100, 50])
    with pytest.raises(ValueError, match=r"the model must return a tensor shaped like x \[4, 2\], got \[4\]"):
        d.sample_ddpm(lambda x, t: t.double(), x, ab)
    with pytest.raises(ValueError, match="variance must be 'posterior' or 'beta'"):
        d.sample_ddpm(model, x, ab, variance="learned")
    with pytest.raises(ValueError, match=r"decrease strictly within \[0, 1\]"):
        d.sample_flow_euler(exact_velocity(M, S), x, [0.0, 0.5, 1.0])
    with pytest.raises(TypeError, match="starting noise"):
        d.sample_heun(model, [0.0], ab)
    with pytest.raises(ValueError, match="prediction must be one of 'eps', 'x0', 'v'"):
        d.to_eps_model(model, ab, "score")
    with pytest.raises(TypeError, match="uncond must be a dict"):
        d.classifier_free_guidance(model, 2.0, None)


# ----------------------------------------------------------------------------------------------
# Training losses: at the exact model they equal the irreducible variance, in closed form
# ----------------------------------------------------------------------------------------------


def gaussian_data(n, seed=0):
    return M + S * torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("t", [5, 300, 900])
def test_denoising_loss_of_the_exact_model_is_the_posterior_variance(t):
    """E||eps - E[eps | x_t]||^2 = Var(eps | x_t) = ab s^2 / (ab s^2 + 1 - ab), per dimension."""
    ab = schedule("linear")
    x0 = gaussian_data(N)
    tt = torch.full((N,), t)
    loss = d.diffusion_loss(exact_eps(M, S, ab), x0, ab, t=tt, generator=torch.Generator().manual_seed(1))
    a = ab[t]
    floor = (a * S**2 / (a * S**2 + 1 - a)).mean().item()
    assert loss.item() == pytest.approx(floor, rel=0.03)
    worse = d.diffusion_loss(lambda x, t: 1.1 * exact_eps(M, S, ab)(x, t), x0, ab, t=tt,
                             generator=torch.Generator().manual_seed(1))
    assert worse.item() > loss.item()


def test_denoising_loss_targets_agree_with_the_conversions():
    ab = schedule("cosine")
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(8, 1, 2, 2, dtype=F64, generator=g), torch.randn(8, 1, 2, 2, dtype=F64, generator=g)
    t = torch.arange(0, 800, 100)
    xt = d.q_sample(x0, t, ab, eps)
    seen = {}

    def record(kind):
        def model(x, tt):
            torch.testing.assert_close(x, xt)
            seen[kind] = tt
            return torch.zeros_like(x)
        return model

    for kind, target in (("eps", eps), ("x0", x0), ("v", d.v_target(x0, eps, t, ab))):
        loss = d.diffusion_loss(record(kind), x0, ab, prediction=kind, t=t, noise=eps)
        assert loss.item() == pytest.approx(target.square().mean().item(), rel=1e-12)
        assert torch.equal(seen[kind], t)
    with pytest.raises(ValueError, match="prediction must be one of"):
        d.diffusion_loss(record("eps"), x0, ab, prediction="score")


def test_denoising_loss_draws_with_its_generator_and_trains():
    ab = schedule("cosine", 100)
    w = torch.zeros(2, dtype=F64, requires_grad=True)
    model = lambda x, t: x * w  # noqa: E731
    x0 = gaussian_data(64)
    a = d.diffusion_loss(model, x0, ab, generator=torch.Generator().manual_seed(5))
    b = d.diffusion_loss(model, x0, ab, generator=torch.Generator().manual_seed(5))
    assert a.item() == b.item()
    a.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_flow_matching_loss_of_the_exact_velocity_is_its_variance(t):
    """Var(eps - x0 | x_t) = 1 + s^2 - (t - (1 - t) s^2)^2 / ((1 - t)^2 s^2 + t^2), per dimension."""
    x0 = gaussian_data(N)
    loss = d.flow_matching_loss(exact_velocity(M, S), x0, t=torch.full((N,), t, dtype=F64),
                                generator=torch.Generator().manual_seed(1))
    floor = (1 + S**2 - (t - (1 - t) * S**2) ** 2 / ((1 - t) ** 2 * S**2 + t**2)).mean().item()
    assert loss.item() == pytest.approx(floor, rel=0.03)
    with pytest.raises(ValueError, match=r"t must be one time in \[0, 1\] per example"):
        d.flow_matching_loss(exact_velocity(M, S), x0[:2], t=torch.tensor([0.5, 1.5]))
