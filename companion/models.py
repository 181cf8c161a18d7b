"""Every model of the course under one roof: ``from companion.models import ResNet, VectorQuantizer``.

Each name is defined in the module of the chapter that builds it (``companion.resnet`` for chapter 07, …) and
re-exported here on first use, so this index never drifts from the definitions and importing it stays cheap.
``python -c "import companion.models as m; print(m.__all__)"`` lists them; :data:`WHERE` says which chapter
module holds each.
"""

from __future__ import annotations

import importlib
from typing import Any

#: name -> (module that defines it, chapter)
WHERE: dict[str, tuple[str, str]] = {
    "SoftmaxRegression": ("companion.mlp", "02"),
    "MLP": ("companion.mlp", "02"),
    "LeNet": ("companion.cnn", "04"),
    "ShallowCNN": ("companion.cnn", "04"),
    "VGG": ("companion.vgg", "05"),
    "BasicBlock": ("companion.resnet", "07"),
    "Bottleneck": ("companion.resnet", "07"),
    "ResNet": ("companion.resnet", "07"),
    "PatchEmbedding": ("companion.vit", "08"),
    "MultiHeadAttention": ("companion.layers", "08"),
    "ViT": ("companion.vit", "08"),
    "LinearAutoencoder": ("companion.autoencoder", "09"),
    "ConvAutoencoder": ("companion.autoencoder", "09"),
    "VAE": ("companion.vae", "10"),
    "BetaVAE": ("companion.vae_variants", "11"),
    "CVAE": ("companion.vae_variants", "11"),
    "BetaSweep": ("companion.vae_variants", "11"),
    "VectorQuantizer": ("companion.vqvae", "12"),
    "VQVAE": ("companion.vqvae", "12"),
    "CodePrior": ("companion.vqvae", "12"),
}

__all__ = sorted(WHERE)


def __getattr__(name: str) -> Any:
    if name not in WHERE:
        raise AttributeError(f"companion.models has no model {name!r}; available: {', '.join(__all__)}")
    value = getattr(importlib.import_module(WHERE[name][0]), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
