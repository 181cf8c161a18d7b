"""Noise schedules, the forward process and its posterior, the DDIM step, prediction conversions.

The discrete variance-preserving process of DDPM (Ho et al. 2020):

* ``betas[t]``, ``t = 0 .. T-1``: the noise added at step ``t``; ``alpha = 1 - beta``;
* ``alpha_bar[t] = prod_{s <= t} (1 - betas[s])`` (eq. 4): ``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps``;
* ``snr = alpha_bar / (1 - alpha_bar)``: the signal-to-noise ratio, falling from large to near 0.

**Index convention.** Arrays are 0-indexed: ``t = 0 .. T-1`` indexes ``betas`` and ``alpha_bar`` (the papers'
``t = 1 .. T``). ``t = -1`` stands for the clean data, ``alpha_bar[-1] := 1``; it is allowed only as the
*target* of a step (``t_prev`` of :func:`ddim_step`). Every ``t`` is a Python int or an integer tensor of
shape ``[]`` or ``[B]`` (one timestep per example); a table entry is broadcast over the other dimensions of
``x``, so ``x`` may be ``[B, D]`` or ``[B, C, H, W]`` alike.

**Precision.** Schedules are built in float64 (the cumulative product of 1000 numbers close to 1 loses digits
in float32); each function gathers the coefficients it needs in float64 and casts them to ``x``'s dtype only at
the end, so the whole computation is float64 when ``x`` is.

Every function is pure: tensors in, tensors out, no state. Introduced in chapter 18; the DDIM step and the
timestep spacings in chapter 19.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from .._checks import _positive_int, _shape

__all__ = [
    "NOISE_SCHEDULES",
    "SPACINGS",
    "alpha_bar",
    "alpha_bar_from_snr",
    "betas",
    "ddim_step",
    "ddpm_posterior",
    "eps_to_x0",
    "eps_to_v",
    "q_sample",
    "sigmas",
    "snr",
    "spaced_timesteps",
    "v_target",
    "v_to_eps",
    "v_to_x0",
    "x0_to_eps",
]

#: the names :func:`betas` accepts
NOISE_SCHEDULES = ("linear", "cosine")
#: the names :func:`spaced_timesteps` accepts
SPACINGS = ("leading", "trailing", "linspace")


# ----------------------------------------------------------------------------------------------
# Checks shared by the functions below
# ----------------------------------------------------------------------------------------------


def _check_table(fn: str, table: object, name: str) -> Tensor:
    """``table`` must be a 1-D floating-point tensor (a schedule); returns it."""
    if not isinstance(table, Tensor):
        raise TypeError(f"{fn}: {name} must be a 1-D torch.Tensor [T], got {type(table).__name__}")
    if table.ndim != 1 or table.numel() == 0:
        raise ValueError(f"{fn}: {name} must be a 1-D tensor [T] with T >= 1, got shape {_shape(table)}")
    if not table.is_floating_point():
        raise TypeError(f"{fn}: {name} must be floating point, got {table.dtype}")
    return table


def _check_like(fn: str, a: Tensor, a_name: str, b: object, b_name: str) -> Tensor:
    """``b`` must be a tensor of the same shape as ``a``."""
    if not isinstance(b, Tensor):
        raise TypeError(f"{fn}: {b_name} must be a torch.Tensor shaped like {a_name}, got {type(b).__name__}")
    if b.shape != a.shape:
        raise ValueError(f"{fn}: {b_name} must have the shape of {a_name} {_shape(a)}, got {_shape(b)}")
    return b


def _timesteps_tensor(fn: str, t: object, name: str, T: int, lowest: int = 0) -> Tensor:
    """``t`` (int or integer tensor ``[]``/``[B]``) as an int64 tensor, every entry in ``lowest .. T-1``."""
    if isinstance(t, bool):
        raise TypeError(f"{fn}: {name} must be an int or an integer tensor, got {t!r}")
    if not isinstance(t, Tensor):
        try:
            t = torch.tensor(operator.index(t))  # a Python or NumPy integer
        except TypeError:
            raise TypeError(f"{fn}: {name} must be an int or an integer tensor, got {type(t).__name__}") from None
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{fn}: {name} must hold integer timesteps 0..T-1, got dtype {t.dtype}")
    if t.ndim > 1:
        raise ValueError(f"{fn}: {name} must be a scalar or a [B] tensor of timesteps, got shape {_shape(t)}")
    if t.numel() and (int(t.min()) < lowest or int(t.max()) > T - 1):
        raise ValueError(f"{fn}: {name} must lie in {lowest}..{T - 1} for a schedule of T = {T} steps, "
                         f"got values in {int(t.min())}..{int(t.max())}")
    return t.long()


def _gather(table: Tensor, t: Tensor, x: Tensor, fn: str, name: str = "t") -> Tensor:
    """``table[t]`` shaped ``[B, 1, ..., 1]`` (or ``[1, ..., 1]`` for a scalar ``t``) to broadcast over ``x``.

    ``t = -1`` reads 1 (``alpha_bar`` of the clean data). The values keep the table's dtype (float64).
    """
    if t.ndim == 1 and t.shape[0] not in (1, x.shape[0] if x.ndim else 1):
        raise ValueError(f"{fn}: {name} must hold one timestep per example, [B] with B = {x.shape[0]}, "
                         f"got shape {_shape(t)}")
    t = t.to(table.device)
    padded = torch.cat([table.new_ones(1), table])  # padded[t + 1] = table[t]; padded[0] = 1 for t = -1
    values = padded[t.reshape(-1) + 1]
    return values.reshape(-1, *([1] * max(x.ndim - 1, 0))).to(x.device)


def _coefficient(fn: str, t: object, alpha_bar_: Tensor, x: Tensor, name: str = "t", lowest: int = 0) -> Tensor:
    """Checked ``alpha_bar[t]``, float64, broadcastable over ``x``."""
    alpha_bar_ = _check_table(fn, alpha_bar_, "alpha_bar")
    tt = _timesteps_tensor(fn, t, name, alpha_bar_.shape[0], lowest)
    return _gather(alpha_bar_.double(), tt, x, fn, name)


def _check_x(fn: str, x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor [B, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn}: {name} must be floating point, got {x.dtype}")
    return x


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def betas(T: int, schedule: str = "linear", dtype: torch.dtype = torch.float64) -> Tensor:
    """The noise schedule ``beta_0 .. beta_{T-1}``: DDPM's linear one or the improved-DDPM cosine one.

    * ``"linear"`` (Ho et al. 2020, section 4): ``beta`` evenly spaced from ``1e-4`` to ``0.02``. These are
      DDPM's endpoints for any ``T``; they were chosen for ``T = 1000``, where ``alpha_bar[T-1]`` is about
      ``4e-5``. With far fewer steps the last ``alpha_bar`` is no longer near 0 (``T = 100``: about 0.36), so the
      last latent still holds the image: check ``alpha_bar(betas(T))[-1]``.
    * ``"cosine"`` (Nichol & Dhariwal 2021, eq. 17): ``alpha_bar(t) = f(t) / f(0)`` with
      ``f(t) = cos(((t / T + s) / (1 + s)) * pi / 2)^2``, ``s = 0.008``; ``beta_t = 1 - alpha_bar(t+1) / alpha_bar(t)``
      clipped at 0.999 (the last step would otherwise be exactly 1).

    Args:
        T: the number of diffusion steps, ``T >= 1``.
        schedule: ``"linear"`` or ``"cosine"``.
        dtype: the dtype of the result; the values are computed in float64 either way.

    Returns:
        ``[T]`` tensor of betas in ``(0, 1)``.

    Raises:
        TypeError: ``T`` is not an integer.
        ValueError: ``T < 1`` or an unknown ``schedule``.

    Introduced in chapter 18.
    """
    T = _positive_int(T, "betas: T (the number of diffusion steps)")
    if schedule == "linear":
        b = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    elif schedule == "cosine":
        s = 0.008
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # f(t) for t = 0 .. T
        b = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"betas: schedule must be one of {', '.join(map(repr, NOISE_SCHEDULES))}, got {schedule!r}")
    return b.to(dtype)


def alpha_bar(betas: Tensor) -> Tensor:
    """``alpha_bar[t] = prod_{s <= t} (1 - betas[s])`` (Ho et al. 2020, eq. 4), computed in float64.

    Args:
        betas: ``[T]`` noise schedule from :func:`betas`, each in ``[0, 1)``.

    Returns:
        ``[T]`` float64 tensor, decreasing from ``1 - betas[0]`` towards 0.

    Raises:
        ValueError: ``betas`` is not 1-D or has values outside ``[0, 1)``.

    Introduced in chapter 18.
    """
    b = _check_table("alpha_bar", betas, "betas").double()
    if bool((b < 0).any()) or bool((b >= 1).any()):
        raise ValueError(f"alpha_bar: betas must lie in [0, 1), got values in {float(b.min())}..{float(b.max())}")
    return torch.cumprod(1 - b, dim=0)


def snr(alpha_bar: Tensor) -> Tensor:
    """The signal-to-noise ratio ``SNR = alpha_bar / (1 - alpha_bar)`` (Kingma et al. 2021).

    Args:
        alpha_bar: ``alpha_bar`` values of any shape (the whole table ``[T]`` or ``alpha_bar[t]``).

    Returns:
        A tensor of the same shape and dtype (``inf`` where ``alpha_bar = 1``).

    Introduced in chapter 18.
    """
    return alpha_bar / (1 - alpha_bar)


def alpha_bar_from_snr(snr: Tensor) -> Tensor:
    """Invert :func:`snr`: ``alpha_bar = SNR / (1 + SNR)``.

    Args:
        snr: signal-to-noise ratios of any shape, ``>= 0``.

    Returns:
        A tensor of the same shape and dtype, in ``[0, 1)``.

    Introduced in chapter 18.
    """
    return snr / (1 + snr)


def sigmas(alpha_bar: Tensor) -> Tensor:
    """The noise levels ``sigma = sqrt((1 - alpha_bar) / alpha_bar) = 1 / sqrt(SNR)`` of the same process.

    Dividing ``x_t`` by ``sqrt(alpha_bar)`` gives ``x0 + sigma * eps``: the variance-exploding form in which
    Karras et al. (2022) write every sampler; the Euler, Heun and DPM-Solver++ samplers step there.

    Args:
        alpha_bar: ``alpha_bar`` values of any shape.

    Returns:
        A tensor of the same shape and dtype, ``>= 0``.

    Introduced in chapter 19.
    """
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def spaced_timesteps(T: int, steps: int, spacing: str = "trailing") -> Tensor:
    """The ``steps`` timesteps a sampler visits, in decreasing order, for a model trained with ``T`` steps.

    Three ways to pick them (Lin et al. 2024, Table 2; written here 0-indexed, the paper counts from 1):

    * ``"leading"`` (DDIM, Song et al. 2021): ``t_i = i * (T // steps)``, ``i = 0 .. steps-1``; for ``T = 1000``
      and 10 steps ``900, 800, ..., 0``: the first step is at 900, not at the last timestep 999.
    * ``"trailing"``: ``round(T - i * T / steps) - 1``; ``999, 899, ..., 99``: always starts at ``T - 1``, the
      timestep whose ``x_t`` is closest to pure noise (what Lin et al. recommend).
    * ``"linspace"`` (improved DDPM): ``round(linspace(0, T - 1, steps))``; ``999, 888, ..., 0``.

    Args:
        T: the number of training timesteps, ``>= 1``.
        steps: how many to keep, ``1 <= steps <= T``.
        spacing: ``"leading"``, ``"trailing"`` (default) or ``"linspace"``.

    Returns:
        ``[steps]`` int64 tensor, strictly decreasing, values in ``0 .. T-1``.

    Raises:
        TypeError: ``T`` or ``steps`` is not an integer.
        ValueError: ``T < 1``, ``steps`` outside ``1 .. T``, or an unknown ``spacing``.

    Introduced in chapter 19.
    """
    T = _positive_int(T, "spaced_timesteps: T (the number of training timesteps)")
    steps = _positive_int(steps, "spaced_timesteps: steps")
    if steps > T:
        raise ValueError(f"spaced_timesteps: steps must be <= T = {T}, got {steps}")
    i = torch.arange(steps, dtype=torch.float64)
    if spacing == "leading":
        t = i * (T // steps)
    elif spacing == "trailing":
        t = torch.round(T - i * T / steps) - 1
    elif spacing == "linspace":
        t = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64))
    else:
        raise ValueError(f"spaced_timesteps: spacing must be one of {', '.join(map(repr, SPACINGS))}, "
                         f"got {spacing!r}")
    return t.long().sort(descending=True).values


# ----------------------------------------------------------------------------------------------
# The forward process and its posterior (chapter 18)
# ----------------------------------------------------------------------------------------------


def q_sample(x0: Tensor, t: int | Tensor, alpha_bar: Tensor, noise: Tensor) -> Tensor:
    """Jump straight to step ``t``: ``x_t = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise`` (Ho et al. 2020, eq. 4).

    Args:
        x0: ``[B, ...]`` clean data.
        t: timesteps, an int or an integer tensor ``[B]``, each in ``0 .. T-1``.
        alpha_bar: ``[T]`` table from :func:`alpha_bar`.
        noise: ``eps ~ N(0, I)``, shaped like ``x0`` (pass it in, so the training target is at hand).

    Returns:
        ``x_t``, shaped like ``x0``, with its dtype.

    Raises:
        TypeError: a non-tensor or non-float input, or a float ``t``.
        ValueError: ``noise`` shaped unlike ``x0``, ``t`` outside ``0 .. T-1`` or not one per example.

    Introduced in chapter 18.
    """
    x0 = _check_x("q_sample", x0, "x0")
    noise = _check_like("q_sample", x0, "x0", noise, "noise")
    ab = _coefficient("q_sample", t, alpha_bar, x0)
    return (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).to(x0.dtype)


def _posterior(x0: Tensor, x_t: Tensor, ab_t: Tensor, ab_prev: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``q(x_prev | x_t, x0)`` between any two levels ``ab_t < ab_prev`` (float64 coefficients).

    For adjacent steps ``ab_t / ab_prev = alpha_t = 1 - beta_t`` and this is Ho et al. 2020, eq. 7; for a spaced
    subset of timesteps it is the same formula with ``beta = 1 - ab_t / ab_prev`` (Nichol & Dhariwal 2021).
    """
    beta = 1 - ab_t / ab_prev
    mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
    variance = (1 - ab_prev) / (1 - ab_t) * beta  # beta tilde
    return mean.to(x_t.dtype), variance.to(x_t.dtype)


def ddpm_posterior(x0: Tensor, x_t: Tensor, t: int | Tensor, betas: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of the forward-process posterior ``q(x_{t-1} | x_t, x0)`` (Ho et al. 2020, eqs. 6-7).

    ``mean = sqrt(alpha_bar[t-1]) beta_t / (1 - alpha_bar[t]) x0 + sqrt(alpha_t) (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) x_t``
    and ``variance = beta_tilde_t = (1 - alpha_bar[t-1]) / (1 - alpha_bar[t]) beta_t``. At ``t = 0`` the
    posterior is the point ``x0`` (``alpha_bar[-1] = 1``: mean ``x0``, variance 0).

    Args:
        x0: ``[B, ...]`` clean data (or the model's estimate of it).
        x_t: ``[B, ...]`` the noisy sample at step ``t``, shaped like ``x0``.
        t: timesteps, an int or an integer tensor ``[B]``, each in ``0 .. T-1``.
        betas: ``[T]`` noise schedule from :func:`betas`.

    Returns:
        ``(mean, variance)``: ``mean`` shaped like ``x_t``; ``variance`` ``[B, 1, ..., 1]`` (one value per
        example, broadcastable over ``mean``). Both in ``x_t``'s dtype.

    Raises:
        TypeError: a non-tensor or non-float input, or a float ``t``.
        ValueError: ``x0`` shaped unlike ``x_t``, ``t`` outside ``0 .. T-1`` or not one per example.

    Introduced in chapter 18.
    """
    x_t = _check_x("ddpm_posterior", x_t, "x_t")
    x0 = _check_like("ddpm_posterior", x_t, "x_t", x0, "x0")
    ab_table = alpha_bar(_check_table("ddpm_posterior", betas, "betas"))
    tt = _timesteps_tensor("ddpm_posterior", t, "t", ab_table.shape[0])
    ab_t = _gather(ab_table, tt, x_t, "ddpm_posterior")
    ab_prev = _gather(ab_table, tt - 1, x_t, "ddpm_posterior")
    return _posterior(x0, x_t, ab_t, ab_prev)


# ----------------------------------------------------------------------------------------------
# Three ways to say the same thing: eps, x0 and v predictions
# ----------------------------------------------------------------------------------------------
# All follow from x_t = a x0 + s eps with a = sqrt(alpha_bar[t]), s = sqrt(1 - alpha_bar[t]), a^2 + s^2 = 1,
# and v = a eps - s x0 (Salimans & Ho 2022, section 4): (x_t, v) is (x0, eps) rotated by the angle phi_t.


def eps_to_x0(x_t: Tensor, eps: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The clean image an ε-prediction implies: ``x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)``.

    Args:
        x_t: ``[B, ...]`` noisy sample at step ``t``.
        eps: ``[B, ...]`` predicted noise, shaped like ``x_t``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``x0``, shaped like ``x_t``.

    Introduced in chapter 18.
    """
    x_t = _check_x("eps_to_x0", x_t, "x_t")
    eps = _check_like("eps_to_x0", x_t, "x_t", eps, "eps")
    ab = _coefficient("eps_to_x0", t, alpha_bar, x_t)
    return ((x_t - (1 - ab).sqrt() * eps) / ab.sqrt()).to(x_t.dtype)


def x0_to_eps(x_t: Tensor, x0: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The noise an x0-prediction implies: ``eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)``.

    Args:
        x_t: ``[B, ...]`` noisy sample at step ``t``.
        x0: ``[B, ...]`` predicted clean data, shaped like ``x_t``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``eps``, shaped like ``x_t``.

    Introduced in chapter 18.
    """
    x_t = _check_x("x0_to_eps", x_t, "x_t")
    x0 = _check_like("x0_to_eps", x_t, "x_t", x0, "x0")
    ab = _coefficient("x0_to_eps", t, alpha_bar, x_t)
    return ((x_t - ab.sqrt() * x0) / (1 - ab).sqrt()).to(x_t.dtype)


def v_target(x0: Tensor, eps: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The velocity a v-model learns: ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0`` (Salimans & Ho 2022, section 4).

    Args:
        x0: ``[B, ...]`` clean data.
        eps: ``[B, ...]`` the noise that made ``x_t`` (as passed to :func:`q_sample`), shaped like ``x0``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``v``, shaped like ``x0``.

    Introduced in chapter 18.
    """
    x0 = _check_x("v_target", x0, "x0")
    eps = _check_like("v_target", x0, "x0", eps, "eps")
    ab = _coefficient("v_target", t, alpha_bar, x0)
    return (ab.sqrt() * eps - (1 - ab).sqrt() * x0).to(x0.dtype)


def eps_to_v(x_t: Tensor, eps: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The velocity an ε-prediction implies: ``v = (eps - sqrt(1 - alpha_bar) x_t) / sqrt(alpha_bar)``.

    Args:
        x_t: ``[B, ...]`` noisy sample at step ``t``.
        eps: ``[B, ...]`` predicted noise, shaped like ``x_t``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``v``, shaped like ``x_t``.

    Introduced in chapter 18.
    """
    x_t = _check_x("eps_to_v", x_t, "x_t")
    eps = _check_like("eps_to_v", x_t, "x_t", eps, "eps")
    ab = _coefficient("eps_to_v", t, alpha_bar, x_t)
    return ((eps - (1 - ab).sqrt() * x_t) / ab.sqrt()).to(x_t.dtype)


def v_to_x0(x_t: Tensor, v: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The clean image a v-prediction implies: ``x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v``.

    Args:
        x_t: ``[B, ...]`` noisy sample at step ``t``.
        v: ``[B, ...]`` predicted velocity, shaped like ``x_t``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``x0``, shaped like ``x_t``.

    Introduced in chapter 18.
    """
    x_t = _check_x("v_to_x0", x_t, "x_t")
    v = _check_like("v_to_x0", x_t, "x_t", v, "v")
    ab = _coefficient("v_to_x0", t, alpha_bar, x_t)
    return (ab.sqrt() * x_t - (1 - ab).sqrt() * v).to(x_t.dtype)


def v_to_eps(x_t: Tensor, v: Tensor, t: int | Tensor, alpha_bar: Tensor) -> Tensor:
    """The noise a v-prediction implies: ``eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v``.

    Args:
        x_t: ``[B, ...]`` noisy sample at step ``t``.
        v: ``[B, ...]`` predicted velocity, shaped like ``x_t``.
        t: timesteps, an int or an integer tensor ``[B]``.
        alpha_bar: ``[T]`` table.

    Returns:
        ``eps``, shaped like ``x_t``.

    Introduced in chapter 18.
    """
    x_t = _check_x("v_to_eps", x_t, "x_t")
    v = _check_like("v_to_eps", x_t, "x_t", v, "v")
    ab = _coefficient("v_to_eps", t, alpha_bar, x_t)
    return ((1 - ab).sqrt() * x_t + ab.sqrt() * v).to(x_t.dtype)


# ----------------------------------------------------------------------------------------------
# The DDIM step (chapter 19)
# ----------------------------------------------------------------------------------------------


def ddim_step(x_t: Tensor, eps: Tensor, t: int | Tensor, t_prev: int | Tensor, alpha_bar: Tensor,
              eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """One DDIM update from step ``t`` to an earlier step ``t_prev`` (Song et al. 2021, eq. 12).

    1. Predict the clean image: ``x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``.
    2. Choose the noise to add back: ``sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)``
       (eq. 16); ``eta = 0`` is deterministic DDIM, ``eta = 1`` the DDPM posterior's variance.
    3. Point back towards ``x_t``: ``x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise``.

    Here ``ab_t = alpha_bar[t]`` and ``ab_prev = alpha_bar[t_prev]``; ``t_prev = -1`` means the clean data
    (``ab_prev = 1``), so the last step returns the predicted ``x0``.

    Args:
        x_t: ``[B, ...]`` the sample at step ``t``.
        eps: ``[B, ...]`` the model's noise prediction at ``(x_t, t)``, shaped like ``x_t``.
        t: current timesteps, an int or an integer tensor ``[B]``, in ``0 .. T-1``.
        t_prev: target timesteps, each in ``-1 .. t-1``.
        alpha_bar: ``[T]`` table.
        eta: ``>= 0``, the amount of fresh noise (0: deterministic).
        noise: ``N(0, I)`` shaped like ``x_t``; required when ``eta > 0`` (keeps the step a pure function).

    Returns:
        ``x_{t_prev}``, shaped like ``x_t``.

    Raises:
        TypeError: a non-tensor or non-float input, or a float timestep.
        ValueError: mismatched shapes, timesteps out of range, ``t_prev >= t``, ``eta < 0``, or ``eta > 0``
            without ``noise``.

    Introduced in chapter 19.
    """
    fn = "ddim_step"
    x_t = _check_x(fn, x_t, "x_t")
    eps = _check_like(fn, x_t, "x_t", eps, "eps")
    alpha_bar = _check_table(fn, alpha_bar, "alpha_bar")
    T = alpha_bar.shape[0]
    tt = _timesteps_tensor(fn, t, "t", T)
    tp = _timesteps_tensor(fn, t_prev, "t_prev", T, lowest=-1)
    if tp.ndim and tt.ndim and tp.shape != tt.shape:
        raise ValueError(f"{fn}: t and t_prev must hold the same number of timesteps, got shapes "
                         f"{_shape(tt)} and {_shape(tp)}")
    if not bool((tp < tt).all()):
        raise ValueError(f"{fn}: t_prev must be earlier than t (t_prev < t, -1 for the clean data), "
                         f"got t = {tt.tolist()} and t_prev = {tp.tolist()}")
    if eta < 0:
        raise ValueError(f"{fn}: eta must be >= 0, got {eta}")
    if eta > 0:
        if noise is None:
            raise ValueError(f"{fn}: eta = {eta} > 0 adds fresh noise: pass noise (N(0, I) shaped like x_t)")
        noise = _check_like(fn, x_t, "x_t", noise, "noise")
    ab_t = _gather(alpha_bar.double(), tt, x_t, fn)
    ab_prev = _gather(alpha_bar.double(), tp, x_t, fn, "t_prev")
    # 1. predicted x0 (the "pred_original_sample")
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    # 2. sigma_t(eta), eq. 16
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).clamp(min=0).sqrt()
    # 3. x_prev = sqrt(ab_prev) x0 + "direction pointing to x_t" + random noise
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev.to(x_t.dtype)
