"""A small, readable training loop: seeded, device-aware, with progress bars, history and checkpoints.

The loop is deliberately plain (no callbacks framework): a chapter passes a model, a data loader, an
optimiser and a ``loss_fn(model, batch) -> loss`` (or ``(loss, metrics)``); :func:`fit` returns a
:class:`History` that :func:`companion.plot.plot_history` draws. Introduced in chapter 02.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

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


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp file beside ``path``, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    history: History, epoch: int, step: int) -> Path:
    """Write a resumable checkpoint atomically (temp file + rename): model, optimiser, history, counters."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history.state_dict(),
        "epoch": epoch,
        "step": step,
        "rng": torch.get_rng_state(),
    }
    return atomic_save(state, path)


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> tuple[History, int, int]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns ``(history, epoch, step)``.

    Loads with ``weights_only=True``: a checkpoint is data, never code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"model", "history", "epoch", "step"} - set(state)
    if missing:
        raise ValueError(f"{path} is not a companion.train checkpoint (missing {sorted(missing)})")
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        torch.set_rng_state(state["rng"])
    return History.from_state_dict(state["history"]), int(state["epoch"]), int(state["step"])


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
    max_steps: int | None = None,
    log_every: int = 10,
    grad_clip: float | None = None,
    checkpoint: str | os.PathLike | None = None,
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
        eval_fn: called after every epoch with the model in eval mode; returns metrics to record.
        scheduler: stepped after every optimiser step.
        max_steps: stop after this many steps in total (for the ci profile).
        log_every: record a train row every this many steps.
        grad_clip: clip the global gradient norm to this value.
        checkpoint: write a resumable checkpoint here after every epoch.
        resume: continue from ``checkpoint`` if it exists.
        progress: show a tqdm progress bar.
    Raises:
        DivergenceError: (a ValueError) for a non-finite loss, naming the step; its ``.history`` keeps the log.
        ValueError: for bad arguments.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    if seed is not None:
        seed_everything(seed)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    model.to(device)

    history, start_epoch, step = History(), 0, 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        history, start_epoch, step = load_checkpoint(checkpoint, model, optimizer)

    try:
        total = len(loader) * (epochs - start_epoch)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if max_steps is not None and total is not None:
        total = max(0, min(total, max_steps - step))
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=True)
    started = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        model.train()
        for batch in loader:
            if max_steps is not None and step >= max_steps:
                break
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
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step % log_every == 0 or step == 1:
                row = {"step": step, "epoch": epoch, "loss": loss.item()}
                row.update({k: float(v) for k, v in metrics.items()})
                history.train.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            bar.update(1)
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                row = {"step": step, "epoch": epoch + 1}
                row.update({k: float(v) for k, v in eval_fn(model).items()})
            history.eval.append(row)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k not in ("step", "epoch")})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history, epoch + 1, step)
        if max_steps is not None and step >= max_steps:
            break
    bar.close()
    history.train.append({"step": step, "epoch": epochs, "wall_s": time.perf_counter() - started})
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
