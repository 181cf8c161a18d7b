"""Linear models and multi-layer perceptrons on pixels, built bottom-up from a hand-written ``Linear``.

Read top to bottom, smallest piece first (the nanoGPT order):

* pure functions: :func:`softmax`, :func:`log_softmax` (log-sum-exp, stable for logits of 1000),
  :func:`cross_entropy` (the negative log-likelihood of the labels, equal to ``F.cross_entropy``) and its
  gradient :func:`cross_entropy_grad` (``(softmax(z) - onehot(y)) / B``);
* :func:`mlp_forward_backward`: one forward *and* backward pass of a one-hidden-layer MLP written out by
  hand, the only backward pass in the course that is not left to autograd;
* layers and models: :class:`Linear` (own parameters, Kaiming/LeCun initialisation), :class:`SoftmaxRegression`,
  :class:`MLP`;
* the chapter's experiments: :func:`permute_pixels`, :func:`shift_images` (training is
  ``companion.train.train_classifier``);
* the shipped checkpoint ``mlp_mnist``: :func:`build_hub_mlp` and :func:`train_hub_mlp` (see ``companion.hub``).

Shapes: images ``[B, C, H, W]``, flattened images ``[B, D]`` with ``D = C*H*W``, logits ``[B, K]``, labels
``[B]`` (int64 in ``0..K-1``). Introduced in chapter 02.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "HUB_SIZES",
    "Linear",
    "MLP",
    "SoftmaxRegression",
    "build_hub_mlp",
    "cross_entropy",
    "cross_entropy_grad",
    "log_softmax",
    "mlp_forward_backward",
    "permute_pixels",
    "shift_images",
    "softmax",
    "train_hub_mlp",
]

#: Layer widths of the shipped ``mlp_mnist`` checkpoint: 784 → 256 → 128 → 10 (235,146 parameters, ~0.9 MB).
HUB_SIZES: tuple[int, ...] = (784, 256, 128, 10)


# ----------------------------------------------------------------------------------------------
# Pure functions: softmax, log-softmax, cross-entropy and its gradient
# ----------------------------------------------------------------------------------------------


def log_softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax along ``dim``.

    ``log softmax(z)_k = z_k - logsumexp(z) = (z_k - m) - log sum_j exp(z_j - m)`` with ``m = max_j z_j``.
    Subtracting the maximum changes nothing mathematically (it cancels) but keeps every ``exp`` in
    ``(0, 1]``: no overflow for ``z = 1000`` (``exp(1000) = inf`` in float32) and no ``log(0)``.

    Args:
        z: logits of any shape, e.g. ``[B, K]``; floating point.
        dim: the class dimension.

    Returns:
        Log-probabilities, same shape as ``z``; ``exp`` of them sums to 1 along ``dim``.

    Introduced in chapter 02.
    """
    if not z.is_floating_point():
        raise TypeError(f"log_softmax needs floating-point logits, got dtype {z.dtype}")
    m = z.amax(dim=dim, keepdim=True).detach()  # the shift is a constant: it cancels in the result
    shifted = z - m
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


def softmax(z: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``: ``softmax(z)_k = exp(z_k - m) / sum_j exp(z_j - m)``.

    Args:
        z: logits of any shape, e.g. ``[B, K]``; floating point.
        dim: the class dimension.

    Returns:
        Probabilities, same shape as ``z``, non-negative and summing to 1 along ``dim``.

    Introduced in chapter 02.
    """
    if not z.is_floating_point():
        raise TypeError(f"softmax needs floating-point logits, got dtype {z.dtype}")
    e = (z - z.amax(dim=dim, keepdim=True).detach()).exp()
    return e / e.sum(dim=dim, keepdim=True)


def _check_logits_targets(logits: Tensor, targets: Tensor) -> None:
    """Raise a ``ValueError`` naming the shapes unless ``logits [B, K]`` and ``targets [B]`` fit together."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, K] (batch, classes), got shape {tuple(logits.shape)}")
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must be [B] class indices matching logits [B, K]: got logits {tuple(logits.shape)} "
            f"and targets {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(
            f"targets must lie in 0..{logits.shape[1] - 1} for logits with K={logits.shape[1]} classes, "
            f"got values in {int(targets.min())}..{int(targets.max())}"
        )


