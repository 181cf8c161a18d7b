"""Weight initialisation from scratch, and the hooks that show whether a deep network is well initialised.

Read top to bottom:

* fans and gains: :func:`fans` (``fan_in``, ``fan_out`` of a weight shape) and :func:`gain` (the factor that
  compensates a nonlinearity, as in ``torch.nn.init.calculate_gain``);
* standard deviations: :func:`xavier_std` (Glorot & Bengio 2010) and :func:`kaiming_std` (He et al. 2015);
* in-place initialisers on tensors, drop-ins for ``torch.nn.init``: :func:`xavier_uniform_`,
  :func:`xavier_normal_`, :func:`kaiming_uniform_`, :func:`kaiming_normal_`, and :func:`init_weights`, which
  applies one scheme to every convolution and linear layer of a model;
* diagnostics: :func:`activation_stats` (forward hooks: mean and std of every layer's output) and
  :func:`gradient_stats` (forward hooks + one ``autograd.grad`` call: the gradient reaching every layer).

The derivation, for a layer ``y = W x`` with ``n`` inputs per output, independent zero-mean weights and
inputs independent of the weights::

    Var[y_i] = n * Var[w] * E[x_j^2]                      # n independent products
    E[x^2]   = Var[y_prev] / 2      for x = relu(y_prev)  # half of a symmetric distribution is cut off
    =>  Var[w] = 2 / n_in          keeps Var[y] constant through ReLU layers (He, "fan_in")
        Var[w] = 2 / (n_in + n_out) compromises between the forward and backward pass (Glorot, linear/tanh)

Introduced in chapter 05.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "activation_stats",
    "fans",
    "gain",
    "gradient_stats",
    "init_weights",
    "kaiming_normal_",
    "kaiming_std",
    "kaiming_uniform_",
    "layer_output_stds",
    "xavier_normal_",
    "xavier_std",
    "xavier_uniform_",
]

ShapeLike = Tensor | torch.Size | Sequence[int]

_LINEAR_NAMES = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d")

#: The schemes :func:`init_weights` knows.
SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


# ----------------------------------------------------------------------------------------------
# Fans and gains
# ----------------------------------------------------------------------------------------------


def fans(shape: ShapeLike) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``[out, in]`` or ``[C_out, C_in, k_1, ..., k_d]``.

    A convolution output sums over ``C_in * k_1 * ... * k_d`` inputs (its fan-in); every input reaches
    ``C_out * k_1 * ... * k_d`` outputs (its fan-out). Grouped convolutions store ``C_in / groups`` in dim 1,
    so the formula is right for them too. Same result as PyTorch's ``_calculate_fan_in_and_fan_out``.

    Raises:
        ValueError: for fewer than 2 dimensions (a bias has no fan-in), or an empty dimension.

    Introduced in chapter 05.
    """
    dims = tuple(int(s) for s in (shape.shape if isinstance(shape, Tensor) else shape))
    if len(dims) < 2:
        raise ValueError(f"fan-in and fan-out need a weight with at least 2 dimensions, got shape {dims}")
    if min(dims) < 1:
        raise ValueError(f"every dimension of a weight must be >= 1, got shape {dims}")
    receptive = math.prod(dims[2:])  # k_1 * ... * k_d (1 for a linear layer)
    return dims[1] * receptive, dims[0] * receptive


def gain(nonlinearity: str = "linear", param: float | None = None) -> float:
    """The gain ``g`` that keeps the signal's scale through ``nonlinearity``: initialise with std ``g / sqrt(fan)``.

    ============== =========================== ===============================================
    nonlinearity   gain                        why
    ============== =========================== ===============================================
    linear, conv   1                           ``Var[y] = n Var[w] Var[x]``
    sigmoid        1                           (PyTorch's convention)
    tanh           5/3                         tanh shrinks its input; 5/3 counteracts it
    relu           sqrt(2)                     ReLU zeroes half of a symmetric input: ``E[x^2] = Var[y] / 2``
    leaky_relu     sqrt(2 / (1 + slope^2))     ``E[x^2] = (1 + slope^2) Var[y] / 2``; slope 0.01 by default
    selu           3/4                         (PyTorch's empirical choice)
    ============== =========================== ===============================================

    Equal to ``torch.nn.init.calculate_gain``. Introduced in chapter 05.
    """
    name = str(nonlinearity).lower()
    if name in _LINEAR_NAMES or name == "sigmoid":
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1.0 + slope**2))
    if name == "selu":
        return 0.75
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}: use linear, conv2d, sigmoid, tanh, relu, "
                     "leaky_relu or selu")


# ----------------------------------------------------------------------------------------------
# The standard deviations
# ----------------------------------------------------------------------------------------------


