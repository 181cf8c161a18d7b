"""Recipes of the shipped VAEs: ``vae_mnist`` (chapter 10), ``cvae_mnist`` and ``betavae_shapes`` (chapter 11).

The configurations and schedules the chapters quote live here: :data:`VAE_CONFIG`, :data:`CVAE_CONFIG`, and the
β-VAE experiment's :data:`SHAPES_CONFIG`, :data:`SHAPES_BETAS`, :data:`SHAPES_SCHEDULE`, :data:`SHAPES_BATCH`,
:data:`SHAPES_LR` and its evaluation set :data:`SHAPES_EVAL`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .. import data, toys
from .. import vae as vae_lib
from .. import vae_variants as vv
from ..checkpoints import round_to_storage
from ..profile import Profile, seed_everything
from ..train import train_vae
from ._common import card_info, load_shipped, offline
from .classifiers import build_lenet_mnist

# ----------------------------------------------------------------------------------------------- vae_mnist

#: The configuration of ``vae_mnist``: an MLP VAE 784-512-512-32, Bernoulli likelihood.
VAE_CONFIG = vae_lib.VAEConfig(latent_dim=32, hidden=(512, 512), arch="mlp", likelihood="bernoulli")
#: ``vae_mnist`` is stored in float16: 1.38M parameters are 5.5 MB in float32, over the 5 MB per checkpoint.
VAE_STORAGE = "float16"


def build_vae_mnist() -> vae_lib.VAE:
    """The untrained model of checkpoint ``vae_mnist``: ``VAE(VAE_CONFIG)`` (seed 0). Introduced in chapter 10."""
    torch.manual_seed(0)
    return vae_lib.VAE(VAE_CONFIG)


def train_vae_mnist(profile: Profile) -> tuple[vae_lib.VAE, dict[str, Any]]:
    """Train checkpoint ``vae_mnist`` on dynamically binarised MNIST.

    The last 1,000 training images are held out for early stopping (never the evaluation images); Adam (lr
    1.5e-3, decayed by 0.985 per epoch), batch 100, a linear KL warm-up over 2,000 steps, a Polyak average of the
    weights (decay 0.999) that is validated and shipped, at most 250 epochs, early stopping on the held-out ELBO
    with patience 40. The card's metrics are measured on the whole evaluation split binarised once with seed 0:
    the IWAE NLL with k = 5000 and k = 100, the ELBO, the KL and the active units.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    x_all = train.tensors[0]
    n_val = 1000 if not profile.is_ci else 200
    x_fit, x_val = x_all[:-n_val], x_all[-n_val:]
    lr, lr_decay = 1.5e-3, 0.985
    epochs = profile.pick(ci=2, cpu=250, gpu=400)
    warmup = profile.pick(ci=10, cpu=2000, gpu=5000)
    patience = profile.pick(ci=None, cpu=40, gpu=40)
    ema = None if profile.is_ci else 0.999  # a 2-epoch ci run is too short for an average over ~1000 steps
    seed_everything(profile.seed)
    model = build_vae_mnist().to(profile.device)
    started = time.perf_counter()
    history = train_vae(model, x_fit, epochs=epochs, batch_size=100, lr=lr, lr_decay=lr_decay, warmup_steps=warmup,
                        val=x_val, patience=patience, ema=ema, seed=profile.seed, desc=f"vae_mnist ({profile.name})")
    train_s = time.perf_counter() - started
    model = round_to_storage(model.cpu().eval(), VAE_STORAGE)  # the card measures the weights as stored
    metrics = vae_mnist_metrics(model, test.tensors[0], k=5000 if not profile.is_ci else 50)
    best_epoch = int(history.train[-1]["best_epoch"])
    metrics["best_epoch"] = best_epoch
    note = (" Trained offline on 8,000 images only (MNIST-test[:8000]; the 60,000-image training split is not "
            "available here), so it over-fits sooner and its NLL is worse than the ~85-88 nats published for "
            "the full training split.") if offline(desc) else ""
    description = (f"VAE on dynamically binarised MNIST, chapter 10: MLP 784-512-512-{VAE_CONFIG.latent_dim} "
                   f"encoder, mirrored decoder, ELU, Bernoulli likelihood; Adam lr {lr:g}"
                   f"{f' decayed x{lr_decay} per epoch' if lr_decay else ''}, batch 100, linear KL "
                   f"warm-up over {warmup} steps, re-binarised every epoch"
                   f"{f', Polyak-averaged weights (decay {ema})' if ema else ''}, early stopping on the ELBO "
                   f"of the last {n_val} training images (best epoch {best_epoch}); seed {profile.seed}; "
                   f"{train_s / 60:.1f} min of training; weights stored in {VAE_STORAGE}.{note}")
    data_line = (f"{desc}; fit on the first {len(x_fit)} training images, early stopping on the last {n_val}; "
                 f"metrics on all {len(test.tensors[0])} images of the evaluation split, binarised once with seed 0")
    return model, card_info(description, data_line, history.train[-1]["step"], metrics, splits.info)


