"""One way to sample every generative model of the course: :func:`generate`.

``generate(model, n)`` returns ``n`` float images ``[n, C, H, W]`` in ``[0, 1]`` on the CPU, whatever the model
is — a VAE or a conditional VAE (chapters 10–11), the VQ-VAE with its code prior (12), a GAN generator (14, 15),
a DDPM (18: ``sampler="ancestral"`` or ``"ddim"``, ``steps=`` timesteps, default all ``T``), a
class-conditional flow-matching model (19: ``labels=`` required, ``sampler="euler"``/``"heun"``/``"midpoint"``,
``steps=``, ``guidance=``, defaults those of ``fm_mnist``'s card), a text-to-image model (20: ``prompt=`` required, one prompt or one per image; defaults those of ``text_shapes``'s card), and the later families as they register — given as a module or as a shipped checkpoint's name. It batches,
seeds (the same ``seed`` gives the same images), shows a progress bar for long runs, and refuses an option the
model cannot take with an error that names what it does accept.

Each kind of model is described once, by a :class:`Family`: which options it takes and how it draws a batch.
A model with a Gaussian latent draws all ``n`` latents first, so its images do not depend on ``batch_size``.
Introduced in chapter 14; the scoreboard uses it for every shipped generative checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import hub
from .ddpm import DDPM
from .gan import Generator
from .recipes import RECIPES
from .vae import VAE
from .vae_variants import CVAE, BetaSweep, BetaVAE
from .vqvae import VQVAE, CodePrior

__all__ = ["FAMILIES", "Family", "VQSampler", "family_of", "generate", "load_generative", "register"]

#: Every option :func:`generate` knows; a family accepts a subset.
OPTIONS = ("labels", "prompt", "sampler", "steps", "guidance")


@dataclass(frozen=True)
class Family:
    """How one kind of model generates.

    Attributes:
        name: what the errors call it (``"VAE"``).
        draw: ``(model, n, labels, generator, options) -> images [n, C, H, W]``; ``labels`` is ``None`` or an
            int64 ``[n]``; ``options`` holds the accepted options the caller set.
        accepts: the options of :data:`OPTIONS` it takes.
        classes: ``model -> number of classes`` for a conditional family (labels required), else ``None``.
        latents: optional ``(model, n, generator) -> [n, ...]``: all the noise up front, so that batching does
            not change the images; ``draw`` then receives a batch of it through ``options["latents"]``.
        defaults: option values used when the caller passes ``None``.
    """

    name: str
    draw: Callable[..., Tensor]
    accepts: frozenset[str] = frozenset()
    classes: Callable[[nn.Module], int] | None = None
    latents: Callable[[nn.Module, int, torch.Generator], Tensor] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)


#: ``(model class, family)`` pairs, most specific first (:func:`family_of` takes the first match).
FAMILIES: list[tuple[type, Family]] = []


def register(cls: type, family: Family) -> Family:
    """Teach :func:`generate` a new kind of model (later chapters register theirs); returns ``family``."""
    FAMILIES.insert(0, (cls, family))
    return family


class VQSampler(nn.Module):
    """A VQ-VAE and a code prior over its grids, as one generative model: prior draws codes, decoder paints them.

    Args:
        vqvae: a :class:`companion.vqvae.VQVAE`.
        prior: a :class:`companion.vqvae.CodePrior` over ``vqvae``'s code grids.
        temperature: the prior's sampling temperature.
    """

    def __init__(self, vqvae: VQVAE, prior: CodePrior, temperature: float = 1.0) -> None:
        super().__init__()
        if prior.config.num_codes != vqvae.config.num_codes:
            raise ValueError(f"prior has {prior.config.num_codes} codes, the VQ-VAE {vqvae.config.num_codes}")
        self.vqvae, self.prior, self.temperature = vqvae, prior, float(temperature)


def _generator_on(dev: torch.device, g: torch.Generator) -> torch.Generator:
    """``g`` itself on the CPU; elsewhere a generator on ``dev`` seeded from ``g`` (a sampler's fresh noise)."""
    return g if dev.type == "cpu" else torch.Generator(dev).manual_seed(int(torch.randint(2**31, (1,), generator=g)))


def _vae_latents(model: nn.Module, n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, model.config.latent_dim, generator=g)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _draw_vae(model: VAE, n: int, labels, g, options) -> Tensor:
    return model.decode_mean(options["latents"].to(_device(model)))


def _draw_betavae(model: BetaVAE, n: int, labels, g, options) -> Tensor:
    return torch.sigmoid(model.decode(options["latents"].to(_device(model))))


def _draw_cvae(model: CVAE, n: int, labels, g, options) -> Tensor:
    dev = _device(model)
    return torch.sigmoid(model.decode(options["latents"].to(dev), labels.to(dev)))


def _draw_gan(model: nn.Module, n: int, labels, g, options) -> Tensor:
    return model(options["latents"].to(_device(model)))


def _gan_latents(model: nn.Module, n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, model.latent_dim, generator=g)


def _draw_vq(model: VQSampler, n: int, labels, g, options) -> Tensor:
    codes = model.prior.sample(n, generator=g, temperature=model.temperature)
    return model.vqvae.decode_indices(codes)


def _ddpm_latents(model: DDPM, n: int, g: torch.Generator) -> Tensor:
    u = model.config.unet
    return torch.randn(n, u.image_channels, u.image_size, u.image_size, generator=g)


def _draw_ddpm(model: DDPM, n: int, labels, g, options) -> Tensor:
    # the starting noise comes from the latents; the ancestral sampler's fresh noise from g (on the CPU)
    dev = _device(model)
    gen = _generator_on(dev, g)
    return model.sample(options["latents"].to(dev), options["sampler"], steps=options.get("steps"), generator=gen)


register(DDPM, Family("DDPM", _draw_ddpm, accepts=frozenset({"sampler", "steps"}), latents=_ddpm_latents,
                      defaults={"sampler": "ancestral"}))
register(Generator, Family("GAN generator", _draw_gan, latents=_gan_latents))
register(VQSampler, Family("VQ-VAE with a code prior", _draw_vq))
register(BetaVAE, Family("β-VAE", _draw_betavae, latents=_vae_latents))
register(VAE, Family("VAE", _draw_vae, latents=_vae_latents))
register(CVAE, Family("conditional VAE", _draw_cvae, accepts=frozenset({"labels"}),
                      classes=lambda m: m.config.num_classes, latents=_vae_latents))


def family_of(model: nn.Module) -> Family:
    """The :class:`Family` that generates with ``model``.

    Raises:
        TypeError: ``model`` is not a generative model the course knows, with what to pass instead.
    """
    if isinstance(model, BetaSweep):
        raise TypeError(f"a BetaSweep holds {len(model)} β-VAEs (β = {model.betas}): generate with one of them, "
                        f"e.g. generate(sweep[{model.betas[-1]:g}], n)")
    if isinstance(model, CodePrior):
        raise TypeError("a CodePrior draws code grids, not images: pass the checkpoint name 'vqvae_prior_mnist' "
                        "or generation.VQSampler(vqvae, prior)")
    for cls, fam in FAMILIES:
        if isinstance(model, cls):
            return fam
    known = ", ".join(sorted({c.__name__ for c, _ in FAMILIES}))
    raise TypeError(f"generate: model must be a generative model ({known}) or a shipped checkpoint's name, "
                    f"got {type(model).__name__}")


def load_generative(name: str) -> nn.Module:
    """A shipped checkpoint as a generative model (a code prior comes with the VQ-VAE it was trained on)."""
    model = hub.load_model(name)
    if isinstance(model, CodePrior):
        # the VQ-VAE it was trained on is the one of its needs whose recipe is a vqvae (loaded once)
        vq = next((n for n in RECIPES[name].needs if RECIPES[n].family == "vqvae"), None)
        if vq is None:
            raise TypeError(f"checkpoint {name!r} is a code prior whose recipe names no VQ-VAE to decode with")
        return VQSampler(hub.load_model(vq), model).eval()
    return model


def _labels(labels, n: int, classes: int, name: str) -> Tensor:
    y = torch.as_tensor(labels).long().reshape(-1)
    if y.numel() == 1:
        y = y.expand(n)
    if y.numel() != n:
        raise ValueError(f"generate: labels must be one label or {n} labels (one per image), got {y.numel()}")
    bad = y[(y < 0) | (y >= classes)]
    if bad.numel():
        raise ValueError(f"generate: labels must lie in [0, {classes}) for this {name}, got {int(bad[0])}")
    return y.clone()


def generate(model: nn.Module | str, n: int, *, labels: int | Sequence[int] | Tensor | None = None,
             prompt: str | Sequence[str] | None = None, sampler: str | None = None, steps: int | None = None,
             guidance: float | None = None, seed: int = 0, batch_size: int | None = None,
             progress: bool = True) -> Tensor:
    """``n`` images from a generative model: float ``[n, C, H, W]`` in ``[0, 1]``, on the CPU.

    Args:
        model: a generative module, or a shipped checkpoint's name (``"dcgan_mnist"``).
        n: how many images, ``>= 1``.
        labels: for a conditional model, one class for all images or one per image.
        prompt: for a text-conditioned model, one prompt or one per image.
        sampler: for an iterative model, which sampler.
        steps: for an iterative model, how many steps.
        guidance: for a conditional iterative model, the classifier-free guidance scale.
        seed: the same seed gives the same images.
        batch_size: images per forward pass (default: all at once up to 500).
        progress: show a progress bar when there is more than one batch.

    Returns:
        A float32 tensor ``[n, C, H, W]`` with values in ``[0, 1]``.

    Raises:
        ValueError: ``n`` or ``batch_size`` below 1, an option the model does not accept (the message lists
            those it does), missing labels for a conditional model, or a label outside its classes.
        TypeError: ``model`` is not a generative model.
    """
    if isinstance(model, str):
        model = load_generative(model)
    fam = family_of(model)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"generate: n must be an int >= 1, got {n!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"generate: batch_size must be an int >= 1, got {batch_size!r}")
    given = {k: v for k, v in dict(labels=labels, prompt=prompt, sampler=sampler, steps=steps,
                                   guidance=guidance).items() if v is not None}
    refused = [k for k in given if k not in fam.accepts]
    if refused:
        takes = ", ".join(f"{k}=" for k in OPTIONS if k in fam.accepts) or "none of labels=/prompt=/sampler=/steps=/guidance="
        raise ValueError(f"generate: a {fam.name} takes no {', '.join(k + '=' for k in refused)}; it accepts {takes} "
                         f"(and seed=, batch_size=, progress=)")
    y = None
    if fam.classes is not None:
        if labels is None:
            raise ValueError(f"generate: a {fam.name} needs labels= (classes 0..{fam.classes(model) - 1})")
        y = _labels(labels, n, fam.classes(model), fam.name)
    if prompt is not None:  # one prompt for all images or one per image, sliced per batch like the labels
        prompt = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(prompt) != n or not all(isinstance(p, str) for p in prompt):
            raise ValueError(f"generate: prompt must be one string or {n} strings (one per image), got "
                             f"{len(prompt)} item(s)")
    options = {**fam.defaults, **{k: v for k, v in given.items() if k not in ("labels", "prompt")}}
    g = torch.Generator().manual_seed(int(seed))
    noise = fam.latents(model, n, g) if fam.latents is not None else None
    bs = batch_size or min(n, 500)
    starts = range(0, n, bs)
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"generate ({fam.name})", unit="batch")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in starts:
                j = min(i + bs, n)
                opts = {**options, **({"latents": noise[i:j]} if noise is not None else {}),
                        **({"prompt": prompt[i:j]} if prompt is not None else {})}
                out.append(fam.draw(model, j - i, None if y is None else y[i:j], g, opts).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).clamp(0, 1)


