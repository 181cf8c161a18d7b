"""Recipes of chapter 17's shipped models: the RealNVP ``flow_mnist`` and the score model ``score_mnist``.

The configurations, schedules and evaluation protocols the chapter quotes live here: :data:`FLOW_CONFIG`,
:data:`FLOW_STEPS`, :data:`FLOW_TEMPERATURE`; :data:`SCORE_CONFIG`, :data:`SCORE_STEPS`, :data:`LANGEVIN_STEPS`,
:data:`LANGEVIN_EPS`; and the short training loops :func:`fit_flow` and :func:`fit_score` the chapter runs too.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import data, evaluation
from ..flows import RealNVP, RealNVPConfig, bits_per_dim, flow_nll_loss
from ..profile import Profile, seed_everything
from ..score import ScoreNet, ScoreNetConfig, dsm_loss
from ..train import History, TensorBatches, train_model
from ._common import card_info, shipped_sha256

#: ``flow_mnist``: 4 checkerboard couplings at 28x28, a squeeze, 4 couplings at 14x14 (channel, channel,
#: checkerboard, checkerboard), each with a 3-layer CNN of 32 channels.
FLOW_CONFIG = RealNVPConfig()
#: Adam steps per profile (batch :data:`BATCH`, lr :data:`FLOW_LR` cosine-decayed to 0)
FLOW_STEPS = {"ci": 3, "cpu": 600, "gpu": 20000}
FLOW_LR = 1e-3
#: the card's FLD is of samples at temperature 1 (what ``generate`` draws); it also scores this lower temperature
#: (z ~ N(0, T^2 I))
FLOW_TEMPERATURE = 0.7
#: ``score_mnist``: the default :class:`companion.score.ScoreNetConfig` (U-Net 16/32/32, sigmas 1 to 0.01, L = 10)
SCORE_CONFIG = ScoreNetConfig()
SCORE_STEPS = {"ci": 3, "cpu": 600, "gpu": 20000}
SCORE_LR = 2e-3
EMA = 0.995
BATCH = 64
#: Langevin steps per noise level for the card's samples (plus one final denoising step)
LANGEVIN_STEPS = {"ci": 1, "cpu": 3, "gpu": 100}
#: the step sizes the recipe tries (eps of ``annealed_langevin``), chosen by FLD against *training* images
LANGEVIN_EPS = (3e-5, 1e-4)
#: samples the card scores; samples used to pick eps (against training images)
CARD_N = {"ci": 64, "cpu": evaluation.EVAL_N, "gpu": evaluation.EVAL_N}
#: the score model's card scores fewer samples (each costs ``levels * steps + 1`` U-Net passes)
SCORE_N = {"ci": 64, "cpu": 500, "gpu": evaluation.EVAL_N}
TUNE_N = {"ci": 32, "cpu": 100, "gpu": 1000}
CARD_SEED = 0


def build_flow_mnist() -> RealNVP:
    """The untrained model of checkpoint ``flow_mnist``: ``RealNVP(FLOW_CONFIG)`` (seed 0). Introduced in chapter 17."""
    torch.manual_seed(0)
    return RealNVP(FLOW_CONFIG)


def build_score_mnist() -> ScoreNet:
    """The untrained model of checkpoint ``score_mnist``: ``ScoreNet(SCORE_CONFIG)`` (seed 0). Introduced in chapter 17."""
    torch.manual_seed(0)
    return ScoreNet(SCORE_CONFIG)


def fit_flow(model: RealNVP, images: torch.Tensor, *, steps: int, batch_size: int = BATCH, lr: float = FLOW_LR,
             seed: int = 0, device: str | torch.device | None = None, desc: str = "flow", log_every: int = 10,
             progress: bool = True) -> History:
    """Train ``model`` by maximum likelihood on 8-bit ``images [N, 1, 28, 28]`` (values ``k / 255``).

    The loss is the batch's bits/dim (:func:`companion.flows.flow_nll_loss`: fresh uniform dequantisation noise
    from a generator seeded ``seed + 1``, the logit transform and its log-det); Adam, the rate cosine-decayed to
    0, gradients clipped at norm 10.
    """
    g = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m: RealNVP, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return flow_nll_loss(m, batch[0], g)

    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(images.float(), batch_size, seed), loss_fn, steps=steps, lr=lr,
                       optimizer="adam", schedule="cosine", grad_clip=10.0, generators=(g,), seed=seed,
                       device=device, progress=progress, desc=desc, log_every=log_every)


def fit_score(model: ScoreNet, images: torch.Tensor, *, steps: int, batch_size: int = BATCH, lr: float = SCORE_LR,
              ema: float | None = EMA, seed: int = 0, device: str | torch.device | None = None,
              desc: str = "score", log_every: int = 10, progress: bool = True) -> History:
    """Train ``model`` by denoising score matching on ``images`` in ``[0, 1]`` over its noise levels.

    One uniformly drawn level and one noise draw per image from a generator seeded ``seed + 1``
    (:func:`companion.score.dsm_loss`); Adam, the rate cosine-decayed to 0; with ``ema`` the averaged weights are
    what ``model`` holds afterwards.
    """
    g = torch.Generator().manual_seed(seed + 1)
    sigmas = model.sigmas.float()

    def loss_fn(m: ScoreNet, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return dsm_loss(m, batch[0], sigmas, generator=g)

    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(images.float(), batch_size, seed), loss_fn, steps=steps, lr=lr,
                       optimizer="adam", schedule="cosine", ema=ema, generators=(g,), seed=seed, device=device,
                       progress=progress, desc=desc, log_every=log_every)


def reference_sets(n: int = evaluation.EVAL_N) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reference, floor)``: the first ``n`` images of ``evaluation.REFERENCE`` and ``evaluation.FLOOR``."""
    test = data.mnist("test").tensors[0]
    return test[evaluation.REFERENCE][:n], test[evaluation.FLOOR][:n]


