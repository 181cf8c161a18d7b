"""Self-checks for the chapters' exercises.

Each exercise has an id ``"CC.N"`` (chapter, number), a companion reference implementation and a check.
A chapter cell calls::

    to_grayscale = check("01.1", to_grayscale)

which runs the check on the student's function and prints one line:

* ``not attempted yet`` — the stub still raises ``NotImplementedError``; the chapter continues with the
  companion reference (so a papermill run never breaks on a stub);
* ``✓ passed`` — with "your value / expected value" evidence; the student's function is returned;
* ``✗ not yet right`` — what differed; the reference is returned so later cells still work.

Checks live in ``companion/exercises/chNN.py``, one module per chapter, and register themselves with
:func:`exercise`. The solutions are in ``solutions/`` at the repository root (tests prove they pass).
Introduced in chapter 01.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

_ID = re.compile(r"^(\d\d)\.(\d+)$")


@dataclass(frozen=True)
class Exercise:
    """One registered exercise: its id, title, the companion reference and the check function.

    ``check(fn)`` raises ``AssertionError`` with a "your value / expected value" message when ``fn`` is wrong
    and returns a short evidence string when it is right.
    """

    id: str
    title: str
    reference: Callable[..., Any]
    check: Callable[[Callable[..., Any]], str]


@dataclass(frozen=True)
class Result:
    """The outcome of one check: ``status`` is ``"passed"``, ``"failed"`` or ``"not attempted"``."""

    exercise: Exercise
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def line(self) -> str:
        head = f"Exercise {self.exercise.id} ({self.exercise.title})"
        if self.status == "passed":
            return f"✓ {head}: passed — {self.message}"
        if self.status == "not attempted":
            return f"· {head}: not attempted yet — using the companion reference so the chapter can go on"
        return f"✗ {head}: not yet right — {self.message} (using the companion reference for now)"


REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, title: str, reference: Callable[..., Any]) -> Callable[[Callable], Callable]:
    """Decorator registering a check function for exercise ``id``."""
    if not _ID.match(id):
        raise ValueError(f"exercise id must look like '01.2', got {id!r}")

    def wrap(check_fn: Callable[[Callable[..., Any]], str]) -> Callable[[Callable[..., Any]], str]:
        if id in REGISTRY:
            raise ValueError(f"exercise {id} is registered twice")
        REGISTRY[id] = Exercise(id=id, title=title, reference=reference, check=check_fn)
        return check_fn

    return wrap


def get(id: str) -> Exercise:
    """Look up exercise ``id`` (importing its chapter's checks on first use)."""
    m = _ID.match(str(id))
    if not m:
        raise ValueError(f"exercise id must look like '01.2', got {id!r}")
    if id not in REGISTRY:
        try:
            importlib.import_module(f"{__name__}.ch{m.group(1)}")
        except ModuleNotFoundError:
            pass
    if id not in REGISTRY:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise KeyError(f"no exercise {id!r}; registered: {known}")
    return REGISTRY[id]


def result(id: str, fn: Callable[..., Any]) -> Result:
    """Run exercise ``id``'s check on ``fn`` and return a :class:`Result` (never raises for a wrong ``fn``)."""
    ex = get(id)
    if not callable(fn):
        return Result(ex, "failed", f"expected a function, got {type(fn).__name__}")
    try:
        evidence = ex.check(fn)
    except NotImplementedError:
        return Result(ex, "not attempted", "")
    except AssertionError as e:
        return Result(ex, "failed", str(e) or "a check failed")
    except Exception as e:  # a student's bug: report it as a failed check, not a crash
        return Result(ex, "failed", f"your function raised {type(e).__name__}: {e}")
    return Result(ex, "passed", evidence)


def check(id: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Check ``fn`` for exercise ``id``, print one status line, and return what later cells should use.

    Returns ``fn`` when it passes, otherwise the companion reference implementation.
    """
    res = result(id, fn)
    print(res.line())
    return fn if res.passed else res.exercise.reference


# ----------------------------------------------------------------------------- helpers for check modules


def fmt(value: Any) -> str:
    """Short printable form of a value for "your value / expected value" messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 6:
            return f"tensor({[round(v, 4) for v in value.detach().flatten().tolist()]}, shape={tuple(value.shape)})"
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype}, mean={value.float().mean().item():.4g})"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


