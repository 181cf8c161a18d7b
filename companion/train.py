"""A small, readable training loop: seeded, device-aware, with progress bars, history and exact resume.

The loop is deliberately plain (no callbacks framework): a chapter passes a model, a data loader, an
optimiser and a ``loss_fn(model, batch) -> loss`` (or ``(loss, metrics)``); :func:`fit` returns a
:class:`History` that :func:`companion.plot.plot_history` draws. :func:`fit` also averages weights (``ema``),
stops early with the best weights restored (``patience``), calls a per-step hook (``on_step``) and writes
resumable checkpoints that continue a run bit for bit, mid-epoch included.

On top of it, "dataset in, trained model out": :func:`train_model` (loader, optimiser, schedule), and the
chapters' recipes as thin wrappers that reach a model only through its methods or a loss passed in:
:func:`train_classifier` (chapters 02, 04, 07, 08) with :func:`evaluate_classifier`, :func:`train_autoencoder`
(09), :func:`train_vae` (10, 11), :func:`train_vqvae` and :func:`train_prior` (12). A two-player game needs two
optimisers and does not fit :func:`fit`: :func:`train_gan` (14) is its own short loop. Introduced in chapter 02.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checkpoints import CheckpointError, load_state, save_state
from .losses import GENERATOR_LOSSES, discriminator_loss
from .optim import lambda_schedule, warmup_cosine
from .profile import seed_everything

Batch = Any
LossFn = Callable[[nn.Module, Batch], "torch.Tensor | tuple[torch.Tensor, dict[str, float]]"]
EvalFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class History:
    """Metrics recorded during training: a list of ``{"step": .., "epoch": .., name: value}`` rows.

    ``train`` rows are written every ``log_every`` steps, ``eval`` rows after every epoch.
    """

    train: list[dict[str, float]] = field(default_factory=list)
    eval: list[dict[str, float]] = field(default_factory=list)

    def series(self, key: str, split: str = "train") -> tuple[list[float], list[float]]:
        """Return ``(steps, values)`` for one metric; ``split`` is ``"train"`` or ``"eval"``."""
        rows = self._rows(split)
        pairs = [(r["step"], r[key]) for r in rows if key in r]
        if not pairs:
            known = sorted({k for r in rows for k in r} - {"step", "epoch"})
            raise KeyError(f"no {split} metric {key!r} recorded; known: {known}")
        steps, values = zip(*pairs)
        return list(steps), list(values)

    def last(self, key: str, split: str = "eval") -> float:
        """The most recent value of a metric."""
        return self.series(key, split)[1][-1]

    def _rows(self, split: str) -> list[dict[str, float]]:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        return self.train if split == "train" else self.eval

    def state_dict(self) -> dict[str, list[dict[str, float]]]:
        return {"train": list(self.train), "eval": list(self.eval)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[dict[str, float]]]) -> History:
        return cls(train=list(state.get("train", [])), eval=list(state.get("eval", [])))


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class DivergenceError(ValueError):
    """The training loss became NaN or infinite; ``.history`` keeps what :func:`fit` logged until then."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def _rng_state(generators: Sequence[torch.Generator]) -> dict[str, Any]:
    """Every random state a run draws from: torch's global CPU (and CUDA) generators and the given ones."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generators: Sequence[torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ValueError(f"the checkpoint holds {len(saved)} generator state(s) but this run has "
                         f"{len(generators)}: resume with the same loader and generators")
    for g, s in zip(generators, saved):
        g.set_state(s)


def _run_generators(loader: Any, generators: Sequence[torch.Generator]) -> list[torch.Generator]:
    """The generators whose state a checkpoint must hold: the loader's own (if any) and ``generators``."""
    out = []
    own = getattr(loader, "generator", None)
    if isinstance(own, torch.Generator):
        out.append(own)
    out.extend(g for g in generators if all(g is not o for o in out))
    return out


