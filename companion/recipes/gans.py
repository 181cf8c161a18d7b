"""Recipe of the shipped DCGAN generator ``dcgan_mnist`` (chapter 14). The architecture the chapter quotes lives
here: :data:`DCGAN_CONFIG`.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import data
from ..gan import DCGANConfig, Discriminator, Generator, class_coverage, sample
from ..profile import Profile
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
