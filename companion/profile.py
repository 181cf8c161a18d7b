"""Run profiles: one settings object that tells a chapter how big to make everything.

Every chapter starts with a papermill ``parameters`` cell that sets ``PROFILE``. This module turns that name
into a :class:`Profile`:

* ``ci`` — CI, tests and quick book builds: ≤ 45 s on 2 CPU cores, small data.
* ``cpu`` — a reader's laptop (what ``auto`` picks without a GPU): ≤ 5 min on a 4-core CPU.
* ``gpu`` — Colab T4 or any CUDA GPU (what ``auto`` picks with one): ≤ 30 min, full training.

Resolution order: the notebook's parameter, else ``$COURSE_PROFILE``, else ``auto`` (``gpu`` when CUDA is
available, ``cpu`` otherwise). Introduced in chapter 01.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import torch

PROFILES = ("ci", "cpu", "gpu")
VALID_NAMES = (*PROFILES, "auto")

T = TypeVar("T")


class ProfileError(ValueError):
    """An unknown profile name, or a profile that cannot run here (``gpu`` without CUDA)."""


@dataclass(frozen=True)
class Profile:
    """The resolved settings for one run.

    Attributes:
        name: ``"ci"``, ``"cpu"`` or ``"gpu"``.
        device: the torch device to train on.
        seed: the seed every random generator was set from.
        requested: what was asked for (``"auto"`` resolves to ``cpu``/``gpu``).
    """

    name: str
    device: torch.device
    seed: int = 0
    requested: str = "auto"

    @property
    def is_ci(self) -> bool:
        return self.name == "ci"

    def pick(self, ci: T, cpu: T, gpu: T | None = None) -> T:
        """Choose a value per profile: ``P.pick(ci=500, cpu=10_000, gpu=60_000)`` (gpu defaults to cpu)."""
        if self.name == "ci":
            return ci
        if self.name == "cpu" or gpu is None:
            return cpu
        return gpu

    def __str__(self) -> str:
        return f"profile={self.name} · device={self.device} · seed={self.seed}"


def resolve_name(name: str | None = None) -> str:
    """Resolve a profile name (parameter → ``$COURSE_PROFILE`` → ``auto``) to one of ``ci``/``cpu``/``gpu``."""
    raw = name if name not in (None, "") else os.environ.get("COURSE_PROFILE", "auto") or "auto"
    key = str(raw).strip().lower()
    if key not in VALID_NAMES:
        raise ProfileError(f"unknown profile {raw!r}: valid profiles are {', '.join(VALID_NAMES)}")
    if key == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return key


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if installed) and torch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency, but keep seeding usable without it
        pass
    torch.manual_seed(seed)


def get_profile(name: str | None = None, seed: int = 0, device: str | None = None) -> Profile:
    """Resolve ``name`` into a :class:`Profile` without side effects.

    Args:
        name: ``ci``, ``cpu``, ``gpu``, ``auto`` or ``None`` (read ``$COURSE_PROFILE``).
        seed: the run's seed.
        device: override the device (e.g. ``"cpu"`` to debug a gpu-sized run on a CPU).

    Raises:
        ProfileError: for an unknown name, or ``gpu`` requested on a machine without CUDA.
    """
    requested = name if name not in (None, "") else os.environ.get("COURSE_PROFILE", "auto") or "auto"
    resolved = resolve_name(name)
    if device is None:
        if resolved == "gpu" and not torch.cuda.is_available():
            raise ProfileError(
                "profile 'gpu' needs a CUDA GPU and none is available here: "
                "use PROFILE='cpu' (or 'auto'), or pass device='cpu' to run the gpu-sized settings on the CPU"
            )
        device = "cuda" if resolved == "gpu" else "cpu"
    return Profile(name=resolved, device=torch.device(device), seed=int(seed), requested=str(requested))


def setup(name: str | None = None, seed: int = 0, data: str | None = None, device: str | None = None) -> Profile:
    """Resolve the profile, seed everything and print the run's one status line.

    The line names the profile, device, data source and seed, e.g.
    ``GenerateVision · profile=ci · device=cpu · data=MNIST from ../shared/datasets/mnist · seed=0``.

    Args:
        name: the notebook's ``PROFILE`` parameter.
        seed: seed for Python, NumPy and torch.
        data: a short description of the data the chapter uses (``companion.data.data_source()``).
        device: optional device override.
    """
    profile = get_profile(name, seed=seed, device=device)
    seed_everything(profile.seed)
    if profile.name == "ci":
        # Tiny tensors run faster on one thread, and CI executes two notebooks at once on 2 cores.
        torch.set_num_threads(1)
    parts = [f"profile={profile.name}"]
    if profile.requested.strip().lower() == "auto":
        parts[0] += " (auto)"
    parts += [f"device={profile.device}", f"data={data or 'none'}", f"seed={profile.seed}"]
    print("GenerateVision · " + " · ".join(parts))
    return profile