def vae_mnist_metrics(model: vae_lib.VAE, x_test: torch.Tensor, k: int = 5000) -> dict[str, Any]:
    """The card metrics of ``vae_mnist`` on ``x_test`` binarised once with seed 0.

    The IWAE NLL with ``k`` samples (and with k = 100), the ELBO, the KL and the active units.
    """
    x_test = x_test.cpu()
    x_bin = vae_lib.dynamic_binarize(x_test, torch.Generator().manual_seed(0))
    # k = 5000 costs 5000 decoder passes per image: 10 million for the 2,000 evaluation images, ~10-25 min on one
    # CPU core; every image also gets the cheaper k = 100 bound, for comparison with the chapter's numbers
    n_iwae = len(x_bin)
    nll = vae_lib.iwae_nll(model, x_bin, k=k, batch_size=50, generator=torch.Generator().manual_seed(1),
                           progress=True)
    nll100 = vae_lib.iwae_nll(model, x_bin, k=100, batch_size=100, generator=torch.Generator().manual_seed(1))
    ev = vae_lib.evaluate_elbo(model, x_bin, binarize=False, seed=2)
    au = vae_lib.active_units(model, x_bin)
    return {f"iwae_nll_k{k}": round(float(nll.mean()), 2), "iwae_images": n_iwae,
            "iwae_nll_k100": round(float(nll100.mean()), 2), "elbo": round(ev["elbo"], 2),
            "kl": round(ev["kl"], 2), "active_units": au}


# ----------------------------------------------------------------------------------------------- cvae_mnist

#: The configuration of ``cvae_mnist``: an MLP CVAE (512, 256) with 2 latents and a one-hot digit label.
CVAE_CONFIG = vv.CondVAEConfig(image_size=28, channels=1, latent_dim=2, hidden=(512, 256), num_classes=10)
#: Epochs and training images per profile of ``cvae_mnist`` (``None`` = the whole training split).
CVAE_SCHEDULE = {"ci": {"epochs": 1, "n_train": 1000}, "cpu": {"epochs": 20, "n_train": None},
                 "gpu": {"epochs": 20, "n_train": None}}
CVAE_LR, CVAE_BATCH = 1e-3, 128


def build_cvae_mnist() -> vv.CVAE:
    """The untrained model of checkpoint ``cvae_mnist``: ``CVAE(CVAE_CONFIG)`` (seed 0). Introduced in chapter 11."""
    torch.manual_seed(0)
    return vv.CVAE(CVAE_CONFIG)


def train_cvae_mnist(profile: Profile) -> tuple[vv.CVAE, dict[str, Any]]:
    """Train checkpoint ``cvae_mnist``: Adam (lr 1e-3), batch 128, seed 0, Bernoulli likelihood on the grey levels.

    Metrics: ``conditional_accuracy`` (100 samples per digit classified by the shipped ``lenet_mnist``) and the
    mean ``test_neg_elbo`` (nats) on the evaluation split.
    """
    epochs, n_train = CVAE_SCHEDULE[profile.name]["epochs"], CVAE_SCHEDULE[profile.name]["n_train"]
    splits = data.mnist_splits(profile.name, n_train=n_train)
    train, test, desc = splits
    model = build_cvae_mnist().to(profile.device)
    x, y = train.tensors
    history = train_vae(model, x.to(profile.device), y.to(profile.device), objective="loss", epochs=epochs,
                        batch_size=CVAE_BATCH, lr=CVAE_LR, seed=profile.seed, desc=f"cvae_mnist ({profile.name})")
    model = model.cpu().eval()
    judge = load_shipped("lenet_mnist", build_lenet_mnist)
    acc, _ = vv.conditional_accuracy(model, judge, n_per_class=100, seed=0)
    xt, yt = test.tensors
    nelbo = vv.negative_elbo(model, xt, yt, n_samples=1, generator=torch.Generator().manual_seed(0)).mean().item()
    description = (f"conditional VAE (MLP {CVAE_CONFIG.hidden}, latent {CVAE_CONFIG.latent_dim}, one-hot label "
                   f"into encoder and decoder) on MNIST, chapter 11: Adam lr {CVAE_LR:g}, batch {CVAE_BATCH}, "
                   f"{epochs} epoch(s), seed {profile.seed}, Bernoulli likelihood on grey levels; conditional_accuracy "
                   "= share of 100 samples per digit that lenet_mnist classifies as their condition")
    return model, card_info(description, desc, history.train[-1]["step"],
                            {"conditional_accuracy": round(acc, 4), "test_neg_elbo": round(nelbo, 2)}, splits.info)


# ----------------------------------------------------------------------------------------------- betavae_shapes

#: The convolutional β-VAE of chapter 11's experiment: 32x32 shapes, 10 latents, ~134k parameters.
SHAPES_CONFIG = vv.CondVAEConfig(image_size=32, channels=1, latent_dim=10, hidden=(32, 32, 32, 64), arch="conv")
#: The values of β compared in the experiment (one model each, all in checkpoint ``betavae_shapes``).
SHAPES_BETAS = (1.0, 4.0, 16.0)
#: Training images and optimiser steps per model of ``betavae_shapes`` per profile.
SHAPES_SCHEDULE = {"ci": {"n_train": 512, "steps": 20}, "cpu": {"n_train": 30_000, "steps": 8000},
                   "gpu": {"n_train": 30_000, "steps": 8000}}
