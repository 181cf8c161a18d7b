"""Shipped checkpoints: small, hashed weights inside the package, each with a JSON card, and their recipes.

A checkpoint ``NAME`` is a card ``companion/weights/NAME.json`` (the data it saw, steps, profile, hardware,
metrics, torch version, the weights' sha256) and the weights file it names (a ``state_dict``, loaded with
``torch.load(..., weights_only=True)``). :func:`load_model` builds the model from its recipe
(:data:`companion.recipes.RECIPES`) and refuses weights whose hash differs from the card::

    from companion import hub
    model = hub.load_model("mlp_mnist")

From a shell::

    python -m companion.hub list                                # what ships, with cards
    python -m companion.hub verify                              # check every checkpoint; non-zero exit on a fault
    python -m companion.hub retrain mlp_mnist --profile cpu     # reproduce one from its recipe

Every card's ``seen`` field names exactly which images the checkpoint was trained on and which its metrics were
measured on (``{"train": "mnist-test[0:8000]", "heldout": "mnist-test[8000:10000]"}``, see
:attr:`companion.data.Splits.info`); :func:`heldout` gives the images a checkpoint never saw, whatever data is
present, for scoring it::

    x, y = hub.heldout("vae_mnist")                             # offline and online: MNIST-test[8000:]

A retrain never replaces a shipped checkpoint trained at a larger profile (``ci`` < ``cpu`` < ``gpu``) unless
``--force``: it writes to :data:`USER_DIR` (or ``--out DIR``) and says where. Introduced in chapter 02.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import data, toys
from .checkpoints import (
    WEIGHTS_DIR,
    CheckpointError,
    card_path,
    load_weights,
    read_card,
    sha256,
    weights_path,
    write_checkpoint,
)
from .profile import PROFILES, Profile, ProfileError, get_profile
from .recipes import RECIPES, Recipe
from .train import distributed

__all__ = ["CARD_FIELDS", "USER_DIR", "WEIGHTS_DIR", "CheckpointError", "Recipe", "RECIPES", "available", "card",
           "hardware", "heldout", "heldout_indices", "load_model", "main", "paths", "retrain", "seen", "sha256",
           "verify"]

#: Where a retrain writes when it must not replace the shipped checkpoint (``$GENERATEVISION_WEIGHTS`` overrides).
USER_DIR = Path(os.environ.get("GENERATEVISION_WEIGHTS", "~/.cache/generatevision/weights")).expanduser()
#: Fields every card has.
CARD_FIELDS = ("name", "description", "data", "steps", "profile", "hardware", "metrics", "torch_version", "sha256")


def _recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise CheckpointError(f"unknown checkpoint {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def available() -> list[str]:
    """Names of the checkpoints that have a recipe (shipped or not)."""
    return sorted(RECIPES)


def paths(name: str, directory: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(weights, card)`` paths of checkpoint ``name`` (the weights file is the one its card names)."""
    _recipe(name)
    return weights_path(name, directory), card_path(name, directory)


