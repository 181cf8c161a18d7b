"""Recipes of the flow-matching checkpoints of chapter 19, ``fm_mnist`` and its reflowed student ``fm_reflow_mnist``.

The configuration, schedule and evaluation protocol the chapter quotes live here: :data:`FM_CONFIG`,
:data:`FM_STEPS`, :data:`BATCH`, :data:`LR`, :data:`EMA`, :data:`CARD_SAMPLER`, :data:`CARD_STEPS`,
:data:`CARD_GUIDANCE`; and for reflow :data:`REFLOW_PAIRS`, :data:`REFLOW_STEPS`, :data:`REFLOW_EVAL_STEPS`.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from .. import data, evaluation
from ..ddpm import to_model_range
from ..flow_matching import FlowMatching, FlowMatchingConfig, reflow_pairs
from ..profile import Profile, seed_everything
from ..train import History, TensorBatches, train_model
from ._common import card_info, load_shipped, shipped_sha256
from .classifiers import build_lenet_mnist
from .diffusion import reference_sets

#: ``fm_mnist``: chapter 18's U-Net (widths 16/32/32, attention at 7x7 and in the middle) reading times in
#: [0, 1] and ten labels plus "no label"; label dropout 0.1, logit-normal times (m = 0, s = 1).
FM_CONFIG = FlowMatchingConfig()
#: Adam steps per profile (batch :data:`BATCH`, learning rate cosine-decayed from :data:`LR` to 0), as ``ddpm_mnist``.
FM_STEPS = {"ci": 3, "cpu": 1000, "gpu": 20000}
BATCH = 64
LR = 2e-3
EMA = 0.995
#: how the card's samples are drawn: Heun on this many evenly spaced steps, classifier-free guidance scale
CARD_SAMPLER = "heun"
CARD_STEPS = {"ci": 2, "cpu": 5, "gpu": 10}
CARD_GUIDANCE = 1.5
CARD_N = {"ci": 64, "cpu": evaluation.EVAL_N, "gpu": evaluation.EVAL_N}
CARD_SEED = 0

#: reflow: how many (noise, image) pairs the teacher makes (Heun, :data:`REFLOW_PAIR_STEPS` steps, guidance 1),
#: and the Adam steps of the student (started from the teacher's weights, lr :data:`REFLOW_LR` cosine to 0)
REFLOW_PAIRS = {"ci": 64, "cpu": 2000, "gpu": 20000}
REFLOW_PAIR_STEPS = {"ci": 2, "cpu": 5, "gpu": 20}
REFLOW_STEPS = {"ci": 3, "cpu": 300, "gpu": 5000}
#: samples the reflow card scores per model and step count (against as many reference images)
REFLOW_N = {"ci": 64, "cpu": 500, "gpu": evaluation.EVAL_N}
REFLOW_LR = 5e-4
#: the Euler step counts the reflow card compares teacher and student at (guidance 1)
REFLOW_EVAL_STEPS = (1, 2, 4, 8)


def build_fm_mnist() -> FlowMatching:
    """The untrained model of checkpoint ``fm_mnist``: ``FlowMatching(FM_CONFIG)`` (seed 0). Introduced in chapter 19."""
    torch.manual_seed(0)
    return FlowMatching(FM_CONFIG)


def build_fm_reflow_mnist() -> FlowMatching:
    """The model of checkpoint ``fm_reflow_mnist``: the same network as ``fm_mnist``. Introduced in chapter 19."""
    return build_fm_mnist()


def fit_flow(model: FlowMatching, images: torch.Tensor, labels: torch.Tensor, *, steps: int,
             noise: torch.Tensor | None = None, batch_size: int = BATCH, lr: float = LR, ema: float | None = EMA,
             seed: int = 0, device: str | torch.device | None = None, desc: str = "flow matching",
             log_every: int = 10, progress: bool = True, to_range: bool = True) -> History:
    """Train ``model`` with its flow-matching loss on ``images [N, 1, 28, 28]`` in ``[0, 1]`` and ``labels [N]``.

    Adam, the learning rate cosine-decayed from ``lr`` to 0, shuffled batches (seed ``seed``); times, noise and
    label dropout from a generator seeded ``seed + 1``. With ``noise [N, 1, 28, 28]`` each image is paired with
    its own noise (reflow's couplings) instead of a fresh draw. With ``ema`` the averaged weights are what
    ``model`` holds afterwards. With ``to_range=False`` the data are used as given (latents, chapter 20).
    Returns the :class:`companion.train.History`.
    """
    g = torch.Generator().manual_seed(seed + 1)
    # reflow pairs are in [-1, 1] already, latents in their own scale
    x = to_model_range(images.float()) if noise is None and to_range else images.float()
    y = labels.long()
    index = torch.arange(len(x))

    def loss_fn(m: FlowMatching, batch: tuple[torch.Tensor]) -> torch.Tensor:
        idx = batch[0].cpu()
        dev = next(m.parameters()).device
        z = None if noise is None else noise[idx].to(dev)
        return m.loss(x[idx].to(dev), y[idx].to(dev), g, noise=z)

    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(index, batch_size, seed), loss_fn, steps=steps, lr=lr, optimizer="adam",
                       schedule="cosine", ema=ema, generators=(g,), seed=seed, device=device, progress=progress,
                       desc=desc, log_every=log_every)


@torch.no_grad()
def class_agreement(images: torch.Tensor, labels: torch.Tensor, judge: torch.nn.Module | None = None) -> float:
    """The share of ``images`` (in ``[0, 1]``) that ``lenet_mnist`` (chapter 04) classifies as their ``labels``."""
    judge = load_shipped("lenet_mnist", build_lenet_mnist) if judge is None else judge
    pred = torch.cat([judge(xb).argmax(-1) for xb in images.split(500)])
    return float((pred == labels).float().mean())


def card_samples(model: FlowMatching, n: int, *, sampler: str, steps: int, guidance: float,
                 seed: int = CARD_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images with balanced labels ``i % 10`` from noise seeded ``seed``, and the labels."""
    noise = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % 10
    out = [model.sample(z, y, sampler=sampler, steps=steps, guidance=guidance)
           for z, y in zip(noise.split(250), labels.split(250), strict=True)]
    return torch.cat(out), labels


def _final_loss(history: History) -> float:
    losses = [r["loss"] for r in history.train if "loss" in r]
    return sum(losses[-10:]) / len(losses[-10:])


def train_fm_mnist(profile: Profile) -> tuple[FlowMatching, dict[str, Any]]:
    """Train checkpoint ``fm_mnist``: see :func:`fit_flow`, :data:`FM_STEPS`, :data:`BATCH`, :data:`LR`, :data:`EMA`.

    Metrics: FLD of :data:`CARD_N` samples (balanced labels; :data:`CARD_SAMPLER`, :data:`CARD_STEPS` steps,
    guidance :data:`CARD_GUIDANCE`, noise seed :data:`CARD_SEED`) against as many images of
    ``evaluation.REFERENCE``, the floor and their ratio, and the class agreement of the same samples (the share
    ``lenet_mnist`` classifies as their label).
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps, sample_steps, n = FM_STEPS[profile.name], CARD_STEPS[profile.name], CARD_N[profile.name]
    ema = None if profile.is_ci else EMA
    seed_everything(profile.seed)
    model = build_fm_mnist()
    started = time.perf_counter()
    history = fit_flow(model, train.tensors[0], train.tensors[1], steps=steps, ema=ema, seed=profile.seed,
                       device=profile.device, desc=f"fm_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    started = time.perf_counter()
    x, labels = card_samples(model, n, sampler=CARD_SAMPLER, steps=sample_steps, guidance=CARD_GUIDANCE)
    sample_s = time.perf_counter() - started
    reference, floor_images = reference_sets(n)
    fld = evaluation.fld(x, reference)
    floor = evaluation.fld(floor_images, reference)
    agreement = class_agreement(x, labels)
    c, u = FM_CONFIG, FM_CONFIG.unet
    params = sum(p.numel() for p in model.parameters())
    description = (f"class-conditional flow matching (rectified flow) on MNIST, chapter 19: U-Net velocity predictor "
                   f"(widths {u.widths}, attention at levels {u.attention_levels} and in the middle, 10 labels plus "
                   f"'no label', {params:,} parameters) on the straight path x_t = (1 - t) x0 + t eps, target "
                   f"eps - x0, images scaled to [-1, 1]; logit-normal times (m = {c.logit_mean:g}, s = "
                   f"{c.logit_std:g}), label dropout {c.label_dropout:g} for classifier-free guidance; Adam lr {LR:g} "
                   f"cosine-decayed to 0, batch {BATCH}, {steps} steps"
                   f"{f', weight average (decay {ema}) shipped' if ema else ''}, seed {profile.seed}; "
                   f"{train_s / 60:.1f} min of training on this machine; final loss {_final_loss(history):.4f}. "
                   f"Metrics: FLD of {n} samples (labels i % 10, flow {CARD_SAMPLER} sampler, {sample_steps} steps "
                   f"({2 * sample_steps} network evaluations), guidance {CARD_GUIDANCE:g}, noise seed {CARD_SEED}; "
                   f"{sample_s:.0f} s to sample) against the first {n} images of MNIST-test[8000:10000:2], next to the "
                   f"floor (as many of MNIST-test[8001:10000:2]), features of mnist_features (sha256 "
                   f"{shipped_sha256('mnist_features')}); class_agreement = share of the same samples that "
                   f"lenet_mnist classifies as their label.")
    metrics = {"fld": round(fld, 3), "fld_floor": round(floor, 3), "fld_ratio": round(fld / floor, 2),
               "class_agreement": round(agreement, 4), "samples": n, "sampler": CARD_SAMPLER,
               "sampling_steps": sample_steps, "guidance": CARD_GUIDANCE,
               "final_loss": round(_final_loss(history), 4), "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)


def train_fm_reflow_mnist(profile: Profile) -> tuple[FlowMatching, dict[str, Any]]:
    """Train checkpoint ``fm_reflow_mnist``: one reflow of the shipped ``fm_mnist`` (Liu et al. 2023).

    The teacher carries :data:`REFLOW_PAIRS` noises (seed 1000, labels ``i % 10``) to images (Heun,
    :data:`REFLOW_PAIR_STEPS` steps, guidance 1); a copy of the teacher is trained on the straight lines between
    those pairs (:data:`REFLOW_STEPS` Adam steps, lr :data:`REFLOW_LR`). Metrics: FLD at 1, 2, 4 and 8 Euler steps
    (guidance 1) of the student and of the teacher, on :data:`REFLOW_N` noises (seed 0) against as many reference images.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    _, _, desc = splits
    n_pairs, pair_steps = REFLOW_PAIRS[profile.name], REFLOW_PAIR_STEPS[profile.name]
    steps, n = REFLOW_STEPS[profile.name], REFLOW_N[profile.name]
    seed_everything(profile.seed)
    teacher = load_shipped("fm_mnist", build_fm_mnist)
    started = time.perf_counter()
    noise = torch.randn(n_pairs, 1, 28, 28, generator=torch.Generator().manual_seed(1000))
    labels = torch.arange(n_pairs) % 10
    x0 = reflow_pairs(teacher, noise, labels, sampler="heun", steps=pair_steps)
    pair_s = time.perf_counter() - started
    student = copy.deepcopy(teacher).train()
    ema = None if profile.is_ci else EMA
    started = time.perf_counter()
    history = fit_flow(student, x0, labels, noise=noise, steps=steps, lr=REFLOW_LR, ema=ema, seed=profile.seed,
                       device=profile.device, desc=f"fm_reflow_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    student = student.cpu().eval()
    reference, floor_images = reference_sets(n)
    metrics: dict[str, Any] = {}
    eval_steps = REFLOW_EVAL_STEPS[:2] if profile.is_ci else REFLOW_EVAL_STEPS
    for k in eval_steps:
        for who, model in (("student", student), ("teacher", teacher)):
            x, _ = card_samples(model, n, sampler="euler", steps=k, guidance=1.0)
            metrics[f"fld_{who}_{k}"] = round(evaluation.fld(x, reference), 3)
    k = eval_steps[0]
    metrics = {"fld": metrics[f"fld_student_{k}"], **metrics,
               "fld_floor": round(evaluation.fld(floor_images, reference), 3), "samples": n, "sampler": "euler",
               "sampling_steps": k, "guidance": 1.0, "pairs": n_pairs, "final_loss": round(_final_loss(history), 4),
               "parameters": sum(p.numel() for p in student.parameters())}
    description = (f"one reflow of fm_mnist (rectified flow, Liu et al. 2023), chapter 19: the teacher fm_mnist "
                   f"(sha256 {shipped_sha256('fm_mnist')}) carried {n_pairs} noises (seed 1000, labels i % 10) to "
                   f"images with the flow Heun sampler ({pair_steps} steps, guidance 1; {pair_s:.0f} s); a copy of the "
                   f"teacher was trained on the straight lines between those pairs (same loss, logit-normal times, "
                   f"label dropout), Adam lr {REFLOW_LR:g} cosine-decayed to 0, batch {BATCH}, {steps} steps"
                   f"{f', weight average (decay {ema}) shipped' if ema else ''}; {train_s / 60:.1f} min of training "
                   f"on this machine. Metrics: FLD of {n} samples (labels i % 10, flow Euler, guidance 1, noise seed "
                   f"{CARD_SEED}) of the student and of the teacher at {', '.join(map(str, eval_steps))} steps "
                   f"against the first {n} images of MNIST-test[8000:10000:2]; fld is the student's at {k} step(s).")
    return student, card_info(description, desc, steps, metrics, splits.info)
