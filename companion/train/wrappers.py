""""Dataset in, trained model out": :func:`train_model` (loader, optimiser, schedule around :func:`fit`) and
:func:`train_classifier`, the classification chapters' recipe (chapters 02, 04, 07, 08), with
:class:`TensorBatches`, shuffled mini-batches sliced from one tensor. Introduced in chapter 02.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import load_state
from ..optim import lambda_schedule, warmup_cosine
from .evaluation import accuracy
from .loop import EvalFn, History, LossFn, fit

# ----------------------------------------------------------------------------------------------
# "Dataset in, trained model out": train_model and the chapters' wrappers around it
# ----------------------------------------------------------------------------------------------


class TensorBatches:
    """Shuffled mini-batches ``(x[idx],)`` of one tensor, a fresh permutation every pass, the last partial batch
    dropped (a batch size above ``len(x)`` gives one batch of everything).

    Slicing one tensor is much faster than a ``DataLoader`` that fetches and collates items one at a time. The
    permutation is drawn from ``generator`` (a fresh one seeded with ``seed`` by default), which a loss may share.
    """

    def __init__(self, x: Tensor, batch_size: int, seed: int = 0, generator: torch.Generator | None = None) -> None:
        if batch_size < 1 or len(x) == 0:
            raise ValueError(f"need batch_size >= 1 and at least one example, got {batch_size} and {len(x)}")
        self.x, self.batch_size = x, min(batch_size, len(x))
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor]]:
        perm = torch.randperm(len(self.x), generator=self.generator)
        for i in range(len(self)):
            yield (self.x[perm[i * self.batch_size:(i + 1) * self.batch_size]],)


SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


def _optimizer(name: str, params: Any, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


def _loader(data: Any, batch_size: int, seed: int, shuffle_seed: bool, drop_last: bool) -> Any:
    """A tensor -> :class:`TensorBatches`; a dataset -> a shuffled ``DataLoader``; anything else is a loader."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, Tensor):
        return TensorBatches(data, batch_size, seed)
    if isinstance(data, Dataset):
        g = torch.Generator().manual_seed(seed) if shuffle_seed else None
        return DataLoader(data, batch_size=batch_size, shuffle=True, generator=g,
                          drop_last=drop_last and len(data) > batch_size)  # type: ignore[arg-type]
    return data


