"""The generative chapters' recipes, thin wrappers around :func:`train_model` that reach a model only through its
methods or a loss passed in: :func:`train_autoencoder` (chapter 09), :func:`train_vae` (chapters 10, 11),
:func:`train_vqvae` and :func:`train_prior` (chapter 12). Introduced in chapter 09.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..augment import dynamic_binarize
from ..batching import as_images
from .loop import EvalFn, History, LossFn
from .wrappers import TensorBatches, train_model

# ----------------------------------------------------------------------------------------------
# The generative chapters' wrappers around train_model
# ----------------------------------------------------------------------------------------------


def _on_cpu(model: nn.Module, g: torch.Generator) -> torch.Generator | None:
    """The CPU generator when the model is on the CPU; otherwise ``None`` (draw from the device's default)."""
    return g if next(model.parameters()).device.type == "cpu" else None


@torch.no_grad()
def _elbo_eval(model: nn.Module, x_all: Tensor, binarize: bool, seed: int, batch_size: int = 500) -> dict[str, float]:
    """Mean ELBO, reconstruction log-likelihood and KL on ``x_all`` (binarised once with ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    tot = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
    for i in range(0, len(x_all), batch_size):
        x = x_all[i:i + batch_size]
        if binarize:
            x = dynamic_binarize(x, g)
        elbo, rec, kl = model.elbo(x.to(device), beta=1.0, generator=_on_cpu(model, g))
        tot["elbo"] += elbo.sum().item()
        tot["rec"] += rec.sum().item()
        tot["kl"] += kl.sum().item()
    return {"val_elbo": tot["elbo"] / len(x_all), "val_rec_nll": -tot["rec"] / len(x_all),
            "val_kl": tot["kl"] / len(x_all)}


def train_vae(
    model: nn.Module,
    data: Any,
    labels: Tensor | None = None,
    *,
    objective: str = "elbo",
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 1e-3,
    beta: float = 1.0,
    warmup_steps: int = 0,
    binarize: bool | None = None,
    val: Any = None,
    patience: int | None = None,
    max_steps: int | None = None,
    lr_decay: float | None = None,
    weight_decay: float = 0.0,
    ema: float | None = None,
    iwae_k: int = 1,
    seed: int = 0,
    log_every: int = 10,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "VAE",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> History:
    """Train a VAE with Adam (AdamW when ``weight_decay > 0``) and return its :class:`History`.

    Two objectives, both reached through the model's own methods:

    * ``"elbo"`` (chapter 10's ``VAE``): maximise ``model.elbo(x, beta=, generator=)`` (or
      ``model.iwae_bound(x, iwae_k, ...)`` with ``iwae_k > 1``, Burda et al. 2016) on images ``data``
      ``[N, C, H, W]`` in [0, 1]; batches of a fresh permutation every epoch (last partial batch dropped),
      re-binarised each time (``binarize``, default on); one generator seeded with ``seed`` draws the
      permutation, the binary pixels and the posterior samples. ``warmup_steps > 0`` ramps β linearly from 0
      (Bowman et al. 2016). ``val`` images (binarised once with ``seed + 1``) give eval rows ``val_elbo``,
      ``val_rec_nll``, ``val_kl`` after every epoch; ``patience`` stops after that many epochs without a
      better ``val_elbo`` (judged once β has reached its final value) and restores the best weights.
    * ``"loss"`` (chapter 11's β-VAE / CVAE): minimise ``model.loss(x, y)`` (β-weighted negative ELBO, with
      ``labels`` for a conditional model) on a ``DataLoader`` shuffled from ``seed``; train rows also hold the
      model's ``rec`` and ``kl``.

    Args:
        epochs, batch_size, lr, weight_decay, max_steps: the usual.
        lr_decay: multiply the learning rate by this after every epoch (``None``: constant).
        ema: exponential moving average of the weights (Polyak averaging, e.g. 0.999): validation, early
            stopping and the returned model use the averaged weights.
        on_epoch: ``on_epoch(epoch, model)`` after every epoch.
    Returns:
        the History; train rows ``loss`` (= -ELBO at the current β), ``rec_nll``, ``kl``, ``beta`` (``"elbo"``);
        the last train row holds ``best_epoch`` (0 without ``val``).
    Introduced in chapter 10 (``"elbo"``) and chapter 11 (``"loss"``).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if objective not in ("elbo", "loss"):
        raise ValueError(f"objective must be 'elbo' or 'loss', got {objective!r}")
    if iwae_k < 1:
        raise ValueError(f"iwae_k must be >= 1, got {iwae_k}")
    optimizer = "adamw" if weight_decay else "adam"
    schedule = "exponential" if lr_decay else "constant"
    common = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                  schedule=schedule, lr_decay=lr_decay, ema=ema, on_epoch=on_epoch, seed=seed, progress=progress,
                  desc=desc, log_every=log_every, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                  resume=resume, steps=max_steps)
    if objective == "loss":
        from torch.utils.data import TensorDataset

        if binarize or val is not None or patience is not None or iwae_k > 1 or warmup_steps or beta != 1.0:
            raise ValueError("objective='loss' trains on the model's own loss: binarize, val, patience, iwae_k, "
                             "warmup_steps and beta do not apply (set the model's beta instead)")
        x = as_images(data)
        ds = TensorDataset(x, labels) if labels is not None else TensorDataset(x)

        def model_loss(m: nn.Module, batch: list[Tensor]) -> Any:
            return m.loss(batch[0], batch[1] if labels is not None else None)

        history = train_model(model, ds, model_loss, shuffle_seed=True, **common)  # type: ignore[arg-type]
    else:
        binarize = True if binarize is None else binarize
        x_train = as_images(data)
        x_val = as_images(val) if val is not None else None
        if binarize and x_train.numel() and (x_train.min() < 0 or x_train.max() > 1):
            raise ValueError(f"binarize needs images in [0, 1], got [{x_train.min().item():.3g}, "
                             f"{x_train.max().item():.3g}]")
        g = torch.Generator().manual_seed(seed)
        beta_now = float(beta)

        def set_beta(step: int, m: nn.Module) -> None:
            nonlocal beta_now
            beta_now = float(beta) * min(1.0, step / warmup_steps) if warmup_steps else float(beta)

        def elbo_loss(m: nn.Module, batch: tuple[Tensor]) -> tuple[Tensor, dict[str, float]]:
            x = dynamic_binarize(batch[0], g) if binarize else batch[0]
            if iwae_k > 1:
                elbo, rec, kl = m.iwae_bound(x, iwae_k, beta=beta_now, generator=_on_cpu(m, g))
            else:
                elbo, rec, kl = m.elbo(x, beta=beta_now, generator=_on_cpu(m, g))
            return -elbo.mean(), {"rec_nll": -rec.mean().item(), "kl": kl.mean().item(), "beta": beta_now}

        eval_fn = None
        if x_val is not None:
            def eval_fn(m: nn.Module) -> dict[str, float]:
                return _elbo_eval(m, x_val, binarize, seed + 1)

        history = train_model(model, TensorBatches(x_train, batch_size, generator=g), elbo_loss, eval_fn=eval_fn,
                              patience=patience, monitor="val_elbo" if x_val is not None else None, mode="max",
                              monitor_after=warmup_steps if beta != 0 else 0, on_step=set_beta,
                              **common)  # type: ignore[arg-type]
    history.train[-1].setdefault("best_epoch", 0)
    return history


