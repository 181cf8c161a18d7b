"""Numbers for a chapter's prose: the text quotes the run it sits on.

A chapter states a measured number by glueing it in the cell that computes it, ``book.glue("gap", gap)``,
and quoting it in the markdown that follows as ``{glue:text}`gap:.2f``` (MyST-NB's glue role). The book
renders the value of *that* execution, so the text cannot drift from the outputs, whichever profile the page
ran at. In a plain Jupyter or Colab kernel (no MyST-NB) the call records nothing and the cell's own printout
carries the number.
"""

from __future__ import annotations

from numbers import Real

__all__ = ["glue"]


def glue(name: str, value, fmt: str | None = None):
    """Record ``value`` under ``name`` for the page's prose and return it unchanged.

    Args:
        name: the key the markdown quotes, ``{glue:text}`name```; letters, digits and ``_`` only.
        value: a number (format it in the role: ``{glue:text}`name:.1%```, ``{glue:text}`name:,.0f```) or a
            string.
        fmt: optional format spec applied here (``"{:,}"`` style without braces, e.g. ``",.0f"``); the
            glued value is then the formatted text.

    Returns:
        ``value``, so a cell can write ``gap = glue("gap", a - b)``.

    Raises:
        ValueError: ``name`` is not an identifier, or ``value`` is neither a number nor a string.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue: name must be an identifier like 'plain_gap', got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # a 0-d tensor or numpy scalar
        value = value.item()
    if not isinstance(value, (Real, str)):
        raise ValueError(f"glue {name!r}: value must be a number or a string, got {type(value).__name__}")
    shown = format(value, fmt) if fmt is not None else value  # a str renders without its quotes
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or a bare kernel: the printed outputs carry the numbers
        return value
    _glue(name, shown, display=False)
    return value