def _not_finite(name: str, where: str, value: float) -> AssertionError:
    return AssertionError(f"{name}: your value is not finite ({value}{where}); a correct answer is a finite "
                          "number here: look for a log of 0, a division by 0 or an overflowing exp")


def expect_close(name: str, yours: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Assert ``yours`` matches ``expected`` (shape, dtype family and values); return the max abs error.

    A NaN or an infinity in ``yours`` fails (with a message that says so) wherever ``expected`` is finite;
    where ``expected`` itself is not finite, ``yours`` must be the same non-finite value.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(yours, torch.Tensor):
            raise AssertionError(f"{name}: your value is a {type(yours).__name__}, expected a torch.Tensor")
        if tuple(yours.shape) != tuple(expected.shape):
            raise AssertionError(f"{name}: your shape {tuple(yours.shape)} / expected shape {tuple(expected.shape)}")
        if yours.is_floating_point() != expected.is_floating_point():
            raise AssertionError(f"{name}: your dtype {yours.dtype} / expected dtype {expected.dtype}")
        y, e = yours.detach().double(), expected.detach().double()
        finite = torch.isfinite(e)
        bad = finite & ~torch.isfinite(y)
        if bool(bad.any()):
            i = int(bad.flatten().nonzero()[0])
            raise _not_finite(name, f" at flat index {i}, {int(bad.sum())} of {bad.numel()} entries", y.flatten()[i].item())
        odd = ~finite & ~((y == e) | (torch.isnan(y) & torch.isnan(e)))
        if bool(odd.any()):
            i = int(odd.flatten().nonzero()[0])
            raise AssertionError(f"{name}: your value {y.flatten()[i].item():.6g} / expected "
                                 f"{e.flatten()[i].item():.6g} at flat index {i}")
        y, e = torch.where(finite, y, 0.0), torch.where(finite, e, 0.0)
        err = (y - e).abs()
        tol = atol + rtol * e.abs()
        if not bool((err <= tol).all()):
            i = int((err - tol).flatten().argmax())
            raise AssertionError(
                f"{name}: your value {yours.detach().flatten()[i].item():.6g} / expected "
                f"{expected.detach().flatten()[i].item():.6g} at flat index {i} (max error {err.max().item():.3g})"
            )
        return float(err.max()) if err.numel() else 0.0
    if isinstance(expected, float):
        if not isinstance(yours, (int, float)) and not (isinstance(yours, torch.Tensor) and yours.numel() == 1):
            raise AssertionError(f"{name}: your value is a {type(yours).__name__}, expected a number")
        y = float(yours)
        if not math.isfinite(expected):
            if not (y == expected or (math.isnan(y) and math.isnan(expected))):
                raise AssertionError(f"{name}: your value {y:.6g} / expected {expected:.6g}")
            return 0.0
        if not math.isfinite(y):
            raise _not_finite(name, "", y)
        if not abs(y - expected) <= atol + rtol * abs(expected):
            raise AssertionError(f"{name}: your value {y:.6g} / expected {expected:.6g}")
        return abs(y - expected)
    if isinstance(yours, float) and not math.isfinite(yours) and isinstance(expected, int):
        raise _not_finite(name, "", yours)
    if isinstance(yours, torch.Tensor) and yours.numel() == 1 and yours.is_floating_point() \
            and not bool(torch.isfinite(yours).all()):
        raise _not_finite(name, "", yours.item())
    if yours != expected:
        raise AssertionError(f"{name}: your value {fmt(yours)} / expected {fmt(expected)}")
    return 0.0


@contextlib.contextmanager
def forbid(owner: Any, attr: str, why: str) -> Iterator[None]:
    """While the block runs, ``owner.attr`` raises ``AssertionError(why)`` (an exercise that rules out a shortcut).

    Used around the student's calls only; the check computes its expected values outside the block.
    """
    original = getattr(owner, attr)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(why)

    setattr(owner, attr, refuse)
    try:
        yield
    finally:
        setattr(owner, attr, original)