# --- chapter 17: the RealNVP flow and the noise-conditional score model ---
from .flows import RealNVP  # noqa: E402
from .score import ScoreNet  # noqa: E402


def _flow_latents(model: RealNVP, n: int, g: torch.Generator) -> Tensor:
    c = model.config
    return torch.randn(n, c.channels, c.image_size, c.image_size, generator=g)


def _draw_flow(model: RealNVP, n: int, labels, g, options) -> Tensor:
    # z ~ N(0, I) drawn up front, pushed through the inverse flow (temperature 1: the model's own density)
    return model.sample(options["latents"].to(_device(model)))


def _score_latents(model: ScoreNet, n: int, g: torch.Generator) -> Tensor:
    u = model.config.unet
    return torch.rand(n, u.image_channels, u.image_size, u.image_size, generator=g)


def _draw_score(model: ScoreNet, n: int, labels, g, options) -> Tensor:
    # annealed Langevin from U[0, 1) starts; the fresh noise comes from g (on the CPU), the step size from the model
    dev = _device(model)
    gen = _generator_on(dev, g)
    return model.sample(options["latents"].to(dev), steps=int(options["steps"]), generator=gen)


register(RealNVP, Family("RealNVP flow", _draw_flow, latents=_flow_latents))
register(ScoreNet, Family("score model", _draw_score, accepts=frozenset({"steps"}), latents=_score_latents,
                          defaults={"steps": 3}))


