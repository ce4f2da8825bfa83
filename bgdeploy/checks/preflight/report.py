"""One check's result, and the checklist as ``bgdeploy preflight`` prints it.

A :class:`Check` is one line of the checklist: its name (``ref``, ``lock``, ...), ``pass``,
``warn`` or ``fail``, what was found in words, the host it was read on, and the things found
(``items`` in ``--json``: the pending migrations, the new flags). A :class:`Checklist` holds
every check of one preflight, in :data:`ORDER`, and gives the verdict:

- exit 0 when nothing fails (warnings included): ready to deploy;
- exit 3 when a check fails: a deploy would be refused, or would fail its own preflight;
- exit 1 when a host could not be read (its ``reach`` line says why).

:meth:`Checklist.format_table` is what operators read, :meth:`Checklist.to_json` the same for
scripts (``bgdeploy preflight ENV --json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from bgdeploy.core import refs

Status = Literal["pass", "warn", "fail"]
PASS: Status = "pass"  # noqa: S105 (a check's result, not a password)
WARN: Status = "warn"
FAIL: Status = "fail"

ORDER = (
    "reach",
    "ref",
    "main",
    "migrations",
    "destructive",
    "feature flags",
    "secrets",
    "window",
    "lock",
    "checkout",
    "disk",
    "clean checkout",
    "snapshot disk",
)
"""The checklist's order (the runbook's, roughly: the release, then the servers)."""


@dataclass(frozen=True)
class Check:
    """One line of the checklist.

    + name: the check (``ref``, ``lock``, ...)
    + status: ``pass``, ``warn`` or ``fail``
    + detail: what was found, in words (may span lines)
    + host: the host it was read on, when it is about one host
    + items: the things found (pending migrations, flags), for ``--json``
    """

    name: str
    status: Status
    detail: str
    host: str | None = None
    items: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status,
            "host": self.host,
            "detail": self.detail,
            "items": list(self.items),
        }


@dataclass
class Checklist:
    """The whole checklist of one preflight: what was asked and every check's result."""

    env: str
    ref: str
    strategy: str
    sha: str | None = None
    checks: list[Check] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    colours: dict[str, Any] = field(default_factory=dict)
    """Each web host's colours as read (:class:`bgdeploy.fleet.colours.HostColours`): what a
    deploy's plan starts from (not in :meth:`to_dict`)."""

    @property
    def status(self) -> Status:
        if any(check.status == FAIL for check in self.checks):
            return FAIL
        return WARN if any(check.status == WARN for check in self.checks) else PASS

    def exit_code(self) -> int:
        """1 when a host could not be read, 3 when a check failed, 0 otherwise."""
        if self.unreachable:
            return 1
        return 3 if self.status == FAIL else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "ref": self.ref,
            "sha": self.sha,
            "strategy": self.strategy,
            "status": self.status,
            "exit_code": self.exit_code(),
            "unreachable": list(self.unreachable),
            "checks": [check.to_dict() for check in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_table(self) -> str:
        """The checklist as operators read it: one row per check, then the verdict.

        .. code::

            preflight of v2 (4f1c2e9a1b2c) to sandbox, in-place
            check          result  host  detail
            ref            pass    web1  tag v2 is commit 4f1c2e9a1b2c
            ...
            1 failed, 1 warning: a deploy would be refused (exit 3)
        """
        label = f"{self.ref} ({refs.short(self.sha)})" if self.sha else self.ref
        rows = [("check", "result", "host", "detail")]
        rests: list[list[str]] = [[]]
        for check in self.checks:
            first, *rest = check.detail.splitlines() or [""]
            rows.append((check.name, check.status.upper(), check.host or "-", first))
            rests.append(rest)
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"preflight of {label} to {self.env}, {self.strategy}"]
        indent = " " * (sum(widths) + 6)
        for row, rest in zip(rows, rests, strict=True):
            cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
            lines.append("  ".join(cells).rstrip())
            lines.extend(indent + line for line in rest)
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        failed = sum(check.status == FAIL for check in self.checks)
        warned = sum(check.status == WARN for check in self.checks)
        counts = f"{failed} failed, {warned} warning{'s' if warned != 1 else ''}"
        if self.unreachable:
            return f"{counts}; not read: {', '.join(self.unreachable)} (exit 1)"
        if failed:
            return f"{counts}: a deploy would be refused or fail (exit 3)"
        return f"{counts}: ready to deploy (exit 0)"
