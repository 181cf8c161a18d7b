"""Recipes of chapter 20's latent diffusion: the autoencoder ``latent_ae_mnist`` and the DiT ``latent_dit_mnist``.

The configurations, schedules and evaluation protocol the chapter quotes live here: :data:`AE_CONFIG`,
:data:`AE_STEPS`, :data:`AE_BATCH`, :data:`AE_LR`; :data:`DIT_CONFIG`, :data:`DIT_STEPS`, :data:`BATCH`,
:data:`LR`, :data:`EMA`; :data:`CARD_SAMPLER`, :data:`CARD_STEPS`, :data:`CARD_GUIDANCE`, :data:`CARD_N`.
``latent_dit_mnist`` carries a copy of ``latent_ae_mnist`` (frozen) and the scale factor measured on its
training latents, so one checkpoint decodes its own samples.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import data, evaluation
from ..dit import DiT, DiTConfig
from ..latent_diffusion import (
    LatentAEConfig,
    LatentAutoencoder,
    LatentDiffusion,
    decode_latents,
    encode_latents,
    latent_statistics,
)
from ..profile import Profile, seed_everything
from ..train import History, TensorBatches, train_model
from ._common import card_info, load_shipped, shipped_sha256
from .diffusion import reference_sets
from .flow_matching import class_agreement, fit_flow

#: ``latent_ae_mnist``: 28x28 digits to a 4 x 7 x 7 latent (two stride-2 stages, widths 32/64), KL weight 1e-3.
AE_CONFIG = LatentAEConfig()
AE_STEPS = {"ci": 3, "cpu": 800, "gpu": 5000}
AE_BATCH = 64
AE_LR = 2e-3
#: ``latent_dit_mnist``: a DiT over the 49 latent positions (patch 1), width 96, 4 blocks, 4 heads, 2-D RoPE.
DIT_CONFIG = DiTConfig()
DIT_STEPS = {"ci": 3, "cpu": 1200, "gpu": 20000}
BATCH = 64
LR = 1e-3
EMA = 0.995
#: how the card's samples are drawn: flow Heun on this many steps, classifier-free guidance scale
CARD_SAMPLER = "heun"
CARD_STEPS = {"ci": 2, "cpu": 10, "gpu": 10}
CARD_GUIDANCE = 1.5
CARD_N = {"ci": 64, "cpu": evaluation.EVAL_N, "gpu": evaluation.EVAL_N}
CARD_SEED = 0


def build_latent_ae_mnist() -> LatentAutoencoder:
    """The untrained model of checkpoint ``latent_ae_mnist`` (seed 0). Introduced in chapter 20."""
    torch.manual_seed(0)
    return LatentAutoencoder(AE_CONFIG)


def build_latent_dit_mnist() -> LatentDiffusion:
    """The model of checkpoint ``latent_dit_mnist``: a DiT in the latent of a ``latent_ae_mnist``. Chapter 20."""
    ae = build_latent_ae_mnist()
    torch.manual_seed(0)
    return LatentDiffusion(ae, DiT(DIT_CONFIG), num_classes=10)


def fit_autoencoder(model: LatentAutoencoder, images: torch.Tensor, *, steps: int, batch_size: int = AE_BATCH,
                    lr: float = AE_LR, seed: int = 0, device: str | torch.device | None = None,
                    desc: str = "latent autoencoder", log_every: int = 10, progress: bool = True) -> History:
    """Train ``model`` with its loss (reconstruction + ``kl_weight`` KL) on ``images`` in ``[0, 1]``.

    Adam, the learning rate cosine-decayed from ``lr`` to 0, shuffled batches (seed ``seed``), the posterior
    samples from a generator seeded ``seed + 1``. Returns the :class:`companion.train.History`.
    """
    g = torch.Generator().manual_seed(seed + 1)

    def loss_fn(m: LatentAutoencoder, batch: tuple[torch.Tensor]) -> torch.Tensor:
        return m.loss(batch[0], g)

    if device is not None:
        model.to(device)
    return train_model(model, TensorBatches(images.float(), batch_size, seed), loss_fn, steps=steps, lr=lr,
                       optimizer="adam", schedule="cosine", generators=(g,), seed=seed, device=device,
                       progress=progress, desc=desc, log_every=log_every)


def fit_latent_diffusion(model: LatentDiffusion, latents: torch.Tensor, labels: torch.Tensor, *, steps: int,
                         batch_size: int = BATCH, lr: float = LR, ema: float | None = EMA, seed: int = 0,
                         device: str | torch.device | None = None, desc: str = "latent diffusion",
                         log_every: int = 10, progress: bool = True) -> History:
    """Train ``model.net`` with flow matching on network-space ``latents`` (chapter 19's :func:`fit_flow`)."""
    return fit_flow(model, latents, labels, steps=steps, batch_size=batch_size, lr=lr, ema=ema, seed=seed,
                    device=device, desc=desc, log_every=log_every, progress=progress, to_range=False)


def card_samples(model: LatentDiffusion, n: int, *, sampler: str = CARD_SAMPLER, steps: int = 10,
                 guidance: float = CARD_GUIDANCE, seed: int = CARD_SEED,
                 batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` decoded images with balanced labels ``i % 10`` from latent noise seeded ``seed``, and the labels."""
    noise = torch.randn(n, *model.latent_shape, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % 10
    out = [model.sample(z, y, sampler=sampler, steps=steps, guidance=guidance)
           for z, y in zip(noise.split(batch_size), labels.split(batch_size), strict=True)]
    return torch.cat(out), labels


def final_loss(history: History) -> float:
    """The mean of the last ten logged losses."""
    losses = [r["loss"] for r in history.train if "loss" in r]
    return sum(losses[-10:]) / len(losses[-10:])


def train_latent_ae_mnist(profile: Profile) -> tuple[LatentAutoencoder, dict[str, Any]]:
    """Train checkpoint ``latent_ae_mnist``: :func:`fit_autoencoder` with :data:`AE_STEPS`, :data:`AE_BATCH`, :data:`AE_LR`.

    Metrics on the held-out images: reconstruction BCE and mean squared error per pixel, the KL per image, the
    FLD of the reconstructions against the reference set, and the latents' mean, standard deviation and scale
    factor (measured on the training latents).
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, held, desc = splits
    steps = AE_STEPS[profile.name]
    seed_everything(profile.seed)
    model = build_latent_ae_mnist()
    started = time.perf_counter()
    history = fit_autoencoder(model, train.tensors[0], steps=steps, seed=profile.seed, device=profile.device,
                              desc=f"latent_ae_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    x = held.tensors[0][:CARD_N[profile.name]]
    with torch.no_grad():
        mean, logvar = model.encode(x)
        logits = model.decode(mean)
        bce = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")) / len(x)
        mse = float((torch.sigmoid(logits) - x).square().mean())
        kl = float(0.5 * (mean.square() + logvar.exp() - logvar - 1).sum()) / len(x)
    m, s = latent_statistics(encode_latents(model, train.tensors[0]))
    reference, floor_images = reference_sets(len(x))
    fld = evaluation.fld(decode_latents(model, mean), reference)
    floor = evaluation.fld(floor_images, reference)
    params = sum(p.numel() for p in model.parameters())
    c = AE_CONFIG
    description = (f"KL-regularised convolutional autoencoder for latent diffusion on MNIST, chapter 20: 28x28 digits "
                   f"to a {'x'.join(map(str, c.latent_shape))} latent (two stride-2 stages, widths {c.widths}, SiLU, "
                   f"{params:,} parameters), Bernoulli decoder; loss = BCE + {c.kl_weight:g} x KL(q(z|x) || N(0, I)) "
                   f"(nats per image); Adam lr {AE_LR:g} cosine-decayed to 0, batch {AE_BATCH}, {steps} steps, "
                   f"seed {profile.seed}; {train_s / 60:.1f} min of training on this machine. Metrics on the first "
                   f"{len(x)} held-out images (MNIST-test[8000:]) decoded from their posterior means: BCE per image, "
                   f"MSE per pixel, KL per image, FLD of the reconstructions against as many images of "
                   f"MNIST-test[8000:10000:2] next to the floor (features of mnist_features, sha256 "
                   f"{shipped_sha256('mnist_features')}); latent_mean / latent_std / scale_factor over all "
                   f"training latents (posterior means).")
    metrics = {"bce": round(bce, 2), "mse": round(mse, 5), "kl": round(kl, 2), "recon_fld": round(fld, 3),
               "fld_floor": round(floor, 3), "latent_mean": round(m, 4), "latent_std": round(s, 4),
               "scale_factor": round(1 / s, 4), "final_loss": round(final_loss(history), 2),
               "images": len(x), "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)


def train_latent_dit_mnist(profile: Profile) -> tuple[LatentDiffusion, dict[str, Any]]:
    """Train checkpoint ``latent_dit_mnist``: flow matching with a DiT in the scaled latent of ``latent_ae_mnist``.

    The shipped autoencoder encodes the training images (posterior means); their standard deviation gives the
    scale factor; :func:`fit_latent_diffusion` trains the DiT (:data:`DIT_STEPS`, :data:`BATCH`, :data:`LR`,
    :data:`EMA`). Metrics: FLD of :data:`CARD_N` decoded samples (labels ``i % 10``, :data:`CARD_SAMPLER`,
    :data:`CARD_STEPS` steps, guidance :data:`CARD_GUIDANCE`) against as many reference images, the floor, and
    the class agreement by ``lenet_mnist``.
    """
    splits = data.mnist_splits(profile.name, n_train=2000 if profile.is_ci else None)
    train, _, desc = splits
    steps, sample_steps, n = DIT_STEPS[profile.name], CARD_STEPS[profile.name], CARD_N[profile.name]
    ema = None if profile.is_ci else EMA
    seed_everything(profile.seed)
    model = build_latent_dit_mnist()
    model.autoencoder.load_state_dict(load_shipped("latent_ae_mnist", build_latent_ae_mnist).state_dict())
    raw = encode_latents(model.autoencoder, train.tensors[0])
    _, std = latent_statistics(raw)
    model.set_normalisation(1 / std)
    latents = raw / std
    started = time.perf_counter()
    history = fit_latent_diffusion(model, latents, train.tensors[1], steps=steps, ema=ema, seed=profile.seed,
                                   device=profile.device, desc=f"latent_dit_mnist ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    started = time.perf_counter()
    x, labels = card_samples(model, n, steps=sample_steps)
    sample_s = time.perf_counter() - started
    reference, floor_images = reference_sets(n)
    fld = evaluation.fld(x, reference)
    floor = evaluation.fld(floor_images, reference)
    agreement = class_agreement(x, labels)
    c = DIT_CONFIG
    params = sum(p.numel() for p in model.net.parameters())
    description = (f"class-conditional latent diffusion (flow matching) on MNIST, chapter 20: a DiT (patch "
                   f"{c.patch_size}, width {c.dim}, {c.depth} adaLN-Zero blocks, {c.heads} heads, 2-D RoPE, "
                   f"10 labels plus 'no label', {params:,} parameters) in the {'x'.join(map(str, AE_CONFIG.latent_shape))} "
                   f"latent of latent_ae_mnist (sha256 {shipped_sha256('latent_ae_mnist')}, frozen, stored inside "
                   f"this checkpoint), latents = posterior means x scale factor {1 / std:.4f} (1 / their std on the "
                   f"training images); straight path, logit-normal times, label dropout 0.1; Adam lr {LR:g} cosine-decayed to 0, batch {BATCH}, {steps} steps"
                   f"{f', weight average (decay {ema}) shipped' if ema else ''}, seed {profile.seed}; "
                   f"{train_s / 60:.1f} min of training on this machine; final loss {final_loss(history):.4f}. "
                   f"Metrics: FLD of {n} decoded samples (labels i % 10, flow {CARD_SAMPLER} sampler, {sample_steps} "
                   f"steps, guidance {CARD_GUIDANCE:g}, noise seed {CARD_SEED}; {sample_s:.0f} s to sample) against "
                   f"the first {n} images of MNIST-test[8000:10000:2], next to the floor (as many of "
                   f"MNIST-test[8001:10000:2]); class_agreement = share of the same samples that lenet_mnist "
                   f"classifies as their label.")
    metrics = {"fld": round(fld, 3), "fld_floor": round(floor, 3), "fld_ratio": round(fld / floor, 2),
               "class_agreement": round(agreement, 4), "samples": n, "sampler": CARD_SAMPLER,
               "sampling_steps": sample_steps, "guidance": CARD_GUIDANCE, "scale_factor": round(1 / std, 4),
               "final_loss": round(final_loss(history), 4), "parameters": params}
    return model, card_info(description, desc, steps, metrics, splits.info)


# ---------------------------------------------------------------------------------------------------------------
# The chapter's experiment: does the autoencoder's KL weight, and the latent scale, decide whether it works?
# ---------------------------------------------------------------------------------------------------------------

#: the KL weights of the sweep: a plain autoencoder, Stable Diffusion's "small", a full VAE
SWEEP_KL_WEIGHTS = (0.0, 1e-3, 1.0)
#: one denoiser for every condition (smaller than ``latent_dit_mnist``'s, same layout)
SWEEP_DIT = DiTConfig(dim=64, depth=2, heads=2)
SWEEP_AE_STEPS = AE_STEPS
SWEEP_DIT_STEPS = {"ci": 20, "cpu": 400, "gpu": 400}
SWEEP_N = {"ci": 100, "cpu": 500, "gpu": 500}
SWEEP_SAMPLE_STEPS = 10


def sweep_autoencoder(kl_weight: float, images: torch.Tensor, *, steps: int, seed: int = 0,
                      progress: bool = False) -> tuple[LatentAutoencoder, History]:
    """One autoencoder of the sweep: :data:`AE_CONFIG` with ``kl_weight``, trained as ``latent_ae_mnist`` for ``steps``
    (for ``kl_weight = AE_CONFIG.kl_weight`` and ``AE_STEPS["cpu"]`` steps that is ``latent_ae_mnist`` itself)."""
    torch.manual_seed(seed)
    ae = LatentAutoencoder(AE_CONFIG.replace(kl_weight=kl_weight))
    history = fit_autoencoder(ae, images, steps=steps, seed=seed, progress=progress, desc=f"AE, KL weight {kl_weight:g}")
    return ae.eval(), history


def sweep_condition(ae: LatentAutoencoder, images: torch.Tensor, labels: torch.Tensor, *, scaled: bool,
                    steps: int, n: int, seed: int = 0, progress: bool = False,
                    reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train :data:`SWEEP_DIT` with flow matching in ``ae``'s latent (scaled to unit variance or raw) and score it.

    Returns the final loss, the loss relative to the variance of its target (``1 + var(z)`` per element: the share
    of the target the network did not explain), the FLD of ``n`` decoded samples (Euler, :data:`SWEEP_SAMPLE_STEPS`
    steps, guidance 1) and of ``n`` held-out reconstructions against ``n`` reference images, the class
    agreement, the latent statistics, and 20 samples (two per class) as ``uint8 [20, 28, 28]``.
    """
    raw = encode_latents(ae, images)
    mean, std = latent_statistics(raw)
    scale = 1 / std if scaled else 1.0
    torch.manual_seed(seed)
    model = LatentDiffusion(ae, DiT(SWEEP_DIT), scale=scale)
    history = fit_latent_diffusion(model, raw * scale, labels, steps=steps, ema=None, seed=seed, progress=progress,
                                   desc=f"DiT, KL weight {ae.config.kl_weight:g}, {'scaled' if scaled else 'raw'}")
    model.eval()
    x, y = card_samples(model, n, sampler="euler", steps=SWEEP_SAMPLE_STEPS, guidance=1.0, seed=seed)
    reference, floor_images = reference if reference is not None else reference_sets(n)
    recon = decode_latents(ae, encode_latents(ae, floor_images[:n]))
    loss = final_loss(history)
    z_var = float((raw * scale).double().var())
    return {"kl_weight": ae.config.kl_weight, "scaled": scaled, "latent_mean": mean, "latent_std": std,
            "scale": scale, "final_loss": loss, "relative_loss": loss / (1 + z_var),
            "fld": evaluation.fld(x, reference[:n]), "recon_fld": evaluation.fld(recon, reference[:n]),
            "class_agreement": class_agreement(x, y), "samples": (x[:20] * 255).round().to(torch.uint8)[:, 0],
            "losses": [r["loss"] for r in history.train if "loss" in r]}