def cross_entropy(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of integer labels under ``softmax(logits)``, the same as ``F.cross_entropy``.

    ``L = -(1/B) sum_i log softmax(z_i)_{y_i}``: the average negative log-likelihood the model gives the
    true labels (Goodfellow et al. 2016, section 6.2.2.3).

    Args:
        logits: ``[B, K]`` unnormalised scores.
        targets: ``[B]`` integer labels in ``0..K-1``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-example losses ``[B]``).

    Raises:
        ValueError: shapes that do not fit (``logits [B, K]`` vs ``targets [B']``), labels out of range,
            or an unknown ``reduction``.

    Introduced in chapter 02.
    """
    _check_logits_targets(logits, targets)
    nll = -log_softmax(logits, dim=-1).gather(1, targets.long()[:, None])[:, 0]  # [B]
    if reduction == "mean":
        return nll.mean()
    if reduction == "sum":
        return nll.sum()
    if reduction == "none":
        return nll
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy_grad(logits: Tensor, targets: Tensor) -> Tensor:
    """Gradient of the mean cross-entropy with respect to the logits: ``(softmax(z) - onehot(y)) / B``.

    Derivation: for one example ``l = -z_y + log sum_j exp(z_j)``, so
    ``dl/dz_k = -[k = y] + exp(z_k) / sum_j exp(z_j) = p_k - [k = y]``; the batch mean divides by ``B``.

    Args:
        logits: ``[B, K]``.
        targets: ``[B]`` integer labels.

    Returns:
        ``[B, K]``, each row sums to 0 (probability mass moves from wrong classes to the right one).

    Introduced in chapter 02.
    """
    _check_logits_targets(logits, targets)
    onehot = F.one_hot(targets.long(), logits.shape[1]).to(logits.dtype)  # [B, K]
    return (softmax(logits, dim=-1) - onehot) / logits.shape[0]


# ----------------------------------------------------------------------------------------------
# One backward pass by hand
# ----------------------------------------------------------------------------------------------


def mlp_forward_backward(x: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor,
                         b2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss and gradients of a one-hidden-layer ReLU MLP, computed by hand (no autograd).

    Forward (row-vector convention, a batch at a time)::

        a = x W1^T + b1          # [B, H]   hidden pre-activations
        h = relu(a)              # [B, H]
        z = h W2^T + b2          # [B, K]   logits
        L = mean_i CE(z_i, y_i)  # scalar

    Backward, the chain rule applied from the loss down (each line reuses the one above)::

        dL/dz  = (softmax(z) - onehot(y)) / B         # [B, K]  (cross_entropy_grad)
        dL/dW2 = (dL/dz)^T h                          # [K, H]  since z_ik = sum_j h_ij W2_kj + b2_k
        dL/db2 = sum_i (dL/dz)_i                      # [K]
        dL/dh  = (dL/dz) W2                           # [B, H]
        dL/da  = dL/dh * [a > 0]                      # [B, H]  relu'(a) is the step function
        dL/dW1 = (dL/da)^T x                          # [H, D]
        dL/db1 = sum_i (dL/da)_i                      # [H]

    Args:
        x: ``[B, D]`` inputs (flattened images).
        y: ``[B]`` integer labels in ``0..K-1``.
        W1: ``[H, D]``, b1: ``[H]``, W2: ``[K, H]``, b2: ``[K]`` (``nn.Linear``'s ``[out, in]`` layout).

    Returns:
        ``(loss, grads)`` with ``grads = {"W1", "b1", "W2", "b2", "logits"}``, each the gradient of the mean
        loss with respect to that tensor, shaped like it.

    Raises:
        ValueError: when the shapes do not chain (the message lists them).

    Introduced in chapter 02.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [B, D] (flatten images first), got shape {tuple(x.shape)}")
    B, D = x.shape
    ok = (W1.ndim == 2 and W1.shape[1] == D and b1.shape == (W1.shape[0],)
          and W2.ndim == 2 and W2.shape[1] == W1.shape[0] and b2.shape == (W2.shape[0],))
    if not ok:
        raise ValueError(
            "shapes do not chain: expected x [B, D], W1 [H, D], b1 [H], W2 [K, H], b2 [K]; got "
            f"x {tuple(x.shape)}, W1 {tuple(W1.shape)}, b1 {tuple(b1.shape)}, W2 {tuple(W2.shape)}, "
            f"b2 {tuple(b2.shape)}"
        )
    with torch.no_grad():
        # forward
        a = x @ W1.T + b1                      # [B, H]
        h = a.clamp_min(0)                     # [B, H]
        z = h @ W2.T + b2                      # [B, K]
        loss = cross_entropy(z, y)
        # backward
        dz = cross_entropy_grad(z, y)          # [B, K]  = (p - onehot) / B
        dW2 = dz.T @ h                         # [K, H]
        db2 = dz.sum(0)                        # [K]
        dh = dz @ W2                           # [B, H]
        da = dh * (a > 0).to(dh.dtype)         # [B, H]
        dW1 = da.T @ x                         # [H, D]
        db1 = da.sum(0)                        # [H]
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "logits": dz}


# ----------------------------------------------------------------------------------------------
# Layers and models
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "identity": lambda t: t,
}

_INITS = ("kaiming", "lecun", "zeros")


class Linear(nn.Module):
    """A fully connected layer ``y = x W^T + b`` with its own parameters (``W [out, in]``, ``b [out]``).

    Initialisation keeps the scale of the signal roughly constant from layer to layer. With i.i.d. weights
    of variance ``s^2`` and ``n = in_features`` inputs of second moment ``q``, each output has variance
    ``n s^2 q``, so:

    * ``"lecun"``: ``s^2 = 1 / n`` (LeCun et al. 1998) keeps the variance for linear/tanh units;
    * ``"kaiming"``: ``s^2 = 2 / n`` (He et al. 2015) compensates ReLU zeroing half its inputs
      (``E[relu(a)^2] = Var(a) / 2``);
    * ``"zeros"``: all zeros, fine for a convex model such as softmax regression (no symmetry to break).

    Weights are drawn from ``N(0, s^2)``; biases start at 0. (PyTorch's ``nn.Linear`` uses a uniform
    ``U(-1/sqrt(n), 1/sqrt(n))``, i.e. ``s^2 = 1/(3n)``.) The layout matches ``nn.Linear`` so state dicts
    are interchangeable.

    Args:
        in_features: ``D``; out_features: ``K``; bias: learn a bias; init: ``"kaiming"``, ``"lecun"``, ``"zeros"``.

    Shapes: ``x [..., D] -> [..., K]``. Introduced in chapter 02.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "kaiming") -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear needs positive sizes, got in={in_features}, out={out_features}")
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        self.in_features, self.out_features, self.init = in_features, out_features, init
        self.weight = nn.Parameter(torch.empty(out_features, in_features))  # [K, D]
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None  # [K]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw the weights with the layer's ``init`` rule and zero the bias."""
        with torch.no_grad():
            if self.init == "zeros":
                self.weight.zero_()
            else:
                gain = 2.0 if self.init == "kaiming" else 1.0
                self.weight.normal_(0.0, math.sqrt(gain / self.in_features))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) expects inputs [..., "
                             f"{self.in_features}], got shape {tuple(x.shape)}")
        y = x @ self.weight.T  # [..., K]
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, init={self.init!r}"


