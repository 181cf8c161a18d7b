"""Progressive distillation (Salimans & Ho 2022): a student that takes one DDIM step where its teacher took two.

Read top to bottom:

* :func:`step_grid`: the student's timesteps and, between each pair, the teacher's extra one: a student of
  ``S`` steps visits the trailing grid ``spaced_timesteps(T, S)``, its teacher the grid of ``2S`` steps, which
  contains it (every other point);
* :func:`distillation_target`: the clean image ``x0_target`` a student must predict at ``(x_t, t)`` so that
  *one* deterministic DDIM step from ``t`` to ``t_next`` lands where *two* teacher DDIM steps
  ``t -> t_mid -> t_next`` land. DDIM writes ``x_next = a' x0 + s' (x_t - a x0) / s`` (``a = sqrt(alpha_bar)``,
  ``s = sqrt(1 - alpha_bar)``, primes at ``t_next``); solved for ``x0``::

      x0_target = (x_next - (s' / s) x_t) / (a' - (s' / s) a)

  and for the last step (``t_next = -1``, ``a' = 1``, ``s' = 0``) simply ``x0_target = x_next``;
* :class:`DistilledConfig` and :class:`Distilled`: a DDPM-style :class:`companion.unet.UNet` with two output
  channels per image channel, a noise ``eps~`` and a clean image ``x~``, merged into one clean-image estimate
  ``x0 = (1 - alpha_bar) x~ + sqrt(alpha_bar) (x_t - sqrt(1 - alpha_bar) eps~)`` (Salimans & Ho, appendix; the
  same as predicting ``v = a eps~ - s x~``). Near the data it is the teacher's noise prediction, near pure noise
  a direct guess at the image, where a noise prediction divided by ``sqrt(alpha_bar) ~ 0.006`` would explode.
  ``Distilled(config)(x_t, t)`` returns the noise that estimate implies, so it is a ``model`` for every sampler
  of :mod:`companion.diffusion`; :meth:`Distilled.sample` is deterministic DDIM on the model's own fixed grid;
  :meth:`Distilled.from_teacher` copies a teacher's U-Net (its noise channel) and zeroes the new ``x~`` channel;
* :func:`distillation_loss`: the student's squared error to :func:`distillation_target` on the clean image,
  weighted by ``max(SNR, 1)`` ("truncated SNR" weighting, Salimans & Ho, section 4);
* :class:`DistilledSet`: the students of several rounds (say 4, 2 and 1 steps) as one module, sampled by
  step count.

Shapes: images ``[B, C, H, W]`` in ``[-1, 1]`` (the model range of :mod:`companion.ddpm`); timesteps ``[B]`` int64,
``-1`` meaning the clean data. Introduced in chapter 19.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import diffusion as D
from .ddpm import DDPM, to_image_range
from .unet import UNet, UNetConfig

__all__ = ["Distilled", "DistilledConfig", "DistilledSet", "distillation_loss", "distillation_target", "step_grid"]

Model = Callable[..., Tensor]


def _default_unet() -> UNetConfig:
    return UNetConfig(widths=(16, 32, 32), attention_levels=(2,), heads=4, groups=8)


def step_grid(T: int, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(t, t_mid, t_next)``, each ``[steps]`` int64: the student's steps ``t -> t_next`` and the teacher's midpoint.

    ``t`` is ``spaced_timesteps(T, steps)`` (trailing), ``t_next`` the next one (``-1`` after the last: the clean
    data) and ``t_mid`` the point of the ``2 * steps`` grid between them, so the teacher's two DDIM steps
    ``t -> t_mid -> t_next`` are two steps of its own trailing grid.

    Raises:
        ValueError: ``2 * steps > T`` (the teacher's grid would not fit), or ``T``/``steps`` below 1.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"step_grid: steps must be an int >= 1, got {steps!r}")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1 or 2 * steps > T:
        raise ValueError(f"step_grid: need an int T >= 2 * steps = {2 * steps}, got T = {T!r}")
    fine = D.spaced_timesteps(T, 2 * steps)
    t = fine[0::2]
    if not torch.equal(t, D.spaced_timesteps(T, steps)):  # pragma: no cover - trailing grids nest for every T, steps
        raise AssertionError("the trailing grid of 2S steps does not contain the grid of S steps")
    t_next = torch.cat([t[1:], torch.tensor([-1])])
    return t, fine[1::2], t_next


def _ab(alpha_bar: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """``alpha_bar[t]`` (float64, ``1`` where ``t = -1``), shaped ``[B, 1, ..., 1]`` to broadcast against ``x``."""
    table = torch.cat([alpha_bar.double().to(x.device), torch.ones(1, dtype=torch.float64, device=x.device)])
    return table[t.long().to(x.device)].reshape(-1, *([1] * (x.ndim - 1)))  # index -1 is the appended 1


def _check_times(fn: str, x: Tensor, alpha_bar: Tensor, **times: Tensor) -> dict[str, Tensor]:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise TypeError(f"{fn}: x_t must be a floating-point tensor [B, ...], got "
                        f"{type(x).__name__ if not isinstance(x, Tensor) else list(x.shape)}")
    T = alpha_bar.shape[0]
    out = {}
    for name, t in times.items():
        t = torch.as_tensor(t)
        if t.is_floating_point():
            raise TypeError(f"{fn}: {name} must hold integer timesteps, got {t.dtype}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"{fn}: {name} must be one timestep per image, [B] with B = {x.shape[0]}, "
                             f"got shape {list(t.shape)}")
        lowest = 0 if name == "t" else -1
        if t.numel() and (int(t.min()) < lowest or int(t.max()) > T - 1):
            raise ValueError(f"{fn}: {name} must lie in {lowest}..{T - 1}, got values in "
                             f"{int(t.min())}..{int(t.max())}")
        out[name] = t.long()
    names = list(out)
    for a, b in zip(names, names[1:], strict=False):
        if not bool((out[b] < out[a]).all()):
            raise ValueError(f"{fn}: timesteps must decrease, {b} < {a}, got {a} = {out[a].tolist()} and "
                             f"{b} = {out[b].tolist()}")
    return out


def _ddim(x: Tensor, eps: Tensor, ab: Tensor, ab_next: Tensor) -> Tensor:
    """One deterministic DDIM step (eta = 0) between the levels ``ab -> ab_next`` (float64 coefficients)."""
    x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    return ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps


@torch.no_grad()
def distillation_target(teacher: Model, x_t: Tensor, t: Tensor, t_mid: Tensor, t_next: Tensor,
                        alpha_bar: Tensor) -> Tensor:
    """The clean image a student must predict at ``(x_t, t)``: one DDIM step with it equals two of the teacher's.

    The teacher (``teacher(x, t) -> eps``) takes deterministic DDIM steps ``t -> t_mid -> t_next`` and lands at
    ``x_next``; the target is the ``x0`` for which one DDIM step ``t -> t_next`` lands there too:
    ``x0 = (x_next - (s'/s) x_t) / (a' - (s'/s) a)`` with ``a = sqrt(alpha_bar[t])``, ``s = sqrt(1 - alpha_bar[t])``
    and primes at ``t_next``; ``x0 = x_next`` when ``t_next = -1`` (the clean data).

    Args:
        teacher: ``teacher(x, t) -> eps``, ``t`` an int64 ``[B]``.
        x_t: ``[B, ...]`` the noisy images at ``t``.
        t, t_mid, t_next: ``[B]`` (or scalars) int64, ``t > t_mid > t_next >= -1``.
        alpha_bar: the ``[T]`` table.

    Returns:
        ``[B, ...]``, shaped and typed like ``x_t``.

    Raises:
        TypeError: a non-float ``x_t`` or float timesteps.
        ValueError: timesteps out of range, not one per image, or not decreasing.
    """
    fn = "distillation_target"
    ts = _check_times(fn, x_t, alpha_bar, t=t, t_mid=t_mid, t_next=t_next)
    t, t_mid, t_next = ts["t"], ts["t_mid"], ts["t_next"]
    x = x_t.double()
    ab, ab_mid, ab_next = (_ab(alpha_bar, s, x) for s in (t, t_mid, t_next))
    eps = teacher(x_t, t.to(x_t.device)).double()
    x_mid = _ddim(x, eps, ab, ab_mid)
    eps_mid = teacher(x_mid.to(x_t.dtype), t_mid.to(x_t.device)).double()
    x_next = _ddim(x_mid, eps_mid, ab_mid, ab_next)
    ratio = ((1 - ab_next) / (1 - ab)).sqrt()  # s' / s, 0 at the clean data
    target = (x_next - ratio * x) / (ab_next.sqrt() - ratio * ab.sqrt())
    return target.to(x_t.dtype)


@dataclass(frozen=True)
class DistilledConfig:
    """A distilled student: the U-Net it shares with its DDPM teacher, the teacher's ``T`` and ``schedule``,
    and the number of sampling ``steps`` it was trained for (it visits ``spaced_timesteps(T, steps)``)."""

    unet: UNetConfig = field(default_factory=_default_unet)
    T: int = 1000
    schedule: str = "linear"
    steps: int = 4

    def __post_init__(self) -> None:
        if self.schedule not in D.NOISE_SCHEDULES:
            raise ValueError(f"schedule must be one of {D.NOISE_SCHEDULES}, got {self.schedule!r}")
        if not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T must be an int >= 1, got {self.T!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or not 1 <= self.steps <= self.T:
            raise ValueError(f"steps must be an int in 1..T = {self.T}, got {self.steps!r}")


class Distilled(nn.Module):
    """A few-step student: a U-Net predicting ``(eps~, x~)`` merged into a clean image, on a fixed grid of steps.

    ``Distilled(config)(x_t, t)`` is the noise implied by its clean-image estimate :meth:`predict_x0`
    (``eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)``), so DDIM with it is DDIM with that estimate.

    Args:
        config: a :class:`DistilledConfig`.
    """

    def __init__(self, config: DistilledConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DistilledConfig()
        self.unet = UNet(c.unet)
        C = c.unet.image_channels
        old = self.unet.conv_out
        self.unet.conv_out = nn.Conv2d(old.in_channels, 2 * C, 3, padding=1)  # channels: eps~, then x~

    @property
    def alpha_bar(self) -> Tensor:
        """``[T]`` float64 ``alpha_bar`` of the schedule (recomputed, not stored)."""
        return D.alpha_bar(D.betas(self.config.T, self.config.schedule))

    @property
    def timesteps(self) -> Tensor:
        """The ``[steps]`` decreasing timesteps the student visits: ``spaced_timesteps(T, steps)``."""
        return D.spaced_timesteps(self.config.T, self.config.steps)

    @classmethod
    def from_teacher(cls, teacher: DDPM | Distilled, steps: int) -> Distilled:
        """A student of ``steps`` steps initialised from ``teacher``.

        From a :class:`companion.ddpm.DDPM` the whole U-Net is copied, its output convolution into the ``eps~``
        channels and zeros into the new ``x~`` channels; from a :class:`Distilled` everything is copied.
        """
        if not isinstance(teacher, DDPM | Distilled):
            raise TypeError(f"from_teacher: teacher must be a DDPM or a Distilled, got {type(teacher).__name__}")
        c = teacher.config
        student = cls(DistilledConfig(unet=c.unet, T=c.T, schedule=c.schedule, steps=steps))
        if isinstance(teacher, Distilled):
            student.load_state_dict(teacher.state_dict())
            return student.to(next(teacher.parameters()).device)
        state = {k: v for k, v in teacher.unet.state_dict().items() if not k.startswith("conv_out.")}
        student.unet.load_state_dict(state, strict=False)
        C = c.unet.image_channels
        with torch.no_grad():
            out = student.unet.conv_out
            out.weight.zero_()
            out.bias.zero_()
            out.weight[:C].copy_(teacher.unet.conv_out.weight)
            out.bias[:C].copy_(teacher.unet.conv_out.bias)
        return student.to(next(teacher.parameters()).device)

    def predict_x0(self, x: Tensor, t: Tensor | int) -> Tensor:
        """The clean-image estimate ``(1 - ab) x~ + sqrt(ab) (x - sqrt(1 - ab) eps~)`` at ``(x [B, C, H, W], t [B])``."""
        t = torch.as_tensor(t, device=x.device).long()
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        out = self.unet(x, t)
        C = self.config.unet.image_channels
        eps, x_direct = out[:, :C], out[:, C:]
        ab = _ab(self.alpha_bar, t, x).to(x.dtype)
        return (1 - ab) * x_direct + ab.sqrt() * (x - (1 - ab).sqrt() * eps)

    def forward(self, x: Tensor, t: Tensor | int) -> Tensor:
        """The noise ``(x - sqrt(ab) x0) / sqrt(1 - ab)`` implied by :meth:`predict_x0`, shaped like ``x``."""
        t = torch.as_tensor(t, device=x.device).long()
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        ab = _ab(self.alpha_bar, t, x).to(x.dtype)
        return (x - ab.sqrt() * self.predict_x0(x, t)) / (1 - ab).sqrt()

    @torch.no_grad()
    def sample(self, x: Tensor) -> Tensor:
        """Images in ``[0, 1]`` from starting noise ``x [B, C, H, W]``: deterministic DDIM on :attr:`timesteps`."""
        ab = self.alpha_bar.to(x.device)
        return to_image_range(D.sample_ddim(self, x, ab, self.timesteps))


def distillation_loss(student: Distilled, teacher: Model, x0: Tensor, *, t: Tensor, noise: Tensor,
                      t_mid: Tensor | None = None, t_next: Tensor | None = None) -> Tensor:
    """Progressive distillation's loss on a batch of clean images ``x0 [B, ...]`` in ``[-1, 1]``.

    ``x_t = q_sample(x0, t, noise)``; the student's clean-image estimate is compared with
    :func:`distillation_target` of two teacher DDIM steps ``t -> t_mid -> t_next`` (by default the student's own
    grid, :func:`step_grid`), squared error weighted by ``max(SNR(t), 1)``, averaged.

    Args:
        student: the :class:`Distilled` being trained (its ``config.steps`` fixes the grid).
        teacher: ``teacher(x, t) -> eps`` with twice the student's steps (a DDPM, or the previous student).
        x0: clean images.
        t: ``[B]`` int64 timesteps of the student's grid.
        noise: ``N(0, I)`` shaped like ``x0``.
        t_mid, t_next: the teacher's midpoints and the student's next steps; default from :func:`step_grid`.

    Raises:
        ValueError: a ``t`` off the student's grid (when ``t_mid``/``t_next`` are not given).
    """
    c = student.config
    ab_table = student.alpha_bar.to(x0.device)
    if t_mid is None or t_next is None:
        grid, mids, nexts = step_grid(c.T, c.steps)
        where = (t.cpu()[:, None] == grid[None, :])
        if not bool(where.any(1).all()):
            raise ValueError(f"distillation_loss: t must lie on the student's grid {grid.tolist()}, got {t.tolist()}")
        idx = where.float().argmax(1)
        t_mid, t_next = mids[idx], nexts[idx]
    x_t = D.q_sample(x0, t, ab_table, noise)
    target = distillation_target(teacher, x_t, t, t_mid, t_next, ab_table)
    pred = student.predict_x0(x_t, t)
    ab = _ab(ab_table, t, x0)
    weight = (ab / (1 - ab)).clamp(min=1.0).to(x0.dtype)  # truncated SNR weighting
    return (weight * (pred - target) ** 2).mean()


class DistilledSet(nn.Module):
    """The students of several distillation rounds as one model: ``model.sample(x, steps)`` picks the one trained
    for ``steps``; ``model[steps]`` is that :class:`Distilled`.

    Args:
        steps: the students' step counts (e.g. ``(4, 2, 1)``).
        unet, T, schedule: as in :class:`DistilledConfig`.
    """

    def __init__(self, steps: Sequence[int] = (4, 2, 1), unet: UNetConfig | None = None, T: int = 1000,
                 schedule: str = "linear") -> None:
        super().__init__()
        steps = tuple(sorted({int(s) for s in steps}, reverse=True))
        if not steps:
            raise ValueError("DistilledSet: give at least one step count")
        self.steps = steps
        self.students = nn.ModuleDict({str(s): Distilled(DistilledConfig(unet or _default_unet(), T, schedule, s))
                                       for s in steps})

    def __getitem__(self, steps: int) -> Distilled:
        if steps not in self.steps:
            raise ValueError(f"this DistilledSet holds students for steps {list(self.steps)}, got steps={steps!r} "
                             f"(a distilled student samples only with the step count it was trained for)")
        return self.students[str(steps)]

    @property
    def config(self) -> DistilledConfig:
        """The config of the student with the most steps (all share the U-Net and schedule)."""
        return self.students[str(self.steps[0])].config

    @torch.no_grad()
    def sample(self, x: Tensor, steps: int | None = None) -> Tensor:
        """Images in ``[0, 1]`` from noise ``x`` with the student of ``steps`` steps (default: the most)."""
        return self[self.steps[0] if steps is None else steps].sample(x)