def train_autoencoder(model: nn.Module, data: Any, loss_fn: LossFn, *, steps: int, batch_size: int = 64,
                      lr: float = 2e-3, seed: int = 0, device: str | torch.device | None = None,
                      eval_fn: EvalFn | None = None, generators: Sequence[torch.Generator] = (),
                      progress: bool = True, desc: str = "autoencoder", log_every: int = 10,
                      checkpoint: str | os.PathLike | None = None, resume: bool = False) -> History:
    """Train an autoencoder for ``steps`` Adam steps, the learning rate cosine-decayed to 0; returns the History.

    ``data``: training images (a tensor ``[N, ...]`` or a ``TensorDataset``; labels are ignored), served as
    shuffled :class:`TensorBatches` ``(x,)`` seeded with ``seed`` (last partial batch dropped). ``loss_fn(model,
    batch)`` is the reconstruction loss per image (e.g. ``companion.autoencoder.reconstruction_loss("bce")``).
    ``eval_fn`` runs after every pass over the data. Introduced in chapter 09.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = as_images(data)
    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(x, batch_size, seed), loss_fn, steps=steps, lr=lr, optimizer="adam",
                       schedule="cosine", seed=seed, device=device, eval_fn=eval_fn, generators=generators,
                       progress=progress, desc=desc, log_every=log_every, checkpoint=checkpoint, resume=resume)


def train_vqvae(model: nn.Module, train: Any, loss_fn: LossFn, *, steps: int, batch_size: int = 128,
                lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu", progress: bool = True,
                desc: str = "VQ-VAE", log_every: int = 10, checkpoint: str | os.PathLike | None = None,
                resume: bool = False) -> History:
    """Train a VQ-VAE for exactly ``steps`` steps: Adam, a warm-up of ``min(steps // 20, 100)`` steps, then a
    cosine decay to ``lr / 20``.

    ``train``: a dataset of ``(image, label)`` pairs (labels unused), shuffled from ``seed``, full batches;
    ``loss_fn``: the objective, e.g. ``companion.vqvae.vqvae_loss``. Returns the :class:`History`.
    Introduced in chapter 12.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return train_model(model, train, loss_fn, steps=steps, batch_size=batch_size, lr=lr, optimizer="adam",
                       schedule="warmup_cosine", warmup=min(steps // 20, 100), min_lr=lr / 20, drop_last=True,
                       seed=seed, device=device, progress=progress, desc=desc, log_every=log_every,
                       checkpoint=checkpoint, resume=resume)


def train_prior(model: nn.Module, indices: Tensor, loss_fn: LossFn, *, steps: int, batch_size: int = 128,
                lr: float = 1e-3, weight_decay: float = 0.01, seed: int = 0, device: str | torch.device = "cpu",
                progress: bool = True, desc: str = "prior", log_every: int = 10,
                checkpoint: str | os.PathLike | None = None, resume: bool = False) -> History:
    """Train an autoregressive prior on code grids ``indices [N, H, W]`` for ``steps`` steps: AdamW, a warm-up of
    ``min(steps // 20, 100)`` steps, then a cosine decay to ``lr / 20``.

    ``loss_fn``: e.g. ``companion.vqvae.prior_loss`` (nats per token). Returns the :class:`History`.
    Introduced in chapter 12.
    """
    from torch.utils.data import TensorDataset

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return train_model(model, TensorDataset(indices.long()), loss_fn, steps=steps, batch_size=batch_size, lr=lr,
                       optimizer="adamw", weight_decay=weight_decay, schedule="warmup_cosine",
                       warmup=min(steps // 20, 100), min_lr=lr / 20, drop_last=True, seed=seed, device=device,
                       progress=progress, desc=desc, log_every=log_every, checkpoint=checkpoint, resume=resume)