def card(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The JSON card of checkpoint ``name`` (shipped, or in ``directory``)."""
    _recipe(name)
    cp = card_path(name, directory)
    if not cp.is_file():
        raise CheckpointError(f"checkpoint {name!r} has no card at {cp}; retrain it: "
                              f"python -m companion.hub retrain {name}")
    return read_card(cp)


def load_model(name: str, directory: str | os.PathLike | None = None) -> nn.Module:
    """Build checkpoint ``name``'s model from its recipe and load the hash-verified weights (eval mode).

    Raises:
        CheckpointError: unknown name, missing or truncated file, or a hash that differs from the card.
    """
    model = _recipe(name).build()
    model.load_state_dict(load_weights(name, directory))
    return model.eval()


_TOYS_SPEC = re.compile(r"toys\.shapes\((?P<n>\d+), size=(?P<size>\d+), seed=(?P<seed>-?\d+)\)")
_SCENES_SPEC = re.compile(r"toys\.scenes\((?P<n>\d+), size=(?P<size>\d+), seed=(?P<seed>-?\d+)(?:, split='(?P<split>\w+)')?\)")


def seen(name: str, directory: str | os.PathLike | None = None) -> dict[str, str]:
    """The images checkpoint ``name`` saw, from its card: ``{"train": spec, "heldout": spec}``.

    A spec is a :func:`companion.data.split_indices` spec (``"mnist-test[0:8000]"``) or, for procedural data,
    the call that draws it (``"toys.shapes(30000, size=32, seed=0)"``). Introduced in chapter 10.

    Raises:
        CheckpointError: the card has no ``seen`` field (retrain the checkpoint to write one).
    """
    value = card(name, directory).get("seen")
    if not isinstance(value, dict) or not value.get("train") or not value.get("heldout"):
        raise CheckpointError(f"the card of {name!r} does not say which images it was trained on (no 'seen' field); "
                              f"retrain it: python -m companion.hub retrain {name}")
    return {str(k): str(v) for k, v in value.items()}


def _trained_on(name: str, directory: str | os.PathLike | None) -> list[str]:
    """The training specs of ``name`` and of every checkpoint its recipe builds on (its ``needs``), recursively."""
    specs, todo, done = [], [name], set()
    while todo:
        n = todo.pop()
        if n in done:
            continue
        done.add(n)
        specs.append(seen(n, directory if n == name else None)["train"])
        todo.extend(_recipe(n).needs)
    return specs


def heldout_indices(name: str, exclude: str | list[str] | tuple[str, ...] = (), *, total: int | None = None,
                    directory: str | os.PathLike | None = None) -> tuple[str, torch.Tensor]:
    """Which images of its evaluation split checkpoint ``name`` never saw: ``(source, indices)``.

    The evaluation split is the source of the card's ``seen["heldout"]`` (``"mnist-test"``); the indices are all of
    its ``total`` images (default: as many as are present) except those the checkpoint, or a checkpoint it builds
    on, was trained on, and except the ``exclude`` specs (e.g. a chapter's own training split,
    ``splits.info["train"]``). Trained on MNIST-test[:8000], it is held out on MNIST-test[8000:]; trained on the
    60,000-image training split, on all of MNIST-test. Introduced in chapter 10.

    Raises:
        CheckpointError: no ``seen`` on the card; ValueError: a procedural checkpoint (use :func:`heldout`), or no
        image left.
    """
    eval_spec = seen(name, directory)["heldout"]
    if _TOYS_SPEC.fullmatch(eval_spec):
        raise ValueError(f"{name} is evaluated on procedural data ({eval_spec}); use hub.heldout({name!r})")
    source, _ = data.split_indices(eval_spec)
    if total is None:
        dataset, split = source.rsplit("-", 1)
        loader = {"mnist": data.mnist, "fashion_mnist": data.fashion_mnist, "cifar10": data.cifar10}[dataset]
        total = len(loader(split))
    keep = torch.ones(total, dtype=torch.bool)
    others = [exclude] if isinstance(exclude, str) else list(exclude)
    for spec in _trained_on(name, directory) + others:
        if _TOYS_SPEC.fullmatch(spec):
            continue
        src, idx = data.split_indices(spec)
        if src == source:
            keep[idx[idx < total]] = False
    indices = keep.nonzero().flatten()
    if not len(indices):
        raise ValueError(f"no image of {source} is left that {name} never saw")
    return source, indices


def heldout(name: str, n: int | None = None, *, exclude: str | list[str] | tuple[str, ...] = (),
            directory: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out evaluation set of checkpoint ``name``: ``(x, y)``, images it was never trained on.

    MNIST checkpoints: the images of :func:`heldout_indices` (offline and online, MNIST-test[8000:] for a checkpoint
    trained on MNIST-test[:8000]), ``x`` float32 ``[N, 1, 28, 28]`` in [0, 1] and labels ``y`` int64 ``[N]``.
    Procedural ``betavae_shapes``: its card's evaluation draw (``toys.shapes(5000, size=32, seed=1)``, a different
    seed from training; ``n`` draws that many with the same seed), ``y`` the factors ``[N, 5]`` (float64, in
    :data:`companion.toys.shapes_factor_names` order). Procedural ``shapes_attributes`` and ``text_shapes`` (chapter
    20): the draw of :func:`companion.toys.scenes` their card names (``text_shapes``: scenes of the attribute
    combinations it never trained on), ``y`` the attribute labels ``[N, 4]`` (int64). Introduced in chapter 10.

    Args:
        name: a checkpoint whose card has ``seen``.
        n: if given, a deterministic random subset of that many images (:func:`companion.data.subset`, seed 1, as
            :func:`companion.data.mnist_splits` draws ``n_test``), so offline it is the same set.
        exclude: specs of more images to leave out (e.g. the chapter's own training split).
    """
    eval_spec = seen(name, directory)["heldout"]
    match = _TOYS_SPEC.fullmatch(eval_spec)
    if match is not None:
        x, f = toys.shapes(n or int(match["n"]), size=int(match["size"]), seed=int(match["seed"]))
        return x, torch.stack([f[k].double() for k in toys.shapes_factor_names], dim=1)
    match = _SCENES_SPEC.fullmatch(eval_spec)
    if match is not None:  # chapter 20's scenes: the images and their attribute labels [N, 4]
        x, labels, _ = toys.scenes(n or int(match["n"]), size=int(match["size"]), seed=int(match["seed"]),
                                   split=match["split"] or "all")
        return x, labels
    source, indices = heldout_indices(name, exclude, directory=directory)
    dataset, split = source.rsplit("-", 1)
    loader = {"mnist": data.mnist, "fashion_mnist": data.fashion_mnist, "cifar10": data.cifar10}[dataset]
    x, y = loader(split).tensors
    picked = torch.utils.data.TensorDataset(x[indices], y[indices])
    if n is not None:
        picked = data.subset(picked, n, seed=1)
    return picked.tensors[0], picked.tensors[1]


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


def _rank(profile: Any) -> int:
    return PROFILES.index(profile) if profile in PROFILES else -1


def _writable(directory: Path) -> bool:
    probe = directory if directory.exists() else directory.parent
    return os.access(probe, os.W_OK)


def retrain_target(name: str, profile: str, directory: str | os.PathLike | None = None,
                   force: bool = False) -> tuple[Path, str]:
    """Where :func:`retrain` will write checkpoint ``name`` trained at ``profile``, and why there.

    ``directory`` (``--out``) wins. Otherwise the shipped folder, unless the shipped card has a larger profile
    (and not ``force``) or the folder is read-only: then :data:`USER_DIR`.
    """
    if directory is not None:
        return Path(directory), "the folder asked for"
    try:
        shipped = card(name).get("profile")
    except CheckpointError:
        shipped = None
    if not force and _rank(shipped) > _rank(profile):
        return USER_DIR, (f"the shipped {name} was trained at profile {shipped!r}, more than {profile!r}; it is kept "
                          f"(pass --force to replace it)")
    if not _writable(WEIGHTS_DIR):
        return USER_DIR, f"the shipped folder {WEIGHTS_DIR} is read-only"
    return WEIGHTS_DIR, "the shipped folder"


def retrain(name: str, profile: str | Profile = "cpu", directory: str | os.PathLike | None = None, *,
            force: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train checkpoint ``name`` from its recipe at ``profile`` and save weights + card; returns the card.

    Where it saves is :func:`retrain_target`'s answer; unless ``quiet`` a line says where and why.
    :func:`load_model` without a ``directory`` keeps loading the shipped checkpoint.
    """
    recipe = _recipe(name)
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    target, why = retrain_target(name, prof.name, directory, force)
    model, info = recipe.train(prof)
    new_card = {
        "name": name,
        "description": info.get("description", ""),
        "chapter": recipe.chapter,
        "family": recipe.family,
        "data": info["data"],
        **({"seen": dict(info["seen"])} if info.get("seen") else {}),
        "steps": int(info["steps"]),
        "profile": prof.name,
        "hardware": hardware(),
        "metrics": info.get("metrics", {}),
        "torch_version": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "retrain": f"python -m companion.hub retrain {name} --profile {prof.name}",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
    }
    if not distributed.is_main():  # under torchrun every process trains; rank 0 alone saves
        return new_card
    written = write_checkpoint(name, model.state_dict(), new_card, target, storage=recipe.storage)
    if not quiet:
        print(f"{name}: wrote {target / written['weights']} and {card_path(name, target).name} ({why})")
        if target != WEIGHTS_DIR:
            print(f"  load it with companion.hub.load_model({name!r}, directory={str(target)!r})")
    return written


def _check(name: str, directory: str | os.PathLike | None) -> str | None:
    """What is wrong with checkpoint ``name`` (``None``: nothing)."""
    try:
        c = card(name, directory)
        missing = [f for f in CARD_FIELDS if c.get(f) in (None, "")]
        if missing:
            return f"card {card_path(name, directory)} lacks {', '.join(missing)}"
        model = load_model(name, directory)
    except (CheckpointError, ProfileError) as e:
        return str(e)
    except Exception as e:  # load_state_dict: the weights do not fit the recipe's model, or anything unforeseen
        return f"cannot load it ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
    n = sum(p.numel() for p in model.parameters())
    if "parameters" in c and n != c["parameters"]:
        return f"the model has {n:,} parameters, the card says {c['parameters']:,}"
    return None


def verify(directory: str | os.PathLike | None = None) -> dict[str, str | None]:
    """Check every checkpoint (each recipe's, and any card without one): ``{name: None if fine else what is wrong}``.

    Each check reads the card, compares the weights' sha256, loads them with ``weights_only=True`` into the
    recipe's model and compares the parameter count with the card.
    """
    d = Path(directory) if directory is not None else WEIGHTS_DIR
    names = sorted(set(RECIPES) | {p.stem for p in d.glob("*.json")})
    return {n: _check(n, directory) if n in RECIPES else f"card {d / (n + '.json')} has no recipe" for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.hub", description="Shipped checkpoints.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list checkpoints and their cards")
    v = sub.add_parser("verify", help="check every checkpoint: card, sha256, weights-only load, parameter count")
    v.add_argument("--dir", default=None, help="a folder of checkpoints (default: the shipped ones)")
    p = sub.add_parser("retrain", help="retrain a checkpoint from its recipe")
    p.add_argument("name", choices=available())
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--out", default=None, help=f"write here (default: the shipped folder, or {USER_DIR} when the "
                                               "shipped checkpoint has a larger profile)")
    p.add_argument("--force", action="store_true", help="replace a shipped checkpoint trained at a larger profile")
    p.add_argument("--device", default=None, help="override the profile's device (e.g. cpu for a gpu-sized run)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is often faster on a busy machine)")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for n in available():
            try:
                c = card(n)
                print(f"{n:18s} ch{RECIPES[n].chapter}  {c['profile']:4s} {c['steps']:>7d} steps  "
                      f"{json.dumps(c['metrics'])[:120]}  data: {c['data'][:80]}")
            except CheckpointError as e:
                print(f"{n:18s} not shipped ({e})")
        return 0
    if args.cmd == "verify":
        results = verify(args.dir)
        for n, problem in results.items():
            print(f"{n}: {'ok' if problem is None else 'FAIL: ' + problem}")
        bad = sum(p is not None for p in results.values())
        print(f"{len(results) - bad} of {len(results)} checkpoints ok")
        return 1 if bad else 0
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    distributed.init_from_env()  # a no-op unless torchrun started several processes
    try:
        profile = get_profile(args.profile, device=args.device)
    except ProfileError as e:
        parser.error(str(e))
    c = retrain(args.name, profile, args.out, force=args.force, quiet=not distributed.is_main())
    if distributed.is_main():
        print(json.dumps(c, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