def xavier_std(shape: ShapeLike, gain: float = 1.0) -> float:
    """Glorot & Bengio (2010), eq. 12 generalised: ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    The forward pass keeps its variance when ``fan_in Var[w] = 1``, the backward pass when
    ``fan_out Var[w] = 1``; the harmonic compromise ``Var[w] = 2 / (fan_in + fan_out)`` satisfies both when
    ``fan_in = fan_out``. Introduced in chapter 05.
    """
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_std(shape: ShapeLike, nonlinearity: str = "relu", mode: str = "fan_in",
                param: float | None = None) -> float:
    """He et al. (2015), eq. 10 (``mode="fan_in"``) and eq. 14 (``"fan_out"``): ``std = gain / sqrt(fan)``.

    For ReLU ``gain**2 = 2``: ``Var[w] = 2 / n_in`` keeps the forward variance constant layer after layer,
    ``2 / n_out`` the backward one. ``param`` is the leaky-ReLU negative slope. Introduced in chapter 05.
    """
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(shape)
    return gain(nonlinearity, param) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


# ----------------------------------------------------------------------------------------------
# In-place initialisers (drop-ins for torch.nn.init)
# ----------------------------------------------------------------------------------------------


def _check_tensor(tensor: Tensor, who: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{who} expects a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{who} needs a floating-point tensor, got {tensor.dtype}")


@torch.no_grad()
def _uniform_(tensor: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    bound = math.sqrt(3.0) * std  # U(-a, a) has variance a^2 / 3
    return tensor.uniform_(-bound, bound, generator=generator)


@torch.no_grad()
def _normal_(tensor: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    return tensor.normal_(0.0, std, generator=generator)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``; return it.

    Like ``torch.nn.init.xavier_uniform_`` (bit-identical for the same generator state). Introduced in chapter 05.
    """
    _check_tensor(tensor, "xavier_uniform_")
    return _uniform_(tensor, xavier_std(tensor, gain), generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``; return it.

    Like ``torch.nn.init.xavier_normal_``. Introduced in chapter 05.
    """
    _check_tensor(tensor, "xavier_normal_")
    return _normal_(tensor, xavier_std(tensor, gain), generator)


def kaiming_uniform_(tensor: Tensor, nonlinearity: str = "relu", mode: str = "fan_in", param: float | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from ``U(-a, a)``, ``a = sqrt(3) * gain / sqrt(fan)``; return it.

    Like ``torch.nn.init.kaiming_uniform_(tensor, a=param, mode=mode, nonlinearity=nonlinearity)`` — but note
    that PyTorch's *default* ``nonlinearity`` is ``"leaky_relu"``, ours is ``"relu"``. Introduced in chapter 05.
    """
    _check_tensor(tensor, "kaiming_uniform_")
    return _uniform_(tensor, kaiming_std(tensor, nonlinearity, mode, param), generator)


def kaiming_normal_(tensor: Tensor, nonlinearity: str = "relu", mode: str = "fan_in", param: float | None = None,
                    generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` in place from ``N(0, std^2)``, ``std = gain / sqrt(fan)``; return it.

    Like ``torch.nn.init.kaiming_normal_``. Introduced in chapter 05.
    """
    _check_tensor(tensor, "kaiming_normal_")
    return _normal_(tensor, kaiming_std(tensor, nonlinearity, mode, param), generator)


def init_weights(model: nn.Module, scheme: str, nonlinearity: str = "relu", std: float | None = None,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every ``nn.Conv2d`` / ``nn.Linear`` weight of ``model`` with one scheme; zero the biases.

    Args:
        model: any module; normalisation layers are left alone.
        scheme: ``"normal"`` (a fixed ``std``, the "bad" baselines), ``"xavier_uniform"``, ``"xavier_normal"``
            (Glorot's gain 1, as in the paper), ``"kaiming_uniform"`` or ``"kaiming_normal"`` (``fan_in``,
            gain of ``nonlinearity``).
        nonlinearity: the activation that follows the layers (Kaiming's gain).
        std: the standard deviation for ``scheme="normal"``.
        generator: a ``torch.Generator`` for reproducible draws (default: the global one).

    Returns:
        ``model`` (changed in place). Introduced in chapter 05.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    if scheme == "normal" and (std is None or std < 0):
        raise ValueError(f"scheme 'normal' needs std >= 0, got {std!r}")
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        w = module.weight
        if scheme == "normal":
            _normal_(w, float(std), generator)
        elif scheme == "xavier_uniform":
            xavier_uniform_(w, generator=generator)
        elif scheme == "xavier_normal":
            xavier_normal_(w, generator=generator)
        elif scheme == "kaiming_uniform":
            kaiming_uniform_(w, nonlinearity, generator=generator)
        else:
            kaiming_normal_(w, nonlinearity, generator=generator)
        if module.bias is not None:
            with torch.no_grad():
                module.bias.zero_()
    return model


# ----------------------------------------------------------------------------------------------
# Diagnostics: what the signal looks like inside the network
# ----------------------------------------------------------------------------------------------

LayerTypes = type[nn.Module] | tuple[type[nn.Module], ...]


def _layers(model: nn.Module, layer_types: LayerTypes) -> list[tuple[str, nn.Module]]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, layer_types)]
    if not found:
        raise ValueError(f"the model has no layer of type {layer_types}")
    return found


def _record_outputs(model: nn.Module, x: Tensor, layer_types: LayerTypes) -> tuple[Tensor, list[tuple[str, Tensor]]]:
    """Run ``model(x)`` with a forward hook on every layer of ``layer_types``; return (output, [(name, out)])."""
    layers = _layers(model, layer_types)
    outputs: list[tuple[str, Tensor]] = []
    handles = [m.register_forward_hook(lambda _m, _inp, out, name=name: outputs.append((name, out)))
               for name, m in layers]
    try:
        result = model(x)
    finally:
        for h in handles:  # never leave a hook behind, even when the forward pass fails
            h.remove()
    return result, outputs


def activation_stats(model: nn.Module, x: Tensor,
                     layer_types: LayerTypes = (nn.Conv2d, nn.Linear)) -> list[dict[str, float | str]]:
    """Mean and standard deviation of the output of every layer of ``layer_types``, in the order they run.

    Forward hooks record each output of ``model(x)`` (no gradients; the model stays in its current train/eval
    mode). With the default types these are the pre-activations ``y_l`` of the variance derivation.

    Returns:
        ``[{"layer": name, "index": l, "mean": ..., "std": ...}, ...]`` with ``l = 1, 2, ...``; a layer that
        runs twice appears twice. Introduced in chapter 05.
    """
    with torch.no_grad():
        _, outputs = _record_outputs(model, x, layer_types)
    return [{"layer": name, "index": i, "mean": out.double().mean().item(), "std": out.double().std().item()}
            for i, (name, out) in enumerate(outputs, start=1)]


def gradient_stats(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                   layer_types: LayerTypes = (nn.Conv2d, nn.Linear)) -> list[dict[str, float | str]]:
    """The gradient that reaches every layer of ``layer_types`` for the loss ``loss_fn(model(x), y)``.

    Forward hooks keep every layer's output ``y_l``; one ``torch.autograd.grad`` call then returns
    ``dL/dy_l`` and ``dL/dW_l`` for all layers at once, so the parameters' ``.grad`` are left untouched.

    Returns:
        ``[{"layer": name, "index": l, "output_grad_std": std(dL/dy_l), "weight_grad_norm": ||dL/dW_l||}, ...]``
        in forward order (``weight_grad_norm`` is NaN for a layer without a ``weight``). Introduced in chapter 05.
    """
    with torch.enable_grad():
        out, outputs = _record_outputs(model, x, layer_types)
        loss = loss_fn(out, y)
        if loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        modules = dict(model.named_modules())
        weights = [getattr(modules[name], "weight", None) for name, _ in outputs]
        targets = [o for _, o in outputs] + [w for w in weights if isinstance(w, Tensor) and w.requires_grad]
        grads = torch.autograd.grad(loss, targets, allow_unused=True)
    out_grads, w_grads = grads[: len(outputs)], iter(grads[len(outputs):])
    rows = []
    for i, ((name, _), g_out, w) in enumerate(zip(outputs, out_grads, weights), start=1):
        g_w = next(w_grads) if isinstance(w, Tensor) and w.requires_grad else None
        rows.append({
            "layer": name,
            "index": i,
            "output_grad_std": float("nan") if g_out is None else g_out.double().std().item(),
            "weight_grad_norm": float("nan") if g_w is None else g_w.double().norm().item(),
        })
    return rows


def layer_output_stds(model: nn.Module, x: Tensor, layer_type: type[nn.Module] = nn.Conv2d) -> Tensor:
    """Standard deviation of the output of every ``layer_type`` layer of ``model(x)``, as a float tensor ``[L]``.

    The one-line summary of :func:`activation_stats` (exercise 05.4 writes it with forward hooks); an empty
    tensor when the model has no such layer. Introduced in chapter 05.
    """
    if not any(isinstance(m, layer_type) for m in model.modules()):
        return torch.zeros(0)
    return torch.tensor([r["std"] for r in activation_stats(model, x, layer_type)])
