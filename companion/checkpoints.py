"""Files that survive a crash: atomic writes, hashes, training states, checkpoint cards and verified weights.

A shipped checkpoint ``NAME`` is a card ``NAME.json`` in :data:`WEIGHTS_DIR` and the weights file it names
(``card["weights"]``, ``NAME.pt`` when the card does not say). The card holds the weights' sha256;
:func:`load_weights` refuses a file whose hash differs and loads with ``torch.load(..., weights_only=True)``
(a checkpoint is data, never code).

:func:`write_checkpoint` can be killed at any moment and leaves the old or the new checkpoint loadable: the
new weights go to a new, content-addressed file ``NAME-<sha12>.pt``; the card, rewritten atomically, is the
single commit point; old weights are removed only after it. :func:`save_state` / :func:`load_state` hold a
resumable training state (model, optimiser, scheduler, random generators, counters) as a plain dict. Every
failure to read a file raises :class:`CheckpointError` naming the file and what to do. Introduced in chapter 02.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import pickle
import re
import uuid
from pathlib import Path
from typing import Any

import torch

#: The folder of the shipped weights and cards (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class CheckpointError(RuntimeError):
    """A missing, truncated or tampered checkpoint file, or an unknown checkpoint name."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and one ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp"):  # a killed writer's
        Path(stale).unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a half-written ``path``: the old file or the new one."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(buf.getvalue(), path)
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a reader sees the old content or the new, never a mix."""
    _atomic_write_bytes(text.encode("utf-8"), path)
    return Path(path)


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _torch_load(path: Path, what: str, advice: str) -> Any:
    """``torch.load(weights_only=True)``, turning every failure into one clear :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist; {advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled code, ...: all mean "not a good file"
        size = path.stat().st_size
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"  # torch.save writes a zip archive
        if isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e):
            kind = ("it holds Python objects other than tensors and plain values, which a weights only load refuses "
                    "(code in a checkpoint is never run)")
        elif zipped:
            kind = "a torch file cut short or damaged"
        else:
            kind = "not a file torch.save wrote"
        raise CheckpointError(f"{what} {path} cannot be read ({size} bytes; {kind}): {advice}") from None

def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a resumable training state (a dict of tensors, numbers, strings, lists, dicts) atomically."""
    if not isinstance(state, dict):
        raise TypeError(f"save_state expects a dict, got {type(state).__name__}")
    return atomic_save(state, path)

def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (``weights_only=True``: data, never code).

    Raises:
        CheckpointError: the file is missing, truncated, corrupted or not a dict; the message names it.
    """
    path = Path(path)
    state = _torch_load(path, "training state", "delete it to start the run afresh, or restore a good copy")
    if not isinstance(state, dict):
        raise CheckpointError(f"training state {path} holds a {type(state).__name__}, not a dict; delete it to "
                              "start the run afresh")
    return state


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint card (JSON).

    Raises:
        CheckpointError: the file is missing, or is not a JSON object (truncated, garbage); the message names it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint card {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint card {path} cannot be read ({e})") from None
    try:
        card = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"checkpoint card {path} is not valid JSON (truncated or corrupted: {e.msg} at "
                              f"line {e.lineno}); restore it (git checkout, or reinstall the package) or retrain "
                              "the checkpoint") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"checkpoint card {path} holds a {type(card).__name__}, not a JSON object")
    return card


def card_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where checkpoint ``name``'s card lives."""
    return Path(directory if directory is not None else WEIGHTS_DIR) / f"{name}.json"


def weights_path(name: str, directory: str | os.PathLike | None = None,
                 card: dict[str, Any] | None = None) -> Path:
    """The weights file that checkpoint ``name``'s card names (``NAME.pt`` when there is no card)."""
    d = Path(directory if directory is not None else WEIGHTS_DIR)
    if card is None:
        cp = card_path(name, d)
        card = read_card(cp) if cp.is_file() else {}
    return d / str(card.get("weights", f"{name}.pt"))


