"""The training loop: :func:`fit` and the :class:`History` it returns.

A chapter passes a model, a data loader, an optimiser and a ``loss_fn(model, batch) -> loss`` (or
``(loss, metrics)``). :func:`fit` seeds, moves batches to the device, shows a progress bar, averages weights
(``ema``), stops early with the best weights restored (``patience``), calls a per-step hook (``on_step``) and
writes resumable checkpoints that continue a run bit for bit, mid-epoch included; a loss that turns NaN raises
:class:`DivergenceError`. Introduced in chapter 02.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoints import CheckpointError, load_state, save_state
from ..profile import seed_everything
from . import distributed

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
    precision: str = "fp32",
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
        desc: the progress bar's label.
        precision: ``"fp32"``, or ``"bf16"`` for mixed precision (``torch.autocast`` with bfloat16: the forward
            pass and loss in bfloat16 where safe, weights and optimiser state in float32; meant for CUDA).

    Started by ``torchrun`` with a process group (:mod:`companion.train.distributed`), the model and loss run
    under ``DistributedDataParallel``, each process takes its shard of every global batch, and only rank 0
    shows progress and writes checkpoints; the weights equal one process's training on the same global batches.

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
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if seed is not None:
        seed_everything(seed)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model.to(device)
    rank, world_size = distributed.world()
    step_loss = lambda b: loss_fn(model, b)  # noqa: E731
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        step_loss = DistributedDataParallel(distributed.LossModule(model, loss_fn), device_ids=ids)
        progress = progress and rank == 0
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
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
        if checkpoint is None or rank != 0:
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
            batch = _to_device(batch, device)
            if world_size > 1:
                batch = distributed.shard(batch, rank, world_size)
            with autocast():
                out = step_loss(batch)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            shown = loss.detach().float()
            if world_size > 1:  # the global batch's loss: every process logs it, and stops together on a NaN
                shown = shown.clone()
                torch.distributed.all_reduce(shown)
                shown /= world_size
            if not torch.isfinite(shown):
                bar.close()
                raise DivergenceError(f"loss became {shown.item()} at step {step} (epoch {epoch}): "
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
                row = {"step": step, "epoch": epoch, "loss": shown.item()}
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