def _flatten(x: Tensor, features: int, who: str) -> Tensor:
    """``[B, C, H, W]`` (or ``[B, D]``) → ``[B, D]`` with a clear error when ``D`` is not ``features``."""
    if x.ndim < 2:
        raise ValueError(f"{who} expects a batch [B, ...], got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)  # [B, D]
    if flat.shape[1] != features:
        raise ValueError(f"{who} expects {features} features per example (e.g. [B, 1, 28, 28] for 784), "
                         f"got shape {tuple(x.shape)} = {flat.shape[1]} features")
    return flat


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression: ``p(y | x) = softmax(W x + b)`` on flattened pixels.

    One :class:`Linear` (zero-initialised: the loss is convex, so no symmetry needs breaking), so each row
    ``W[k]`` reshaped to ``[H, W]`` is the *template* that class ``k`` matches pixels against.

    Shapes: ``x [B, C, H, W]`` or ``[B, D]`` → logits ``[B, K]``. Introduced in chapter 02.
    """

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        self.linear = Linear(in_features, num_classes, init="zeros")

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(_flatten(x, self.in_features, "SoftmaxRegression"))  # [B, K]

    def templates(self, shape: Sequence[int] = (28, 28)) -> Tensor:
        """The weight rows as images ``[K, 1, *shape]`` (one template per class)."""
        return self.linear.weight.detach().reshape(self.num_classes, 1, *shape)


class MLP(nn.Module):
    """A multi-layer perceptron ``sizes[0] → sizes[1] → … → sizes[-1]`` on flattened pixels.

    Every hidden layer is ``h = activation(Linear(h))``; the last layer gives logits (no activation).
    Hidden layers use Kaiming initialisation for ReLU-like activations and LeCun otherwise; the output
    layer uses LeCun.

    Args:
        sizes: layer widths including input and output, e.g. ``(784, 256, 128, 10)``.
        activation: ``"relu"``, ``"gelu"``, ``"tanh"``, ``"sigmoid"`` or ``"identity"``.

    Shapes: ``x [B, C, H, W]`` or ``[B, D]`` → logits ``[B, sizes[-1]]``. Introduced in chapter 02.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"MLP needs at least two positive sizes (input, output), got {sizes}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.sizes, self.activation = sizes, activation
        hidden_init = "kaiming" if activation in ("relu", "gelu") else "lecun"
        n = len(sizes) - 1
        self.layers = nn.ModuleList(
            Linear(d_in, d_out, init=hidden_init if i < n - 1 else "lecun")
            for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]))
        )

    def forward(self, x: Tensor) -> Tensor:
        act = _ACTIVATIONS[self.activation]
        h = _flatten(x, self.sizes[0], f"MLP{self.sizes}")  # [B, D]
        for layer in self.layers[:-1]:
            h = act(layer(h))  # [B, H_l]
        return self.layers[-1](h)  # [B, K]


