"""The functional core of diffusion models: schedules, the forward process, samplers and guidance.

Pure functions over tensors (floor 1: imports only ``torch``), no scheduler objects and no state; the
networks that predict the noise live in the chapters' modules. Read in this order:

* ``diffusion.schedules`` (chapter 18; spacings and the DDIM step in chapter 19): :func:`betas` (linear or
  cosine), :func:`alpha_bar`, :func:`snr`, :func:`sigmas`, :func:`spaced_timesteps`; the forward process
  :func:`q_sample` and its posterior :func:`ddpm_posterior`; the conversions between ε, x0 and v predictions
  (:func:`eps_to_x0`, :func:`x0_to_eps`, :func:`v_target`, :func:`eps_to_v`, :func:`v_to_x0`,
  :func:`v_to_eps`); one :func:`ddim_step`.
* ``diffusion.sampling``: the samplers, one signature ``sampler(model, x, [alpha_bar,] timesteps, *, cond,
  callback, generator)`` over ``model(x, t, **cond)`` (the module's docstring states the convention):
  :func:`sample_ddpm` (ancestral), :func:`sample_ddim`, :func:`sample_euler`, :func:`sample_heun`,
  :func:`sample_dpmpp_2m` for noise-prediction models; :func:`sample_flow_euler`, :func:`sample_flow_heun`,
  :func:`sample_flow_midpoint` with :func:`flow_timesteps` for flow-matching velocity models;
  :func:`to_eps_model` for a model that predicts x0 or v.
* ``diffusion.training``: the losses over a model callable, :func:`diffusion_loss` (ε, x0 or v targets)
  and :func:`flow_matching_loss`.
* ``diffusion.guidance``: :func:`classifier_free_guidance`.
* ``diffusion.exact``: :func:`gaussian_eps_model` and :func:`gaussian_velocity_model`, the exact models for
  Gaussian data that every sampler is tested against.

A DDIM run in three lines (``net(x, t) -> eps`` trained on ``alpha_bar(betas(1000, "cosine"))``)::

    ab = diffusion.alpha_bar(diffusion.betas(1000, "cosine"))
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    images = diffusion.sample_ddim(net, x, ab, diffusion.spaced_timesteps(1000, 50))

Conventions: timesteps are 0-indexed (``t = 0 .. T-1``; ``t = -1`` is the clean data); schedules are
float64 and every coefficient is computed in float64 before it meets ``x``. Introduced in chapter 18.
"""

from .exact import gaussian_eps_model, gaussian_velocity_model
from .guidance import classifier_free_guidance
from .sampling import (
    PREDICTIONS,
    flow_timesteps,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_euler,
    sample_flow_euler,
    sample_flow_heun,
    sample_flow_midpoint,
    sample_heun,
    to_eps_model,
)
from .schedules import (
    NOISE_SCHEDULES,
    SPACINGS,
    alpha_bar,
    alpha_bar_from_snr,
    betas,
    ddim_step,
    ddpm_posterior,
    eps_to_v,
    eps_to_x0,
    q_sample,
    sigmas,
    snr,
    spaced_timesteps,
    v_target,
    v_to_eps,
    v_to_x0,
    x0_to_eps,
)
from .training import diffusion_loss, flow_matching_loss

__all__ = [
    "NOISE_SCHEDULES",
    "PREDICTIONS",
    "SPACINGS",
    "alpha_bar",
    "alpha_bar_from_snr",
    "betas",
    "classifier_free_guidance",
    "ddim_step",
    "ddpm_posterior",
    "diffusion_loss",
    "eps_to_v",
    "eps_to_x0",
    "flow_matching_loss",
    "flow_timesteps",
    "gaussian_eps_model",
    "gaussian_velocity_model",
    "q_sample",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_flow_euler",
    "sample_flow_heun",
    "sample_flow_midpoint",
    "sample_heun",
    "sigmas",
    "snr",
    "spaced_timesteps",
    "to_eps_model",
    "v_target",
    "v_to_eps",
    "v_to_x0",
    "x0_to_eps",
]
