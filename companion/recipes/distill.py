"""Recipe of the shipped distilled students ``distill_mnist`` (chapter 19), and the round the chapter runs too.

Progressive distillation of the shipped ``ddpm_mnist``: the first student (8 steps) learns to match two DDIM steps
of the DDPM's 16-step trailing grid in one, each later student two steps of the one before (8 -> 4 -> 2 -> 1).
The 4-, 2- and 1-step students ship together (a :class:`companion.distill.DistilledSet`, float16 storage); the
card scores each beside the teacher's own DDIM at the same number of steps.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import data, evaluation
from ..checkpoints import round_to_storage
from ..ddpm import DDPM, to_model_range
from ..distill import Distilled, DistilledSet, distillation_loss, step_grid
from ..profile import Profile, seed_everything
from ..train import History, TensorBatches, train_model
from ._common import card_info, load_shipped, shipped_sha256
from .diffusion import DDPM_CONFIG, build_ddpm_mnist, reference_sets

#: the teacher's grid (DDIM on ``ddpm_mnist``) and the students, one round each, halving the steps
TEACHER_STEPS = 16
ROUNDS = (8, 4, 2, 1)
#: the students that ship
SHIPPED = (4, 2, 1)
#: Adam steps per round and profile (batch :data:`BATCH`, learning rate cosine-decayed from :data:`LR` to 0 in
#: every round)
ROUND_STEPS = {"ci": 2, "cpu": 120, "gpu": 4000}
BATCH = 32
LR = 1e-3
STORAGE = "float16"
#: samples the card scores (``evaluation.EVAL_N`` outside ci), seed of their noise
CARD_N = {"ci": 32, "cpu": evaluation.EVAL_N, "gpu": evaluation.EVAL_N}
CARD_SEED = 0


def build_distill_mnist() -> DistilledSet:
    """The untrained model of checkpoint ``distill_mnist``: students for :data:`SHIPPED` steps on ``ddpm_mnist``'s U-Net."""
    torch.manual_seed(0)
    return DistilledSet(SHIPPED, DDPM_CONFIG.unet, DDPM_CONFIG.T, DDPM_CONFIG.schedule)


def distill_round(student: Distilled, teacher: torch.nn.Module, images: torch.Tensor, *, steps: int,
                  batch_size: int = BATCH, lr: float = LR, seed: int = 0, device: str | torch.device | None = None,
                  desc: str = "distill", log_every: int = 10, progress: bool = True) -> History:
    """One round: train ``student`` to match two DDIM steps of ``teacher`` in one, on ``images`` in ``[0, 1]``.

    Each batch draws, per image, one timestep of the student's grid (uniformly) and one noise from a generator
    seeded ``seed + 1``; :func:`companion.distill.distillation_loss`; Adam, learning rate cosine-decayed to 0.
    The teacher is frozen (``eval``, no gradients).
    """
    g = torch.Generator().manual_seed(seed + 1)
    x = to_model_range(images.float())
    grid = step_grid(student.config.T, student.config.steps)[0]
    teacher.eval().requires_grad_(False)

    def loss_fn(m: Distilled, batch: tuple[torch.Tensor]) -> torch.Tensor:
        x0 = batch[0]
        t = grid[torch.randint(0, len(grid), (x0.shape[0],), generator=g)].to(x0.device)
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        return distillation_loss(m, teacher, x0, t=t, noise=noise)

    if device is not None:
        student.to(device)
        teacher.to(device)
    return train_model(student, TensorBatches(x, batch_size, seed), loss_fn, steps=steps, lr=lr, optimizer="adam",
                       schedule="cosine", generators=(g,), seed=seed, device=device, progress=progress, desc=desc,
                       log_every=log_every)


def progressive_distillation(teacher: DDPM, images: torch.Tensor, *, rounds: tuple[int, ...] = ROUNDS,
                             steps: int, seed: int = 0, device: str | torch.device | None = None,
                             progress: bool = True, on_round: Any = None) -> tuple[dict[int, Distilled], dict[int, History]]:
    """Every round of :data:`ROUNDS`: the first student starts from ``teacher``, each later one from the last.

    Returns ``({steps: student}, {steps: history})``; ``on_round(steps, student)`` is called after each round.
    """
    students, histories, current = {}, {}, teacher
    for s in rounds:
        student = Distilled.from_teacher(current, s)
        histories[s] = distill_round(student, current, images, steps=steps, seed=seed + s, device=device,
                                     desc=f"distill {2 * s} -> {s} steps", progress=progress)
        student.eval()
        students[s] = student
        if on_round is not None:
            on_round(s, student)
        current = student
    return students, histories


