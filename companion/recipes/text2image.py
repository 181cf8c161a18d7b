"""Recipes of chapter 20's text-to-image checkpoints: the judge ``shapes_attributes`` and the model ``text_shapes``.

``shapes_attributes`` is an :class:`companion.text2image.AttributeNet` trained on :func:`companion.toys.scenes`;
``text_shapes`` a :class:`companion.text2image.TextToImage` trained on the scenes of the 62 training combinations
(:func:`companion.toys.scene_combos`) and judged on prompts of the 10 held-out ones. The constants the chapter
quotes live here: :data:`TEXT_CONFIG`, :data:`T2I_STEPS`, :data:`BATCH`, :data:`LR`, :data:`EMA`,
:data:`CARD_SAMPLER`, :data:`CARD_STEPS`, :data:`CARD_GUIDANCES`, and the seeds of every draw.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import toys
from ..profile import Profile, seed_everything
from ..text2image import (
    AttributeNet,
    AttributeNetConfig,
    TextToImage,
    TextToImageConfig,
    Tokenizer,
    attribute_agreement,
)
from ..train import TensorBatches, train_model
from ._common import card_info, load_shipped, shipped_sha256
from .flow_matching import fit_flow

#: The tokenizer's words: every word of every scene prompt, in order of first use (``<pad>``, ``<start>`` first).
PROMPT_TOKENIZER = Tokenizer.from_prompts([toys.scene_prompt(*map(int, c)) for c in toys.scene_combos()])
#: ``text_shapes``: a U-Net on 2x2 patches (16x16x12), widths 32/48, self- and cross-attention at 8x8 and in the
#: middle; a 2-block text encoder of width 64; prompt dropout 0.1.
TEXT_CONFIG = TextToImageConfig(vocab=PROMPT_TOKENIZER.vocab[2:], max_len=PROMPT_TOKENIZER.max_len, widths=(32, 48))
#: the judge
ATTRIBUTE_CONFIG = AttributeNetConfig()
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(toys.SCENE_ATTRIBUTES)

#: training scenes and Adam steps per profile
ATTR_TRAIN = {"ci": 512, "cpu": 20000, "gpu": 20000}
ATTR_STEPS = {"ci": 5, "cpu": 1500, "gpu": 3000}
ATTR_EVAL = {"ci": 256, "cpu": 2000, "gpu": 2000}
ATTR_TRAIN_SEED, ATTR_EVAL_SEED = 0, 1
T2I_TRAIN = {"ci": 512, "cpu": 20000, "gpu": 20000}
T2I_STEPS = {"ci": 3, "cpu": 2000, "gpu": 20000}
T2I_TRAIN_SEED, T2I_HELDOUT_SEED, T2I_SEEN_SEED = 2, 3, 4
BATCH = 64
LR = 2e-3
EMA = 0.995
#: how the card's samples are drawn: flow Heun on this many steps, at these classifier-free guidance scales
CARD_SAMPLER = "heun"
CARD_STEPS = {"ci": 2, "cpu": 8, "gpu": 8}
CARD_GUIDANCES = (1.0, 3.0)
#: the guidance :func:`companion.generate` uses by default (the card's best)
CARD_GUIDANCE = 3.0
CARD_N = {"ci": 32, "cpu": 300, "gpu": 1000}
CARD_SEED = 0


def scene_spec(n: int, seed: int, split: str = "all", size: int = 32) -> str:
    """The call that draws a set of scenes, as the cards' ``seen`` fields name it."""
    return f"toys.scenes({n}, size={size}, seed={seed}" + (f", split='{split}')" if split != "all" else ")")


def build_shapes_attributes() -> AttributeNet:
    """The untrained judge of checkpoint ``shapes_attributes`` (seed 0). Introduced in chapter 20."""
    torch.manual_seed(0)
    return AttributeNet(ATTRIBUTE_CONFIG)


def build_text_shapes() -> TextToImage:
    """The untrained model of checkpoint ``text_shapes``: ``TextToImage(TEXT_CONFIG)`` (seed 0). Chapter 20."""
    torch.manual_seed(0)
    return TextToImage(TEXT_CONFIG)


