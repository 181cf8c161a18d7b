"""How every shipped checkpoint is built and trained: one :class:`Recipe` per name in :data:`RECIPES`.

A recipe holds real functions: ``build() -> nn.Module`` makes the untrained model (the shape the weights load
into) and ``train(profile: Profile) -> (model, info)`` trains it at a :class:`companion.profile.Profile` (its
name sets the sizes, its device and seed the run) and returns the card fields ``description``, ``data``,
``steps`` and ``metrics``. ``companion.hub`` saves the result with a card and loads it back. The code lives in
:mod:`companion.recipes.classifiers`, :mod:`companion.recipes.vaes`, :mod:`companion.recipes.vqvae` and
:mod:`companion.recipes.evaluation`, :mod:`companion.recipes.gans` (``dcgan_mnist``, ``wgangp_mnist``),
:mod:`companion.recipes.cond_gans` (``cgan_mnist``, ``stylegan_mnist``, ``vqgan_mnist``),
:mod:`companion.recipes.diffusion`, :mod:`companion.recipes.flows` (``flow_mnist``, ``score_mnist``),
:mod:`companion.recipes.flow_matching` (``fm_mnist``, ``fm_reflow_mnist``), :mod:`companion.recipes.speedrun`
(``speedrun_mnist``, the laptop speed-run), :mod:`companion.recipes.latent` (``latent_ae_mnist``,
``latent_dit_mnist``) and :mod:`companion.recipes.text2image` (``shapes_attributes``, ``text_shapes``).
Introduced in chapter 02.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..profile import Profile
from . import (
    classifiers,
    cond_gans,
    diffusion,
    distill,
    evaluation,
    flow_matching,
    flows,
    gans,
    latent,
    speedrun,
    text2image,
    vaes,
    vqvae,
)

__all__ = ["FAMILIES", "RECIPES", "Recipe"]

#: The kinds of model a recipe can ship.
FAMILIES = ("classifier", "vae", "vqvae", "prior", "gan", "diffusion", "flow", "score", "autoencoder")


@dataclass(frozen=True)
class Recipe:
    """How checkpoint ``name`` is made.

    Attributes:
        build: ``() -> nn.Module``, the untrained model.
        train: ``(profile: Profile) -> (model, info)``; ``info`` holds ``description``, ``data``, ``steps``,
            ``metrics``.
        chapter: the chapter that introduces the model (``"02"``).
        family: one of :data:`FAMILIES`.
        needs: shipped checkpoints the training loads (a teacher, a frozen encoder), retrained first.
        storage: how the weights are stored (``"float32"``, or ``"float16"`` to halve a large checkpoint;
            the recipe then rounds its model with ``checkpoints.round_to_storage`` before measuring it).
    """

    build: Callable[[], nn.Module]
    train: Callable[[Profile], tuple[nn.Module, dict[str, Any]]]
    chapter: str
    family: str
    needs: tuple[str, ...] = ()
    storage: str = "float32"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not (callable(self.build) and callable(self.train)):
            raise TypeError("a Recipe's build and train must be functions")


RECIPES: dict[str, Recipe] = {
    "mlp_mnist": Recipe(classifiers.build_mlp_mnist, classifiers.train_mlp_mnist, "02", "classifier"),
    "lenet_mnist": Recipe(classifiers.build_lenet_mnist, classifiers.train_lenet_mnist, "04", "classifier"),
    "resnet_mnist": Recipe(classifiers.build_resnet_mnist, classifiers.train_resnet_mnist, "07", "classifier"),
    "vit_mnist": Recipe(classifiers.build_vit_mnist, classifiers.train_vit_mnist, "08", "classifier"),
    "vae_mnist": Recipe(vaes.build_vae_mnist, vaes.train_vae_mnist, "10", "vae", storage=vaes.VAE_STORAGE),
    "cvae_mnist": Recipe(vaes.build_cvae_mnist, vaes.train_cvae_mnist, "11", "vae", needs=("lenet_mnist",)),
    "betavae_shapes": Recipe(vaes.build_betavae_shapes, vaes.train_betavae_shapes, "11", "vae"),
    "vqvae_mnist": Recipe(vqvae.build_vqvae_mnist, vqvae.train_vqvae_mnist, "12", "vqvae"),
    "vqvae_prior_mnist": Recipe(vqvae.build_vqvae_prior_mnist, vqvae.train_vqvae_prior_mnist, "12", "prior",
                                needs=("vqvae_mnist",)),
    "mnist_features": Recipe(evaluation.build_mnist_features, evaluation.train_mnist_features, "13", "classifier"),
    "dcgan_mnist": Recipe(gans.build_dcgan_mnist, gans.train_dcgan_mnist, "14", "gan", needs=("lenet_mnist",)),
    "wgangp_mnist": Recipe(gans.build_wgangp_mnist, gans.train_wgangp_mnist, "15", "gan",
                           needs=("lenet_mnist", "mnist_features")),
    "cgan_mnist": Recipe(cond_gans.build_cgan_mnist, cond_gans.train_cgan_mnist, "16", "gan",
                         needs=("lenet_mnist", "mnist_features")),
    "stylegan_mnist": Recipe(cond_gans.build_stylegan_mnist, cond_gans.train_stylegan_mnist, "16", "gan",
                             needs=("lenet_mnist", "mnist_features")),
    "vqgan_mnist": Recipe(cond_gans.build_vqgan_mnist, cond_gans.train_vqgan_mnist, "16", "vqvae",
                          needs=("vqvae_mnist", "lenet_mnist", "mnist_features")),
    "flow_mnist": Recipe(flows.build_flow_mnist, flows.train_flow_mnist, "17", "flow"),
    "score_mnist": Recipe(flows.build_score_mnist, flows.train_score_mnist, "17", "score"),
    "ddpm_mnist": Recipe(diffusion.build_ddpm_mnist, diffusion.train_ddpm_mnist, "18", "diffusion"),
    "fm_mnist": Recipe(flow_matching.build_fm_mnist, flow_matching.train_fm_mnist, "19", "diffusion", needs=("lenet_mnist",)),
    "fm_reflow_mnist": Recipe(flow_matching.build_fm_reflow_mnist, flow_matching.train_fm_reflow_mnist, "19", "diffusion",
                              needs=("fm_mnist",)),
    "distill_mnist": Recipe(distill.build_distill_mnist, distill.train_distill_mnist, "19", "diffusion",
                            needs=("ddpm_mnist",), storage=distill.STORAGE),
    "speedrun_mnist": Recipe(speedrun.build_speedrun_mnist, speedrun.train_speedrun_mnist, "19", "diffusion",
                             needs=("lenet_mnist", "mnist_features"), storage=speedrun.STORAGE),
    "shapes_attributes": Recipe(text2image.build_shapes_attributes, text2image.train_shapes_attributes, "20",
                                "classifier"),
    "text_shapes": Recipe(text2image.build_text_shapes, text2image.train_text_shapes, "20", "diffusion",
                          needs=("shapes_attributes",)),
    "latent_ae_mnist": Recipe(latent.build_latent_ae_mnist, latent.train_latent_ae_mnist, "20", "autoencoder"),
    "latent_dit_mnist": Recipe(latent.build_latent_dit_mnist, latent.train_latent_dit_mnist, "20", "diffusion",
                               needs=("latent_ae_mnist", "lenet_mnist")),
}
