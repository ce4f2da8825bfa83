"""Files on the operator's machine that bgdeploy rewrites: written whole or not at all.

The sandbox's ``state.json`` and ``known_hosts``, its key pair and secrets, the release report
``bgdeploy deploy`` reads back, Prometheus's configuration: a reader (another ``bgdeploy``, the
inventory, pyinfra, a test) must never see half of one, and a crash or a full disk must leave
the previous content. :func:`write_atomic` writes a temporary file beside the target (same
directory: same file system), with the final mode from the start, flushes it to disk, renames
it over the target and flushes the directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

DEFAULT_MODE = 0o644
"""A new file's mode when none is given: readable, not secret."""


def write_atomic(path: str | Path, data: str | bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8) all at once.

    ``mode``: the file's permission bits (``0o600`` for a secret); by default the existing
    file's, else :data:`DEFAULT_MODE`. The temporary file is created ``0600`` and given its
    mode before any byte is written, so a secret is never readable by others, even briefly.
    On any failure the target is left as it was and the temporary file removed.
    """
    target = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = DEFAULT_MODE
    payload = data.encode() if isinstance(data, str) else data
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    """Flush a directory's entries (the rename) to disk, where the system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
