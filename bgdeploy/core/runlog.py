"""The full log of a run, in a file: ``.bgdeploy/runs/RUN_ID.log`` beside the operator's
checkout (the repository bgdeploy runs from), or in ``run_log_dir`` (group_data) or
``BGDEPLOY_RUN_LOG_DIR`` (the environment wins).

Every ``bgdeploy deploy``, ``provision``, ``rollback`` and ``snapshot restore`` writes one:
what pyinfra printed, every progress line and event, and the final table. The screen shows
the state of the run; the log is for afterwards. Its name is printed at the end of the output
and journaled (``details.log``).

Nothing secret goes in: the same rule as the output (secrets are never printed), and every
line is passed through :func:`redactor` first, which replaces the value of every secret
variable set in the environment (``BGDEPLOY_APP_KEY``, the passwords, the API token, the
webhook URLs, the PagerDuty key) with ``[secret NAME]``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

LOG_DIR_VARIABLE = "BGDEPLOY_RUN_LOG_DIR"
DEFAULT_DIR = Path(".bgdeploy") / "runs"

SECRET_PATTERN = re.compile(r"^BGDEPLOY_.*(KEY|PASSWORD|TOKEN|WEBHOOK|SECRET).*\Z")
"""Environment variables whose values never reach a log: the app's secrets
(:data:`bgdeploy.core.settings.SECRET_VARIABLES`), Slack webhooks, the PagerDuty routing key."""

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


def log_directory(
    root: Path, setting: str | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Where run logs go: ``BGDEPLOY_RUN_LOG_DIR``, else the ``run_log_dir`` setting, else
    ``ROOT/.bgdeploy/runs``; a relative directory is relative to ``root``."""
    env = os.environ if environ is None else environ
    chosen = env.get(LOG_DIR_VARIABLE) or setting
    path = Path(chosen).expanduser() if chosen else DEFAULT_DIR
    return path if path.is_absolute() else root / path


def redactor(environ: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """A function that hides the value of every secret variable of ``environ`` in a text
    (values shorter than 6 characters are too common to hide without hiding other text)."""
    env = os.environ if environ is None else environ
    secrets: list[tuple[str, str]] = []
    for name, value in env.items():
        if SECRET_PATTERN.match(name) and len(value) >= 6:
            secrets.append((value, name))
            if value.startswith("base64:") and len(value) > 13:
                secrets.append((value.removeprefix("base64:"), name))
    secrets.sort(key=lambda item: -len(item[0]))  # the longest first: no half of a secret left

    def redact(text: str) -> str:
        for value, name in secrets:
            if value in text:
                text = text.replace(value, f"[secret {name}]")
        return text

    return redact


class RunLog:
    """The log file of one run, opened at once (the directory is created, mode 0700; the
    file 0600: it names hosts and commits), written line by line, flushed each time, so it
    is complete up to the moment a run was killed. Thread-safe."""

    def __init__(
        self, directory: Path, run_id: str, environ: Mapping[str, str] | None = None
    ) -> None:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} is not valid")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / f"{run_id}.log"
        self.run_id = run_id
        self._redact = redactor(environ)
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        """Append ``text`` (one line or several), each line ending in a line break."""
        clean = self._redact(text.rstrip("\n"))
        with self._lock:
            if self._file.closed:
                return
            self._file.write(clean + "\n")
            self._file.flush()

    def note(self, text: str) -> None:
        """Append a line of bgdeploy's own, stamped with the UTC time."""
        self.write(f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {text}")

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def display_path(self, cwd: Path | None = None) -> str:
        """The path as the operator would type it: relative to the current directory when
        the log is under it."""
        here = (cwd or Path.cwd()).resolve()
        try:
            return str(self.path.resolve().relative_to(here))
        except ValueError:
            return str(self.path)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