def train_shapes_attributes(profile: Profile) -> tuple[AttributeNet, dict[str, Any]]:
    """Train checkpoint ``shapes_attributes``: Adam (lr 2e-3, cosine), batch 128, on ``toys.scenes(n, seed=0)``.

    Metrics: the accuracy per attribute and with all four right on ``toys.scenes(n_eval, seed=1)`` (other images
    of the same distribution, never trained on).
    """
    n, steps, n_eval = ATTR_TRAIN[profile.name], ATTR_STEPS[profile.name], ATTR_EVAL[profile.name]
    x, y, _ = toys.scenes(n, seed=ATTR_TRAIN_SEED)
    xe, ye, _ = toys.scenes(n_eval, seed=ATTR_EVAL_SEED)
    seed_everything(profile.seed)
    model = build_shapes_attributes()

    def loss_fn(m: AttributeNet, batch: tuple[torch.Tensor]) -> torch.Tensor:
        idx = batch[0].cpu()
        dev = next(m.parameters()).device
        return m.loss(x[idx].to(dev), y[idx].to(dev))

    started = time.perf_counter()
    train_model(model, TensorBatches(torch.arange(n), 128, profile.seed), loss_fn, steps=steps, lr=LR,
                optimizer="adam", schedule="cosine", seed=profile.seed, device=profile.device,
                desc=f"shapes_attributes ({profile.name})", log_every=50)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    acc = attribute_agreement(model, xe, ye, ATTRIBUTE_NAMES)
    params = sum(p.numel() for p in model.parameters())
    description = (f"attribute classifier for chapter 20's scenes (the course's stand-in for a CLIP score): CNN with "
                   f"widths {ATTRIBUTE_CONFIG.widths} (3x3 conv, ReLU, max-pool) and one linear layer split into heads "
                   f"for shape (3), colour (3), size (2), position (4), {params:,} parameters; mean cross-entropy of "
                   f"the heads, Adam lr {LR:g} cosine-decayed to 0, batch 128, {steps} steps on "
                   f"{scene_spec(n, ATTR_TRAIN_SEED)}, seed {profile.seed}; {train_s / 60:.1f} min of training on "
                   f"this machine. Metrics: accuracy on {scene_spec(n_eval, ATTR_EVAL_SEED)} (other draws), all = "
                   f"every attribute right.")
    metrics = {f"accuracy_{k}": round(v, 4) for k, v in acc.items()}
    return model, card_info(description, "procedural scenes (companion.toys.scenes), 32x32 RGB", steps,
                            metrics, {"train": scene_spec(n, ATTR_TRAIN_SEED), "heldout": scene_spec(n_eval, ATTR_EVAL_SEED)})


def card_prompts(n: int, split: str = "heldout", seed: int = T2I_HELDOUT_SEED) -> tuple[list[str], torch.Tensor]:
    """The prompts and their attribute labels ``[n, 4]`` the card samples: those of ``toys.scenes(n, seed, split)``."""
    _, labels, prompts = toys.scenes(n, seed=seed, split=split)
    return prompts, labels


@torch.no_grad()
def card_samples(model: TextToImage, prompts: list[str], *, sampler: str = CARD_SAMPLER, steps: int = 8,
                 guidance: float = CARD_GUIDANCE, seed: int = CARD_SEED, batch_size: int = 250) -> torch.Tensor:
    """One image per prompt, from noise seeded ``seed`` (the same noise at every guidance scale)."""
    noise = torch.randn(len(prompts), 3, model.config.image_size, model.config.image_size,
                        generator=torch.Generator().manual_seed(seed))
    out = [model.sample(z, prompts[i:i + batch_size], sampler=sampler, steps=steps, guidance=guidance)
           for i, z in zip(range(0, len(prompts), batch_size), noise.split(batch_size), strict=True)]
    return torch.cat(out)