class _Averaged:
    """Polyak / exponential moving average of a model's weights: ``avg = decay * avg + (1 - decay) * w``."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for p_avg, p in zip(self.model.parameters(), model.parameters()):
            p_avg.lerp_(p, 1.0 - self.decay)
        for b_avg, b in zip(self.model.buffers(), model.buffers()):
            b_avg.copy_(b)  # running statistics are not averaged: they follow the live model


def fit(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int = 1,
    device: str | torch.device | None = None,
    seed: int | None = 0,
    eval_fn: EvalFn | None = None,
    scheduler: Any | None = None,
    scheduler_interval: str = "step",
    max_steps: int | None = None,
    log_every: int = 10,
    grad_clip: float | None = None,
    ema: float | None = None,
    patience: int | None = None,
    monitor: str | None = None,
    mode: str = "min",
    monitor_after: int = 0,
    on_step: Callable[[int, nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
    generators: Sequence[torch.Generator] = (),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` for ``epochs`` passes over ``loader`` and return its :class:`History`.

    Args:
        model: the network; moved to ``device``.
        loader: an iterable of batches (a ``DataLoader``); batches are moved to ``device``.
        loss_fn: ``loss_fn(model, batch)`` returns a scalar loss, or ``(loss, {"acc": ...})`` extra metrics.
        optimizer: any ``torch.optim.Optimizer`` (including ``companion.optim``'s).
        epochs: passes over the data.
        device: defaults to the model's current device.
        seed: seeds every generator before training (``None`` leaves them alone).
        eval_fn: called after every epoch (also a last, partial one) with the judged model (the averaged one
            with ``ema``) in eval mode, without gradients; returns metrics to record as an eval row.
        scheduler: a learning-rate scheduler, stepped after every optimiser step (``scheduler_interval="step"``)
            or after every epoch (``"epoch"``).
        max_steps: stop after this many steps in total (for the ci profile). A stop in the middle of an epoch
            still evaluates, but a checkpoint records the epoch as unfinished, and a resumed run continues it.
        log_every: record a train row every this many steps.
        grad_clip: clip the global gradient norm to this value.
        ema: keep an exponential moving average of the weights with this decay (Polyak averaging, e.g. 0.999):
            evaluation, early stopping and the model returned use the averaged weights.
        patience: stop after this many evaluations without improvement of ``monitor`` and restore the best
            weights (needs ``eval_fn`` and ``monitor``).
        monitor, mode: the eval metric to watch and whether lower (``"min"``) or higher (``"max"``) is better;
            the best value's epoch is recorded as ``best_epoch`` in the last train row.
        monitor_after: evaluations before this many steps (e.g. during a warm-up) are not judged.
        on_step: ``on_step(step, model)`` before every optimiser step (``step`` = steps taken so far), e.g. a
            KL warm-up that sets a weight.
        on_epoch: ``on_epoch(epoch, judged_model)`` after every epoch (e.g. to record samples).
        generators: further ``torch.Generator`` s the run draws from (augmentation, noise); a checkpoint saves
            and restores them, as it does torch's global generator and the loader's ``.generator``.
        checkpoint: write a resumable state here (atomically) after every epoch, every ``checkpoint_every``
            steps and when ``max_steps`` stops the run.
        resume: continue from ``checkpoint`` if it exists: with the same arguments, the result equals an
            uninterrupted run bit for bit (on the CPU).
        progress: show a tqdm progress bar.
    Raises:
        DivergenceError: (a ValueError) for a non-finite loss, naming the step; its ``.history`` keeps the log.
        ValueError: for bad arguments.
        companion.checkpoints.CheckpointError: for an unreadable ``checkpoint`` file when resuming.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if patience is not None and (patience < 1 or monitor is None or eval_fn is None):
        raise ValueError(f"patience needs patience >= 1, an eval_fn and a monitor metric, got patience={patience}, "
                         f"monitor={monitor!r}, eval_fn={'set' if eval_fn else None}")
    if checkpoint_every is not None and (checkpoint_every < 1 or checkpoint is None):
        raise ValueError(f"checkpoint_every needs a checkpoint path and a value >= 1, got {checkpoint_every}")
    if seed is not None:
        seed_everything(seed)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model.to(device)
    gens = _run_generators(loader, generators)
    averaged = _Averaged(model, ema) if ema is not None else None
    judged = averaged.model if averaged is not None else model  # the weights we evaluate and return

    history, start_epoch, start_batch, step, done = History(), 0, 0, 0, False
    sign = 1.0 if mode == "max" else -1.0
    best, best_state, best_epoch, bad = -math.inf, None, 0, 0
    saved: dict[str, Any] | None = None
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        saved = load_state(checkpoint)
        missing = {"model", "optimizer", "history", "epoch", "batch", "step", "rng"} - set(saved)
        if missing:
            raise CheckpointError(f"{checkpoint} is not a companion.train checkpoint (missing {sorted(missing)}); "
                                  "delete it to start afresh")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        if averaged is not None and saved.get("averaged") is not None:
            averaged.model.load_state_dict(saved["averaged"])
        history = History.from_state_dict(saved["history"])
        start_epoch, start_batch, step = int(saved["epoch"]), int(saved["batch"]), int(saved["step"])
        done = bool(saved.get("done", False))
        best, best_epoch, bad = float(saved.get("best", -math.inf)), int(saved.get("best_epoch", 0)), \
            int(saved.get("bad", 0))
        best_state = saved.get("best_state")
        if start_batch == 0:
            _set_rng_state(saved["rng"], gens)

    def save(epoch: int, batch: int, epoch_rng: dict[str, Any] | None, finished: bool = False) -> None:
        if checkpoint is None:
            return
        save_state(checkpoint, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "averaged": averaged.model.state_dict() if averaged is not None else None,
            "history": history.state_dict(), "epoch": epoch, "batch": batch, "step": step, "done": finished,
            "rng": _rng_state(gens), "epoch_rng": epoch_rng,
            "best": best, "best_state": best_state, "best_epoch": best_epoch, "bad": bad,
        })

    try:
        per_epoch: int | None = len(loader)  # type: ignore[arg-type]
    except TypeError:
        per_epoch = None
    total = None if per_epoch is None else max(0, per_epoch * (epochs - start_epoch) - start_batch)
    if max_steps is not None and total is not None:
        total = max(0, min(total, max_steps - step))
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=True)
    started = time.perf_counter()
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        if done or (max_steps is not None and step >= max_steps):
            break
        if saved is not None and epoch == start_epoch and start_batch > 0:
            # resume mid-epoch: replay the epoch's start (shuffle), skip the batches done, restore the rng
            epoch_rng = saved["epoch_rng"]
            _set_rng_state(epoch_rng, gens)
            batches = iter(loader)
            for _ in range(start_batch):
                next(batches)
            _set_rng_state(saved["rng"], gens)
            k = start_batch
        else:
            epoch_rng = _rng_state(gens) if checkpoint is not None else None
            batches = iter(loader)
            k = 0
        model.train()
        stopped = False
        for batch in batches:
            if on_step is not None:
                on_step(step, model)
            out = loss_fn(model, _to_device(batch, device))
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            if not torch.isfinite(loss):
                bar.close()
                raise DivergenceError(f"loss became {loss.item()} at step {step} (epoch {epoch}): "
                                      "lower the learning rate? (the history so far is in .history)", history)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            if averaged is not None:
                averaged.update(model)
            step, k = step + 1, k + 1
            if step % log_every == 0 or step == 1:
                row = {"step": step, "epoch": epoch, "loss": loss.item()}
                row.update({k_: float(v) for k_, v in metrics.items()})
                history.train.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            bar.update(1)
            if checkpoint_every is not None and step % checkpoint_every == 0:
                save(epoch, k, epoch_rng)
            if max_steps is not None and step >= max_steps:
                stopped = per_epoch is None or k < per_epoch
                if not stopped:  # finish the pass as an uninterrupted run would (a sampler may draw at its end)
                    next(batches, None)
                break
        if stopped:  # the epoch is unfinished: a resumed run continues it from here
            save(epoch, k, epoch_rng)
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        if eval_fn is not None:
            judged.eval()
            with torch.no_grad():
                row = {"step": step, "epoch": epoch + 1}
                row.update({k_: float(v) for k_, v in eval_fn(judged).items()})
            history.eval.append(row)
            bar.set_postfix({k_: f"{v:.4f}" for k_, v in row.items() if k_ not in ("step", "epoch")})
            if monitor is not None and monitor in row and step >= monitor_after:
                if sign * row[monitor] > best:
                    best, best_epoch, bad = sign * row[monitor], epoch + 1, 0
                    best_state = copy.deepcopy(judged.state_dict())
                else:
                    bad += 1
        if on_epoch is not None:
            judged.eval()
            on_epoch(epoch + 1, judged)
        if stopped:
            break
        done = patience is not None and bad >= patience
        save(epoch + 1, 0, None, finished=done)
        if done or (max_steps is not None and step >= max_steps):
            break
    bar.close()
    if best_state is not None and patience is not None:
        model.load_state_dict(best_state)
    elif averaged is not None:
        model.load_state_dict(averaged.model.state_dict())
    last = {"step": step, "epoch": epoch + 1, "wall_s": time.perf_counter() - started}
    if monitor is not None:
        last["best_epoch"] = best_epoch
    history.train.append(last)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Batch], device: str | torch.device | None = None) -> float:
    """Classification accuracy in ``[0, 1]`` of ``model`` over ``(x, y)`` batches."""
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=-1)
        correct += (pred == y.to(device)).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("accuracy() got an empty loader")
    return correct / total


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Run ``model`` over ``x [N, ...]`` in batches and concatenate the outputs ``[N, ...]``."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    outs = [model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (bias-corrected), for noisy loss curves."""
    if not 0 <= weight < 1:
        raise ValueError(f"weight must be in [0, 1), got {weight}")
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i) if weight > 0 else avg)
    if any(math.isnan(v) for v in out):
        raise ValueError("smooth() got NaN values")
    return out


