"""Recipes of the shipped GAN generators: ``dcgan_mnist`` (chapter 14) and ``wgangp_mnist`` (chapter 15). The
architectures the chapters quote live here: :data:`DCGAN_CONFIG`, :data:`WGANGP_CRITIC`.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import data, evaluation
from ..gan import DCGANConfig, Discriminator, Generator, class_coverage, sample
from ..profile import Profile
from ..stable_gan import Critic, StableGANConfig
from ..train import train_gan
from . import classifiers
from ._common import card_info, load_shipped, shipped_sha256

#: ``dcgan_mnist``: a 64-dimensional latent, 32 channels at 14x14 (64 at 7x7) in both players.
DCGAN_CONFIG = DCGANConfig(latent_dim=64, g_channels=32, d_channels=32)
DCGAN_STEPS = {"ci": 40, "cpu": 5000, "gpu": 10000}
BATCH = 64
LR = 2e-4
#: samples the card's metrics are measured on (drawn with seed 1234 by :func:`companion.gan.sample`)
EVAL_SAMPLES = {"n": 2000, "seed": 1234}


def build_dcgan_mnist() -> Generator:
    """The untrained model of checkpoint ``dcgan_mnist``: ``Generator(DCGAN_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return Generator(DCGAN_CONFIG)


def train_dcgan_mnist(profile: Profile) -> tuple[Generator, dict[str, Any]]:
    """Train checkpoint ``dcgan_mnist``: a DCGAN with the non-saturating loss, Adam (lr 2e-4, betas 0.5, 0.999)
    for both players, one discriminator step per generator step, batch 64, seed 0; only the generator ships.

    Metrics: the shipped ``lenet_mnist`` (hash-verified; its sha256 goes on the card) classifies
    :data:`EVAL_SAMPLES` samples: the share of each digit, the smallest share, how many digits take at least 5 %,
    and the mean top-class probability (confidence).
    """
    lenet = load_shipped("lenet_mnist", classifiers.build_lenet_mnist)
    lenet_sha = shipped_sha256("lenet_mnist")
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps = DCGAN_STEPS[profile.name]
    G = build_dcgan_mnist()
    torch.manual_seed(1)
    D = Discriminator(DCGAN_CONFIG)
    history = train_gan(G, D, train, steps=steps, loss="non_saturating", lr=LR, betas=(0.5, 0.999),
                        batch_size=BATCH, seed=profile.seed, device=profile.device,
                        desc=f"dcgan_mnist ({profile.name})", log_every=50)
    G = G.cpu().eval()
    m = class_coverage(sample(G, **EVAL_SAMPLES), lenet)
    c = DCGAN_CONFIG
    description = (f"DCGAN generator on MNIST, chapter 14: z ~ N(0, I) of dimension {c.latent_dim} -> Linear -> "
                   f"{2 * c.g_channels}x7x7 -> BN, ReLU -> ConvT 4x4/2 -> {c.g_channels}x14x14 -> BN, ReLU -> "
                   f"ConvT 4x4/2 -> 1x28x28, sigmoid; trained against a DCGAN discriminator ({c.d_channels} and "
                   f"{2 * c.d_channels} channels, leaky ReLU, BN) with the non-saturating loss, Adam lr {LR:g}, "
                   f"betas (0.5, 0.999), one D step per G step, batch {BATCH}, {steps} steps over {len(train)} "
                   f"images, seed {profile.seed}; only the generator ships. Metrics on {EVAL_SAMPLES['n']} samples "
                   f"(seed {EVAL_SAMPLES['seed']}) classified by lenet_mnist (sha256 {lenet_sha}): class_share per "
                   f"digit, min_class_share, classes_at_least_5pct, mean_confidence (top softmax probability). "
                   f"Final D(x) {history.train[-2]['d_real']:.3f}, D(G(z)) {history.train[-2]['d_fake']:.3f}.")
    return G, card_info(description, desc, steps,
                        {"class_share": [round(s, 4) for s in m["share"]], "min_class_share": round(m["min_share"], 4),
                         "classes_at_least_5pct": m["classes_covered"],
                         "mean_confidence": round(m["confidence"], 4), "samples": m["n"]}, splits.info)


# ----------------------------------------------------------------------------------------------
# wgangp_mnist (chapter 15)
# ----------------------------------------------------------------------------------------------

#: ``wgangp_mnist``: the generator of ``dcgan_mnist`` (same :data:`DCGAN_CONFIG`), trained against a batch-norm-free
#: :class:`companion.stable_gan.Critic` with 32 and 64 channels.
WGANGP_CRITIC = StableGANConfig(latent_dim=DCGAN_CONFIG.latent_dim, d_channels=32)
WGANGP_STEPS = {"ci": 20, "cpu": 4000, "gpu": 10000}
#: WGAN-GP's hyper-parameters (Gulrajani et al. 2017, Algorithm 1: lambda 10, five critic steps per generator
#: step, Adam with beta1 = 0 or 0.5 and beta2 = 0.9).
WGANGP_LR, WGANGP_BETAS, WGANGP_D_STEPS, WGANGP_LAMBDA = 2e-4, (0.5, 0.9), 5, 10.0
#: the shipped generator is the exponential moving average of its weights (decay; Karras et al. 2018, Brock et al. 2019)
WGANGP_EMA = 0.999


def build_wgangp_mnist() -> Generator:
    """The untrained model of checkpoint ``wgangp_mnist``: ``Generator(DCGAN_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return Generator(DCGAN_CONFIG)


def sample_report(G: torch.nn.Module, lenet: torch.nn.Module) -> dict[str, Any]:
    """The card metrics of a shipped MNIST generator: chapter 13's protocol (FLD, KID, precision, recall at
    ``evaluation.EVAL_N`` samples against ``evaluation.REFERENCE``, next to the real-data floor) and chapter 14's
    class coverage (:data:`EVAL_SAMPLES` samples classified by ``lenet``)."""
    x_test = data.mnist("test").tensors[0]
    ref, floor = x_test[evaluation.REFERENCE], x_test[evaluation.FLOOR]
    n = evaluation.EVAL_N
    m = evaluation.sample_metrics(sample(G, n, seed=EVAL_SAMPLES["seed"]), ref[:n])
    floor_fld = evaluation.fld(floor[:n], ref[:n])
    cov = class_coverage(sample(G, **EVAL_SAMPLES), lenet)
    return {"fld": round(m["fld"], 4), "fld_real_floor": round(floor_fld, 4), "kid": round(m["kid"], 5),
            "precision": round(m["precision"], 4), "recall": round(m["recall"], 4), "eval_n": n,
            "class_share": [round(s, 4) for s in cov["share"]], "min_class_share": round(cov["min_share"], 4),
            "classes_at_least_5pct": cov["classes_covered"], "mean_confidence": round(cov["confidence"], 4),
            "samples": cov["n"]}


def train_wgangp_mnist(profile: Profile) -> tuple[Generator, dict[str, Any]]:
    """Train checkpoint ``wgangp_mnist``: the DCGAN generator against a batch-norm-free critic with the Wasserstein
    loss and the gradient penalty on random interpolates (lambda 10), five critic steps per generator step, Adam
    (lr 2e-4, betas 0.5, 0.9) for both, batch 64, seed 0; only the generator ships, with its weights averaged over
    the run (decay :data:`WGANGP_EMA`).

    Metrics (:func:`sample_report`): FLD, KID, precision and recall at N = 1,000 against MNIST-test[8000:10000:2]
    with the real-data floor, and the class coverage of 2,000 samples read by the shipped ``lenet_mnist``.
    """
    lenet = load_shipped("lenet_mnist", classifiers.build_lenet_mnist)
    lenet_sha = shipped_sha256("lenet_mnist")
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps = WGANGP_STEPS[profile.name]
    G = build_wgangp_mnist()
    torch.manual_seed(1)
    D = Critic(WGANGP_CRITIC)
    history = train_gan(G, D, train, steps=steps, d_steps=WGANGP_D_STEPS, loss="wasserstein", penalty="gp",
                        penalty_weight=WGANGP_LAMBDA, lr=WGANGP_LR, betas=WGANGP_BETAS, batch_size=BATCH,
                        ema=WGANGP_EMA, seed=profile.seed, device=profile.device, desc=f"wgangp_mnist ({profile.name})",
                        log_every=50)
    G = G.cpu().eval()
    m = sample_report(G, lenet)
    c = DCGAN_CONFIG
    last = history.train[-2]
    description = (f"WGAN-GP generator on MNIST, chapter 15: the dcgan_mnist architecture (z ~ N(0, I) of dimension "
                   f"{c.latent_dim} -> Linear -> {2 * c.g_channels}x7x7 -> BN, ReLU -> ConvT 4x4/2 -> "
                   f"{c.g_channels}x14x14 -> BN, ReLU -> ConvT 4x4/2 -> 1x28x28, sigmoid), trained against a critic "
                   f"without batch norm ({WGANGP_CRITIC.d_channels} and {2 * WGANGP_CRITIC.d_channels} channels, "
                   f"leaky ReLU) with the Wasserstein loss and a gradient penalty on random interpolates (lambda "
                   f"{WGANGP_LAMBDA:g}), {WGANGP_D_STEPS} critic steps per generator step, Adam lr {WGANGP_LR:g}, "
                   f"betas {WGANGP_BETAS}, batch {BATCH}, {steps} generator steps over {len(train)} images, seed "
                   f"{profile.seed}; only the generator ships, its weights averaged with decay {WGANGP_EMA}. "
                   f"Metrics: FLD, KID, precision, recall of "
                   f"{m['eval_n']} samples (seed {EVAL_SAMPLES['seed']}) against MNIST-test[8000:10000:2] in the "
                   f"mnist_features space, fld_real_floor = FLD of MNIST-test[8001:10000:2] against the same "
                   f"reference; class coverage of {EVAL_SAMPLES['n']} samples classified by lenet_mnist (sha256 "
                   f"{lenet_sha}). Final critic estimate of W1 {last['score_real'] - last['score_fake']:.3f}, "
                   f"penalty {last['penalty']:.3f}.")
    return G, card_info(description, desc, steps, m, splits.info)
