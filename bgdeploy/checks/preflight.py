"""Preflight: the runbook's pre-deployment checklist, where a machine can check it.

``bgdeploy preflight ENV --ref REF`` reads what a deploy of REF would meet, changes nothing
on the servers but fetching the repository into the colour's ``.git`` (as a deploy does), and
prints one line per check, each ``pass``, ``warn`` or ``fail``:

================  ======================================================================
check             what is read, and when it fails or warns
================  ======================================================================
ref               REF names exactly one commit of the repository (fail: none, or several)
main              the commit is reachable from ``origin/main``: the runbook merges to
                  main before deploying (warn when not)
migrations        the pending migrations: files of REF under ``database/migrations`` that
                  the database's ``migrations`` table lacks (what ``migrate`` would run);
                  a migration file changed or deleted between the live commit and REF
                  warns (a migration that already ran never runs again)
destructive       the pending migrations' ``up()`` scanned (:mod:`bgdeploy.checks.migrations`):
                  a drop or rename fails, unless in place with ``--allow-destructive``
                  (warn); blue-green refuses them always; raw SQL to review warns
feature flags     ``config/features.php`` of REF, read as text: flags past their
                  ``remove_after`` date, and flags new since the live commit without one
                  (warn)
secrets           ``shared/.env`` on every web host holds APP_KEY, DB_PASSWORD,
                  REDIS_PASSWORD and API_TOKEN (values are never read back)
window            the deploy window (:mod:`bgdeploy.core.windows`) now
lock              no deploy holds the lock on any web host
disk              ``min_free_disk_mb`` free under ``app_root`` on every web host
clean checkout    no local changes in the colour the deploy would check out into
snapshot disk     the db host's backups directory has room for the snapshot taken before
                  migrations (twice the last dump, or the database's size): fail when
                  migrations are pending, warn otherwise
================  ======================================================================

Exit 0 when nothing fails (warnings included), 3 when a check fails (a deploy would be
refused or would fail its preflight), 1 when a host could not be read, 2 on bad input (a
hostile ``--ref``, an unknown environment) before any connection.

The deploy runs the same check functions (:func:`check_lock`, :func:`resolve_ref`,
:func:`check_destructive`, :func:`host_checks`) at its start: ``bgdeploy.strategies.release.guard``
and its per-host preflight, so this checklist and a deploy never disagree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from bgdeploy import commands
from bgdeploy.checks import migrations
from bgdeploy.core import lock, refs, windows
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.render import IDLE_INCLUDE, LIVE_INCLUDE
from bgdeploy.core.settings import SECRET_VARIABLES, Settings
from bgdeploy.fleet import colours, fabric_backend, remote, runner
from bgdeploy.fleet.executor import CommandResult

Status = Literal["pass", "warn", "fail"]
PASS: Status = "pass"  # noqa: S105 (a check's result, not a password)
WARN: Status = "warn"
FAIL: Status = "fail"

MAIN_BRANCH = "main"
"""The branch every release is merged to first (runbook: "Merge to Main Branch")."""

FEATURES_FILE = "config/features.php"
MIGRATIONS_DIR = "database/migrations"
SECRET_NAMES = tuple(SECRET_VARIABLES)
STRATEGIES = ("in-place", "blue-green")
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


# The checks (pure: facts in, one line out). The deploy calls these too.
# ---------------------------------------------------------------------


def check_window(decision: windows.WindowDecision) -> Check:
    """The deploy window: pass when a deploy may run now, fail with the next window."""
    if decision.allowed:
        return Check("window", PASS, decision.describe())
    return Check(
        "window", FAIL, decision.describe() + "\n(an emergency deploy: --emergency --reason TEXT)"
    )


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


def resolve_ref(
    ref: str, output: str, repository: str, host: str | None = None
) -> tuple[str | None, Check]:
    """Read :func:`bgdeploy.commands.git_resolve` output: (the one commit, the check).

    Fails when ``ref`` names no commit of ``repository``, or more than one (a tag and a
    branch of the same name on different commits).
    """
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        kind, _, sha = line.strip().partition(" ")
        if refs.FULL_SHA.match(sha):
            found.setdefault(sha, []).append(kind)
    if not found:
        message = f"ref {ref!r} is not a branch, tag or commit of {repository}"
        return None, Check("ref", FAIL, message, host)
    if len(found) > 1:
        names = "; ".join(f"{'/'.join(kinds)} {sha[:12]}" for sha, kinds in found.items())
        message = (
            f"ref {ref!r} names more than one commit ({names}): deploy the commit itself, "
            "or refs/tags/... or refs/heads/..."
        )
        return None, Check("ref", FAIL, message, host)
    sha, kinds = next(iter(found.items()))
    return sha, Check("ref", PASS, f"{'/'.join(kinds)} {ref} is commit {sha}", host, (sha,))


def check_on_main(answer: str, sha: str, host: str | None = None) -> Check:
    """Read :func:`bgdeploy.commands.git_is_ancestor` output (``yes``, ``no``, ``missing``)."""
    word = answer.strip().splitlines()[-1].strip() if answer.strip() else ""
    branch = f"origin/{MAIN_BRANCH}"
    if word == "yes":
        return Check("main", PASS, f"{sha[:12]} is reachable from {branch}", host)
    if word == "missing":
        return Check("main", WARN, f"the repository has no branch {MAIN_BRANCH}", host)
    return Check(
        "main",
        WARN,
        f"{sha[:12]} is not on {branch}: the runbook merges to {MAIN_BRANCH} before deploying",
        host,
    )


def check_migrations(
    pending: Sequence[str], changed: Iterable[tuple[str, str]] = (), host: str | None = None
) -> Check:
    """The pending migrations (pass, listing them); migration files modified (``M``) or
    deleted (``D``) since the live commit warn: a migration that already ran never runs
    again. ``changed``: ``(status, path)`` pairs of :func:`parse_name_status`."""
    pending_set = set(pending)
    edited = [
        f"{path.rsplit('/', 1)[-1]} {'changed' if status == 'M' else 'deleted'} since the live "
        "release: migrate will not run it again"
        for status, path in changed
        if status in ("M", "D") and migrations.migration_name(path) not in pending_set
    ]
    listed = f"{len(pending)} pending: {', '.join(pending)}" if pending else "none pending"
    if pending:
        listed += " (a verified snapshot is taken first)"
    if edited:
        return Check("migrations", WARN, "\n".join([listed, *edited]), host, tuple(pending))
    return Check("migrations", PASS, listed, host, tuple(pending))


def parse_name_status(output: str) -> list[tuple[str, str]]:
    """``git diff --name-status`` lines as ``(status letter, path)`` pairs."""
    found = []
    for line in output.splitlines():
        status, _, path = line.partition("\t")
        if path:
            found.append((status.strip()[:1], path.strip()))
    return found


def destructive_refusal(text: str, strategy: str) -> str:
    """Why a deploy refuses destructive migrations (``text``: the scanner's lines)."""
    if strategy == "blue-green":
        return (
            "blue-green refuses migrations that drop or rename: both colours share the "
            "database, and the live colour would break on the new schema.\n"
            f"{text}\nSplit the change (add now, drop in a later release), or deploy in-place "
            "with --allow-destructive."
        )
    return (
        "pending migrations drop or rename (the running release may break, and only the "
        f"snapshot can bring the data back):\n{text}\n"
        "Deploy with --allow-destructive (a verified snapshot is taken first), or mark a "
        "reviewed migration with '// bgdeploy: allow-destructive <reason>'."
    )


def check_destructive(
    scans: Sequence[migrations.MigrationScan],
    allow_destructive: bool = False,
    strategy: str = "in-place",
    host: str | None = None,
) -> Check:
    """The scanner's verdict on the pending migrations.

    Fails on a drop or rename not marked reviewed (``// bgdeploy: allow-destructive``),
    unless in place with ``allow_destructive`` (then it warns); blue-green never allows them.
    Raw SQL or row deletion to read by hand warns. ``items``: the blocking migrations.
    """
    blocking = [scan for scan in scans if scan.destructive and not scan.allowed]
    review = [scan for scan in scans if scan.needs_review and not scan.allowed]
    reviewed = [scan for scan in scans if scan.allowed]
    notes = [migrations.format_scan(scan) for scan in reviewed]
    if blocking:
        text = "\n".join(migrations.format_scan(scan) for scan in blocking)
        names = tuple(scan.name for scan in blocking)
        if allow_destructive and strategy != "blue-green":
            detail = f"allowed by --allow-destructive (a verified snapshot comes first):\n{text}"
            return Check("destructive", WARN, detail, host, names)
        return Check("destructive", FAIL, destructive_refusal(text, strategy), host, names)
    if review:
        text = "\n".join(migrations.format_scan(scan) for scan in review)
        return Check(
            "destructive",
            WARN,
            "\n".join([f"raw SQL or row deletion to read before deploying:\n{text}", *notes]),
            host,
            tuple(scan.name for scan in review),
        )
    summary = "no pending migration drops or renames" if scans else "no pending migrations"
    return Check("destructive", PASS, "\n".join([summary, *notes]), host)


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


# Feature flags: config/features.php, read as text
# ------------------------------------------------


class FeaturesError(ValueError):
    """``config/features.php`` is not the array bgdeploy can read."""


@dataclass(frozen=True)
class Expression:
    """A PHP expression that is not a literal (``env('X', true)``), kept as its text."""

    text: str


@dataclass(frozen=True)
class Flag:
    """One flag of ``config/features.php``: its name and settings (literals as Python values,
    other expressions as :class:`Expression`)."""

    name: str
    settings: Mapping[str, Any]

    @property
    def remove_after(self) -> date | None:
        """The ``remove_after`` date; None when missing or not a ``YYYY-MM-DD`` string."""
        value = self.settings.get("remove_after")
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                return None
        return None


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|\#(?!\[)[^\n]*|/\*.*?\*/|<\?php\b|\?>)
  | (?P<single>'(?:[^'\\]|\\.)*')
  | (?P<double>"(?:[^"\\]|\\.)*")
  | (?P<arrow>=>)
  | (?P<number>-?\d+(?:\.\d+)?\b)
  | (?P<word>[A-Za-z_\\][A-Za-z0-9_\\]*(?:::[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<punct>[\[\](),;])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_CLOSERS = {"[": "]", "(": ")"}
_NOTHING = object()


def _tokens(source: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


def _unquote(kind: str, text: str) -> str:
    body = text[1:-1]
    if kind == "single":
        return re.sub(r"\\([\\'])", r"\1", body)
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group()), body)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise FeaturesError("the file ends inside the array")
        self.at += 1
        return token

    def value(self) -> Any:
        kind, text = self.peek()
        start = self.at
        if text == "[":
            self.take()
            result = self.array("]")
        elif kind == "word" and text.lower() == "array" and self._next_is("("):
            self.take()
            self.take()
            result = self.array(")")
        elif kind in ("single", "double"):
            self.take()
            result = _unquote(kind, text)
        elif kind == "number":
            self.take()
            result = float(text) if "." in text else int(text)
        elif kind == "word" and text.lower() in ("true", "false", "null"):
            self.take()
            result = {"true": True, "false": False, "null": None}[text.lower()]
        else:
            result = _NOTHING
        if result is _NOTHING or not self._at_value_end():
            self.at = start
            return self.expression()
        return result

    def _next_is(self, text: str) -> bool:
        return self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == text

    def _at_value_end(self) -> bool:
        return self.peek()[1] in (",", "]", ")", "=>", ";", "")

    def expression(self) -> Expression:
        """Anything else, up to the next ``,``, ``=>`` or closing bracket at this depth."""
        depth: list[str] = []
        parts = []
        while True:
            kind, text = self.peek()
            if kind == "end":
                raise FeaturesError("the file ends inside an expression")
            if not depth and text in (",", "]", ")", "=>", ";"):
                break
            self.take()
            if text in _CLOSERS:
                depth.append(_CLOSERS[text])
            elif depth and text == depth[-1]:
                depth.pop()
            parts.append(text)
        if not parts:
            raise FeaturesError(f"a value is missing before {self.peek()[1]!r}")
        return Expression(" ".join(parts))

    def array(self, closer: str) -> dict[Any, Any] | list[Any]:
        items: list[tuple[Any, Any]] = []
        keyed = False
        while True:
            if self.peek()[1] == closer:
                self.take()
                break
            first = self.value()
            if self.peek()[1] == "=>":
                self.take()
                keyed = True
                items.append((first, self.value()))
            else:
                items.append((len(items), first))
            _, text = self.take()
            if text == closer:
                break
            if text != ",":
                raise FeaturesError(f"expected ',' or {closer!r}, found {text!r}")
        if not keyed:
            return [value for _, value in items]
        return {(k.text if isinstance(k, Expression) else k): v for k, v in items}


def parse_features(source: str) -> list[Flag]:
    """The flags of a ``config/features.php`` (``return [ 'name' => [ ... ], ... ];``), read
    as text: PHP is never run. Literal values (strings, numbers, booleans, null, arrays)
    become Python values, anything else an :class:`Expression`.

    Raises :class:`FeaturesError` when the file does not return an array of flags.
    """
    tokens = _tokens(source)
    starts = [i for i, (kind, text) in enumerate(tokens) if kind == "word" and text == "return"]
    if not starts:
        raise FeaturesError("no 'return [...]' found")
    parser = _Parser(tokens)
    parser.at = starts[0] + 1
    returned = parser.value()
    if returned == []:
        return []
    if not isinstance(returned, dict):
        raise FeaturesError("it does not return an array of flags")
    flags = []
    for name, settings in returned.items():
        if not isinstance(name, str) or not isinstance(settings, dict):
            raise FeaturesError(f"entry {name!r} is not 'name' => [settings]")
        flags.append(Flag(name, settings))
    return flags


def check_flags(
    source: str | None, live_source: str | None, today: date, host: str | None = None
) -> Check:
    """``config/features.php`` of the release (``source``) against the live one: flags past
    their ``remove_after`` date, and new flags without a valid one, warn (runbook: "Flag
    removal date documented")."""
    if source is None:
        return Check("feature flags", PASS, f"no {FEATURES_FILE} in this release", host)
    try:
        flags = parse_features(source)
    except FeaturesError as error:
        return Check("feature flags", WARN, f"{FEATURES_FILE} not read: {error}", host)
    live_names: set[str] = set()
    if live_source is not None:
        try:
            live_names = {flag.name for flag in parse_features(live_source)}
        except FeaturesError:
            live_names = set()
    problems = []
    for flag in flags:
        removal = flag.remove_after
        raw = flag.settings.get("remove_after")
        if removal is not None and removal < today:
            days = (today - removal).days
            problems.append(
                f"{flag.name}: remove_after {removal.isoformat()} passed {days} day"
                f"{'s' if days != 1 else ''} ago: remove the flag"
            )
        elif removal is None and flag.name not in live_names and live_source is not None:
            what = "has no remove_after" if raw is None else f"remove_after {raw!r} is not a date"
            problems.append(f"{flag.name}: new flag {what} (YYYY-MM-DD)")
    new = sorted({flag.name for flag in flags} - live_names) if live_source is not None else []
    summary = f"{len(flags)} flag{'s' if len(flags) != 1 else ''}"
    if new:
        summary += f", new: {', '.join(new)}"
    if problems:
        return Check("feature flags", WARN, "\n".join(problems), host, tuple(new))
    return Check("feature flags", PASS, summary + "; removal dates documented", host, tuple(new))


# Reading the facts over Fabric, and the whole checklist
# -------------------------------------------------------


def _run(via: fabric_backend.Host, command: str, timeout: float = 300) -> CommandResult:
    """Run a read on a host through the executor (unpacks as ok, stdout, stderr); a host that
    cannot be reached raises its typed error, and the checklist says it was not reached."""
    return via.run(command, timeout=timeout).reached()


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return ""


@dataclass
class _WebFacts:
    holder: lock.LockInfo | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    colour_dir: str = ""
    live_sha: str = ""
    error: str = ""


def _read_web(
    via: fabric_backend.Host, settings: Settings, idle: bool, found: _WebFacts, name: str
) -> str:
    ok, out, _ = _run(via, commands.lock_read(settings.lock_path))
    found.holder = lock.parse_lock(out) if ok else None
    _, out, _ = _run(via, commands.colour_facts(settings.app_root, LIVE_INCLUDE, IDLE_INCLUDE))
    live = colours.parse_facts(name, out)
    found.live_sha = live.heads.get(live.current, "")
    command = commands.release_facts(settings.app_root, settings.repository, idle, SECRET_NAMES)
    ok, out, err = _run(via, command)
    found.facts = parse_facts(out)
    colour = found.facts.get("colour", "")
    found.colour_dir = f"{settings.app_root}/{colour}"
    if colour not in ("blue", "green"):
        found.error = (
            f"{settings.app_root}/current does not point at blue or green "
            f"({colour or 'missing'}): run `bgdeploy provision {settings.env}` first"
        )
    elif found.facts.get("fetch") != "ok":
        found.error = f"git fetch from {settings.repository} failed: {_last_line(err, out)}"
    return "read"


@dataclass
class _DbFacts:
    applied: list[str] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _read_db(via: fabric_backend.Host, settings: Settings, found: _DbFacts) -> str:
    ok, out, err = _run(via, commands.applied_migrations(settings.db_port, settings.db_name))
    if not ok:
        found.error = f"cannot read the applied migrations: {_last_line(err, out)}"
    found.applied = [line.strip() for line in out.splitlines() if line.strip()]
    _, out, _ = _run(
        via,
        commands.snapshot_space(settings.backups_dir, settings.db_name, settings.db_port),
    )
    found.space = parse_facts(out)
    return "read"


def _split_files(output: str) -> dict[str, str | None]:
    """Output of :func:`bgdeploy.commands.show_files` / ``show_optional_file``: path ->
    content (None for a file reported missing)."""
    files: dict[str, list[str] | None] = {}
    current: str | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith("==> bgdeploy-file "):
            current = line.removeprefix("==> bgdeploy-file ").strip()
            files[current] = []
        elif line.startswith("==> bgdeploy-missing "):
            files[line.removeprefix("==> bgdeploy-missing ").strip()] = None
            current = None
        elif current is not None:
            content = files[current]
            assert content is not None
            content.append(line)
    return {path: None if lines is None else "".join(lines) for path, lines in files.items()}


def split_files(output: str) -> dict[str, str]:
    """Files printed by :func:`bgdeploy.commands.show_files`, by file name (no folder)."""
    return {
        path.rsplit("/", 1)[-1]: text
        for path, text in _split_files(output).items()
        if text is not None
    }


@dataclass(frozen=True)
class Request:
    """A checked ``bgdeploy preflight``."""

    env: str
    ref: str
    strategy: str = "in-place"
    allow_destructive: bool = False


def check_request(
    env: str, ref: str | None, strategy: str = "in-place", allow_destructive: bool = False
) -> tuple[Request, runner.Environment]:
    """Check the request without connecting: the ref's syntax, the inventory and settings."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if ref is not None:
        refs.validate_ref(ref)
    environment = runner.check_environment(env, {"ref": ref} if ref is not None else None)
    settings = environment.settings[environment.web[0]]
    chosen = refs.validate_ref(ref if ref is not None else settings.ref)
    return Request(env, chosen, strategy, allow_destructive), environment


def run(
    request: Request, environment: runner.Environment, now: datetime | None = None
) -> Checklist:
    """Read every host and return the checklist (see the module's table)."""
    first = environment.settings[environment.web[0]]
    migrate_host = first.migrate_host if first.migrate_host in environment.web else None
    migrate_host = migrate_host or environment.web[0]
    checklist = Checklist(request.env, request.ref, request.strategy)
    moment = now or datetime.now(UTC)
    checklist.checks.append(check_window(windows.decide(first.window, moment)))

    idle = request.strategy == "blue-green"
    web_facts = {name: _WebFacts() for name in environment.web}
    db_name = environment.db[0] if environment.db else None
    db_facts = _DbFacts()
    targets = remote.targets(request.env, ("web", "db"))
    wanted = [t for t in targets if t.name in environment.web or t.name == db_name]

    def read(via: fabric_backend.Host) -> str:
        target = via.target
        settings = environment.settings[target.name]
        if target.name in web_facts:
            _read_web(via, settings, idle, web_facts[target.name], target.name)
        if target.name == db_name:
            _read_db(via, settings, db_facts)
        return "read"

    for result in fabric_backend.run_tasks(wanted, read):
        if not result.ok:
            checklist.unreachable.append(result.host)
            checklist.checks.append(Check("reach", FAIL, result.error, result.host))
    _web_checks(checklist, environment, web_facts)
    migrate = web_facts[migrate_host]
    if migrate_host not in checklist.unreachable and not migrate.error:
        _commit_checks(checklist, request, environment, migrate_host, migrate, db_facts, moment)
    checklist.checks.sort(key=lambda check: ORDER.index(check.name))
    return checklist


def _web_checks(
    checklist: Checklist, environment: runner.Environment, web_facts: dict[str, _WebFacts]
) -> None:
    """The lock, then each web host's secrets, disk and checkout."""
    reached = [name for name in environment.web if name not in checklist.unreachable]
    for name in reached:
        checklist.checks.append(check_lock(name, web_facts[name].holder, checklist.env))
    for name in reached:
        found = web_facts[name]
        if found.error:
            checklist.checks.append(Check("checkout", FAIL, found.error, name))
        else:
            settings = environment.settings[name]
            checklist.checks += host_checks(name, found.facts, settings, found.colour_dir)


def _commit_checks(
    checklist: Checklist,
    request: Request,
    environment: runner.Environment,
    migrate_host: str,
    migrate: _WebFacts,
    db_facts: _DbFacts,
    moment: datetime,
) -> None:
    """What depends on the commit, read on the migrate host (a second connection)."""
    settings = environment.settings[migrate_host]
    db_name = environment.db[0] if environment.db else None
    target = next(t for t in remote.targets(request.env, ("web",)) if t.name == migrate_host)
    ref_checks: list[Check] = []

    def read_ref(via: fabric_backend.Host) -> str:
        ref_checks.extend(
            _ref_checks(via, request, settings, migrate, db_facts, db_name, moment, migrate_host)
        )
        return "read"

    (result,) = fabric_backend.run_tasks([target], read_ref)
    if not result.ok:
        checklist.unreachable.append(migrate_host)
        checklist.checks.append(Check("reach", FAIL, result.error, migrate_host))
    checklist.checks.extend(ref_checks)
    resolved = next((c for c in ref_checks if c.name == "ref" and c.status == PASS), None)
    checklist.sha = resolved.items[0] if resolved else None


Git = Callable[[str], "CommandResult | tuple[bool, str, str]"]
"""Runs a command in a colour's checkout: (succeeded, stdout, stderr), e.g. a
:class:`bgdeploy.fleet.executor.CommandResult`."""


def release_advice(git: Git, sha: str, live_sha: str, today: date, host: str | None) -> list[Check]:
    """The checks that only warn, read with ``git`` in a fetched colour: ``sha`` on main, and
    ``config/features.php`` of ``sha`` against the one of ``live_sha`` (:func:`check_flags`).
    A deploy logs them; ``bgdeploy preflight`` shows them."""
    _, out, _ = git(commands.git_is_ancestor(sha, MAIN_BRANCH))
    checks = [check_on_main(out, sha, host)]
    sources: dict[str, str | None] = {}
    for key, commit in (("release", sha), ("live", live_sha)):
        if not commit or not refs.SHA.match(commit):
            sources[key] = None
            continue
        _, out, _ = git(commands.show_optional_file(commit, FEATURES_FILE))
        sources[key] = _split_files(out).get(FEATURES_FILE)
    checks.append(check_flags(sources["release"], sources["live"], today, host))
    return checks


def _ref_checks(
    via: fabric_backend.Host,
    request: Request,
    settings: Settings,
    migrate: _WebFacts,
    db: _DbFacts,
    db_name: str | None,
    moment: datetime,
    host: str,
) -> list[Check]:
    """Everything that depends on the commit, read on the migrate host."""
    where = migrate.colour_dir

    def git(command: str) -> CommandResult:
        return _run(via, commands.in_dir(where, command))

    _, out, _ = git(commands.git_resolve(request.ref))
    sha, ref_check = resolve_ref(request.ref, out, settings.repository, host)
    checks = [ref_check]
    if sha is None:
        return checks
    live_sha = migrate.live_sha
    today = moment.astimezone(settings.window.tz).date()
    checks += release_advice(git, sha, live_sha, today, host)

    ok, out, err = git(commands.migration_files(sha))
    files = [line.strip() for line in out.splitlines() if line.strip().endswith(".php")]
    if not ok:
        checks.append(Check("migrations", FAIL, f"cannot list migrations: {_last_line(err)}", host))
        return checks
    if db_name is None:
        checks.append(Check("migrations", FAIL, f"inventories/{request.env}.py has no db host"))
        return checks
    if db.error:
        checks.append(Check("migrations", FAIL, db.error, db_name))
        return checks
    pending = migrations.pending_migrations(files, db.applied)
    changed: list[tuple[str, str]] = []
    if live_sha and refs.SHA.match(live_sha):
        _, out, _ = git(commands.git_changed_files(live_sha, sha, MIGRATIONS_DIR))
        changed = parse_name_status(out)
    checks.append(check_migrations(pending, changed, host))

    paths = [f for f in files if migrations.migration_name(f) in set(pending)]
    ok, out, err = git(commands.show_files(sha, paths))
    if not ok:
        checks.append(
            Check("destructive", FAIL, f"cannot read migrations: {_last_line(err)}", host)
        )
    else:
        scans = [migrations.scan_source(text, name) for name, text in split_files(out).items()]
        checks.append(check_destructive(scans, request.allow_destructive, request.strategy, host))
    checks.append(check_snapshot_space(db.space, settings.backups_dir, bool(pending), db_name))
    return checks