def train_text_shapes(profile: Profile) -> tuple[TextToImage, dict[str, Any]]:
    """Train checkpoint ``text_shapes``: flow matching with prompt dropout (chapter 19's loop, :func:`fit_flow`).

    Trains on ``toys.scenes(n, seed=2, split='train')`` (62 of the 72 attribute combinations). Metrics: the
    attribute agreement (``shapes_attributes`` sees all four attributes of the prompt; and each one) of
    :data:`CARD_N` samples for the prompts of ``toys.scenes(n, seed=3, split='heldout')`` (the 10 combinations never
    trained on), at guidance 1 and 3, and at guidance 3 for prompts of training combinations (seed 4).
    """
    n, steps, card_n = T2I_TRAIN[profile.name], T2I_STEPS[profile.name], CARD_N[profile.name]
    sample_steps = CARD_STEPS[profile.name]
    x, _, prompts = toys.scenes(n, seed=T2I_TRAIN_SEED, split="train")
    ids, _ = PROMPT_TOKENIZER.encode(prompts)
    ema = None if profile.is_ci else EMA
    seed_everything(profile.seed)
    model = build_text_shapes()
    started = time.perf_counter()
    history = fit_flow(model, x, ids, steps=steps, ema=ema, seed=profile.seed, device=profile.device,
                       desc=f"text_shapes ({profile.name})", log_every=20)
    train_s = time.perf_counter() - started
    model = model.cpu().eval()
    judge = load_shipped("shapes_attributes", build_shapes_attributes)
    held_prompts, held_labels = card_prompts(card_n)
    metrics: dict[str, Any] = {}
    started = time.perf_counter()
    for g in CARD_GUIDANCES:
        images = card_samples(model, held_prompts, steps=sample_steps, guidance=g)
        for k, v in attribute_agreement(judge, images, held_labels, ATTRIBUTE_NAMES).items():
            metrics[f"agreement_{k}_g{g:g}"] = round(v, 4)
    sample_s = (time.perf_counter() - started) / len(CARD_GUIDANCES)
    seen_prompts, seen_labels = card_prompts(card_n, "train", T2I_SEEN_SEED)
    images = card_samples(model, seen_prompts, steps=sample_steps, guidance=CARD_GUIDANCE)
    seen_all = attribute_agreement(judge, images, seen_labels, ATTRIBUTE_NAMES)["all"]
    losses = [r["loss"] for r in history.train if "loss" in r]
    final = sum(losses[-10:]) / len(losses[-10:])
    params = sum(p.numel() for p in model.parameters())
    c = TEXT_CONFIG
    metrics = {"class_agreement": metrics[f"agreement_all_g{CARD_GUIDANCE:g}"], **metrics,
               f"agreement_all_seen_prompts_g{CARD_GUIDANCE:g}": round(seen_all, 4), "samples": card_n,
               "sampler": CARD_SAMPLER, "sampling_steps": sample_steps, "guidance": CARD_GUIDANCE,
               "final_loss": round(final, 4), "parameters": params}
    description = (f"text-conditioned flow matching on chapter 20's scenes: word tokenizer ({len(PROMPT_TOKENIZER)} "
                   f"tokens, {c.max_len} positions), text encoder (width {c.text_dim}, {c.text_depth} transformer "
                   f"blocks) trained jointly with a U-Net velocity predictor on {c.patch}x{c.patch} patches (widths "
                   f"{c.widths}, self- and cross-attention at levels {c.cross_attention_levels} and in the middle), "
                   f"{params:,} parameters; straight path x_t = (1 - t) x0 + t eps, target eps - x0, images in "
                   f"[-1, 1], logit-normal times, prompt dropout {c.prompt_dropout:g} to the empty prompt; Adam lr "
                   f"{LR:g} cosine-decayed to 0, batch {BATCH}, {steps} steps"
                   f"{f', weight average (decay {ema}) shipped' if ema else ''}, seed {profile.seed}, on "
                   f"{scene_spec(n, T2I_TRAIN_SEED, 'train')} (62 of the 72 attribute combinations); "
                   f"{train_s / 60:.1f} min of training on this machine; final loss {final:.4f}. Metrics: attribute "
                   f"agreement (shapes_attributes, sha256 {shipped_sha256('shapes_attributes')}, sees every attribute "
                   f"of the prompt: all; or each one) of {card_n} samples, one per prompt of "
                   f"{scene_spec(card_n, T2I_HELDOUT_SEED, 'heldout')} (the 10 combinations never trained on), flow "
                   f"{CARD_SAMPLER} sampler, {sample_steps} steps, noise seed {CARD_SEED}, at guidance "
                   f"{' and '.join(f'{g:g}' for g in CARD_GUIDANCES)} ({sample_s:.0f} s to sample each); and at "
                   f"guidance {CARD_GUIDANCE:g} for prompts of {scene_spec(card_n, T2I_SEEN_SEED, 'train')}. "
                   f"class_agreement = agreement_all at guidance {CARD_GUIDANCE:g}.")
    seen = {"train": scene_spec(n, T2I_TRAIN_SEED, "train"), "heldout": scene_spec(card_n, T2I_HELDOUT_SEED, "heldout")}
    return model, card_info(description, "procedural scenes (companion.toys.scenes), 32x32 RGB, with prompts", steps,
                            metrics, seen)
