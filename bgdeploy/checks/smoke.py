"""The runbook's five smoke tests, run on each web host through nginx.

1. health check: ``GET /api/health`` answers 200 with ``"status": "healthy"``;
2. homepage: ``GET /`` answers 200 (from the expected release and colour, when given);
3. API authentication: ``GET /api/me`` answers 200 with the API token and 401 without it;
4. database connectivity: ``GET /api/visa-applications`` (a query) answers 200, and the health
   check's ``database`` check is healthy;
5. cache: the health check's ``cache`` check (a write and a read through the cache) is healthy.

The requests are made on the host itself (``127.0.0.1``), to the public listener for the live
colour or to the preview listener for the idle colour, so they work where the preview
listener is closed to the outside. A colour that fails a smoke test is never switched to.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bgdeploy import commands
from bgdeploy.core import settings as settings_mod
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.fleet.executor import CommandResult


@dataclass(frozen=True)
class Response:
    """One smoke request's answer, as the host saw it."""

    status: int
    release: str
    colour: str
    seconds: float
    body: str

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class SmokeCheck:
    """One of the five smoke tests: passed or not, and why."""

    name: str
    ok: bool
    detail: str


def parse(output: str) -> dict[str, Response]:
    """The ``bgdeploy-smoke`` lines of :func:`bgdeploy.commands.smoke_requests`."""
    found: dict[str, Response] = {}
    for line in output.splitlines():
        if not line.startswith("bgdeploy-smoke "):
            continue
        name, _, rest = line.removeprefix("bgdeploy-smoke ").partition("|")
        status, release, colour, seconds, body = (rest.split("|", 4) + [""] * 5)[:5]
        try:
            found[name] = Response(int(status or 0), release, colour, float(seconds or 0), body)
        except ValueError:
            found[name] = Response(0, "", "", 0.0, rest)
    return found


def evaluate(
    responses: dict[str, Response], sha: str | None = None, colour: str | None = None
) -> list[SmokeCheck]:
    """Judge the answers: the five checks in the runbook's order."""
    none = Response(0, "", "", 0.0, "")
    health = responses.get("health", none)
    home = responses.get("homepage", none)
    auth = responses.get("api auth", none)
    anonymous = responses.get("api without token", none)
    database = responses.get("database", none)
    checks = health.json().get("checks", {})
    checks = checks if isinstance(checks, dict) else {}

    def check(name: str) -> tuple[bool, str]:
        entry = checks.get(name, {})
        entry = entry if isinstance(entry, dict) else {}
        return entry.get("status") == "healthy", str(entry.get("message") or "no check")

    def answered(response: Response) -> str:
        return f"HTTP {response.status or 'no answer'}"

    home_ok = home.status == 200
    home_detail = answered(home)
    if home_ok and sha and home.release != sha:
        home_ok, home_detail = False, f"served release {home.release[:12] or '?'}, not {sha[:12]}"
    if home_ok and colour and home.colour != colour:
        home_ok, home_detail = False, f"served colour {home.colour or '?'}, not {colour}"
    database_ok, database_message = check("database")
    cache_ok, cache_message = check("cache")
    healthy = health.status == 200 and health.json().get("status") == "healthy"
    return [
        SmokeCheck(
            "health", healthy, f"{answered(health)} {health.json().get('status', '')}".strip()
        ),
        SmokeCheck("homepage", home_ok, home_detail),
        SmokeCheck(
            "api authentication",
            auth.status == 200 and anonymous.status == 401,
            f"with token {answered(auth)}, without {answered(anonymous)}",
        ),
        SmokeCheck(
            "database",
            database.status == 200 and database_ok,
            f"query {answered(database)}; {database_message}",
        ),
        SmokeCheck("cache", cache_ok, cache_message),
    ]


def run(
    env: str, idle: bool = False, sha: str | None = None, colour: str | None = None
) -> tuple[list[remote.HostResult], dict[str, list[SmokeCheck]]]:
    """Run the smoke tests on every web host of ``env`` (``idle``: through the preview
    listener). Returns the per-host results (a host fails when any check fails) and the
    checks."""
    targets = remote.targets(env, ("web",))  # loads the inventory, which may set the token
    token = settings_mod.secrets_from_env(("API_TOKEN",))["API_TOKEN"]
    found: dict[str, list[SmokeCheck]] = {}

    def task(host: fabric_backend.Host) -> str:
        settings = settings_mod.from_data(host.target.data, env)
        port = settings.preview_port if idle else settings.public_port
        result = host.run(commands.smoke_requests(port), stdin=token + "\n").reached()
        checks = evaluate(parse(result.stdout), sha, colour)
        found[host.name] = checks
        failed = [c for c in checks if not c.ok]
        if failed:
            raise SmokeFailed("; ".join(f"{c.name}: {c.detail}" for c in failed))
        return f"{len(checks)} smoke tests passed"

    return fabric_backend.run_tasks(targets, task), found


class SmokeFailed(Exception):
    """At least one smoke test failed on a host."""


def wait_healthy(
    run: Callable[[str], CommandResult], settings: settings_mod.Settings, sha: str
) -> bool:
    """Probe ``/api/health`` through nginx's public port on a host (``run``: runs a command
    there through the executor; a host that cannot be reached raises its typed error) until
    it answers 200 from commit ``sha`` (or without an ``X-Release`` header), every
    ``health_interval`` seconds until ``health_deadline``. The check after a restore or a
    rollback, in place or by switching colours."""
    deadline = time.monotonic() + settings.health_deadline
    command = commands.health_probe(settings.public_port, settings.health_path)
    while True:
        done = run(command).reached()
        status, _, header = (done.stdout.strip().splitlines() or [""])[-1].partition(" ")
        if status == "200" and header.strip() in ("", sha):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(settings.health_interval)
