"""A two-player loop for GANs: :func:`train_gan` (chapter 14).

A GAN's two players need two optimisers, so the game does not fit :func:`companion.train.fit`; this is its own
short, seeded loop (Goodfellow et al. 2014, Algorithm 1) with a tqdm bar and a :class:`History` of D/G losses and
of D(x), D(G(z)). It reaches the models only through their ``forward`` and the losses of ``companion.losses``.
Introduced in chapter 14.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..batching import as_images
from ..losses import DISCRIMINATOR_LOSSES, GENERATOR_LOSSES, discriminator_loss, gradient_penalty, r1_penalty
from ..profile import seed_everything
from .loop import DivergenceError, History, _Averaged
from .wrappers import TensorBatches

__all__ = ["train_cyclegan", "train_gan", "train_vqgan"]


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data: Any,
    *,
    steps: int,
    d_steps: int = 1,
    loss: str | Callable[[Tensor], Tensor] = "non_saturating",
    d_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    lr: float = 2e-4,
    d_lr: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    batch_size: int = 64,
    latent_dim: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "GAN",
    log_every: int = 10,
    penalty: str | Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
    penalty_weight: float = 10.0,
    clip: float | None = None,
    conditional: bool = False,
    augment: Callable[[Tensor], Tensor] | None = None,
    g_penalty: Callable[[nn.Module], Tensor] | None = None,
    ema: float | None = None,
) -> History:
    """Train a GAN for ``steps`` generator updates, each after ``d_steps`` discriminator updates (Goodfellow et
    al. 2014, Algorithm 1); returns the :class:`History`.

    One step:

    1. ``d_steps`` times: a fresh batch of real ``x`` and of ``z ~ N(0, I)``; minimise
       ``d_loss(D(x), D(G(z).detach()))`` (default :func:`companion.losses.discriminator_loss`) over D's weights;
    2. a fresh batch of ``z``; minimise the generator loss ``loss(D(G(z)))`` over G's weights: ``"non_saturating"``
       (``-log D(G(z))``), ``"minimax"`` (``log(1 - D(G(z)))``, the saturating loss; see
       :data:`companion.losses.GENERATOR_LOSSES`) or any function of the fake logits.

    Chapter 15's options (the defaults leave chapter 14's loop unchanged):

    * ``loss="lsgan"`` or ``"wasserstein"`` also picks the matching discriminator loss
      (:data:`companion.losses.DISCRIMINATOR_LOSSES`) unless ``d_loss`` is given;
    * ``penalty``: ``"gp"`` adds ``penalty_weight`` times :func:`companion.losses.gradient_penalty` (random
      interpolates of the real and fake batch, WGAN-GP), ``"r1"`` adds ``penalty_weight / 2`` times
      :func:`companion.losses.r1_penalty` (real data, Mescheder et al. 2018), or a function
      ``penalty(D, real, fake) -> scalar`` is added times ``penalty_weight``;
    * ``clip``: after every discriminator update clamp each of its parameters to ``[-clip, clip]`` (the original
      WGAN's weight clipping, Arjovsky et al. 2017, Algorithm 1).

    Chapter 16's options:

    * ``conditional=True``: ``data`` must be a ``TensorDataset`` of images and int64 labels; the generator is
      called as ``generator(z, y)`` with labels ``y`` drawn uniformly from ``generator.num_classes`` classes, the
      discriminator as ``discriminator(x, y)`` with each batch's own labels (the real labels for the reals);
    * ``augment``: a differentiable map applied to every batch the discriminator sees, real and fake, in both
      players' updates (ADA, :class:`companion.cond_gan.ADAugment`); if it has an ``observe`` method, it is
      called with the real logits after each discriminator update (the controller of ``p``);
    * ``g_penalty``: ``g_penalty(generator) -> scalar`` is added to every generator loss (BigGAN's orthogonal
      regularisation, :func:`companion.cond_gan.orthogonal_penalty`);
    * ``ema``: keep an exponential moving average of the generator's weights with this decay (BigGAN, ProGAN:
      e.g. 0.999) and load it into ``generator`` when training ends, so the returned generator is the averaged
      one (batch-norm statistics are not averaged: they follow the live generator). ``on_step`` sees the live one.

    Both players use Adam with ``betas`` (the DCGAN choice ``(0.5, 0.999)``), learning rate ``lr`` (``d_lr`` for
    D when given). The models are duck-typed: ``generator(z [B, latent_dim]) -> x``, ``discriminator(x) ->
    logits [B]``; ``latent_dim`` defaults to ``generator.latent_dim``.

    Args:
        data: real examples, a tensor ``[N, ...]`` or a ``TensorDataset`` (labels ignored), served in shuffled
            full batches, a fresh permutation on every pass.
        seed: seeds torch's global generators and one CPU generator that draws every batch order and every ``z``
            (so a run is the same on every device, and repeats exactly on the CPU).
        on_step: ``on_step(step, generator)`` after every generator update (``step`` counts from 1), e.g. to keep
            snapshots of samples; the generator is in training mode.
        log_every: record a train row every this many steps (and at step 1): ``d_loss``, ``g_loss`` and the
            discriminator's mean outputs ``d_real = D(x)`` and ``d_fake = D(G(z))`` (probabilities) on the last
            discriminator batch, the raw means ``score_real`` and ``score_fake`` (a critic's scores; with the
            Wasserstein loss ``score_real - score_fake`` estimates W1) and ``penalty`` (0 without one). The last
            row holds ``step`` and ``wall_s``.
    Raises:
        DivergenceError: a loss became NaN or infinite (its ``.history`` keeps the log).
    Introduced in chapter 14.
    """
    if steps < 1 or d_steps < 1 or batch_size < 1 or log_every < 1:
        raise ValueError(f"steps, d_steps, batch_size and log_every must be >= 1, got {steps}, {d_steps}, "
                         f"{batch_size}, {log_every}")
    if isinstance(loss, str):
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"loss must be one of {sorted(GENERATOR_LOSSES)} or a function, got {loss!r}")
        g_loss_fn = GENERATOR_LOSSES[loss]
    elif callable(loss):
        g_loss_fn = loss
    else:
        raise TypeError(f"loss must be a name or a function of the fake logits, got {type(loss).__name__}")
    if d_loss is None:
        d_loss_fn = DISCRIMINATOR_LOSSES.get(loss, discriminator_loss) if isinstance(loss, str) else discriminator_loss
    elif isinstance(d_loss, str):
        if d_loss not in DISCRIMINATOR_LOSSES:
            raise ValueError(f"d_loss must be one of {sorted(DISCRIMINATOR_LOSSES)} or a function, got {d_loss!r}")
        d_loss_fn = DISCRIMINATOR_LOSSES[d_loss]
    else:
        d_loss_fn = d_loss
    if penalty is not None and not callable(penalty) and penalty not in ("gp", "r1"):
        raise ValueError(f"penalty must be 'gp', 'r1', a function or None, got {penalty!r}")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    if latent_dim is None:
        latent_dim = getattr(generator, "latent_dim", None)
        if latent_dim is None:
            raise ValueError("train_gan: pass latent_dim (the generator has no .latent_dim attribute)")
    seed_everything(seed)
    device = torch.device(device)
    generator.to(device).train()
    discriminator.to(device).train()
    g = torch.Generator().manual_seed(seed)  # every batch order and every z
    if conditional:
        tensors = getattr(data, "tensors", None)
        if tensors is None or len(tensors) < 2:
            raise ValueError("train_gan(conditional=True) needs a TensorDataset of (images, labels)")
        num_classes = getattr(generator, "num_classes", None)
        if num_classes is None:
            raise ValueError("train_gan(conditional=True): the generator needs a .num_classes attribute")
        real_batches = TensorBatches(torch.arange(len(tensors[0])), batch_size, generator=g)
        images_, labels_ = tensors[0], tensors[1].long()
    else:
        real_batches = TensorBatches(as_images(data), batch_size, generator=g)
    aug = augment if augment is not None else (lambda t: t)
    observe = getattr(augment, "observe", None)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    averaged = _Averaged(generator, ema) if ema is not None else None
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=d_lr if d_lr is not None else lr, betas=betas)

    def real_stream() -> Iterator[tuple[Tensor, Tensor | None]]:
        while True:
            for (xb,) in real_batches:
                if conditional:
                    yield images_[xb].to(device, non_blocking=True), labels_[xb].to(device, non_blocking=True)
                else:
                    yield xb.to(device, non_blocking=True), None

    def noise() -> Tensor:
        return torch.randn(real_batches.batch_size, latent_dim, generator=g).to(device)

    def fake_labels() -> Tensor | None:
        if not conditional:
            return None
        return torch.randint(num_classes, (real_batches.batch_size,), generator=g).to(device)

    def G(z: Tensor, y: Tensor | None) -> Tensor:
        return generator(z) if y is None else generator(z, y)

    def D(x: Tensor, y: Tensor | None) -> Tensor:
        return discriminator(aug(x)) if y is None else discriminator(aug(x), y)

    reals = real_stream()
    history = History()
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=True)
    for step in range(1, steps + 1):
        # 1. the discriminator: d_steps updates on fresh real and fake batches (the fakes are constants for D)
        for _ in range(d_steps):
            real_x, real_y = next(reals)
            fake_y = fake_labels()
            fake_x = G(noise(), fake_y).detach()
            real_logits = D(real_x, real_y)
            fake_logits = D(fake_x, fake_y)
            loss_d = d_loss_fn(real_logits, fake_logits)
            pen = None
            critic = discriminator if (real_y is None and augment is None) else (lambda t, y=real_y: D(t, y))
            if penalty == "gp":
                pen = penalty_weight * gradient_penalty(critic, real_x, fake_x, generator=g)
            elif penalty == "r1":
                pen = penalty_weight / 2 * r1_penalty(critic, real_x)
            elif penalty is not None:
                pen = penalty_weight * penalty(critic, real_x, fake_x)
            total_d = loss_d if pen is None else loss_d + pen
            opt_d.zero_grad(set_to_none=True)
            total_d.backward()
            opt_d.step()
            if clip is not None:
                with torch.no_grad():
                    for p in discriminator.parameters():
                        p.clamp_(-clip, clip)
            if observe is not None:
                observe(real_logits)
        # 2. the generator: one update through the (now fixed) discriminator
        fake_y = fake_labels()
        loss_g = g_loss_fn(D(G(noise(), fake_y), fake_y))
        total_g = loss_g if g_penalty is None else loss_g + g_penalty(generator)
        opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        opt_g.step()
        if averaged is not None:
            averaged.update(generator)
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            bar.close()
            raise DivergenceError(f"a GAN loss became non-finite at step {step} (D {loss_d.item()}, G "
                                  f"{loss_g.item()}): lower the learning rate?", history)
        if on_step is not None:
            on_step(step, generator)
        if step % log_every == 0 or step == 1:
            with torch.no_grad():
                row = {"step": step, "d_loss": loss_d.item(), "g_loss": loss_g.item(),
                       "d_real": torch.sigmoid(real_logits).mean().item(),
                       "d_fake": torch.sigmoid(fake_logits).mean().item(),
                       "score_real": real_logits.mean().item(), "score_fake": fake_logits.mean().item(),
                       "penalty": 0.0 if pen is None else pen.item()}
            history.train.append(row)
            bar.set_postfix(D=f"{row['d_loss']:.3f}", G=f"{row['g_loss']:.3f}", Dx=f"{row['d_real']:.2f}",
                            DGz=f"{row['d_fake']:.2f}")
        bar.update(1)
    bar.close()
    history.train.append({"step": steps, "wall_s": time.perf_counter() - started})
    if averaged is not None:
        generator.load_state_dict(averaged.model.state_dict())
    generator.eval()
    discriminator.eval()
    return history


def _endless(batches: TensorBatches, device: torch.device) -> Iterator[Tensor]:
    """The batches of ``batches`` on ``device``, pass after pass (a fresh permutation each time)."""
    while True:
        for (xb,) in batches:
            yield xb.to(device)


def train_cyclegan(
    g_ab: nn.Module,
    g_ba: nn.Module,
    d_a: nn.Module,
    d_b: nn.Module,
    domain_a: Tensor,
    domain_b: Tensor,
    *,
    steps: int,
    cycle_weight: float = 10.0,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "CycleGAN",
    log_every: int = 10,
) -> History:
    """Unpaired translation between two image sets (Zhu et al. 2017): ``g_ab: A -> B``, ``g_ba: B -> A`` against
    the discriminators ``d_b`` (real B vs ``g_ab(a)``) and ``d_a``; LSGAN losses (the paper's choice) plus
    ``cycle_weight`` times :func:`companion.cond_gan.cycle_loss`-style L1 cycle terms (``cycle_weight=0`` turns the
    cycle off). One Adam per side (both generators together, both discriminators together), seeded batches drawn
    independently from each domain: no pairs are ever used. Logs ``d_loss``, ``g_loss``, ``cycle``. Introduced in
    chapter 16.
    """
    from ..losses import lsgan_discriminator_loss, lsgan_generator_loss

    if steps < 1 or cycle_weight < 0:
        raise ValueError(f"need steps >= 1 and cycle_weight >= 0, got {steps}, {cycle_weight}")
    seed_everything(seed)
    device = torch.device(device)
    for m in (g_ab, g_ba, d_a, d_b):
        m.to(device).train()
    g = torch.Generator().manual_seed(seed)
    batches_a = TensorBatches(as_images(domain_a), batch_size, generator=g)
    batches_b = TensorBatches(as_images(domain_b), batch_size, generator=g)
    opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=lr, betas=betas)
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=lr, betas=betas)

    sa, sb = _endless(batches_a, device), _endless(batches_b, device)
    history = History()
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=True)
    for step in range(1, steps + 1):
        a, b = next(sa), next(sb)
        fake_b, fake_a = g_ab(a), g_ba(b)
        cyc = (g_ba(fake_b) - a).abs().mean() + (g_ab(fake_a) - b).abs().mean()
        adv = lsgan_generator_loss(d_b(fake_b)) + lsgan_generator_loss(d_a(fake_a))
        loss_g = adv + cycle_weight * cyc
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        loss_d = (lsgan_discriminator_loss(d_b(b), d_b(fake_b.detach()))
                  + lsgan_discriminator_loss(d_a(a), d_a(fake_a.detach())))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            bar.close()
            raise DivergenceError(f"a CycleGAN loss became non-finite at step {step}", history)
        if step % log_every == 0 or step == 1:
            history.train.append({"step": step, "d_loss": loss_d.item(), "g_loss": adv.item(), "cycle": cyc.item()})
        bar.update(1)
    bar.close()
    history.train.append({"step": steps, "wall_s": time.perf_counter() - started})
    for m in (g_ab, g_ba, d_a, d_b):
        m.eval()
    return history


def train_vqgan(
    vqvae: nn.Module,
    discriminator: nn.Module,
    features: Callable[[Tensor], Tensor],
    data: Any,
    *,
    steps: int,
    perceptual_weight: float = 1.0,
    gan_weight: float = 0.1,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.9),
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "VQGAN",
    log_every: int = 10,
) -> History:
    """Fine-tune a trained VQ-VAE's **decoder** into a VQGAN's (Esser et al. 2021): encoder and codebook frozen (so
    the codes, and any prior over them, stay valid), the decoder trained on

    ``L1(x_hat, x) + perceptual_weight * |features(x_hat) - features(x)|^2 + lambda * gan_weight * (-log D(x_hat))``

    with ``x_hat = sigmoid(decoder(z_q))``, ``D`` a patch discriminator trained with the standard loss on real ``x``
    against ``x_hat``, and ``lambda`` VQGAN's adaptive weight (:func:`companion.losses.adaptive_weight`) at the
    decoder's last layer. ``features`` is a frozen network (a function of images). ``gan_weight=0`` gives the same
    fine-tuning without the adversary, the controlled comparison. Logs ``rec``, ``perceptual``, ``g_loss``,
    ``d_loss``, ``lambda``. Introduced in chapter 16.
    """
    from ..losses import adaptive_weight, generator_loss_non_saturating, perceptual_distance

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    seed_everything(seed)
    device = torch.device(device)
    vqvae.to(device).train()
    discriminator.to(device).train()
    for p in (*vqvae.encoder.parameters(), *vqvae.quantizer.parameters()):
        p.requires_grad_(False)
    vqvae.encoder.eval()
    vqvae.quantizer.eval()
    last = [m for m in vqvae.decoder.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1].weight
    g = torch.Generator().manual_seed(seed)
    batches = TensorBatches(as_images(data), batch_size, generator=g)
    opt_g = torch.optim.Adam(vqvae.decoder.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)

    reals = _endless(batches, device)
    history = History()
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=True)
    for step in range(1, steps + 1):
        x = next(reals)
        with torch.no_grad():
            z_q = vqvae.quantizer.lookup(vqvae.encode_indices(x))
        x_hat = torch.sigmoid(vqvae.decoder(z_q))
        rec = (x_hat - x).abs().mean()
        perc = perceptual_distance(features, x_hat, x)
        rec_total = rec + perceptual_weight * perc
        if gan_weight > 0:
            g_adv = generator_loss_non_saturating(discriminator(x_hat).flatten())
            lam = adaptive_weight(rec_total, g_adv, last) * gan_weight
            loss_g = rec_total + lam * g_adv
        else:
            g_adv, lam, loss_g = torch.zeros(()), torch.zeros(()), rec_total
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if gan_weight > 0:
            loss_d = discriminator_loss(discriminator(x).flatten(), discriminator(x_hat.detach()).flatten())
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        else:
            loss_d = torch.zeros(())
        if not torch.isfinite(loss_g):
            bar.close()
            raise DivergenceError(f"the VQGAN loss became non-finite at step {step}", history)
        if step % log_every == 0 or step == 1:
            history.train.append({"step": step, "rec": rec.item(), "perceptual": perc.item(),
                                  "g_loss": g_adv.item(), "d_loss": loss_d.item(), "lambda": float(lam)})
        bar.update(1)
    bar.close()
    history.train.append({"step": steps, "wall_s": time.perf_counter() - started})
    vqvae.eval()
    discriminator.eval()
    return history
