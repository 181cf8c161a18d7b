"""companion.models imports every model class and its config from the chapter module that defines it."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
from torch import nn

from companion import models

#: building blocks that are parts of a model, not models a reader builds on their own
PARTS = {
    "companion.mlp": {"Linear"},
    "companion.resnet": {"ShortcutA"},
    "companion.vit": {"MLP", "Block"},
    "companion.autoencoder": {"ConvEncoder", "ConvDecoder"},
    "companion.vae": {"Encoder", "Decoder"},
    "companion.vae_variants": {"CondEncoder", "CondDecoder", "CondConvEncoder", "CondConvDecoder"},
    "companion.vqvae": {"ResBlock", "CausalBlock"},
    "companion.unet": {"TimeResBlock", "AttentionBlock", "Downsample2d", "Upsample2d"},
}
MODULES = sorted({m for m, _ in models.WHERE.values()})


@pytest.mark.parametrize("name", models.__all__)
def test_every_name_is_the_chapter_modules_class(name):
    module, chapter = models.WHERE[name]
    cls = getattr(models, name)
    assert cls is getattr(importlib.import_module(module), models.RENAMED.get(name, name))
    assert inspect.getmodule(cls).__name__ == module, f"{name} is defined in {inspect.getmodule(cls).__name__}"
    assert issubclass(cls, nn.Module) or (dataclasses.is_dataclass(cls) and name.endswith("Config"))
    assert chapter.isdigit() and len(chapter) == 2


@pytest.mark.parametrize("module", MODULES)
def test_the_index_lists_every_model_and_config_of_the_module(module):
    mod = importlib.import_module(module)
    defined = {n for n, obj in vars(mod).items()
               if inspect.isclass(obj) and obj.__module__ == module and not n.startswith("_")
               and (issubclass(obj, nn.Module) or n.endswith("Config"))}
    indexed = {models.RENAMED.get(n, n) for n, (m, _) in models.WHERE.items() if m == module}
    assert indexed == defined - PARTS.get(module, set())


def test_models_is_plain_explicit_imports():
    tree = ast.parse(Path(models.__file__).read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not funcs & {"__getattr__", "__dir__"}, "no lazy module attributes: import every name explicitly"
    imported = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(models.__all__) <= imported and models.__all__ == sorted(models.WHERE)
    with pytest.raises(AttributeError):
        models.NotAModel  # noqa: B018
