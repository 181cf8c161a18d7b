"""Solutions · 06 Training craft: optimisers, schedules and augmentation

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import math

import torch


def sgd_momentum_step(param: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor, lr: float,
                      momentum: float, nesterov: bool = False) -> tuple:
    """One step of SGD with momentum, as a pure function (PyTorch's formulation, no dampening).

        v_new = momentum * v + g
        heavy ball: param_new = param - lr * v_new
        Nesterov:   param_new = param - lr * (g + momentum * v_new)

    Args:
        param, grad, velocity: tensors of the same shape (velocity starts at zeros).
        lr: learning rate. momentum: mu in [0, 1). nesterov: use Nesterov momentum.

    Returns:
        (param_new, v_new), new tensors; the inputs are left unchanged.
    """
    v_new = momentum * velocity + grad  # b_t = mu b_{t-1} + g_t: an exponentially weighted sum of gradients
    direction = grad + momentum * v_new if nesterov else v_new  # Nesterov, in PyTorch's variables
    return param - lr * direction, v_new


def adam_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
              lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> tuple:
    """One Adam step with bias correction (Kingma & Ba 2015, Algorithm 1), as a pure function.

        m_new = beta1 * m + (1 - beta1) * g
        v_new = beta2 * v + (1 - beta2) * g^2
        m_hat = m_new / (1 - beta1^t),  v_hat = v_new / (1 - beta2^t)
        param_new = param - lr * m_hat / (sqrt(v_hat) + eps)

    Args:
        param, grad, m, v: tensors of the same shape (m and v start at zeros).
        t: the number of this step, 1 for the first update.
        lr, beta1, beta2, eps: Adam's hyper-parameters.

    Returns:
        (param_new, m_new, v_new), new tensors; the inputs are left unchanged.
    """
    m_new = beta1 * m + (1 - beta1) * grad  # first moment: running mean of gradients
    v_new = beta2 * v + (1 - beta2) * grad * grad  # second moment: running mean of squared gradients
    m_hat = m_new / (1 - beta1**t)  # m_0 = 0 biases m_t towards 0 by the factor (1 - beta1^t)
    v_hat = v_new / (1 - beta2**t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m_new, v_new


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at optimiser step `step` (0-based): linear warm-up, then cosine decay to min_lr.

        step < warmup_steps:                 base_lr * (step + 1) / warmup_steps
        warmup_steps <= step < total_steps:  min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2,
                                             p = (step - warmup_steps) / (total_steps - warmup_steps)
        step >= total_steps:                 min_lr

    Args:
        step: the 0-based step. total_steps: schedule length, warm-up included.
        warmup_steps: 0 <= warmup_steps <= total_steps. base_lr: the peak. min_lr: the floor.

    Returns:
        the learning rate, a float.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps  # reaches base_lr at the last warm-up step
    if step >= total_steps:
        return min_lr
    p = (step - warmup_steps) / (total_steps - warmup_steps)  # progress through the decay, 0 -> 1
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * p)) / 2


def affine_matrix(angle: float, translate: tuple, scale: float, shear: float) -> torch.Tensor:
    """The forward map p' = A p + t of an augmentation, as a [2, 3] tensor [A | t].

    Pixel coordinates centred on the image centre, x to the right, y DOWN. A = scale * R(angle) @ S(shear):
        R(a) = [[cos a, sin a], [-sin a, cos a]]   (counter-clockwise as displayed, because y points down)
        S(s) = [[1, tan s], [0, 1]]                 (x' = x + tan(s) * y)

    Args:
        angle: rotation in degrees. translate: (dx, dy) in pixels. scale: zoom (> 0). shear: degrees.

    Returns:
        float tensor [2, 3].
    """
    a, s = math.radians(angle), math.tan(math.radians(shear))
    rotation = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    shear_matrix = torch.tensor([[1.0, s], [0.0, 1.0]])
    linear = scale * rotation @ shear_matrix  # shear first, then rotate, then zoom
    return torch.cat([linear, torch.tensor(translate, dtype=torch.float32).reshape(2, 1)], dim=1)


EXERCISES = {"06.1": sgd_momentum_step, "06.2": adam_step, "06.3": warmup_cosine, "06.4": affine_matrix}
