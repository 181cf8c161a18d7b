"""Linear models and multi-layer perceptrons on pixels, built bottom-up from a hand-written ``Linear``.

Read top to bottom, smallest piece first (the nanoGPT order):

* the loss, in ``companion.losses`` (floor 1, shared by every classifier): ``softmax``, ``log_softmax``
  (log-sum-exp, stable for logits of 1000), ``cross_entropy`` (equal to ``F.cross_entropy``) and its gradient
  ``cross_entropy_grad`` (``(softmax(z) - onehot(y)) / B``);
* :func:`mlp_forward_backward`: one forward *and* backward pass of a one-hidden-layer MLP written out by
  hand, the only backward pass in the course that is not left to autograd;
* layers and models: :class:`Linear` (own parameters, Kaiming/LeCun initialisation), :class:`SoftmaxRegression`,
  :class:`MLP`;
* the chapter's experiment: :func:`permute_pixels` (shifts: ``companion.augment.shift``; training:
  ``companion.train.train_classifier``);

Shapes: images ``[B, C, H, W]``, flattened images ``[B, D]`` with ``D = C*H*W``, logits ``[B, K]``, labels
``[B]`` (int64 in ``0..K-1``). Introduced in chapter 02.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import _check_float, _check_tensor
from .losses import cross_entropy, cross_entropy_grad

__all__ = [
    "Linear",
    "MLP",
    "SoftmaxRegression",
    "mlp_forward_backward",
    "permute_pixels",
]

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
    _check_tensor(who, x, "x", f"a tensor [B, {features}] or [B, C, H, W] with C*H*W = {features}")
    _check_float(who, x)
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
# The chapter's experiments: permuted pixels
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