# --- chapter 19: class-conditional flow matching (fm_mnist, fm_reflow_mnist) ---

from .flow_matching import FlowMatching  # noqa: E402
from .recipes import flow_matching as _fm_recipe  # noqa: E402


def _fm_latents(model: FlowMatching, n: int, g: torch.Generator) -> Tensor:
    u = model.config.unet
    return torch.randn(n, u.image_channels, u.image_size, u.image_size, generator=g)


def _draw_fm(model: FlowMatching, n: int, labels, g, options) -> Tensor:
    dev = _device(model)
    return model.sample(options["latents"].to(dev), labels.to(dev), sampler=options["sampler"],
                        steps=int(options["steps"]), guidance=float(options["guidance"]))


register(FlowMatching, Family("flow-matching model", _draw_fm,
                              accepts=frozenset({"labels", "sampler", "steps", "guidance"}),
                              classes=lambda m: m.num_classes, latents=_fm_latents,
                              defaults={"sampler": _fm_recipe.CARD_SAMPLER,
                                        "steps": _fm_recipe.CARD_STEPS["cpu"],
                                        "guidance": _fm_recipe.CARD_GUIDANCE}))


# --- chapter 19: progressive distillation (distilled students of a DDPM) ---
from .distill import DistilledSet  # noqa: E402  (appended block: a later chapter registers its family)