@torch.no_grad()
def evaluate_classifier(model: nn.Module, dataset: Any, batch_size: int = 500,
                        criterion: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, float]:
    """Mean loss (cross-entropy by default) and accuracy of ``model`` (in eval mode) over ``(x, y)`` pairs.

    ``dataset`` is a dataset of ``(x, y)`` (e.g. a ``TensorDataset``); ``criterion(logits, y)`` must accept
    ``reduction="sum"``. Returns ``{"loss", "accuracy"}``. Introduced in chapter 07.
    """
    from torch.utils.data import DataLoader

    criterion = criterion or F.cross_entropy
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for xb, yb in DataLoader(dataset, batch_size=batch_size):
        logits = model(xb.to(device))
        total_loss += criterion(logits, yb.to(device), reduction="sum").item()
        correct += (logits.argmax(-1) == yb.to(device)).sum().item()
        count += yb.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_classifier() got an empty dataset")
    return {"loss": total_loss / count, "accuracy": correct / count}


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
        ema, patience, eval_fn, monitor, mode, monitor_after, on_step, on_epoch, grad_clip, generators,
            checkpoint, checkpoint_every, resume: passed to :func:`fit`.
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


def _bernoulli(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Binary pixels, each 1 with probability equal to its intensity (dynamic binarisation)."""
    if x.device.type != "cpu" and generator is not None and generator.device != x.device:
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)
    return torch.bernoulli(x, generator=generator)


def _on_cpu(model: nn.Module, g: torch.Generator) -> torch.Generator | None:
    """The CPU generator when the model is on the CPU; otherwise ``None`` (draw from the device's default)."""
    return g if next(model.parameters()).device.type == "cpu" else None


def _images(data: Any) -> Tensor:
    if isinstance(data, Tensor):
        return data
    if hasattr(data, "tensors"):
        return data.tensors[0]
    raise TypeError(f"expected an image tensor or a TensorDataset, got {type(data).__name__}")


@torch.no_grad()
def _elbo_eval(model: nn.Module, x_all: Tensor, binarize: bool, seed: int, batch_size: int = 500) -> dict[str, float]:
    """Mean ELBO, reconstruction log-likelihood and KL on ``x_all`` (binarised once with ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    tot = {"elbo": 0.0, "rec": 0.0, "kl": 0.0}
    for i in range(0, len(x_all), batch_size):
        x = x_all[i:i + batch_size]
        if binarize:
            x = _bernoulli(x, g)
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
        x = _images(data)
        ds = TensorDataset(x, labels) if labels is not None else TensorDataset(x)

        def model_loss(m: nn.Module, batch: list[Tensor]) -> Any:
            return m.loss(batch[0], batch[1] if labels is not None else None)

        history = train_model(model, ds, model_loss, shuffle_seed=True, **common)  # type: ignore[arg-type]
    else:
        binarize = True if binarize is None else binarize
        x_train = _images(data)
        x_val = _images(val) if val is not None else None
        if binarize and x_train.numel() and (x_train.min() < 0 or x_train.max() > 1):
            raise ValueError(f"binarize needs images in [0, 1], got [{x_train.min().item():.3g}, "
                             f"{x_train.max().item():.3g}]")
        g = torch.Generator().manual_seed(seed)
        beta_now = float(beta)

        def set_beta(step: int, m: nn.Module) -> None:
            nonlocal beta_now
            beta_now = float(beta) * min(1.0, step / warmup_steps) if warmup_steps else float(beta)

        def elbo_loss(m: nn.Module, batch: tuple[Tensor]) -> tuple[Tensor, dict[str, float]]:
            x = _bernoulli(batch[0], g) if binarize else batch[0]
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
    x = _images(data)
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


# ----------------------------------------------------------------------------------------------
# A two-player loop: train_gan (chapter 14)
# ----------------------------------------------------------------------------------------------


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data: Any,
    *,
    steps: int,
    d_steps: int = 1,
    loss: str | Callable[[Tensor], Tensor] = "non_saturating",
    d_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    lr: float = 2e-4,
    d_lr: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    batch_size: int = 64,
    latent_dim: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "GAN",
    log_every: int = 10,
) -> History:
    """Train a GAN for ``steps`` generator updates, each after ``d_steps`` discriminator updates (Goodfellow et
    al. 2014, Algorithm 1); returns the :class:`History`.

    One step:

    1. ``d_steps`` times: a fresh batch of real ``x`` and of ``z ~ N(0, I)``; minimise
       ``d_loss(D(x), D(G(z).detach()))`` (default :func:`companion.losses.discriminator_loss`) over D's weights;
    2. a fresh batch of ``z``; minimise the generator loss ``loss(D(G(z)))`` over G's weights: ``"non_saturating"``
       (``-log D(G(z))``), ``"minimax"`` (``log(1 - D(G(z)))``, the saturating loss; see
       :data:`companion.losses.GENERATOR_LOSSES`) or any function of the fake logits.

    Both players use Adam with ``betas`` (the DCGAN choice ``(0.5, 0.999)``), learning rate ``lr`` (``d_lr`` for
    D when given). The models are duck-typed: ``generator(z [B, latent_dim]) -> x``, ``discriminator(x) ->
    logits [B]``; ``latent_dim`` defaults to ``generator.latent_dim``.

    Args:
        data: real examples, a tensor ``[N, ...]`` or a ``TensorDataset`` (labels ignored), served in shuffled
            full batches, a fresh permutation on every pass.
        seed: seeds torch's global generators and one CPU generator that draws every batch order and every ``z``
            (so a run is the same on every device, and repeats exactly on the CPU).
        on_step: ``on_step(step, generator)`` after every generator update (``step`` counts from 1), e.g. to keep
            snapshots of samples; the generator is in training mode.
        log_every: record a train row every this many steps (and at step 1): ``d_loss``, ``g_loss`` and the
            discriminator's mean outputs ``d_real = D(x)`` and ``d_fake = D(G(z))`` (probabilities) on the last
            discriminator batch. The last row holds ``step`` and ``wall_s``.
    Raises:
        DivergenceError: a loss became NaN or infinite (its ``.history`` keeps the log).
    Introduced in chapter 14.
    """
    if steps < 1 or d_steps < 1 or batch_size < 1 or log_every < 1:
        raise ValueError(f"steps, d_steps, batch_size and log_every must be >= 1, got {steps}, {d_steps}, "
                         f"{batch_size}, {log_every}")
    if isinstance(loss, str):
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {sorted(GENERATOR_LOSSES)} or a function, got {loss!r}")
        g_loss_fn = GENERATOR_LOSSES[loss]
    elif callable(loss):
        g_loss_fn = loss
    else:
        raise TypeError(f"loss must be a name or a function of the fake logits, got {type(loss).__name__}")
    d_loss_fn = d_loss or discriminator_loss
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
        if latent_dim is None:
            raise ValueError("train_gan: pass latent_dim (the generator has no .latent_dim attribute)")
    seed_everything(seed)
    device = torch.device(device)
    generator.to(device).train()
    discriminator.to(device).train()
    g = torch.Generator().manual_seed(seed)  # every batch order and every z
    real_batches = TensorBatches(_images(data), batch_size, generator=g)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=d_lr if d_lr is not None else lr, betas=betas)

    def real_stream() -> Iterator[Tensor]:
        while True:
            for (xb,) in real_batches:
                yield xb.to(device, non_blocking=True)

    def noise() -> Tensor:
        return torch.randn(real_batches.batch_size, latent_dim, generator=g).to(device)

    reals = real_stream()
    history = History()
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=True)
    for step in range(1, steps + 1):
        # 1. the discriminator: d_steps updates on fresh real and fake batches (the fakes are constants for D)
        for _ in range(d_steps):
            real_logits = discriminator(next(reals))
            fake_logits = discriminator(generator(noise()).detach())
            loss_d = d_loss_fn(real_logits, fake_logits)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # 2. the generator: one update through the (now fixed) discriminator
        loss_g = g_loss_fn(discriminator(generator(noise())))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            bar.close()
            raise DivergenceError(f"a GAN loss became non-finite at step {step} (D {loss_d.item()}, G "
                                  f"{loss_g.item()}): lower the learning rate?", history)
        if on_step is not None:
            on_step(step, generator)
        if step % log_every == 0 or step == 1:
            with torch.no_grad():
                row = {"step": step, "d_loss": loss_d.item(), "g_loss": loss_g.item(),
                       "d_real": torch.sigmoid(real_logits).mean().item(),
                       "d_fake": torch.sigmoid(fake_logits).mean().item()}
            history.train.append(row)
            bar.set_postfix(D=f"{row['d_loss']:.3f}", G=f"{row['g_loss']:.3f}", Dx=f"{row['d_real']:.2f}",
                            DGz=f"{row['d_fake']:.2f}")
        bar.update(1)
    bar.close()
    history.train.append({"step": steps, "wall_s": time.perf_counter() - started})
    generator.eval()
    discriminator.eval()
    return history
