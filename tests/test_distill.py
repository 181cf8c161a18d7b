"""companion.distill: the progressive-distillation target, the student's parameterisation, its sampler, its refusals."""

import math

import pytest
import torch

from companion import diffusion as D
from companion.ddpm import DDPM, DDPMConfig
from companion.distill import (
    Distilled,
    DistilledConfig,
    DistilledSet,
    distillation_loss,
    distillation_target,
    step_grid,
)
from companion.unet import UNetConfig

T = 50


def tiny_ddpm() -> DDPM:
    torch.manual_seed(0)
    return DDPM(DDPMConfig(unet=UNetConfig.tiny(), T=T))


def test_step_grid_nests_the_students_grid_in_the_teachers():
    for steps in (1, 2, 4, 8):
        t, mid, nxt = step_grid(1000, steps)
        assert torch.equal(t, D.spaced_timesteps(1000, steps))
        fine = D.spaced_timesteps(1000, 2 * steps)
        assert torch.equal(torch.stack([t, mid], 1).reshape(-1), fine)
        assert nxt[-1] == -1 and bool((t > mid).all() and (mid > nxt).all())
    assert step_grid(1000, 1)[0].tolist() == [999] and step_grid(1000, 1)[1].tolist() == [499]


def test_the_target_is_two_teacher_ddim_steps_in_closed_form_float64():
    # the exact noise predictor of Gaussian data N(m, s^2): every DDIM step is an affine map, written out by hand
    m, s = 0.3, 0.5
    ab = D.alpha_bar(D.betas(1000, "linear"))
    teacher = D.gaussian_eps_model(m, s, ab)
    x = torch.randn(6, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t, mid, nxt in zip(*step_grid(1000, 4), strict=True):
        def step(x, a, b):  # DDIM with the exact eps: x0 = E[x0 | x_t], written from the Gaussian posterior
            a_t, a_b = float(ab[a]), (1.0 if b < 0 else float(ab[b]))
            var = a_t * s**2 + 1 - a_t
            x0 = m + math.sqrt(a_t) * s**2 * (x - math.sqrt(a_t) * m) / var
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            return math.sqrt(a_b) * x0 + math.sqrt(1 - a_b) * eps

        two = step(step(x, int(t), int(mid)), int(mid), int(nxt))
        tt = torch.full((6,), int(t))
        target = distillation_target(teacher, x, tt, torch.full((6,), int(mid)), torch.full((6,), int(nxt)), ab)
        assert target.dtype == torch.float64
        # one DDIM step that uses the target as its clean image lands where the teacher's two steps land
        eps = D.x0_to_eps(x, target, tt, ab)
        one = D.ddim_step(x, eps, tt, torch.full((6,), int(nxt)), ab)
        assert torch.allclose(one, two, atol=1e-10), (int(t), (one - two).abs().max())
        if int(nxt) == -1:
            assert torch.allclose(target, two, atol=1e-12)  # the last step's target is the teacher's image


class _Perfect(torch.nn.Module):
    """A student that predicts the distillation target exactly (it asks the teacher), on a fixed grid."""

    def __init__(self, teacher, ab, steps):
        super().__init__()
        self.teacher, self.ab = teacher, ab
        self.grid = step_grid(ab.shape[0], steps)

    def forward(self, x, t):
        t0 = int(t[0])
        i = self.grid[0].tolist().index(t0)
        mid, nxt = int(self.grid[1][i]), int(self.grid[2][i])
        n = x.shape[0]
        x0 = distillation_target(self.teacher, x, t, torch.full((n,), mid), torch.full((n,), nxt), self.ab)
        return D.x0_to_eps(x, x0, t, self.ab)


def test_a_student_that_hits_the_target_reproduces_the_teachers_two_step_sampler():
    ab = D.alpha_bar(D.betas(1000, "linear"))
    teacher = D.gaussian_eps_model(-0.2, 0.4, ab)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for steps in (1, 2, 4):
        student = _Perfect(teacher, ab, steps)
        a = D.sample_ddim(student, x, ab, D.spaced_timesteps(1000, steps))
        b = D.sample_ddim(teacher, x, ab, D.spaced_timesteps(1000, 2 * steps))
        assert torch.allclose(a, b, atol=1e-9), steps


def test_student_from_a_ddpm_keeps_the_noise_channel_and_its_x0_is_bounded_at_pure_noise():
    teacher = tiny_ddpm().eval()
    student = Distilled.from_teacher(teacher, 4).eval()
    assert student.config.steps == 4 and student.timesteps.tolist() == D.spaced_timesteps(T, 4).tolist()
    C = 1
    w = student.unet.conv_out.weight
    assert torch.equal(w[:C], teacher.unet.conv_out.weight) and bool((w[C:] == 0).all())
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), T - 1)
    ab = float(student.alpha_bar[T - 1])
    with torch.no_grad():
        eps_teacher = teacher(x, t)
        x0 = student.predict_x0(x, t)
        # with x~ = 0 the estimate is sqrt(ab) (x - sqrt(1 - ab) eps~): no division by sqrt(ab)
        assert torch.allclose(x0, math.sqrt(ab) * (x - math.sqrt(1 - ab) * eps_teacher), atol=1e-5)
        eps = student(x, t)
        assert eps.shape == x.shape
        # forward's noise and predict_x0's image are one DDIM-consistent pair
        assert torch.allclose(x, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps, atol=1e-4)
    again = Distilled.from_teacher(student, 2)
    for (k, a), (_, b) in zip(student.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_sample_shapes_range_determinism_and_the_loss_trains():
    teacher = tiny_ddpm().eval()
    student = Distilled.from_teacher(teacher, 2)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    img = student.eval().sample(x)
    assert img.shape == (2, 1, 28, 28) and img.min() >= 0 and img.max() <= 1
    assert torch.equal(img, student.sample(x))
    # one DDIM step per grid point: sample is sample_ddim on the student's grid
    calls = []
    D.sample_ddim(lambda x_, t_: (calls.append(int(t_[0])), student(x_, t_))[1], x, student.alpha_bar,
                  student.timesteps)
    assert calls == student.timesteps.tolist()
    student.train()
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    grid = student.timesteps
    t = grid[torch.tensor([0, 1, 1, 0])]
    loss = distillation_loss(student, teacher, x0, t=t, noise=torch.randn_like(x0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert student.unet.conv_out.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_distilled_set_samples_by_its_trained_step_counts_only():
    ds = DistilledSet((1, 4, 2), UNetConfig.tiny(), T=T)
    assert ds.steps == (4, 2, 1) and ds[2].config.steps == 2 and ds.config.steps == 4
    x = torch.randn(1, 1, 28, 28)
    assert ds.eval().sample(x, 1).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match=r"holds students for steps \[4, 2, 1\], got steps=3"):
        ds.sample(x, 3)
    with pytest.raises(ValueError, match="at least one"):
        DistilledSet(())


def test_bad_inputs_are_refused_with_clear_messages():
    ab = D.alpha_bar(D.betas(T, "linear"))
    model = D.gaussian_eps_model(0.0, 1.0, ab)
    x = torch.randn(2, 4)
    two = lambda v: torch.full((2,), v)  # noqa: E731
    with pytest.raises(ValueError, match="timesteps must decrease"):
        distillation_target(model, x, two(10), two(20), two(-1), ab)
    with pytest.raises(ValueError, match=r"t_next must lie in -1\.\.49"):
        distillation_target(model, x, two(30), two(20), two(-2), ab)
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.49"):
        distillation_target(model, x, two(60), two(20), two(-1), ab)
    with pytest.raises(TypeError, match="integer timesteps"):
        distillation_target(model, x, torch.full((2,), 30.0), two(20), two(-1), ab)
    with pytest.raises(ValueError, match="one timestep per image"):
        distillation_target(model, x, torch.full((3,), 30), two(20), two(-1), ab)
    with pytest.raises(TypeError, match="floating-point"):
        distillation_target(model, torch.ones(2, 4, dtype=torch.long), two(30), two(20), two(-1), ab)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        step_grid(1000, 0)
    with pytest.raises(ValueError, match="T >= 2 \\* steps"):
        step_grid(10, 6)
    with pytest.raises(ValueError, match="steps must be an int in 1..T"):
        DistilledConfig(T=10, steps=11)
    with pytest.raises(TypeError, match="DDPM or a Distilled"):
        Distilled.from_teacher(torch.nn.Linear(2, 2), 2)
    teacher = tiny_ddpm()
    student = Distilled.from_teacher(teacher, 2)
    x0 = torch.zeros(2, 1, 28, 28)
    with pytest.raises(ValueError, match="student's grid"):
        distillation_loss(student, teacher, x0, t=torch.tensor([3, 3]), noise=torch.randn_like(x0))


def test_shipped_students_rescored_and_better_than_the_teachers_ddim_at_one_step():
    """``distill_mnist``: the 1-step student re-measured on fresh noise, near its card, far better than 1-step DDIM."""
    from companion import evaluation, hub
    from companion.recipes import diffusion as ddpm_recipe

    try:
        hub.heldout("distill_mnist")
    except FileNotFoundError:
        pytest.skip("MNIST is not available here (set COURSE_DATA)")
    card = hub.card("distill_mnist")["metrics"]
    model = hub.load_model("distill_mnist")
    assert model.steps == (4, 2, 1)
    noise = torch.randn(300, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    reference, _ = ddpm_recipe.reference_sets(300)
    fld = evaluation.fld(model.sample(noise, 1), reference)
    assert fld < 1.5 * card["fld_student_1"] + 2, (fld, card)
    assert card["fld_student_1"] < card["fld_ddim_1"], card