def _draw_distilled(model: DistilledSet, n: int, labels, g, options) -> Tensor:
    # deterministic DDIM on the student's own grid: the starting noise is all the randomness
    return model.sample(options["latents"].to(_device(model)), steps=options["steps"])


def _distilled_latents(model: DistilledSet, n: int, g: torch.Generator) -> Tensor:
    u = model.config.unet
    return torch.randn(n, u.image_channels, u.image_size, u.image_size, generator=g)


def _draw_distilled_checked(model: DistilledSet, n: int, labels, g, options) -> Tensor:
    steps = options.get("steps")
    steps = model.steps[0] if steps is None else steps
    if steps not in model.steps:
        raise ValueError(f"generate: this distilled model samples only with the step counts its students were "
                         f"trained for, steps= one of {list(model.steps)}; got steps={steps!r}")
    return _draw_distilled(model, n, labels, g, {**options, "steps": steps})


register(DistilledSet, Family("distilled diffusion student", _draw_distilled_checked, accepts=frozenset({"steps"}),
                              latents=_distilled_latents))


# --- chapter 19: the laptop speed-run (flow matching in a small autoencoder's latent) ---
from .recipes import speedrun as _speedrun_recipe  # noqa: E402
from .speedrun import LatentFlow  # noqa: E402


