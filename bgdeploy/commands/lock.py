"""The deploy lock on each web host: one writer at a time, fleet-wide.

The lock is a file (``<app_root>/.bgdeploy/lock``) holding one line of JSON (who, where, which
run; :mod:`bgdeploy.core.lock` writes and reads it). Creating it is atomic (``set -C``:
``O_EXCL``), so of two deploys that race, one gets it and the other is told who holds it.

- :func:`lock_acquire`: take it, or print the holder
- :func:`lock_release`: give it back, only if this run holds it
- :func:`lock_read`: print it
- :func:`lock_break`, :func:`lock_break_if`: ``bgdeploy unlock``: remove it (the second only if
  it is still what the operator was shown)

Each prints a word the caller reads (``bgdeploy-lock: acquired``/``held``, ``released``/``not
held``, :data:`LOCK_BROKEN`/:data:`LOCK_CHANGED`) and exits 0: a held lock is an answer, not a
failure of the command.
"""

from __future__ import annotations

import re

from bgdeploy.commands.shell import q
from bgdeploy.core.errors import ConfigError

LOCK_THEN = "bgdeploy-lock: then"
"""The line :func:`lock_acquire` prints before the output of its ``then`` command."""


def lock_acquire(path: str, content: str, then: str | None = None) -> str:
    """Create the deploy lock atomically (``set -C``: O_EXCL) holding ``content``.

    Prints ``bgdeploy-lock: acquired``, or ``bgdeploy-lock: held`` and the holder's lock;
    exits 0 either way (the caller reads which). With ``then``: once acquired, prints
    :data:`LOCK_THEN` and runs ``then`` (its exit status is the command's): what the lock
    protects read in the same round trip, under it.
    """
    directory = path.rsplit("/", 1)[0]
    after = f"; echo {q(LOCK_THEN)}; {{ {then}\n}}" if then else ""
    return (
        f"mkdir -p {q(directory)} && "
        f"if ( set -C; printf '%s\\n' {q(content)} > {q(path)} ) 2>/dev/null; "
        f"then echo 'bgdeploy-lock: acquired'{after}; "
        f"else echo 'bgdeploy-lock: held'; cat {q(path)} 2>/dev/null; true; fi"
    )


def lock_release(path: str, run: str) -> str:
    """Remove the deploy lock if deploy ``run`` holds it (never someone else's); prints
    ``released`` or ``not held``."""
    if not re.match(r"^[A-Za-z0-9_-]{1,64}\Z", run):
        raise ConfigError(f"deploy run id {run!r} is not valid")
    return (
        f"if grep -qF {q(chr(34) + 'run' + chr(34) + ':' + chr(34) + run + chr(34))} "
        f"{q(path)} 2>/dev/null; then rm -f {q(path)} && echo released; else echo 'not held'; fi"
    )


def lock_read(path: str) -> str:
    """Print the deploy lock's content (nothing when there is no lock)."""
    return f"cat {q(path)} 2>/dev/null || true"


def lock_break(path: str) -> str:
    """Print the deploy lock's content, then remove it (``bgdeploy unlock``)."""
    return f"if [ -e {q(path)} ]; then cat {q(path)}; echo; rm -f {q(path)}; fi"


LOCK_BROKEN = "bgdeploy-lock: broken"


LOCK_CHANGED = "bgdeploy-lock: changed"


def lock_break_if(path: str, content: str) -> str:
    """Remove the deploy lock only if it still holds ``content`` (what the operator was shown
    and agreed to break): prints ``bgdeploy-lock: broken``; otherwise ``bgdeploy-lock:
    changed`` and the lock as it is now (nothing when there is none), and leaves it."""
    expected = content.rstrip("\n")
    return (
        f'if [ -e {q(path)} ] && [ "$(cat {q(path)})" = {q(expected)} ]; '
        f"then rm -f {q(path)} && echo {q(LOCK_BROKEN)}; "
        f"else echo {q(LOCK_CHANGED)}; cat {q(path)} 2>/dev/null; true; fi"
    )