def load_weights(name: str, directory: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Checkpoint ``name``'s ``state_dict``, after checking the weights' sha256 against the card.

    Raises:
        CheckpointError: no card, an unreadable card, a missing weights file, or a hash that differs.
    """
    cp = card_path(name, directory)
    if not cp.is_file():
        raise CheckpointError(f"checkpoint {name!r} has no card at {cp}; retrain it: "
                              f"python -m companion.hub retrain {name}")
    card = read_card(cp)
    weights = weights_path(name, directory, card)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {name!r}: weights file {weights} (named by {cp.name}) is missing; "
                              f"retrain it: python -m companion.hub retrain {name}")
    digest = sha256(weights)
    if digest != card.get("sha256"):
        raise CheckpointError(f"checkpoint {name!r}: sha256 of {weights} is {digest[:12]}…, its card {cp} says "
                              f"{str(card.get('sha256'))[:12]}… — the file is corrupted or was changed without "
                              f"its card; retrain it: python -m companion.hub retrain {name}")
    retrain = f"retrain it: python -m companion.hub retrain {name}"
    state = _torch_load(weights, f"checkpoint {name!r}: weights file", retrain)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {name!r}: {weights} holds a {type(state).__name__}, not a state_dict; "
                              f"{retrain}")
    return state


def _stale_files(name: str, directory: Path, keep: str | None) -> list[Path]:
    """Weights of ``name`` that its card does not name, and temporary files left by an interrupted save."""
    own = re.compile(rf"^{re.escape(name)}(-[0-9a-f]{{12}})?\.pt$")
    tmp = re.compile(rf"^\.{re.escape(name)}(-[0-9a-f]{{12}})?\.(pt|json)\.[0-9a-f]{{8}}\.tmp$")
    return [p for p in directory.iterdir()
            if (own.match(p.name) and p.name != keep) or tmp.match(p.name)]


#: How a checkpoint's floating-point tensors can be stored: as trained, or halved in size.
STORAGE = ("float32", "float16")


def round_to_storage(model: torch.nn.Module, storage: str = "float16") -> torch.nn.Module:
    """Round ``model``'s floating-point parameters and buffers, in place, to what ``storage`` can hold.

    A checkpoint stored as float16 (:func:`write_checkpoint`) is exact only for weights already rounded: round
    first, *then* measure the card's metrics, so the card describes the weights a reader loads.
    ``load_state_dict`` casts them back to the model's float32 without loss.

    Returns:
        ``model``.
    """
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
    if storage == "float16":
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                if t.dtype == torch.float32:
                    t.copy_(t.half().float())
    return model


def _stored(name: str, state_dict: dict[str, torch.Tensor], storage: str) -> dict[str, torch.Tensor]:
    if storage not in STORAGE:
        raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
    out = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if storage == "float16" and v.dtype == torch.float32:
            h = v.half()
            if not torch.equal(h.float(), v):
                raise CheckpointError(f"checkpoint {name!r}: tensor {k!r} is not exactly representable in float16; "
                                      "round the model first (checkpoints.round_to_storage) and measure it after")
            v = h
        out[k] = v
    return out


def write_checkpoint(name: str, state_dict: dict[str, torch.Tensor], card: dict[str, Any],
                     directory: str | os.PathLike | None = None, storage: str = "float32") -> dict[str, Any]:
    """Save checkpoint ``name`` (weights + card) so that a kill at any moment leaves the old or the new one.

    1. the weights go to a new file ``NAME-<sha12>.pt`` (atomically; the old weights are untouched);
    2. the card, completed with ``weights``, ``sha256`` and ``bytes``, replaces ``NAME.json`` atomically —
       the commit point: before it the old card names the old weights, after it the new card the new ones;
    3. weights the card no longer names, and temporary files of earlier interrupted saves, are removed.

    ``storage="float16"`` stores float32 tensors as float16 (half the bytes) and records ``"storage"`` in the
    card; it refuses weights that float16 cannot hold exactly (round them with :func:`round_to_storage` first).

    Returns:
        The card as written.
    """
    d = Path(directory if directory is not None else WEIGHTS_DIR)
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(_stored(name, state_dict, storage), buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    fname = f"{name}-{digest[:12]}.pt"
    new_card = {**card, **({"storage": storage} if storage != "float32" else {}),
                "weights": fname, "bytes": len(data), "sha256": digest}
    cp = card_path(name, d)
    existed = (d / fname).is_file()
    committed = False
    try:
        if not existed or sha256(d / fname) != digest:
            _atomic_write_bytes(data, d / fname)
        atomic_write_text(json.dumps(new_card, indent=2) + "\n", cp)
        committed = True
    finally:
        if not committed and not existed:
            try:
                current = read_card(cp).get("weights") if cp.is_file() else None
            except CheckpointError:
                current = None
            if current != fname:
                (d / fname).unlink(missing_ok=True)
    for p in _stale_files(name, d, keep=fname):
        p.unlink(missing_ok=True)
    return new_card