def _shaped_latents(model: nn.Module, n: int, g: torch.Generator) -> Tensor:
    """``n`` draws of ``N(0, I)`` shaped as the model's ``latent_shape`` (the speed-run's and latent diffusion's)."""
    return torch.randn(n, *model.latent_shape, generator=g)


# LatentFlow.sample takes the arguments of FlowMatching.sample (noise, labels, sampler, steps, guidance)
register(LatentFlow, Family("latent flow-matching model", _draw_fm,
                            accepts=frozenset({"labels", "sampler", "steps", "guidance"}),
                            classes=lambda m: m.num_classes, latents=_shaped_latents,
                            defaults={"sampler": _speedrun_recipe.SAMPLER, "steps": _speedrun_recipe.STEPS,
                                      "guidance": _speedrun_recipe.GUIDANCE}))


# --- chapter 20: text-to-image with cross-attention (text_shapes) ---
from .recipes import text2image as _t2i_recipe  # noqa: E402
from .text2image import TextToImage  # noqa: E402


def _t2i_latents(model: TextToImage, n: int, g: torch.Generator) -> Tensor:
    c = model.config
    return torch.randn(n, c.image_channels, c.image_size, c.image_size, generator=g)


def _draw_t2i(model: TextToImage, n: int, labels, g, options) -> Tensor:
    if "prompt" not in options:
        raise ValueError(f"generate: a text-to-image model needs prompt= (words: {', '.join(model.tokenizer.vocab[2:])})")
    return model.sample(options["latents"].to(_device(model)), options["prompt"], sampler=options["sampler"],
                        steps=int(options["steps"]), guidance=float(options["guidance"]))


register(TextToImage, Family("text-to-image model", _draw_t2i, accepts=frozenset({"prompt", "sampler", "steps", "guidance"}),
                             latents=_t2i_latents, defaults={"sampler": _t2i_recipe.CARD_SAMPLER,
                                                             "steps": _t2i_recipe.CARD_STEPS["cpu"],
                                                             "guidance": _t2i_recipe.CARD_GUIDANCE}))


# --- chapter 20: latent diffusion (latent_dit_mnist: a DiT in the latent of latent_ae_mnist) ---
from .latent_diffusion import LatentDiffusion  # noqa: E402
from .recipes import latent as _latent_recipe  # noqa: E402

# LatentDiffusion.sample takes the arguments of FlowMatching.sample (noise, labels, sampler, steps, guidance)
register(LatentDiffusion, Family("latent diffusion model", _draw_fm,
                                 accepts=frozenset({"labels", "sampler", "steps", "guidance"}),
                                 classes=lambda m: m.num_classes, latents=_shaped_latents,
                                 defaults={"sampler": _latent_recipe.CARD_SAMPLER,
                                           "steps": _latent_recipe.CARD_STEPS["cpu"],
                                           "guidance": _latent_recipe.CARD_GUIDANCE}))


# --- chapter 16: the class-conditional GAN (cgan_mnist) and the style-based generator (stylegan_mnist) ---
from .cond_gan import CondGenerator, StyleGenerator  # noqa: E402


def _draw_cond_gan(model: CondGenerator, n: int, labels, g, options) -> Tensor:
    dev = _device(model)
    return model(options["latents"].to(dev), labels.to(dev))


register(CondGenerator, Family("class-conditional GAN generator", _draw_cond_gan, accepts=frozenset({"labels"}),
                               classes=lambda m: m.num_classes, latents=_gan_latents))
register(StyleGenerator, Family("style-based GAN generator", _draw_gan, latents=_gan_latents))
