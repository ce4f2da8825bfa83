"""``bgdeploy health ENV``: the application's own health report, per web host and per check.

Each web host is asked ``GET /api/health`` through its own nginx (``127.0.0.1:public_port``,
over SSH: :func:`bgdeploy.commands.health_request`). The app answers the runbook's JSON::

    {"status": "healthy", "checks": {"database": {"status": "healthy", "message": "..."},
     "cache": {...}, "queue": {...}, "storage": {...}}, ...}

with 200 when every check is healthy and 503 otherwise; a 503 body is parsed like a 200 one,
so the failing check and its message are shown. A host is healthy when it answered 200 and
said ``healthy``; anything else (503, another status, a body that is not the runbook's JSON,
no answer) makes it unhealthy, and ``bgdeploy health`` exits 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bgdeploy import commands
from bgdeploy.core import settings as settings_mod
from bgdeploy.fleet import fabric_backend, remote

MARK = "bgdeploy-health "
CHECKS = ("database", "cache", "queue", "storage")


@dataclass
class Check:
    """One check of the app's health report."""

    name: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "healthy"


@dataclass
class HostHealth:
    """What one web host's ``/api/health`` said."""

    host: str
    http_status: int = 0
    status: str = ""
    release: str = ""
    colour: str = ""
    seconds: float | None = None
    checks: list[Check] = field(default_factory=list)
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.http_status == 200 and self.status == "healthy" and not self.problem

    def describe(self) -> str:
        """One line: ``healthy (200, green 4f1c2e9, 12 ms)`` or why not."""
        where = " ".join(part for part in (self.colour, self.release[:7]) if part)
        took = f", {self.seconds * 1000:.0f} ms" if self.seconds is not None else ""
        head = f"{self.status or 'no report'} ({self.http_status or 'no answer'}"
        head += f", {where}" if where else ""
        return head + took + ")" + (f": {self.problem}" if self.problem else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "ok": self.ok,
            "http_status": self.http_status,
            "status": self.status,
            "release": self.release,
            "colour": self.colour,
            "seconds": self.seconds,
            "problem": self.problem,
            "checks": {c.name: {"status": c.status, "message": c.message} for c in self.checks},
        }


def parse(host: str, output: str) -> HostHealth:
    """Read :func:`bgdeploy.commands.health_request` output (200 and 503 bodies alike)."""
    lines = output.rstrip("\n").splitlines()
    meta = next((line for line in reversed(lines) if line.startswith(MARK)), MARK + "000")
    body = "\n".join(lines[: lines.index(meta)] if meta in lines else lines).strip()
    found = HostHealth(host)
    parts = meta[len(MARK) :].split(" ")
    found.http_status = int(parts[0]) if parts[0].isdigit() else 0
    found.release = parts[1] if len(parts) > 1 else ""
    found.colour = parts[2] if len(parts) > 2 else ""
    try:
        found.seconds = float(parts[3]) if len(parts) > 3 else None
    except ValueError:
        found.seconds = None
    if found.http_status == 0:
        found.problem = "nginx did not answer on the public port"
        return found
    try:
        report = json.loads(body)
    except json.JSONDecodeError:
        found.problem = f"the answer is not the health JSON: {body[:200]!r}"
        return found
    if not isinstance(report, dict) or not isinstance(report.get("checks"), dict):
        found.problem = f"the answer has no checks: {body[:200]!r}"
        return found
    found.status = str(report.get("status", ""))
    for name, check in report["checks"].items():
        if isinstance(check, dict):
            found.checks.append(
                Check(str(name), str(check.get("status", "")), str(check.get("message", "")))
            )
    missing = [name for name in CHECKS if name not in report["checks"]]
    if missing:
        found.problem = f"checks missing from the report: {', '.join(missing)}"
    return found


def run(env: str) -> tuple[list[remote.HostResult], dict[str, HostHealth]]:
    """Ask every web host of ``env`` for its health report, in parallel. A host fails when
    it is unhealthy (or unreachable); returns the per-host results and the reports."""
    targets = remote.targets(env, ("web",))
    found: dict[str, HostHealth] = {}

    def task(host: fabric_backend.Host) -> str:
        settings = settings_mod.from_data(host.target.data, env)
        command = commands.health_request(settings.public_port, settings.health_path)
        result = host.run(command).reached()
        report = parse(host.name, result.stdout)
        found[host.name] = report
        if not report.ok:
            raise Unhealthy(report.describe())
        return report.describe()

    return fabric_backend.run_tasks(targets, task), found


class Unhealthy(Exception):
    """A host's health report says unhealthy (or there was none)."""
