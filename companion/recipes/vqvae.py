"""Recipes of the shipped VQ-VAE ``vqvae_mnist`` and its autoregressive code prior ``vqvae_prior_mnist``
(chapter 12). The architectures the chapter quotes live here: :data:`VQVAE_CONFIG` and :data:`PRIOR_CONFIG`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import data
from ..profile import Profile
from ..train import train_prior, train_vqvae
from ..vqvae import (
    VQVAE,
    CodePrior,
    PriorConfig,
    VQVAEConfig,
    evaluate_prior,
    evaluate_vqvae,
    prior_loss,
    tokenize,
    vqvae_loss,
)
from ._common import card_info, check_unseen, load_shipped, shipped_sha256

#: ``vqvae_mnist``: 64 channels, one residual block per side, K = 128 codes of D = 16, dead-code reset.
VQVAE_CONFIG = VQVAEConfig(hidden=64, res_blocks=1, code_dim=16, num_codes=128, reset_dead=True)
#: ``vqvae_prior_mnist``, the prior over its 7x7 codes: D = 64, two blocks, four heads, MLP ratio 2.
PRIOR_CONFIG = PriorConfig(num_codes=VQVAE_CONFIG.num_codes, dim=64, depth=2, heads=4, mlp_ratio=2.0)
VQVAE_STEPS = {"ci": 60, "cpu": 2000, "gpu": 8000}
PRIOR_STEPS = {"ci": 60, "cpu": 1500, "gpu": 8000}
BATCH = 64


def build_vqvae_mnist() -> VQVAE:
    """The untrained model of checkpoint ``vqvae_mnist``: ``VQVAE(VQVAE_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return VQVAE(VQVAE_CONFIG)


def train_vqvae_mnist(profile: Profile) -> tuple[VQVAE, dict[str, Any]]:
    """Train checkpoint ``vqvae_mnist``: Adam (lr 2e-3), warm-up then cosine decay, batch 64, seed 0.

    Metrics on the held-out split: codebook usage, perplexity, reconstruction MSE and BCE per pixel.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    steps = VQVAE_STEPS[profile.name]
    model = build_vqvae_mnist()
    history = train_vqvae(model, train, vqvae_loss, steps=steps, batch_size=BATCH, lr=2e-3, seed=profile.seed,
                          device=profile.device, desc=f"vqvae_mnist ({profile.name})")
    model = model.cpu().eval()
    m = evaluate_vqvae(model, test.tensors[0])
    c = VQVAE_CONFIG
    description = (f"VQ-VAE on MNIST, chapter 12: conv encoder 28x28 -> 7x7 grid of D={c.code_dim} vectors "
                   f"({c.hidden} channels, {c.res_blocks} residual block per side), K={c.num_codes} codes, "
                   f"beta={c.beta}, codebook learned by gradient, dead-code reset after {c.dead_threshold} unused "
                   f"batches ({int(model.quantizer.resets)} resets); Bernoulli decoder; Adam lr 2e-3, warm-up + "
                   f"cosine, batch {BATCH}, {steps} steps over {len(train)} images, seed {profile.seed}. Metrics on "
                   f"the held-out split ({len(test)} images): codebook_usage and perplexity of the codes chosen for "
                   f"them, per-pixel reconstruction MSE and BCE.")
    return model, card_info(description, desc, history.train[-1]["step"],
                            {"codebook_usage": round(m["usage"], 4), "perplexity": round(m["perplexity"], 2),
                             "test_mse": round(m["mse"], 5), "test_bce": round(m["bce"], 5)}, splits.info)


def build_vqvae_prior_mnist() -> CodePrior:
    """The untrained model of checkpoint ``vqvae_prior_mnist``: ``CodePrior(PRIOR_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return CodePrior(PRIOR_CONFIG)


def train_vqvae_prior_mnist(profile: Profile) -> tuple[CodePrior, dict[str, Any]]:
    """Train checkpoint ``vqvae_prior_mnist``: a causal transformer over the codes of the shipped ``vqvae_mnist``.

    Loads the shipped ``vqvae_mnist`` (hash-verified; its sha256 goes on the card), encodes the training images to
    7x7 code grids, and trains with AdamW (lr 1e-3, weight decay 0.01), warm-up then cosine decay, batch 64,
    seed 0. Metric: held-out negative log-likelihood in bits per image (49 tokens) against the uniform prior's
    ``49 log2 K``.
    """
    vq = load_shipped("vqvae_mnist", build_vqvae_mnist)
    vq_sha = shipped_sha256("vqvae_mnist")
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, test, desc = splits
    check_unseen(splits.info["heldout"], "vqvae_mnist")  # its codes of images the encoder saw are not held out
    train_idx, test_idx = tokenize(vq, train.tensors[0]), tokenize(vq, test.tensors[0])
    steps = PRIOR_STEPS[profile.name]
    model = build_vqvae_prior_mnist()
    history = train_prior(model, train_idx, prior_loss, steps=steps, batch_size=BATCH, lr=1e-3, seed=profile.seed,
                          device=profile.device, desc=f"vqvae_prior_mnist ({profile.name})")
    model = model.cpu().eval()
    m = evaluate_prior(model, test_idx)
    c = PRIOR_CONFIG
    uniform = c.seq_len * math.log2(c.num_codes)
    description = (f"Autoregressive prior over the 7x7 codes of vqvae_mnist (sha256 {vq_sha}), chapter 12: a "
                   f"causal transformer (GPT) over the 49 tokens in raster order with a BOS token, D={c.dim}, "
                   f"{c.depth} pre-LN blocks, {c.heads} heads, MLP ratio {c.mlp_ratio:g}, learned positions; "
                   f"AdamW lr 1e-3, wd 0.01, warm-up + cosine, batch {BATCH}, {steps} steps over the codes of "
                   f"{len(train)} images, seed {profile.seed}. Metric: held-out NLL of the codes of {len(test)} "
                   f"images in bits per image (uniform prior: {uniform:.1f} bits).")
    return model, card_info(description, desc + f"; codes from vqvae_mnist sha256 {vq_sha[:12]}",
                            history.train[-1]["step"],
                            {"test_bits_per_image": round(m["bits_per_image"], 2),
                             "test_nats_per_token": round(m["nats_per_token"], 4),
                             "uniform_bits_per_image": round(uniform, 2)}, splits.info)
