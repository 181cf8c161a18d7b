"""Files that must never be half-written or silently wrong: atomic writes, hashes, training states, weights.

* :func:`atomic_save` / :func:`atomic_write_text` write to a temporary file beside the target, then rename it
  over the target: a crash leaves the old file or the new one, never a mix (and no temporary file behind);
* :func:`save_state` / :func:`load_state`: a resumable training state (model, optimiser, scheduler, random
  generators, counters) as a plain dict, read back with ``torch.load(..., weights_only=True)`` — data, never code;
* :func:`sha256`, :func:`read_card` and :func:`load_weights`: the shipped weights in :data:`WEIGHTS_DIR`, each
  ``NAME.pt`` checked against the sha256 written in its card ``NAME.json`` before it is loaded.

Every failure to read a file raises :class:`CheckpointError` naming the file and what to do about it.
Introduced in chapter 02.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "WEIGHTS_DIR",
    "CheckpointError",
    "atomic_save",
    "atomic_write_text",
    "sha256",
    "save_state",
    "load_state",
    "read_card",
    "load_weights",
]

_PACKAGE = Path(__file__).resolve().parent
#: Where the shipped weights and their cards live: ``companion/weights/NAME.pt`` and ``NAME.json``.
WEIGHTS_DIR = _PACKAGE / "weights"
# TEMPORARY FALLBACK (delete these two lines once the weights live in companion/weights/): until the folder is
# renamed, read the shipped files from their old place.
if not WEIGHTS_DIR.is_dir() and (_PACKAGE / "checkpoints").is_dir():
    WEIGHTS_DIR = _PACKAGE / "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint or card that is missing, unreadable (truncated, corrupted) or fails its hash check."""


def _temp_pattern(path: Path) -> str:
    return glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp"


def _atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``; clean up on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(_temp_pattern(path)):  # left by a process killed mid-write
        try:
            os.remove(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary file + rename); returns the path."""
    return _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary file + rename); returns the path."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return _atomic_write(path, write)


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
    """The JSON card at ``path`` as a dict.

    Raises:
        CheckpointError: the card is missing, truncated or not a JSON object; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"card {path} does not exist")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"card {path} is not valid JSON ({e}); it is truncated or corrupted: restore it "
                              "(git checkout) or retrain the checkpoint") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"card {path} holds a JSON {type(card).__name__}, not an object; restore it or "
                              "retrain the checkpoint")
    return card


def load_weights(name: str, directory: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of shipped checkpoint ``name`` (``NAME.pt`` in ``directory``, default :data:`WEIGHTS_DIR`).

    The file's sha256 must equal the one in its card ``NAME.json``.

    Raises:
        CheckpointError: a missing or unreadable card or weights file, or a hash that differs from the card.
    """
    d = Path(directory) if directory is not None else WEIGHTS_DIR
    weights, card_path = d / f"{name}.pt", d / f"{name}.json"
    retrain = f"retrain it: python -m companion.hub retrain {name}"
    if not card_path.is_file():
        raise CheckpointError(f"checkpoint {name!r} has no card at {card_path}; {retrain}")
    info = read_card(card_path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {name!r}: weights file {weights} is missing; {retrain}")
    digest = sha256(weights)
    if digest != info.get("sha256"):
        raise CheckpointError(f"checkpoint {name!r}: sha256 of {weights} is {digest[:12]}…, the card says "
                              f"{str(info.get('sha256'))[:12]}… — the file is corrupted or was changed without "
                              f"its card; {retrain}")
    state = _torch_load(weights, f"checkpoint {name!r}: weights file", retrain)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {name!r}: {weights} holds a {type(state).__name__}, not a state_dict; "
                              f"{retrain}")
    return state