def train_distill_mnist(profile: Profile) -> tuple[DistilledSet, dict[str, Any]]:
    """Train checkpoint ``distill_mnist``: :func:`progressive_distillation` of the shipped ``ddpm_mnist``.

    Metrics: FLD (chapter 13's ``evaluation.fld``) of :data:`CARD_N` samples (noise seed :data:`CARD_SEED`, the
    same noise for every model) of each student at its step count and of the teacher's deterministic DDIM at the
    same steps (trailing timesteps), against as many images of ``evaluation.REFERENCE``, next to the floor.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps, n = ROUND_STEPS[profile.name], CARD_N[profile.name]
    seed_everything(profile.seed)
    teacher = load_shipped("ddpm_mnist", build_ddpm_mnist)
    model = build_distill_mnist()
    noise = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(CARD_SEED))
    reference, floor_images = reference_sets(n)
    floor = evaluation.fld(floor_images, reference)
    metrics: dict[str, Any] = {}

    def score(images: torch.Tensor) -> float:
        return round(evaluation.fld(images, reference), 3)

    def on_round(s: int, student: Distilled) -> None:
        student = student.cpu()
        if s in model.steps:
            model.students[str(s)].load_state_dict(student.state_dict())
            student = round_to_storage(model[s], STORAGE).eval()
        metrics[f"fld_student_{s}"] = score(student.sample(noise))

    started = time.perf_counter()
    _, histories = progressive_distillation(teacher, train.tensors[0], steps=steps, seed=profile.seed,
                                            device=profile.device, on_round=on_round)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    teacher = teacher.cpu()
    for s in sorted({*ROUNDS, TEACHER_STEPS}):
        metrics[f"fld_ddim_{s}"] = score(teacher.sample(noise, "ddim", steps=s))
    metrics = dict(sorted(metrics.items()))
    losses = {}
    for s, h in histories.items():
        vals = [r["loss"] for r in h.train if "loss" in r]
        losses[s] = round(sum(vals[-5:]) / len(vals[-5:]), 4)
    u = DDPM_CONFIG.unet
    params = sum(p.numel() for p in model[model.steps[0]].parameters())
    metrics.update({"fld": metrics["fld_student_1"], "fld_floor": round(floor, 3),
                    "fld_ratio": round(metrics["fld_student_1"] / floor, 2), "samples": n,
                    "sampling_steps": 1, "final_loss": {str(k): v for k, v in losses.items()},
                    "parameters": params})
    description = (f"Progressive distillation (Salimans & Ho 2022) of ddpm_mnist (sha256 {shipped_sha256('ddpm_mnist')}; "
                   f"U-Net widths {u.widths}): students of {', '.join(map(str, ROUNDS))} steps, each trained to "
                   f"match two deterministic DDIM steps of its teacher (ddpm_mnist on its {TEACHER_STEPS}-step "
                   f"trailing grid, then the previous student) in one; initialised from the teacher, the output "
                   f"layer doubled into a noise and a clean-image channel merged as "
                   f"(1 - alpha_bar) x + sqrt(alpha_bar)(x_t - sqrt(1 - alpha_bar) eps) ({params:,} parameters each); "
                   f"loss on the clean image weighted by max(SNR, 1); Adam lr {LR:g} cosine-decayed to 0 in every "
                   f"round, batch {BATCH}, {steps} steps per round, seed {profile.seed}; {train_s / 60:.1f} min of "
                   f"training (evaluation of every round included) on this machine. Ships the "
                   f"{', '.join(map(str, SHIPPED))}-step students in {STORAGE}. Metrics: FLD of {n} samples (noise "
                   f"seed {CARD_SEED}, the same noise for every model) of each student at its steps (fld_student_S) "
                   f"and of the teacher's deterministic DDIM at S trailing timesteps (fld_ddim_S), against the first "
                   f"{n} images of MNIST-test[8000:10000:2], next to the floor (as many of MNIST-test[8001:10000:2] "
                   f"against the same reference); fld is the 1-step student's. Features of mnist_features "
                   f"(sha256 {shipped_sha256('mnist_features')}).")
    return model, card_info(description, desc, steps * len(ROUNDS), metrics, splits.info)
