"""companion.models re-exports every model from the chapter module that defines it."""

from __future__ import annotations

import importlib

import pytest
from torch import nn

from companion import models


@pytest.mark.parametrize("name", models.__all__)
def test_every_name_is_the_chapter_modules_class(name):
    module, chapter = models.WHERE[name]
    cls = getattr(models, name)
    assert cls is getattr(importlib.import_module(module), name)
    assert issubclass(cls, nn.Module) and chapter.isdigit()


def test_unknown_names_list_what_exists():
    with pytest.raises(AttributeError, match="available: .*ResNet"):
        models.NotAModel  # noqa: B018
    assert "ViT" in dir(models)
