"""The servers' checks: the deploy window and lock, each web host's secrets, disk and
checkout, and the db host's room for the snapshot taken before migrations.

================  ======================================================================
check             fails (or warns) when
================  ======================================================================
window            a deploy may not run now (:mod:`bgdeploy.core.windows`); the next window
                  is named, and an emergency deploy is ``--emergency --severity P0..P3
                  --reason TEXT``
lock              someone holds the deploy lock on a web host (the holder is named)
secrets           ``shared/.env`` lacks one of APP_KEY, DB_PASSWORD, REDIS_PASSWORD and
                  API_TOKEN (:data:`SECRET_NAMES`; values are never read back)
disk              less than ``min_free_disk_mb`` is free under ``app_root``
clean checkout    the colour the deploy checks out into has local changes: bgdeploy never
                  overwrites them
snapshot disk     the backups directory has no room for the snapshot (twice the last dump,
                  or the database's size): fails when migrations are pending, warns otherwise
================  ======================================================================

Each check is a function of facts already read (:func:`parse_facts` reads the output of
:func:`bgdeploy.commands.release_facts` and :func:`bgdeploy.commands.snapshot_space`) and
returns its :class:`~bgdeploy.checks.preflight.report.Check`. A deploy calls the same functions
at its start, so ``bgdeploy preflight`` and a deploy never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bgdeploy.checks.preflight.report import FAIL, PASS, WARN, Check
from bgdeploy.core import approvals, lock, windows
from bgdeploy.core.settings import SECRET_VARIABLES, Settings

SECRET_NAMES = tuple(SECRET_VARIABLES)


def check_window(decision: windows.WindowDecision) -> Check:
    """The deploy window: pass when a deploy may run now, fail with the next window."""
    if decision.allowed:
        return Check("window", PASS, decision.describe())
    return Check("window", FAIL, decision.describe() + "\n" + approvals.EMERGENCY_HINT)


def check_lock(host: str, holder: lock.LockInfo | None, env: str) -> Check:
    """The deploy lock on one web host: free, or held (naming the holder)."""
    if holder is None:
        return Check("lock", PASS, "free", host)
    return Check(
        "lock",
        FAIL,
        f"the deploy lock on {host} is held by {holder.describe()}: wait for that deploy to "
        f"finish (or, if it died, `bgdeploy unlock {env}`)",
        host,
    )


def host_checks(
    host: str,
    facts: Mapping[str, Any],
    settings: Settings,
    colour_dir: str,
    sha: str | None = None,
) -> list[Check]:
    """What a deploy's preflight requires of one web host, from
    :func:`bgdeploy.commands.release_facts` (read with :data:`SECRET_NAMES`): the secrets in
    ``shared/.env``, free disk, no local changes in ``colour_dir``, and (``sha``) the commit
    fetched there."""
    missing = [name for name in facts.get("missing_secret", []) if name in SECRET_NAMES]
    if facts.get("app_key") != "yes" and "APP_KEY" not in missing:
        missing.insert(0, "APP_KEY")
    env_file = f"{settings.app_root}/shared/.env"
    checks = [
        Check("secrets", FAIL, f"{env_file} has no {', '.join(missing)}", host, tuple(missing))
        if missing
        else Check("secrets", PASS, f"{env_file} holds {', '.join(SECRET_NAMES)}", host)
    ]
    free_kb = int(facts.get("free_kb") or 0)
    if free_kb < settings.min_free_disk_mb * 1024:
        checks.append(
            Check(
                "disk",
                FAIL,
                f"only {free_kb // 1024} MB free under {settings.app_root} "
                f"(min_free_disk_mb = {settings.min_free_disk_mb})",
                host,
            )
        )
    else:
        checks.append(Check("disk", PASS, f"{_size(free_kb)} free under {settings.app_root}", host))
    dirty = list(facts.get("dirty", []))
    if dirty:
        shown = "\n".join(f"  {line}" for line in dirty[:20])
        checks.append(
            Check(
                "clean checkout",
                FAIL,
                f"the live colour {colour_dir} has local changes (bgdeploy never overwrites "
                f"them; commit or discard them by hand):\n{shown}",
                host,
                tuple(dirty),
            )
        )
    else:
        checks.append(Check("clean checkout", PASS, f"{colour_dir}: no local changes", host))
    if sha is not None and facts.get("target") not in (None, "present"):
        checks.append(
            Check("ref", FAIL, f"commit {sha} is not in the repository fetched here", host)
        )
    return checks


def parse_facts(output: str) -> dict[str, Any]:
    """Read ``key=value`` facts (:func:`bgdeploy.commands.release_facts`): ``dirty`` and
    ``missing_secret`` collect every line, the others keep their (stripped) value."""
    facts: dict[str, Any] = {"dirty": [], "missing_secret": []}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("dirty", "missing_secret"):
            facts[key].append(value)
        else:
            facts[key] = value.strip()
    return facts


def check_snapshot_space(
    facts: Mapping[str, Any], backups_dir: str, pending: bool, host: str | None = None
) -> Check:
    """Room for the pre-migration snapshot, from :func:`bgdeploy.commands.snapshot_space`:
    the snapshot's own rule (twice the last dump, or the database's size). Fails when
    migrations are pending (the deploy would stop at its snapshot), warns otherwise."""
    try:
        need, free, size = (int(facts[key]) for key in ("need_kb", "free_kb", "db_kb"))
    except (KeyError, ValueError):
        return Check("snapshot disk", FAIL, f"could not read the space in {backups_dir}", host)
    detail = (
        f"database {_size(size)}; {_size(free)} free in {backups_dir}, "
        f"{_size(need)} needed for a snapshot"
    )
    if free >= need:
        return Check("snapshot disk", PASS, detail, host)
    if pending:
        return Check(
            "snapshot disk", FAIL, detail + ": the deploy would stop at its snapshot", host
        )
    return Check("snapshot disk", WARN, detail + " (no migration pending: no snapshot now)", host)


def _size(kib: int) -> str:
    if kib >= 1024 * 1024:
        return f"{kib / 1024 / 1024:.1f} GB"
    if kib >= 1024:
        return f"{kib // 1024} MB"
    return f"{kib} KB"
