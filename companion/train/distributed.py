"""Training on several processes: what :func:`companion.train.fit` does when ``torchrun`` starts it.

``torchrun --nproc_per_node=N -m companion.hub retrain NAME --profile gpu`` starts N copies of the command; each
reads its rank from the environment and :func:`init_from_env` joins them into one process group (NCCL on CUDA,
one GPU per process; gloo on the CPU). :func:`fit` then

* wraps the model *and its loss* in PyTorch's ``DistributedDataParallel`` (:class:`LossModule`: the loss may
  call any of the model's methods, and DDP still sees one forward pass), so gradients are averaged across
  processes during the backward pass;
* gives every process its shard of each global batch (:func:`shard`): all processes draw the same global batch
  from the same seed and process ``rank`` keeps rows ``rank, rank + N, …`` — the batch-level form of a
  distributed sampler, so N processes with per-process batch ``B / N`` take exactly the steps one process takes
  with batch ``B``;
* shows the progress bar and writes checkpoints on rank 0 only (the hub saves the trained weights on rank 0).

Introduced with the course's multi-GPU appendix in the set-up page.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["LossModule", "init_from_env", "is_main", "shard", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless a process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process is rank 0 (the one that logs and saves); always true without a process group."""
    return world()[0] == 0


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment; ``False`` (and nothing done) without one.

    The backend is NCCL when CUDA is available (each process then uses GPU ``LOCAL_RANK``), else gloo.

    Raises:
        RuntimeError: ``WORLD_SIZE`` is set but ``RANK`` or ``MASTER_ADDR`` is not (not started by torchrun).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={size} but {', '.join(missing)} not set: start the command with "
                           "torchrun --nproc_per_node=N")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def shard(batch: Any, rank: int, size: int) -> Any:
    """Process ``rank``'s rows of a global batch: every tensor (in a tuple, list or dict) sliced ``[rank::size]``.

    Raises:
        ValueError: a tensor's first dimension is not divisible by ``size`` (the shards would differ in size and
            the averaged gradient would not be the global batch's).
    """
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0 or batch.shape[0] % size:
            raise ValueError(f"a global batch of {batch.shape[0] if batch.ndim else 'a scalar'} rows cannot be "
                             f"split evenly over {size} processes: use a batch size divisible by {size}")
        return batch[rank::size]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(b, rank, size) for b in batch)
    if isinstance(batch, dict):
        return {k: shard(v, rank, size) for k, v in batch.items()}
    return batch


class LossModule(nn.Module):
    """``model`` and its ``loss_fn`` as one module whose forward is the loss, so DDP can wrap the whole step.

    Args:
        model: the network being trained (a submodule: its parameters are DDP's).
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss, metrics)``.
    """

    def __init__(self, model: nn.Module, loss_fn: Any) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> Any:
        return self.loss_fn(self.model, batch)