def train_model(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    schedule: str | Callable[[int], float] = "constant",
    warmup: int = 0,
    min_lr: float = 0.0,
    lr_decay: float | None = None,
    shuffle_seed: bool = True,
    drop_last: bool = False,
    ema: float | None = None,
    patience: int | None = None,
    eval_fn: EvalFn | None = None,
    monitor: str | None = None,
    mode: str = "min",
    monitor_after: int = 0,
    on_step: Callable[[int, nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    grad_clip: float | None = None,
    generators: Sequence[torch.Generator] = (),
    seed: int | None = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    log_every: int = 10,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> History:
    """Dataset in, trained model out: build the loader, optimiser and schedule, then run :func:`fit`.

    Args:
        model: trained in place (and left in eval mode).
        data: a dataset (shuffled by a ``DataLoader``), a tensor of inputs (shuffled
            :class:`TensorBatches` ``(x,)``), or a ready iterable of batches.
        loss_fn: ``loss_fn(model, batch) -> loss | (loss, metrics)``.
        steps, epochs: how long; with only ``steps`` the data is cycled ``ceil(steps / batches)`` times, with
            both, ``steps`` caps ``epochs``; at least one is needed.
        batch_size, lr, weight_decay, momentum: the usual (``momentum`` for SGD only).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        schedule: ``"constant"``; ``"cosine"`` (the rate times ``(1 + cos(pi t / T))/2``, ``T`` the run's
            steps); ``"warmup_cosine"`` (:func:`companion.optim.warmup_cosine`: ``warmup`` linear steps, then
            a cosine to ``min_lr``); ``"exponential"`` (times ``lr_decay`` after every epoch); or a function
            ``step -> multiplier`` of the rate.
        shuffle_seed: shuffle a dataset with a generator of its own seeded with ``seed`` (else torch's
            global generator, seeded with ``seed`` too); drop_last: drop the last partial batch (unless it is
            the only one).
        ema, patience, eval_fn, monitor, mode, monitor_after: passed to :func:`fit`.
        on_step, on_epoch, grad_clip, generators, checkpoint, checkpoint_every, resume: passed to :func:`fit`.
        seed: seeds the shuffle and every generator (``None``: leave the global ones alone).
    Returns:
        the :class:`History`.
    """
    if steps is None and epochs is None:
        raise ValueError("train_model needs steps or epochs (or both)")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    loader = _loader(data, batch_size, 0 if seed is None else seed, shuffle_seed, drop_last)
    per_epoch = len(loader)
    if per_epoch == 0:
        raise ValueError("train_model got no batches (an empty dataset?)")
    if epochs is None:
        epochs = math.ceil(steps / per_epoch)  # type: ignore[operator]
    total = epochs * per_epoch if steps is None else min(steps, epochs * per_epoch)
    opt = _optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
    sched, interval = None, "step"
    if callable(schedule):
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    elif schedule == "warmup_cosine":
        sched = lambda_schedule(opt, lambda t: warmup_cosine(t, total, min(warmup, total), lr, min_lr=min_lr))
    elif schedule == "exponential":
        if lr_decay is None:
            raise ValueError("schedule='exponential' needs lr_decay")
        sched, interval = torch.optim.lr_scheduler.ExponentialLR(opt, lr_decay), "epoch"
    elif schedule != "constant":
        raise ValueError(f"schedule must be one of {SCHEDULES} or a function, got {schedule!r}")
    return fit(model, loader, loss_fn, opt, epochs=epochs, device=device, seed=seed, eval_fn=eval_fn,
               scheduler=sched, scheduler_interval=interval, max_steps=steps, log_every=log_every,
               grad_clip=grad_clip, ema=ema, patience=patience, monitor=monitor, mode=mode,
               monitor_after=monitor_after, on_step=on_step, on_epoch=on_epoch, generators=generators,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
               desc=desc)


def train_classifier(
    model: nn.Module,
    train: Any,
    test: Any | None = None,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    optimizer: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    schedule: str | Callable[[int], float] = "cosine",
    warmup: int = 0,
    augment: Callable[..., Tensor] | None = None,
    criterion: Callable[[Tensor, Tensor], Tensor] | None = None,
    shuffle_seed: bool = False,
    drop_last: bool = False,
    eval_every: int | None = 1,
    eval_batch_size: int = 1000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "train",
    log_every: int = 10,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> tuple[History, float | None]:
    """Train a classifier on cross-entropy; return ``(history, test accuracy)`` (``None`` without ``test``).

    A thin wrapper around :func:`train_model`: shuffled batches (same seed → same order), an optimiser
    (``"adamw"``, or ``"sgd"`` with ``momentum``), a learning-rate schedule over the run (``"cosine"`` decays to
    0; ``"warmup_cosine"`` first rises linearly for ``warmup`` steps), train rows ``loss`` and ``acc``.

    Args:
        model: maps ``x [B, ...]`` to logits ``[B, K]``.
        train, test: datasets of ``(x, y)`` (e.g. ``TensorDataset``); ``test`` is optional.
        epochs, steps: passes over the data and/or optimiser steps (``steps`` caps ``epochs``).
        augment: ``augment(x, generator=g) -> x`` applied to every training batch, ``g`` a generator seeded
            with ``seed + 1`` (e.g. ``functools.partial(random_shift, max_shift=2)``).
        criterion: ``criterion(logits, y) -> loss``; default ``F.cross_entropy``.
        shuffle_seed, drop_last: see :func:`train_model` (``True, True``: the order depends on ``seed`` alone
            and every batch is full).
        eval_every: the test accuracy (eval key ``"test_accuracy"``) after every this many epochs and after the
            last; ``None``: only once, at the end, without eval rows.
        eval_batch_size: the test loader's batch size.
        seed: seeds the batch order and the augmentation (the model's initialisation is the caller's).
    Introduced in chapter 02; steps, SGD and warm-up in chapter 07; augmentation in chapter 08.
    """
    from torch.utils.data import DataLoader

    if eval_every is not None and eval_every < 1:
        raise ValueError(f"eval_every must be >= 1 or None, got {eval_every}")
    if epochs is None and steps is None:
        raise ValueError("train_classifier needs epochs or steps (or both)")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    criterion = criterion or F.cross_entropy
    aug = torch.Generator().manual_seed(seed + 1) if augment is not None else None
    test_loader = DataLoader(test, batch_size=eval_batch_size) if test is not None else None

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        logits = m(augment(x, generator=aug) if augment is not None else x)
        return criterion(logits, y), {"acc": (logits.argmax(-1) == y).float().mean().item()}

    eval_fn = None
    if test_loader is not None and eval_every is not None:
        per_epoch = len(_loader(train, batch_size, seed, shuffle_seed, drop_last))
        n_epochs = epochs if epochs is not None else math.ceil(steps / per_epoch)  # type: ignore[operator]
        resuming = resume and checkpoint is not None and Path(checkpoint).is_file()
        seen = int(load_state(checkpoint)["epoch"]) if resuming else 0  # epochs already evaluated

        def eval_fn(m: nn.Module) -> dict[str, float]:
            nonlocal seen
            seen += 1
            last = seen == n_epochs or (steps is not None and seen * per_epoch >= steps)
            return {"test_accuracy": accuracy(m, test_loader)} if last or seen % eval_every == 0 else {}

    history = train_model(model, train, loss_fn, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                          optimizer=optimizer, weight_decay=weight_decay, momentum=momentum, schedule=schedule,
                          warmup=warmup, shuffle_seed=shuffle_seed, drop_last=drop_last, eval_fn=eval_fn,
                          generators=[aug] if aug is not None else [], seed=seed, device=device,
                          progress=progress, desc=desc, log_every=log_every, checkpoint=checkpoint,
                          checkpoint_every=checkpoint_every, resume=resume)
    if test_loader is None:
        return history, None
    return history, history.last("test_accuracy") if eval_fn is not None else accuracy(model, test_loader)
