"""How long operations tell the operator what they are doing.

A :data:`Progress` is a callback that takes one line of text (the CLI prints it; tests collect
it); :func:`quiet`, the default of every long operation, drops it.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_line: str) -> None:
    """A :data:`Progress` that says nothing."""
