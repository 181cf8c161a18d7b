"""Solutions · 14 Generative adversarial networks

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import torch


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """The discriminator that maximises E_data[log D] + E_g[log(1 - D)] for a fixed generator.

    For every x, maximise a log D + b log(1 - D) over D in [0, 1], with a = p_data(x), b = p_g(x).
    Where both densities are 0 the discriminator is free: return 1/2 there.

    Args:
        p_data, p_g: densities (or probabilities) of the same shape, >= 0.

    Returns:
        D*(x), the same shape, in [0, 1].
    """
    total = p_data + p_g
    # d/dD [a log D + b log(1 - D)] = a / D - b / (1 - D) = 0  <=>  D = a / (a + b)
    return torch.where(total > 0, p_data / torch.where(total > 0, total, 1.0), 0.5)


def logit_gradients(logits: torch.Tensor) -> tuple:
    """Gradients of the two generator losses with respect to the discriminator's logit l of a fake, D = sigmoid(l).

    minimax (saturating):  d/dl log(1 - sigmoid(l))
    non-saturating:        d/dl -log sigmoid(l)
    Derive them by hand (no autograd): sigmoid'(l) = sigmoid(l) (1 - sigmoid(l)).

    Args:
        logits: any shape.

    Returns:
        (minimax gradient, non-saturating gradient), each the shape of logits.
    """
    d = torch.sigmoid(logits)
    # log(1 - D): D'/(1 - D) * -1 = -D(1 - D)/(1 - D) = -D;   -log D: -D'/D = -D(1 - D)/D = -(1 - D)
    return -d, d - 1


def modes_covered(samples: torch.Tensor, centres: torch.Tensor, std: float, min_count: int) -> int:
    """How many modes of a Gaussian mixture the samples cover.

    Assign every sample to its nearest centre. A sample is high quality if it lies within 3 std of that
    centre. A mode is covered if at least min_count high-quality samples were assigned to it.

    Args:
        samples: [N, 2] generated points; centres: [K, 2] the mixture's means.
        std: the standard deviation of every component; min_count: the threshold.

    Returns:
        the number of covered modes, a Python int between 0 and K.
    """
    dist = torch.cdist(samples, centres)  # [N, K]
    nearest, idx = dist.min(dim=1)  # distance to and index of the nearest mode, [N] each
    good = nearest <= 3 * std
    counts = torch.bincount(idx[good], minlength=len(centres))  # [K]
    return int((counts >= min_count).sum())


EXERCISES = {
    "14.1": optimal_discriminator,
    "14.2": logit_gradients,
    "14.3": modes_covered,
}
