"""Recipes of chapter 16's checkpoints: the class-conditional ``cgan_mnist`` (projection discriminator,
conditional batch norm), the style-based ``stylegan_mnist`` and ``vqgan_mnist`` (the decoder of ``vqvae_mnist``
fine-tuned with a patch discriminator and a perceptual loss). The architectures the chapter quotes live here:
:data:`CGAN_CONFIG`, :data:`STYLE_CONFIG`, :data:`STYLE_D_CHANNELS`, :data:`VQGAN_PATCH_CHANNELS`.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from .. import data, evaluation
from ..cnn import LeNet
from ..cond_gan import (
    CondGANConfig,
    CondGenerator,
    PatchDiscriminator,
    ProjectionDiscriminator,
    StyleConfig,
    StyleDiscriminator,
    StyleGenerator,
    orthogonal_penalty,
    sample_conditional,
    sharpness,
)
from ..profile import Profile, seed_everything
from ..train import History, train_gan, train_vqgan
from ..vqvae import VQVAE
from ._common import card_info, load_shipped, shipped_sha256
from .classifiers import build_lenet_mnist
from .flow_matching import class_agreement
from .vqvae import build_vqvae_mnist

#: ``cgan_mnist``: a 64-dimensional latent, 32 channels at 14x14 (64 at 7x7) on both sides, spectral norm in D, the
#: one-hot label also concatenated to z, self-attention at 7x7 on both sides (BigGAN's recipe, scaled down).
CGAN_CONFIG = CondGANConfig(latent_dim=64, g_channels=32, d_channels=32, spectral=True, concat_label=True,
                            attention=True)
CGAN_STEPS = {"ci": 20, "cpu": 10000, "gpu": 20000}
CGAN_LR, CGAN_BETAS, BATCH = 2e-4, (0.5, 0.999), 64
#: BigGAN's training choices: the hinge loss, orthogonal regularisation of G (beta) and an average of G's weights
CGAN_LOSS, CGAN_ORTHO, CGAN_EMA = "hinge", 1e-4, 0.999
#: ``stylegan_mnist``: z and w of 64, a three-layer mapping network (learning rate x 0.01), 32/32/16 channels at
#: 7/14/28 pixels, against a :class:`StyleDiscriminator` (32 and 64 channels, minibatch stddev over groups of 4),
#: non-saturating loss with R1, batch 64.
STYLE_CONFIG = StyleConfig(latent_dim=64, w_dim=64, mapping_depth=3, channels=(32, 32, 16), mixing=0.5)
STYLE_D_CHANNELS, STYLE_GROUP = 32, 4
STYLE_STEPS = {"ci": 20, "cpu": 4000, "gpu": 20000}
STYLE_LR, STYLE_BETAS, STYLE_R1, STYLE_BATCH = 1e-3, (0.0, 0.99), 1.0, 64
#: ``vqgan_mnist``: the patch discriminator's width, the loss weights and the fine-tuning steps.
VQGAN_PATCH_CHANNELS = 16
VQGAN_STEPS = {"ci": 10, "cpu": 600, "gpu": 5000}
VQGAN_PERCEPTUAL, VQGAN_GAN_WEIGHT, VQGAN_LR = 1.0, 0.5, 2e-4
#: how the cards' samples are drawn (balanced labels i % 10 for the conditional model)
CARD_SEED = 1234


def build_cgan_mnist() -> CondGenerator:
    """The untrained model of checkpoint ``cgan_mnist``: ``CondGenerator(CGAN_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return CondGenerator(CGAN_CONFIG)


def build_stylegan_mnist() -> StyleGenerator:
    """The untrained model of checkpoint ``stylegan_mnist``: ``StyleGenerator(STYLE_CONFIG)`` (seed 0)."""
    torch.manual_seed(0)
    return StyleGenerator(STYLE_CONFIG)


def build_vqgan_mnist() -> VQVAE:
    """The model of checkpoint ``vqgan_mnist``: the architecture of ``vqvae_mnist``."""
    return build_vqvae_mnist()


def reference_sets(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of ``evaluation.REFERENCE`` and of ``evaluation.FLOOR`` (held out by every model)."""
    x = data.mnist("test").tensors[0]
    return x[evaluation.REFERENCE][:n], x[evaluation.FLOOR][:n]


def conditional_report(G: nn.Module, n: int, truncation: float | None = None,
                       judge: nn.Module | None = None) -> dict[str, Any]:
    """Card metrics of a class-conditional generator: ``n`` samples with labels ``i % 10`` (z seed
    :data:`CARD_SEED`, optional truncation threshold) scored by chapter 13's protocol (FLD, KID, precision, recall
    against the reference, next to the floor) and the share ``lenet_mnist`` classifies as their label."""
    labels = torch.arange(n) % 10
    x = sample_conditional(G, labels, seed=CARD_SEED, truncation=truncation)
    ref, floor = reference_sets(n)
    m = evaluation.sample_metrics(x, ref)
    return {"class_agreement": round(class_agreement(x, labels, judge), 4), "fld": round(m["fld"], 4),
            "fld_real_floor": round(evaluation.fld(floor, ref), 4), "kid": round(m["kid"], 5),
            "precision": round(m["precision"], 4), "recall": round(m["recall"], 4), "eval_n": n}


def train_cgan_mnist(profile: Profile) -> tuple[CondGenerator, dict[str, Any]]:
    """Train checkpoint ``cgan_mnist``: :class:`CondGenerator` against a :class:`ProjectionDiscriminator` (both
    with self-attention at 7x7) with the hinge loss (:data:`CGAN_LOSS`), BigGAN's orthogonal regularisation of the
    generator (beta :data:`CGAN_ORTHO`) and an average of its weights (decay :data:`CGAN_EMA`, the shipped weights),
    Adam (lr 2e-4, betas 0.5, 0.999), one D step per G step, batch 64, seed 0; fake labels uniform over the ten
    digits; only the generator ships. Metrics: :func:`conditional_report` at N = 1,000."""
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps = CGAN_STEPS[profile.name]
    G = build_cgan_mnist()
    torch.manual_seed(1)
    D = ProjectionDiscriminator(CGAN_CONFIG)
    started = time.perf_counter()
    history = train_gan(G, D, train, steps=steps, conditional=True, loss=CGAN_LOSS, lr=CGAN_LR, betas=CGAN_BETAS,
                        batch_size=BATCH, g_penalty=(lambda m: orthogonal_penalty(m, CGAN_ORTHO)) if CGAN_ORTHO else None,
                        ema=CGAN_EMA, seed=profile.seed, device=profile.device, desc=f"cgan_mnist ({profile.name})",
                        log_every=50)
    minutes = (time.perf_counter() - started) / 60
    G = G.cpu().eval()
    n = 200 if profile.is_ci else evaluation.EVAL_N
    m = conditional_report(G, n)
    c = CGAN_CONFIG
    last = history.train[-2]
    attn = " -> self-attention" if c.attention else ""
    description = (f"class-conditional GAN on MNIST, chapter 16: generator [z ~ N(0, I) of dimension {c.latent_dim}, "
                   f"one-hot label] -> Linear -> {2 * c.g_channels}x7x7 -> class-conditional BN, ReLU{attn} -> ConvT "
                   f"4x4/2 -> {c.g_channels}x14x14 -> class-conditional BN, ReLU -> ConvT 4x4/2 -> 1x28x28, sigmoid; "
                   f"trained against a projection discriminator (Miyato & Koyama 2018: spectrally normalised "
                   f"convolutions with {c.d_channels} and {2 * c.d_channels} channels{attn}, logit psi(phi(x)) + "
                   f"<embed(y), phi(x)>) with the {CGAN_LOSS} loss, orthogonal regularisation of G (beta "
                   f"{CGAN_ORTHO:g}), Adam lr {CGAN_LR:g}, betas {CGAN_BETAS}, one D step per G step, batch {BATCH}, "
                   f"{steps} steps over {len(train)} labelled images, seed {profile.seed}; {minutes:.1f} min of "
                   f"training; the generator's weights averaged with decay {CGAN_EMA} ship (only the generator). "
                   f"Metrics on {n} samples (labels i % 10, "
                   f"z seed {CARD_SEED}, no truncation): class_agreement = share lenet_mnist (sha256 "
                   f"{shipped_sha256('lenet_mnist')}) classifies as their label; FLD, KID, precision, recall against "
                   f"the first {n} images of MNIST-test[8000:10000:2] in the mnist_features space, fld_real_floor = "
                   f"FLD of as many of MNIST-test[8001:10000:2]. Final D(x) {last['d_real']:.3f}, D(G(z)) "
                   f"{last['d_fake']:.3f}.")
    return G, card_info(description, desc, steps, m, splits.info)


def train_stylegan_mnist(profile: Profile) -> tuple[StyleGenerator, dict[str, Any]]:
    """Train checkpoint ``stylegan_mnist``: :class:`StyleGenerator` against a :class:`StyleDiscriminator`,
    non-saturating loss with R1 (gamma :data:`STYLE_R1`), Adam (lr :data:`STYLE_LR`, the mapping's x 0.01, betas
    (0, 0.99)), batch 64, style mixing with probability 0.5, seed 0; only the generator ships. Metrics (chapter
    13's protocol at N = 1,000, psi = 1 and psi = 0.7 in W)."""
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps = STYLE_STEPS[profile.name]
    G = build_stylegan_mnist()
    started = time.perf_counter()
    history = train_style_pair(G, train, steps, seed=profile.seed, device=profile.device,
                               desc=f"stylegan_mnist ({profile.name})")
    minutes = (time.perf_counter() - started) / 60
    G = G.cpu().eval()
    n = 200 if profile.is_ci else evaluation.EVAL_N
    m = style_report(G, n)
    c = STYLE_CONFIG
    last = history.train[-2]
    description = (f"style-based generator on MNIST, chapter 16 (StyleGAN2's ideas, scaled down): mapping network "
                   f"of {c.mapping_depth} layers z ({c.latent_dim}) -> w ({c.w_dim}), He-initialised, learning rate x "
                   f"{c.mapping_lr_multiplier:g}; synthesis from a learned "
                   f"constant {c.channels[0]}x7x7 through five modulated/demodulated 3x3 convolutions "
                   f"({c.channels} channels at 7/14/28 pixels, nearest up-sampling, per-pixel noise) and a modulated "
                   f"1x1 output layer, sigmoid; style mixing probability {c.mixing}; trained against a batch-norm-free "
                   f"discriminator ({STYLE_D_CHANNELS} and {2 * STYLE_D_CHANNELS} channels, minibatch stddev over "
                   f"groups of {STYLE_GROUP}, one more 3x3 convolution) "
                   f"with the non-saturating loss and R1 (gamma {STYLE_R1:g}), Adam lr {STYLE_LR:g}, betas "
                   f"{STYLE_BETAS}, batch {STYLE_BATCH}, {steps} steps over {len(train)} images, seed {profile.seed}; "
                   f"{minutes:.1f} min of training; only the generator ships. Metrics on {n} samples (z seed "
                   f"{CARD_SEED}): FLD, KID, precision, recall against the first {n} images of "
                   f"MNIST-test[8000:10000:2] in the mnist_features space at psi = 1 (fld) and psi = 0.7 in W "
                   f"(fld_psi07), fld_real_floor = FLD of as many of MNIST-test[8001:10000:2]; min_class_share from "
                   f"lenet_mnist. Final D(x) {last['d_real']:.3f}, D(G(z)) {last['d_fake']:.3f}.")
    return G, card_info(description, desc, steps, m, splits.info)


@torch.no_grad()
def pytorch_default_init_(G: StyleGenerator) -> StyleGenerator:
    """Reset ``G``'s mapping network and style affines to PyTorch's default ``nn.Linear`` initialisation (uniform,
    variance ``1 / (3 fan_in)``; the affines keep their bias of 1), in place: the initialisation chapter 16 compares
    with :class:`companion.cond_gan.MappingNetwork`'s He initialisation. Returns ``G``."""
    for weight, bias in zip(G.mapping.weights, G.mapping.biases):
        lin = nn.Linear(weight.shape[1], weight.shape[0])
        weight.copy_(lin.weight / G.mapping.lr_multiplier)
        bias.copy_(lin.bias / G.mapping.lr_multiplier)
    for layer in [*G.layers, G.to_image]:
        layer.affine.weight.copy_(nn.Linear(layer.affine.in_features, layer.affine.out_features).weight)
    return G


def train_style_pair(G: StyleGenerator, data_: Any, steps: int, seed: int = 0, device: str = "cpu",
                     desc: str = "stylegan_mnist", log_every: int = 50) -> History:
    """Train ``G`` with ``stylegan_mnist``'s recipe for ``steps`` steps: against a fresh :class:`StyleDiscriminator`
    (seed 1), non-saturating loss with R1 (:data:`STYLE_R1`), Adam (:data:`STYLE_LR`, :data:`STYLE_BETAS`), batch
    :data:`STYLE_BATCH`. Returns the training :class:`companion.train.History`."""
    torch.manual_seed(1)
    D = StyleDiscriminator(STYLE_D_CHANNELS, STYLE_GROUP)
    return train_gan(G, D, data_, steps=steps, loss="non_saturating", penalty="r1", penalty_weight=STYLE_R1,
                     lr=STYLE_LR, betas=STYLE_BETAS, batch_size=STYLE_BATCH, seed=seed, device=device, desc=desc,
                     log_every=log_every)


@torch.no_grad()
def style_samples(G: StyleGenerator, n: int, psi: float = 1.0, seed: int = CARD_SEED) -> torch.Tensor:
    """``n`` samples of a :class:`StyleGenerator` with truncation ``psi`` in W (z seed ``seed``), eval mode."""
    z = torch.randn(n, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    was = G.training
    G.eval()
    x = torch.cat([G(zb, psi=psi) for zb in z.split(500)])
    G.train(was)
    return x


def style_report(G: StyleGenerator, n: int) -> dict[str, Any]:
    """Card metrics of ``stylegan_mnist``: FLD, KID, precision, recall at psi = 1, FLD at psi = 0.7, the floor,
    and the smallest share of any digit (``lenet_mnist``)."""
    ref, floor = reference_sets(n)
    x = style_samples(G, n)
    m = evaluation.sample_metrics(x, ref)
    judge = load_shipped("lenet_mnist", build_lenet_mnist)
    share = torch.bincount(judge(x).argmax(1), minlength=10).float() / n
    return {"fld": round(m["fld"], 4), "fld_psi07": round(evaluation.fld(style_samples(G, n, 0.7), ref), 4),
            "fld_real_floor": round(evaluation.fld(floor, ref), 4), "kid": round(m["kid"], 5),
            "precision": round(m["precision"], 4), "recall": round(m["recall"], 4),
            "min_class_share": round(float(share.min()), 4), "eval_n": n}


def lenet_features(lenet: LeNet) -> nn.Module:
    """The perceptual feature map of VQGAN's loss here: the frozen convolutional stack of ``lenet_mnist``
    (``[B, 1, 28, 28] -> [B, 16, 5, 5]``)."""
    feats = lenet.features.eval()
    for p in feats.parameters():
        p.requires_grad_(False)
    return feats


@torch.no_grad()
def reconstruction_report(model: VQVAE, x: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """How a VQ autoencoder reconstructs held-out ``x``: per-pixel MSE and L1, the sharpness ratio (mean
    :func:`companion.cond_gan.sharpness` of the reconstructions over that of ``x``; 1 is as sharp as the data) and
    the FLD of the reconstructions against ``reference``."""
    r = torch.cat([model.reconstruct(xb) for xb in x.split(500)])
    return {"mse": round(float((r - x).pow(2).mean()), 5), "l1": round(float((r - x).abs().mean()), 5),
            "sharpness_ratio": round(float(sharpness(r).mean() / sharpness(x).mean()), 4),
            "fld": round(evaluation.fld(r, reference), 4)}


def train_vqgan_mnist(profile: Profile) -> tuple[VQVAE, dict[str, Any]]:
    """Train checkpoint ``vqgan_mnist``: the shipped ``vqvae_mnist`` with its encoder and codebook frozen and its
    decoder fine-tuned by :func:`companion.train.train_vqgan` (L1 + perceptual loss in ``lenet_mnist``'s conv
    features + adaptive-weighted patch-GAN loss). Metrics: :func:`reconstruction_report` on 1,000 images of
    MNIST-test[8001:10000:2] (FLD against MNIST-test[8000:10000:2]) for this model and for ``vqvae_mnist``."""
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps = VQGAN_STEPS[profile.name]
    seed_everything(profile.seed)
    base = load_shipped("vqvae_mnist", build_vqvae_mnist)
    model = load_shipped("vqvae_mnist", build_vqvae_mnist)
    feats = lenet_features(load_shipped("lenet_mnist", build_lenet_mnist))
    torch.manual_seed(1)
    D = PatchDiscriminator(VQGAN_PATCH_CHANNELS)
    started = time.perf_counter()
    history = train_vqgan(model, D, feats, train, steps=steps, perceptual_weight=VQGAN_PERCEPTUAL,
                          gan_weight=VQGAN_GAN_WEIGHT, lr=VQGAN_LR, batch_size=BATCH, seed=profile.seed,
                          device=profile.device, desc=f"vqgan_mnist ({profile.name})", log_every=50)
    minutes = (time.perf_counter() - started) / 60
    model = model.cpu().eval()
    n = 200 if profile.is_ci else evaluation.EVAL_N
    ref, floor = reference_sets(n)
    ours, plain = reconstruction_report(model, floor, ref), reconstruction_report(base, floor, ref)
    m = {**ours, **{f"vqvae_{k}": v for k, v in plain.items()}, "eval_n": n,
         "final_lambda": round(history.train[-2]["lambda"], 4)}
    description = (f"VQGAN decoder on MNIST, chapter 16 (Esser et al. 2021's losses on chapter 12's VQ-VAE): "
                   f"vqvae_mnist (sha256 {shipped_sha256('vqvae_mnist')}) with encoder and codebook frozen, so its "
                   f"49 codes per image and vqvae_prior_mnist stay valid; the decoder fine-tuned for {steps} steps "
                   f"(Adam lr {VQGAN_LR:g}, betas (0.5, 0.9), batch {BATCH}, {len(train)} images, seed "
                   f"{profile.seed}; {minutes:.1f} min) on L1 + {VQGAN_PERCEPTUAL:g} x perceptual (squared distance "
                   f"of lenet_mnist's convolutional features) + {VQGAN_GAN_WEIGHT:g} x adaptive weight x "
                   f"non-saturating loss against a spectrally normalised 7x7 patch discriminator "
                   f"({VQGAN_PATCH_CHANNELS} and {2 * VQGAN_PATCH_CHANNELS} channels). Metrics on {n} held-out images "
                   f"MNIST-test[8001:10000:2]: per-pixel MSE and L1 of the reconstructions, sharpness_ratio = mean "
                   f"squared Laplacian of the reconstructions over that of the originals, FLD of the reconstructions "
                   f"against MNIST-test[8000:10000:2]; the same for vqvae_mnist as vqvae_*.")
    return model, card_info(description, desc, steps, m, splits.info)