# ----------------------------------------------------------------------------------------------
# The chapter's experiments: permuted and shifted pixels
# ----------------------------------------------------------------------------------------------


def permute_pixels(x: Tensor, perm: Tensor) -> Tensor:
    """Shuffle pixel positions with one fixed permutation, the same for every image and channel.

    ``out.flatten(-2)[..., i] = x.flatten(-2)[..., perm[i]]``: pixel ``i`` of the output is pixel ``perm[i]``
    of the input. An MLP sees the same numbers in a different order, so it can learn the permuted task as
    well as the original (Zhang et al. 2017); a CNN, whose filters assume neighbours are related, cannot.

    Args:
        x: ``[B, C, H, W]`` images (the permutation acts on the ``H*W`` positions) or ``[B, D]`` vectors.
        perm: ``[H*W]`` (or ``[D]``) int64, a permutation of ``0..H*W-1`` (e.g. ``torch.randperm(784)``).

    Returns:
        A tensor shaped like ``x``.

    Raises:
        ValueError: ``x`` is not 2-D/4-D, or ``perm`` is not a permutation of the right length.

    Introduced in chapter 02.
    """
    if x.ndim == 4:
        n = x.shape[-2] * x.shape[-1]
    elif x.ndim == 2:
        n = x.shape[-1]
    else:
        raise ValueError(f"x must be [B, C, H, W] or [B, D], got shape {tuple(x.shape)}")
    if perm.ndim != 1 or perm.numel() != n:
        raise ValueError(f"perm must be [{n}] for x of shape {tuple(x.shape)}, got shape {tuple(perm.shape)}")
    if perm.is_floating_point() or not torch.equal(perm.sort().values.cpu(), torch.arange(n)):
        raise ValueError(f"perm must be an integer permutation of 0..{n - 1}")
    perm = perm.to(x.device).long()
    if x.ndim == 2:
        return x[:, perm]
    return x.flatten(-2)[..., perm].reshape(x.shape)  # [B, C, H*W] → [B, C, H, W]