def flow_samples(model: RealNVP, n: int, temperature: float, seed: int = CARD_SEED) -> torch.Tensor:
    """``n`` samples of ``model`` at ``temperature`` from base noise seeded ``seed`` (what ``generate`` draws)."""
    c = model.config
    z = torch.randn(n, c.channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(seed))
    return torch.cat([model.sample(z[i:i + 500], temperature) for i in range(0, n, 500)])


def score_samples(model: ScoreNet, n: int, steps: int, eps: float, seed: int = CARD_SEED) -> torch.Tensor:
    """``n`` annealed-Langevin samples from ``U[0, 1)`` starts seeded ``seed`` (what ``generate`` draws)."""
    g = torch.Generator().manual_seed(seed)
    u = model.config.unet
    x = torch.rand(n, u.image_channels, u.image_size, u.image_size, generator=g)
    return torch.cat([model.sample(x[i:i + 250], steps=steps, eps=eps, generator=g) for i in range(0, n, 250)])


def _final(history: History) -> float:
    losses = [r["loss"] for r in history.train if "loss" in r]
    return sum(losses[-10:]) / len(losses[-10:])


def train_flow_mnist(profile: Profile) -> tuple[RealNVP, dict[str, Any]]:
    """Train checkpoint ``flow_mnist``: see :func:`fit_flow`, :data:`FLOW_STEPS`.

    Metrics: bits/dim of the held-out images (never trained on; one dequantisation draw, seed 0); FLD of
    :data:`CARD_N` samples at temperature 1 and at :data:`FLOW_TEMPERATURE` against as many images of
    ``evaluation.REFERENCE``, next to the real-data floor.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, held, desc = splits
    steps, n = FLOW_STEPS[profile.name], CARD_N[profile.name]
    seed_everything(profile.seed)
    model = build_flow_mnist()
    started = time.perf_counter()
    history = fit_flow(model, train.tensors[0], steps=steps, seed=profile.seed, device=profile.device,
                       desc=f"flow_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    held_x = held.tensors[0] if not profile.is_ci else held.tensors[0][:500]
    bpd = float(bits_per_dim(model, held_x, torch.Generator().manual_seed(0)).mean())
    reference, floor_images = reference_sets(n)
    fld = evaluation.fld(flow_samples(model, n, 1.0), reference)
    fld_cold = evaluation.fld(flow_samples(model, n, FLOW_TEMPERATURE), reference)
    floor = evaluation.fld(floor_images, reference)
    c = FLOW_CONFIG
    params = sum(p.numel() for p in model.parameters())
    description = (f"RealNVP on uniformly dequantised 8-bit MNIST, chapter 17: {c.full} checkerboard affine "
                   f"couplings at 28x28, a squeeze, {c.half} couplings at 14x14 (channel and checkerboard masks), "
                   f"each a 3-layer CNN of {c.hidden} channels, s = scale * tanh; logit pre-processing (alpha 0.05), "
                   f"standard-normal base, {params:,} parameters; maximum likelihood, Adam lr {FLOW_LR:g} "
                   f"cosine-decayed to 0, batch {BATCH}, {steps} steps, gradient norm clipped at 10, seed "
                   f"{profile.seed}; {train_s / 60:.1f} min of training on this machine; final training loss "
                   f"{_final(history):.3f} bits/dim. Metrics: bits/dim of {len(held_x)} held-out images (one "
                   f"dequantisation draw, seed 0; in 8-bit units, not comparable with a binarised model's); FLD of "
                   f"{n} samples at temperature 1 (and at {FLOW_TEMPERATURE}) from base noise seed {CARD_SEED} "
                   f"against the first {n} images of MNIST-test[8000:10000:2], next to the floor (as many of "
                   f"MNIST-test[8001:10000:2]), features of mnist_features (sha256 "
                   f"{shipped_sha256('mnist_features')}).")
    metrics = {"test_bits_per_dim": round(bpd, 3), "heldout_images": len(held_x), "fld": round(fld, 3),
               "temperature": 1.0, "fld_cold": round(fld_cold, 3), "cold_temperature": FLOW_TEMPERATURE, "fld_floor": round(floor, 3),
               "fld_ratio": round(fld / floor, 2), "samples": n, "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)


def train_score_mnist(profile: Profile) -> tuple[ScoreNet, dict[str, Any]]:
    """Train checkpoint ``score_mnist``: see :func:`fit_score`, :data:`SCORE_STEPS`, :data:`LANGEVIN_STEPS`.

    The Langevin step size is picked from :data:`LANGEVIN_EPS` by FLD of :data:`TUNE_N` samples against as many
    *training* images; then FLD of :data:`SCORE_N` samples (annealed Langevin, :data:`LANGEVIN_STEPS` steps per
    level and a final denoising step) against ``evaluation.REFERENCE``, next to the real-data floor.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps, lsteps, n = SCORE_STEPS[profile.name], LANGEVIN_STEPS[profile.name], SCORE_N[profile.name]
    ema = None if profile.is_ci else EMA
    seed_everything(profile.seed)
    model = build_score_mnist()
    started = time.perf_counter()
    history = fit_score(model, train.tensors[0], steps=steps, ema=ema, seed=profile.seed, device=profile.device,
                        desc=f"score_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    tn = TUNE_N[profile.name]
    tune_ref = train.tensors[0][:tn]
    tuned = {eps: evaluation.fld(score_samples(model, tn, lsteps, eps, seed=CARD_SEED + 1), tune_ref)
             for eps in LANGEVIN_EPS}
    eps = min(tuned, key=tuned.get)
    model.langevin_eps.fill_(eps)
    started = time.perf_counter()
    x = score_samples(model, n, lsteps, eps)
    sample_s = time.perf_counter() - started
    reference, floor_images = reference_sets(n)
    fld = evaluation.fld(x, reference)
    floor = evaluation.fld(floor_images, reference)
    c, u = SCORE_CONFIG, SCORE_CONFIG.unet
    params = sum(p.numel() for p in model.parameters())
    nfe = c.levels * lsteps + 1
    description = (f"Noise-conditional score network on MNIST, chapter 17: U-Net (widths {u.widths}, attention "
                   f"only in the middle, {params:,} parameters) reading log sigma, output divided by sigma; "
                   f"{c.levels} geometric noise levels from {c.sigma_max:g} to {c.sigma_min:g}; denoising score "
                   f"matching weighted by sigma^2 on images in [0, 1]; Adam lr {SCORE_LR:g} cosine-decayed to 0, "
                   f"batch {BATCH}, {steps} steps{f', weight average (decay {ema}) shipped' if ema else ''}, seed "
                   f"{profile.seed}; {train_s / 60:.1f} min of training on this machine; final loss "
                   f"{_final(history):.2f}. Sampling: annealed Langevin dynamics from U[0, 1) noise, {lsteps} steps "
                   f"per level, step size eps = {eps:g} (chosen from {list(LANGEVIN_EPS)} by FLD of {tn} samples "
                   f"against {tn} training images), a final denoising step: {nfe} network evaluations per image. "
                   f"Metrics: FLD of {n} samples (seed {CARD_SEED}; {sample_s:.0f} s to sample) against the first "
                   f"{n} images of MNIST-test[8000:10000:2], next to the floor (as many of MNIST-test[8001:10000:2]),"
                   f" features of mnist_features (sha256 {shipped_sha256('mnist_features')}).")
    metrics = {"fld": round(fld, 3), "fld_floor": round(floor, 3), "fld_ratio": round(fld / floor, 2),
               "samples": n, "langevin_steps": lsteps, "eps": eps, "nfe": nfe,
               **{f"fld_tune_eps_{k:g}": round(v, 3) for k, v in tuned.items()},
               "final_loss": round(_final(history), 3), "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)