SHAPES_BATCH, SHAPES_LR = 64, 1e-3
#: The evaluation set every MIG in the chapter and the card is measured on: ``toys.shapes(5000, 32, seed=1)``.
SHAPES_EVAL = {"n": 5000, "size": 32, "seed": 1}


def build_betavae_shapes() -> vv.BetaSweep:
    """The untrained models of checkpoint ``betavae_shapes``: ``BetaSweep(SHAPES_CONFIG, SHAPES_BETAS)``."""
    return vv.BetaSweep(SHAPES_CONFIG, SHAPES_BETAS, seed=0)


def train_betavae_shapes(profile: Profile) -> tuple[vv.BetaSweep, dict[str, Any]]:
    """Train checkpoint ``betavae_shapes``: one conv β-VAE per β in :data:`SHAPES_BETAS`.

    Identical initial weights, Adam (lr ``SHAPES_LR``), batch ``SHAPES_BATCH``, seed 0, the same number of steps
    for every β, Bernoulli likelihood, on ``toys.shapes(n_train, size=32, seed=0)``. Metrics (per β, on
    :data:`SHAPES_EVAL`, a different seed): MIG and its per-factor gaps, the normalised mutual information
    ``I(z_j; v_k) / H(v_k)`` of each factor's best latent, rate, distortion and active latents.
    """
    n_train, steps = SHAPES_SCHEDULE[profile.name]["n_train"], SHAPES_SCHEDULE[profile.name]["steps"]
    x, _ = toys.shapes(n_train, size=SHAPES_CONFIG.image_size, seed=0)
    x_eval, f_eval = toys.shapes(SHAPES_EVAL["n"], size=SHAPES_EVAL["size"], seed=SHAPES_EVAL["seed"])
    names = list(f_eval)
    factors = vv.shapes_factor_matrix(f_eval, names)
    device = profile.device
    sweep = build_betavae_shapes().to(device)
    metrics: dict[str, Any] = {}
    epochs = math.ceil(steps * SHAPES_BATCH / n_train) + 1
    for beta, model in zip(sweep.betas, sweep.models):
        train_vae(model, x.to(device), objective="loss", epochs=epochs, max_steps=steps, batch_size=SHAPES_BATCH,
                  lr=SHAPES_LR, seed=profile.seed, desc=f"betavae_shapes beta={beta:g} ({profile.name})", log_every=100)
        r = vv.measure_disentanglement(model.cpu().eval(), x_eval, factors)
        m = r["mig"]
        metrics[f"beta_{beta:g}"] = {
            "mig": round(m.score, 4),
            "mig_sampled": round(r["mig_sampled"].score, 4),
            "mig_per_factor": {n: round(float(v), 4) for n, v in zip(names, m.per_factor)},
            "mig_sampled_per_factor": {n: round(float(v), 4) for n, v in zip(names, r["mig_sampled"].per_factor)},
            "best_latent_mi_over_entropy": {n: round(float(m.mi[int(m.top[k]), k] / m.entropy[k]), 4)
                                            for k, n in enumerate(names)},
            "rate_nats": round(r["rate"], 2), "distortion_nats": round(r["distortion"], 2), "active_latents": r["active"],
        }
        model.to(device)
    sweep = sweep.cpu().eval()
    description = (f"{len(sweep)} convolutional beta-VAEs (conv {SHAPES_CONFIG.hidden[:-1]} -> "
                   f"{SHAPES_CONFIG.hidden[-1]} features, latent {SHAPES_CONFIG.latent_dim}, 32x32) that differ "
                   f"only in beta {list(sweep.betas)}, chapter 11: same initial weights, Adam lr {SHAPES_LR:g}, "
                   f"batch {SHAPES_BATCH}, {steps} steps each, seed {profile.seed}, Bernoulli likelihood; metrics on "
                   f"toys.shapes({SHAPES_EVAL['n']}, size={SHAPES_EVAL['size']}, seed={SHAPES_EVAL['seed']}): "
                   "MIG (20 bins) on the posterior means and on one sample z ~ q(z|x), per-factor gaps, "
                   "best latent's I(z; v) / H(v) (means)")
    data_line = (f"procedural dSprites-style shapes: toys.shapes({n_train}, size={SHAPES_CONFIG.image_size}, seed=0) "
                 f"(factors shape, scale, rotation, pos_x, pos_y) [profile {profile.name}]")
    seen = {"train": f"toys.shapes({n_train}, size={SHAPES_CONFIG.image_size}, seed=0)",
            "heldout": f"toys.shapes({SHAPES_EVAL['n']}, size={SHAPES_EVAL['size']}, seed={SHAPES_EVAL['seed']})"}
    return sweep, card_info(description, data_line, steps, metrics, seen)