def shift_images(x: Tensor, dx: int, dy: int) -> Tensor:
    """Translate images by whole pixels, filling the uncovered border with zeros (no wrap-around).

    ``out[..., i, j] = x[..., i - dy, j - dx]`` where that index exists, else 0. Positive ``dx`` moves the
    content right, positive ``dy`` moves it down.

    Args:
        x: ``[..., H, W]`` images, e.g. ``[B, 1, 28, 28]``.
        dx: horizontal shift in pixels, ``|dx| < W``.
        dy: vertical shift in pixels, ``|dy| < H``.

    Returns:
        A tensor shaped like ``x``.

    Introduced in chapter 02.
    """
    if x.ndim < 2:
        raise ValueError(f"x must be [..., H, W], got shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if int(dx) != dx or int(dy) != dy:
        raise ValueError(f"shifts must be whole pixels, got dx={dx}, dy={dy}")
    dx, dy = int(dx), int(dy)
    if abs(dx) >= W or abs(dy) >= H:
        raise ValueError(f"shift ({dx}, {dy}) moves a {H}x{W} image entirely out of frame")
    out = torch.zeros_like(x)
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        x[..., max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


# ----------------------------------------------------------------------------------------------
# The shipped checkpoint ``mlp_mnist`` (companion.hub recipe)
# ----------------------------------------------------------------------------------------------


def build_hub_mlp() -> MLP:
    """The untrained model of checkpoint ``mlp_mnist``: ``MLP(HUB_SIZES, "relu")`` (235,146 parameters).

    Introduced in chapter 02.
    """
    return MLP(HUB_SIZES, "relu")


def train_hub_mlp(profile: str = "cpu") -> tuple[MLP, dict[str, Any]]:
    """Train checkpoint ``mlp_mnist`` at ``profile`` and return ``(model, card info)``.

    The recipe: :func:`build_hub_mlp` with seed 0, AdamW (lr 1e-3, weight decay 1e-4, cosine decay), batch
    128, on the training split of :func:`companion.data.mnist_splits` (offline that is MNIST-test[:8000],
    and the card says so); ``ci`` trains 1 epoch on 2,000 images, ``cpu`` 20 epochs, ``gpu`` 30 epochs on
    everything. About 20 s at ``cpu`` offline on 2 cores (a few minutes with the full 60,000-image split).

    Returns:
        ``(model, {"description", "data", "steps", "metrics": {"test_accuracy"}})`` for ``companion.hub``.

    Introduced in chapter 02.
    """
    from . import data
    from .profile import seed_everything
    from .train import train_classifier

    if profile not in ("ci", "cpu", "gpu"):
        raise ValueError(f"profile must be 'ci', 'cpu' or 'gpu', got {profile!r}")
    epochs = {"ci": 1, "cpu": 20, "gpu": 30}[profile]
    train, test, desc = data.mnist_splits(profile, n_train=2000 if profile == "ci" else None)
    device = "cuda" if profile == "gpu" and torch.cuda.is_available() else "cpu"
    seed_everything(0)
    model = build_hub_mlp()
    history, acc = train_classifier(model, train, test, epochs=epochs, lr=1e-3, weight_decay=1e-4, seed=0,
                                    criterion=cross_entropy, device=device, desc=f"mlp_mnist ({profile})")
    steps = int(history.train[-1]["step"])
    info = {
        "description": f"MLP {'-'.join(map(str, HUB_SIZES))} (ReLU) on MNIST, chapter 02: AdamW lr 1e-3, "
                       f"weight decay 1e-4, cosine decay, batch 128, {epochs} epoch(s), seed 0, no augmentation",
        "data": desc,
        "steps": steps,
        "metrics": {"test_accuracy": round(acc, 4)},
    }
    return model.cpu().eval(), info
