"""Exact models for Gaussian data: what a perfectly trained network would predict, in closed form.

For data ``x0 ~ N(m, s^2)`` (each dimension independent) every noisy ``x_t`` is Gaussian too, so the
posterior means a network learns have closed forms. A sampler fed these models must return samples with mean
``m`` and standard deviation ``s``: the check that separates a correct sampler from one that merely produces
plausible-looking images (the tests and chapters 18-19 use them).

* variance-preserving path ``x_t = a x0 + sigma eps`` (``a^2 = alpha_bar[t]``, ``sigma^2 = 1 - a^2``):
  ``E[eps | x_t] = sigma (x_t - a m) / (a^2 s^2 + sigma^2)`` (:func:`gaussian_eps_model`);
* straight path ``x_t = (1 - t) x0 + t eps``: ``E[eps - x0 | x_t]`` (:func:`gaussian_velocity_model`).

Introduced in chapter 18.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .schedules import _check_table, _timesteps_tensor

__all__ = ["gaussian_eps_model", "gaussian_velocity_model"]


def _as_tensor(v: float | Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=torch.float64)


def gaussian_eps_model(mean: float | Tensor, std: float | Tensor, alpha_bar: Tensor) -> Callable[..., Tensor]:
    """The optimal noise predictor for data ``N(mean, std^2)``: ``eps(x_t, t) = E[eps | x_t]``.

    ``E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab s^2 + 1 - ab)`` with ``ab = alpha_bar[t]``: the
    regression of ``eps`` on ``x_t``, since ``Cov(eps, x_t) = sqrt(1 - ab)`` and ``Var(x_t) = ab s^2 + 1 - ab``.

    Args:
        mean: ``m``, a float or a tensor broadcastable over one example (e.g. ``[D]`` for ``x [B, D]``).
        std: ``s > 0``, likewise.
        alpha_bar: ``[T]`` table.

    Returns:
        ``model(x, t, **cond) -> eps`` (``cond`` is ignored), in the samplers' convention.

    Introduced in chapter 18.
    """
    alpha_bar = _check_table("gaussian_eps_model", alpha_bar, "alpha_bar").double()
    m, s = _as_tensor(mean), _as_tensor(std)

    def model(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        tt = _timesteps_tensor("gaussian_eps_model", t, "t", alpha_bar.shape[0])
        ab = alpha_bar.to(x.device)[tt].reshape(-1, *([1] * (x.ndim - 1)))
        mm, ss = m.to(x.device, torch.float64), s.to(x.device, torch.float64)
        return ((1 - ab).sqrt() * (x - ab.sqrt() * mm) / (ab * ss**2 + 1 - ab)).to(x.dtype)

    return model


def gaussian_velocity_model(mean: float | Tensor, std: float | Tensor) -> Callable[..., Tensor]:
    """The exact flow-matching velocity for data ``N(mean, std^2)`` on ``x_t = (1 - t) x0 + t eps``.

    ``x_t`` has mean ``(1 - t) m`` and variance ``V = (1 - t)^2 s^2 + t^2``; regressing ``eps`` and ``x0`` on it,
    ``v(x_t, t) = E[eps - x0 | x_t] = (t - (1 - t) s^2) (x_t - (1 - t) m) / V - m``.

    Args:
        mean: ``m``, a float or a tensor broadcastable over one example.
        std: ``s > 0``, likewise.

    Returns:
        ``model(x, t, **cond) -> v`` with ``t`` a float tensor ``[B]`` in ``[0, 1]``.

    Introduced in chapter 19.
    """
    m, s = _as_tensor(mean), _as_tensor(std)

    def model(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        tt = torch.as_tensor(t, dtype=torch.float64, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        mm, ss = m.to(x.device, torch.float64), s.to(x.device, torch.float64)
        var = (1 - tt) ** 2 * ss**2 + tt**2
        return ((tt - (1 - tt) * ss**2) * (x - (1 - tt) * mm) / var - mm).to(x.dtype)

    return model
