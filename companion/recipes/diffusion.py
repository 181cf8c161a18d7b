"""Recipe of the shipped DDPM ``ddpm_mnist`` (chapter 18), and the short training loop the chapter runs too.

The configuration and schedule the chapter quotes live here: :data:`DDPM_CONFIG`, :data:`DDPM_STEPS`,
:data:`BATCH`, :data:`LR`, :data:`EMA` and the evaluation protocol :data:`CARD_SAMPLER`, :data:`CARD_STEPS`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import data, evaluation
from ..ddpm import DDPM, DDPMConfig, to_model_range
from ..diffusion import diffusion_loss
from ..profile import Profile, seed_everything
from ..train import History, TensorBatches, train_model
from ._common import card_info, shipped_sha256

#: ``ddpm_mnist``: the default :class:`companion.ddpm.DDPMConfig` (U-Net widths 16/32/32, attention at 7x7 and in
#: the middle; T = 1000, DDPM's linear schedule), predicting the noise.
DDPM_CONFIG = DDPMConfig()
#: Adam steps per profile (batch :data:`BATCH`, learning rate cosine-decayed from :data:`LR` to 0).
DDPM_STEPS = {"ci": 3, "cpu": 1000, "gpu": 20000}
BATCH = 64
LR = 2e-3
#: decay of the weight average that ships (none at ci, where the run is a few steps)
EMA = 0.995
#: how the card's samples are drawn: the clipped ancestral sampler on this many trailing timesteps
CARD_SAMPLER = "ancestral"
CARD_STEPS = {"ci": 5, "cpu": 50, "gpu": 1000}
#: samples the card scores (``evaluation.EVAL_N`` outside ci), seed of their noise
CARD_N = {"ci": 64, "cpu": evaluation.EVAL_N, "gpu": evaluation.EVAL_N}
CARD_SEED = 0


def build_ddpm_mnist() -> DDPM:
    """The untrained model of checkpoint ``ddpm_mnist``: ``DDPM(DDPM_CONFIG)`` (seed 0). Introduced in chapter 18."""
    torch.manual_seed(0)
    return DDPM(DDPM_CONFIG)


def fit_ddpm(model: DDPM, images: torch.Tensor, *, steps: int, batch_size: int = BATCH, lr: float = LR,
             ema: float | None = EMA, seed: int = 0, device: str | torch.device | None = None,
             desc: str = "ddpm", log_every: int = 10, progress: bool = True) -> History:
    """Train ``model`` with DDPM's simple loss on ``images [N, 1, 28, 28]`` in ``[0, 1]`` (scaled to ``[-1, 1]``).

    Adam, the learning rate cosine-decayed from ``lr`` to 0 over ``steps``, shuffled batches (seed ``seed``), one
    uniform timestep and one noise draw per image from a generator seeded ``seed + 1``; with ``ema`` the averaged
    weights are what ``model`` holds afterwards. Returns the :class:`companion.train.History` (loss per step).
    """
    g = torch.Generator().manual_seed(seed + 1)
    x = to_model_range(images.float())

    def loss_fn(m: DDPM, batch: tuple[torch.Tensor]) -> torch.Tensor:
        x0 = batch[0]
        ab = m.alpha_bar.to(x0.device)
        t = torch.randint(0, m.config.T, (x0.shape[0],), generator=g).to(x0.device)
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        return diffusion_loss(m, x0, ab, t=t, noise=noise)

    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(x, batch_size, seed), loss_fn, steps=steps, lr=lr, optimizer="adam",
                       schedule="cosine", ema=ema, generators=(g,), seed=seed, device=device, progress=progress,
                       desc=desc, log_every=log_every)


def reference_sets(n: int = evaluation.EVAL_N) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reference, floor)``: the first ``n`` images of ``evaluation.REFERENCE`` and ``evaluation.FLOOR``."""
    test = data.mnist("test").tensors[0]
    return test[evaluation.REFERENCE][:n], test[evaluation.FLOOR][:n]


def train_ddpm_mnist(profile: Profile) -> tuple[DDPM, dict[str, Any]]:
    """Train checkpoint ``ddpm_mnist``: see :func:`fit_ddpm`, :data:`DDPM_STEPS`, :data:`BATCH`, :data:`LR`, :data:`EMA`.

    Metrics: FLD (chapter 13's ``evaluation.fld``, features of the shipped ``mnist_features``, sha256 on the card)
    of :data:`CARD_N` samples (clipped ancestral sampler, :data:`CARD_STEPS` trailing timesteps, noise seed
    :data:`CARD_SEED`) against as many images of ``evaluation.REFERENCE``, next to the real-data floor
    (``evaluation.FLOOR`` against the same reference) and their ratio.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps, sample_steps, n = DDPM_STEPS[profile.name], CARD_STEPS[profile.name], CARD_N[profile.name]
    ema = None if profile.is_ci else EMA
    seed_everything(profile.seed)
    model = build_ddpm_mnist()
    started = time.perf_counter()
    history = fit_ddpm(model, train.tensors[0], steps=steps, ema=ema, seed=profile.seed, device=profile.device,
                       desc=f"ddpm_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    started = time.perf_counter()
    noise = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(CARD_SEED))
    x = model.sample(noise, CARD_SAMPLER, steps=sample_steps,
                     generator=torch.Generator().manual_seed(CARD_SEED + 1))
    sample_s = time.perf_counter() - started
    reference, floor_images = reference_sets(n)
    fld = evaluation.fld(x, reference)
    floor = evaluation.fld(floor_images, reference)
    c, u = DDPM_CONFIG, DDPM_CONFIG.unet
    params = sum(p.numel() for p in model.parameters())
    losses = [r["loss"] for r in history.train if "loss" in r]
    final_loss = sum(losses[-10:]) / len(losses[-10:])
    description = (f"DDPM on MNIST, chapter 18: U-Net noise predictor (widths {u.widths}, {u.blocks} residual "
                   f"block(s) per level, attention at levels {u.attention_levels} and in the middle, "
                   f"{params:,} parameters), T = {c.T}, {c.schedule} schedule, epsilon-prediction, DDPM's simple "
                   f"loss on images scaled to [-1, 1]; Adam lr {LR:g} cosine-decayed to 0, batch {BATCH}, {steps} "
                   f"steps{f', weight average (decay {ema}) shipped' if ema else ''}, seed {profile.seed}; "
                   f"{train_s / 60:.1f} min of training on this machine; final loss (mean of the last logged "
                   f"steps) {final_loss:.4f}. Metrics: FLD of {n} samples (clipped ancestral sampler, "
                   f"{sample_steps} trailing timesteps, noise seed {CARD_SEED}; {sample_s:.0f} s to sample) against "
                   f"the first {n} images of MNIST-test[8000:10000:2], next to the floor (as many of "
                   f"MNIST-test[8001:10000:2] against the same reference), features of mnist_features "
                   f"(sha256 {shipped_sha256('mnist_features')}).")
    metrics = {"fld": round(fld, 3), "fld_floor": round(floor, 3), "fld_ratio": round(fld / floor, 2),
               "samples": n, "sampler": CARD_SAMPLER, "sampling_steps": sample_steps,
               "final_loss": round(final_loss, 4), "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)
