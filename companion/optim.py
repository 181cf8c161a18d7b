"""Optimisers and learning-rate schedules, written out update by update.

* ``SGD`` (with momentum and Nesterov momentum), ``Adam`` and ``AdamW``: subclasses of
  ``torch.optim.Optimizer`` that follow the same trajectories as ``torch.optim`` with the same
  arguments, so they work with ``torch.optim.lr_scheduler`` and with ``state_dict()``
  (state is stored under PyTorch's names: ``momentum_buffer``, ``exp_avg``, ...).
* ``warmup_cosine`` and ``one_cycle``: learning rate as a pure function of the step number,
  easy to plot; ``lambda_schedule`` turns such a function into a scheduler.

Notation in the comments: theta = parameters, g_t = gradient at step t, eta = learning rate,
lambda = weight decay, mu = momentum, tau = dampening, beta1/beta2 = Adam's decay rates.

All of them are introduced in chapter 06 (training craft); SGD already trains the models of chapters 02–05.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["SGD", "Adam", "AdamW", "lambda_schedule", "one_cycle", "warmup_cosine"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def _check_common(lr: float, weight_decay: float) -> None:
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay} (must be >= 0)")


def _run_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """Re-evaluate the model (for optimisers that need it); step() itself runs without grad."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    Update for each parameter theta at step t (the formulation of ``torch.optim.SGD``;
    Sutskever et al. 2013 for momentum and Nesterov momentum)::

        g_t = grad + lambda * theta                         # L2 weight decay, added to the gradient
        b_t = g_t                          (t = 1)          # momentum buffer
        b_t = mu * b_{t-1} + (1 - tau) * g_t   (t > 1)
        g_t = g_t + mu * b_t   if nesterov else   b_t       # (when mu != 0)
        theta = theta - eta * g_t

    Args:
        params: parameters or param-group dicts.
        lr: eta, >= 0.
        momentum: mu, >= 0.
        dampening: tau.
        weight_decay: lambda, >= 0.
        nesterov: Nesterov momentum; needs momentum > 0 and dampening = 0.

    Introduced in chapter 06.
    """

    def __init__(
        self,
        params: Params,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        _check_common(lr, weight_decay)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum} (must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum > 0 and zero dampening, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns the closure's loss, if any."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                g = theta.grad
                if weight_decay != 0:
                    g = g.add(theta, alpha=weight_decay)  # g_t = grad + lambda * theta
                if mu != 0:
                    state = self.state[theta]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = g.detach().clone()  # b_1 = g_1
                        state["momentum_buffer"] = buf
                    else:
                        buf.mul_(mu).add_(g, alpha=1 - tau)  # b_t = mu * b_{t-1} + (1 - tau) * g_t
                    g = g.add(buf, alpha=mu) if nesterov else buf
                theta.add_(g, alpha=-lr)  # theta_t = theta_{t-1} - eta * g_t
        return loss


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1).

    Update for each parameter theta at step t = 1, 2, ...::

        g_t   = grad + lambda * theta                      # L2 weight decay (coupled, as in torch.optim.Adam)
        m_t   = beta1 * m_{t-1} + (1 - beta1) * g_t        # first moment (mean of gradients)
        v_t   = beta2 * v_{t-1} + (1 - beta2) * g_t^2      # second moment (uncentred variance)
        m_hat = m_t / (1 - beta1^t)                        # bias corrections: m_0 = v_0 = 0
        v_hat = v_t / (1 - beta2^t)
        theta = theta - eta * m_hat / (sqrt(v_hat) + eps)

    With ``amsgrad`` (Reddi et al. 2018), ``v_hat`` uses ``max(v_1, ..., v_t)`` instead of v_t.
    The last line is computed, as PyTorch does, as
    ``theta - (eta / (1 - beta1^t)) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)``.

    Args:
        params: parameters or param-group dicts.
        lr: eta. betas: (beta1, beta2), each in [0, 1). eps: > 0 in practice, >= 0 allowed.
        weight_decay: lambda (L2 penalty added to the gradient; see ``AdamW`` for decoupled decay).
        amsgrad: use the running maximum of v_t.

    Introduced in chapter 06.
    """

    decoupled_weight_decay = False

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        _check_common(lr, weight_decay)
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas} (need two values in [0, 1))")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns the closure's loss, if any."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                g = theta.grad
                state = self.state[theta]
                if len(state) == 0:  # m_0 = v_0 = 0
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
                    if amsgrad:
                        state["max_exp_avg_sq"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                t = int(state["step"]) + 1
                state["step"] = t

                if weight_decay != 0:
                    if self.decoupled_weight_decay:
                        theta.mul_(1 - lr * weight_decay)  # AdamW: theta <- theta - eta * lambda * theta
                    else:
                        g = g.add(theta, alpha=weight_decay)  # Adam: g_t = grad + lambda * theta

                m.lerp_(g, 1 - beta1)  # m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2

                bias_correction1 = 1 - beta1**t
                bias_correction2 = 1 - beta2**t
                step_size = lr / bias_correction1  # eta / (1 - beta1^t)
                if amsgrad:
                    v_max = state["max_exp_avg_sq"]
                    torch.maximum(v_max, v, out=v_max)  # max(v_1, ..., v_t)
                    denom = (v_max.sqrt() / math.sqrt(bias_correction2)).add_(eps)
                else:
                    denom = (v.sqrt() / math.sqrt(bias_correction2)).add_(eps)  # sqrt(v_hat) + eps
                theta.addcdiv_(m, denom, value=-step_size)  # theta_t = theta_{t-1} - eta * m_hat / denom
        return loss


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2).

    Identical to ``Adam`` except that the weight decay no longer goes through the gradient
    (where Adam's normalisation would rescale it), but shrinks the parameters directly::

        theta = theta - eta * lambda * theta               # decoupled decay, first
        ... then the Adam update with g_t = grad (no L2 term).

    Defaults as ``torch.optim.AdamW`` (weight_decay=1e-2).

    Introduced in chapter 06.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


# ----------------------------------------------------------------------------------------------
# Learning-rate schedules: pure functions of the step
# ----------------------------------------------------------------------------------------------


def _cosine(start: float, end: float, pct: float) -> float:
    """Half a cosine from ``start`` (pct = 0) to ``end`` (pct = 1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0
) -> float:
    """Linear warm-up, then cosine decay (Goyal et al. 2017 warm-up; Loshchilov & Hutter 2017, SGDR).

    Equation::

        lr(t) = base_lr * (t + 1) / warmup_steps                                 t < warmup_steps
        lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2,
                p = (t - warmup_steps) / (total_steps - warmup_steps)           warmup_steps <= t < total_steps
        lr(t) = min_lr                                                          t >= total_steps

    The warm-up reaches ``base_lr`` at its last step, so no step is wasted at lr = 0.

    Args:
        step: t, the 0-based index of the optimiser step.
        total_steps: length of the schedule (warm-up included).
        warmup_steps: 0 <= warmup_steps <= total_steps.
        base_lr: the peak learning rate; min_lr: the floor reached at ``total_steps``.

    Introduced in chapter 06.
    """
    if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"need 0 <= warmup_steps <= total_steps and total_steps > 0, got {warmup_steps}, {total_steps}"
        )
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1 over the decay
    return _cosine(base_lr, min_lr, progress)


def one_cycle(
    step: int,
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """The 1cycle policy (Smith & Topin 2018), as ``torch.optim.lr_scheduler.OneCycleLR``.

    Two cosine phases (``anneal_strategy='cos'``, ``three_phase=False``)::

        initial = max_lr / div_factor,   final = initial / final_div_factor
        phase 1: steps 0 .. pct_start*total_steps - 1   initial -> max_lr
        phase 2: .. total_steps - 1                      max_lr  -> final

    ``one_cycle(t, ...)`` equals the learning rate OneCycleLR sets after t calls to
    ``scheduler.step()``, i.e. the one used by the (t+1)-th optimiser step.

    Args:
        step: t in [0, total_steps].
        total_steps: number of optimiser steps in the cycle.
        max_lr: the peak. pct_start: fraction of the cycle spent increasing.
        div_factor, final_div_factor: as in OneCycleLR.

    Introduced in chapter 06.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
    if not 0 <= step <= total_steps:
        raise ValueError(f"step must be in [0, total_steps={total_steps}], got {step}")
    initial_lr = max_lr / div_factor
    final_lr = initial_lr / final_div_factor
    warm_end = float(pct_start * total_steps) - 1  # the step at which lr = max_lr
    if step <= warm_end:
        return _cosine(initial_lr, max_lr, step / warm_end if warm_end > 0 else 1.0)
    decay_steps = total_steps - 1 - warm_end
    return _cosine(max_lr, final_lr, (step - warm_end) / decay_steps if decay_steps > 0 else 1.0)


def lambda_schedule(optimizer: Optimizer, fn: Callable[[int], float]) -> LambdaLR:
    """A ``LambdaLR`` that sets every param group's learning rate to ``fn(step)``.

    ``fn`` returns the learning rate itself (e.g. ``lambda t: warmup_cosine(t, 1000, 100, 3e-4)``),
    not a multiplier; internally the multiplier is ``fn(step) / initial_lr`` of each group.
    Call ``scheduler.step()`` after each ``optimizer.step()``, as with any PyTorch scheduler.
    Groups must start with a positive lr.

    Introduced in chapter 06.
    """
    base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    if any(lr <= 0 for lr in base_lrs):
        raise ValueError(f"lambda_schedule needs positive initial learning rates, got {base_lrs}")
    lambdas = [lambda step, base=base: fn(step) / base for base in base_lrs]
    return LambdaLR(optimizer, lr_lambda=lambdas)
