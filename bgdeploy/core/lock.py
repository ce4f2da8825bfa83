"""The deploy lock: ``<app_root>/.bgdeploy/lock`` on every web host.

A deploy creates the lock file on each web host before it changes anything, and removes it when
it is done, whether it succeeded, failed or was interrupted. The file is created atomically
(the shell's ``set -C``: ``O_CREAT|O_EXCL``), so of two deploys starting at the same moment
exactly one gets it; the other stops with exit 3, naming the holder. The file holds one line of
JSON saying who holds it::

    {"host":"ops-laptop","owner":"rahim@ops-laptop","pid":4242,"ref":"v2.4.0",
     "run":"3f9a1c0d2b7e","time":"2026-12-03T04:12:09Z"}

``run`` identifies the deploy: a deploy removes only a lock whose ``run`` is its own, so a
deploy that fails on the lock never removes the lock of the deploy that holds it (the race that
made Deployer revert its automatic unlock). A lock left behind by a deploy that died is broken
on request only, with ``bgdeploy unlock ENV`` (journaled).

The shell commands are built in :mod:`bgdeploy.commands` (``lock_acquire``, ``lock_release``,
``lock_read``, ``lock_break``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from bgdeploy.core.errors import LockHeld
from bgdeploy.core.journal import operator_name

ACQUIRED = "bgdeploy-lock: acquired"
"""What the acquire command prints when this deploy now holds the lock."""

HELD = "bgdeploy-lock: held"
"""What the acquire command prints (followed by the lock's content) when someone holds it."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a deploy lock.

    + owner: the operator, ``user@machine``
    + pid: the deploying process on the operator's machine
    + host: the operator's machine
    + ref: the ref being deployed
    + time: when the lock was taken, ISO 8601 UTC
    + run: the deploy's id; only that deploy removes the lock
    """

    owner: str
    pid: int
    host: str
    ref: str
    time: str
    run: str

    def to_json(self) -> str:
        """One line of JSON, keys sorted, no spaces (the release command matches ``"run":``)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """``rahim@ops-laptop (pid 4242 on ops-laptop), deploying v2.4.0 since ... (run ...)``."""
        return (
            f"{self.owner} (pid {self.pid} on {self.host}), deploying {self.ref} "
            f"since {self.time} (run {self.run})"
        )


def new_run_id() -> str:
    """A fresh deploy id: 12 hex digits."""
    return secrets.token_hex(6)


def new_lock(ref: str, run: str, now: datetime | None = None, pid: int | None = None) -> LockInfo:
    """The lock this process takes to deploy ``ref`` as deploy ``run``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return LockInfo(
        owner=operator_name(),
        pid=os.getpid() if pid is None else pid,
        host=socket.gethostname(),
        ref=ref,
        time=moment.replace(microsecond=0, tzinfo=None).isoformat() + "Z",
        run=run,
    )


def parse_lock(text: str) -> LockInfo | None:
    """Read a lock file's content; None when it is empty.

    A lock that is not the JSON bgdeploy writes (an old tool's, a hand-made one, a file caught
    while being written) is still a held lock: its fields read ``unknown`` and ``owner`` shows
    the raw text, shortened.
    """
    raw = text.strip()
    if not raw:
        return None
    try:
        data: Any = json.loads(raw.splitlines()[0])
    except (json.JSONDecodeError, IndexError):
        data = None
    if not isinstance(data, dict):
        shown = " ".join(raw.split())[:60]
        return LockInfo(f"unknown ({shown!r})", 0, "unknown", "unknown", "unknown", "unknown")

    def text_of(key: str) -> str:
        value = data.get(key)
        return str(value) if value not in (None, "") else "unknown"

    pid = data.get("pid")
    return LockInfo(
        owner=text_of("owner"),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
        host=text_of("host"),
        ref=text_of("ref"),
        time=text_of("time"),
        run=text_of("run"),
    )


def parse_acquire_output(output: str) -> tuple[bool, LockInfo | None]:
    """Read what the acquire command printed: (acquired, holder when not acquired).

    The holder is None when the lock was taken by someone else but its content could not be
    read (it was being written, or was removed in between).
    """
    lines = output.strip().splitlines()
    if lines and lines[0].strip() == ACQUIRED:
        return True, None
    if lines and lines[0].strip() == HELD:
        return False, parse_lock("\n".join(lines[1:]))
    raise ValueError(f"unexpected output from the lock command: {output.strip()[:200]!r}")


def this_machine() -> str:
    """This machine's name, as :func:`new_lock` writes it in ``host``."""
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """A process ``pid`` runs on this machine (``os.kill(pid, 0)``; one of another user's
    counts). False for pid 0 or less (a lock that did not say)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def holder_alive(holder: LockInfo, machine: str | None = None) -> bool:
    """The lock was taken on this very machine (``machine``: its name, default
    :func:`this_machine`) by a process that is still running: its deploy is not stale."""
    return holder.host == (machine or this_machine()) and process_alive(holder.pid)


def refusal(holders: Mapping[str, LockInfo | None], env: str, what: str = "changed") -> LockHeld:
    """The exit-3 error for a lock held by someone else on ``holders`` (web host -> holder,
    None when its lock could not be read): names each holder, and says what to do."""
    each = "; ".join(
        f"{name}: held by {holder.describe() if holder else 'an unreadable lock'}"
        for name, holder in holders.items()
    )
    return LockHeld(
        f"the deploy lock is taken ({each}): nothing was {what}. Wait for that deploy to "
        f"finish, or if it died, `bgdeploy unlock {env}`",
        dict(holders),
    )
