"""Shipped checkpoints: small, hashed weights inside the package, each with a JSON card, and their recipes.

A checkpoint ``NAME`` is two files in ``companion/checkpoints/``: ``NAME.pt`` (a ``state_dict``, loaded with
``torch.load(..., weights_only=True)``) and ``NAME.json``, its card: the data it saw, steps, profile,
hardware, metrics, torch version and the file's sha256. :func:`load` refuses a file whose hash differs.

Each checkpoint has a recipe (how to build the model and how to train it); retrain one with::

    python -m companion.hub retrain mlp_mnist --profile cpu

which overwrites the ``.pt`` and writes a fresh card. Introduced in chapter 02.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import (
    WEIGHTS_DIR,
    CheckpointError,
    atomic_save,
    atomic_write_text,
    load_weights,
    read_card,
    sha256,
)

CHECKPOINT_DIR = WEIGHTS_DIR
CARD_FIELDS = ("name", "description", "data", "steps", "profile", "hardware", "metrics", "torch_version", "sha256")


@dataclass(frozen=True)
class Recipe:
    """Where a checkpoint's model and training code live, as ``"module:function"`` strings (imported lazily).

    ``build() -> nn.Module`` makes the untrained model; ``train(profile: str) -> (model, info)`` trains it and
    returns card fields (``data``, ``steps``, ``metrics``, ``description``).
    """

    build: str
    train: str
    chapter: str


RECIPES: dict[str, Recipe] = {
    "mlp_mnist": Recipe(build="companion.mlp:build_hub_mlp", train="companion.mlp:train_hub_mlp", chapter="02"),
    "lenet_mnist": Recipe(build="companion.cnn:build_hub_lenet", train="companion.cnn:train_hub_lenet", chapter="04"),
    "resnet_mnist": Recipe(build="companion.resnet:build_hub_resnet", train="companion.resnet:train_hub_resnet",
                           chapter="07"),
    "vit_mnist": Recipe(build="companion.vit:build_hub_vit", train="companion.vit:train_hub_vit", chapter="08"),
    "vae_mnist": Recipe(build="companion.vae:build_hub_vae", train="companion.vae:train_hub_vae", chapter="10"),
    "vqvae_mnist": Recipe(build="companion.vqvae:build_hub_vqvae", train="companion.vqvae:train_hub_vqvae",
                          chapter="12"),
    "vqvae_prior_mnist": Recipe(build="companion.vqvae:build_hub_prior", train="companion.vqvae:train_hub_prior",
                                chapter="12"),
    "cvae_mnist": Recipe(build="companion.vae_variants:build_hub_cvae", train="companion.vae_variants:train_hub_cvae",
                         chapter="11"),
    "betavae_shapes": Recipe(build="companion.vae_variants:build_hub_betavae",
                             train="companion.vae_variants:train_hub_betavae", chapter="11"),
}


def _resolve(ref: str) -> Callable[..., Any]:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


def _check_name(name: str) -> Recipe:
    if name not in RECIPES:
        raise CheckpointError(f"unknown checkpoint {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def available() -> list[str]:
    """Names of checkpoints with a recipe (shipped or not)."""
    return sorted(RECIPES)


def paths(name: str, directory: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(weights, card)`` paths of checkpoint ``name``."""
    _check_name(name)
    d = Path(directory) if directory is not None else CHECKPOINT_DIR
    return d / f"{name}.pt", d / f"{name}.json"


def card(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON card of a shipped checkpoint."""
    _, card_path = paths(name, directory)
    if not card_path.is_file():
        raise CheckpointError(f"checkpoint {name!r} has no card at {card_path}; retrain it: "
                              f"python -m companion.hub retrain {name}")
    return read_card(card_path)


def load(name: str, directory: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Load checkpoint ``name``'s ``state_dict`` after checking its sha256 against the card.

    Raises:
        CheckpointError: unknown name, missing file, or a hash that differs from the card.
    """
    _check_name(name)
    return load_weights(name, directory)


def load_model(name: str, directory: str | os.PathLike | None = None) -> nn.Module:
    """Build checkpoint ``name``'s model from its recipe and load the verified weights (eval mode)."""
    model = _resolve(_check_name(name).build)()
    model.load_state_dict(load(name, directory))
    return model.eval()


def hardware() -> str:
    """A one-line description of this machine (CPU model / GPU name, cores, torch threads)."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def save(name: str, model: nn.Module, info: dict[str, Any], profile: str,
         directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """Write ``model``'s weights atomically and its card; returns the card."""
    weights, card_path = paths(name, directory)
    atomic_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, weights)
    recipe = RECIPES[name]
    new_card = {
        "name": name,
        "description": info.get("description", ""),
        "chapter": recipe.chapter,
        "data": info["data"],
        "steps": int(info["steps"]),
        "profile": profile,
        "hardware": hardware(),
        "metrics": info.get("metrics", {}),
        "torch_version": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "bytes": weights.stat().st_size,
        "sha256": sha256(weights),
        "retrain": f"python -m companion.hub retrain {name} --profile {profile}",
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
    }
    atomic_write_text(json.dumps(new_card, indent=2) + "\n", card_path)
    return new_card


def retrain(name: str, profile: str = "cpu", directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train checkpoint ``name`` from its recipe at ``profile`` and save weights + card."""
    recipe = _check_name(name)
    model, info = _resolve(recipe.train)(profile)
    return save(name, model, info, profile, directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.hub", description="Shipped checkpoints.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list checkpoints and their cards")
    sub.add_parser("verify", help="check every shipped checkpoint's hash")
    p = sub.add_parser("retrain", help="retrain a checkpoint from its recipe")
    p.add_argument("name", choices=available())
    p.add_argument("--profile", default="cpu", choices=("ci", "cpu", "gpu"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is often faster on a busy machine)")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for n in available():
            try:
                c = card(n)
                print(f"{n:16s} ch{RECIPES[n].chapter}  {c['profile']:4s} {c['steps']:>7d} steps  "
                      f"{json.dumps(c['metrics'])}  data: {c['data']}")
            except CheckpointError as e:
                print(f"{n:16s} not shipped ({e})")
    elif args.cmd == "verify":
        for n in available():
            load(n)
            print(f"{n}: ok")
    else:
        if args.threads is not None:
            if args.threads < 1:
                parser.error(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        c = retrain(args.name, args.profile)
        print(json.dumps(c, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
