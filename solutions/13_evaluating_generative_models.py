"""Solutions · 13 Evaluating generative models

Each function has the signature and docstring of its stub in the chapter; `tests/test_exercises.py` proves
that each one passes its check. Try the exercise before you read the answer.
"""

import torch


def frechet_distance_diagonal(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor,
                              var2: torch.Tensor) -> float:
    """Fréchet distance between N(mu1, diag(var1)) and N(mu2, diag(var2)).

    With diagonal covariances the matrix square root is the element-wise one, so
        d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(var1_i) - sqrt(var2_i))^2.

    Args:
        mu1, mu2: [F] means; var1, var2: [F] variances (> 0).

    Returns:
        a Python float.
    """
    mean_term = ((mu1 - mu2) ** 2).sum()
    cov_term = ((var1.sqrt() - var2.sqrt()) ** 2).sum()  # tr(S1 + S2 - 2 (S1 S2)^(1/2)) for diagonal S
    return float(mean_term + cov_term)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """The unbiased estimate of MMD^2 between samples x [M, F] and y [N, F].

    Kernel k(a, b) = (a.b / F + coef0) ** degree (KID's polynomial kernel). Leave out the i = j terms:
        MMD^2 = sum_{i != j} k(x_i, x_j) / (M (M - 1)) + sum_{i != j} k(y_i, y_j) / (N (N - 1))
                - 2 sum_{i, j} k(x_i, y_j) / (M N).

    Returns:
        a Python float (it can be slightly negative when x and y come from one distribution).
    """
    f = x.shape[1]
    k = lambda a, b: (a @ b.T / f + coef0) ** degree  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))  # the diagonal k(x_i, x_i) would bias it upwards
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def precision_recall_knn(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple:
    """Improved precision and recall from k-nearest-neighbour balls (Kynkäänniemi et al. 2019).

    Each point of a set gets a ball whose radius is the distance to its k-th nearest *other* point of the
    same set. Precision: the fraction of fake points inside at least one real ball. Recall: the fraction of
    real points inside at least one fake ball. Distances are Euclidean.

    Args:
        real: [N, F]; fake: [M, F]; k: the neighbour that sets each radius.

    Returns:
        (precision, recall) as Python floats.
    """
    def radii(s):  # column 0 of the sorted distances is the point itself (distance 0)
        return torch.cdist(s, s).sort(dim=1).values[:, k]

    d = torch.cdist(fake, real)  # [M, N]
    precision = (d <= radii(real)[None, :]).any(dim=1).double().mean().item()
    recall = (d.T <= radii(fake)[None, :]).any(dim=1).double().mean().item()
    return precision, recall


EXERCISES = {
    "13.1": frechet_distance_diagonal,
    "13.2": mmd2_unbiased,
    "13.3": precision_recall_knn,
}
