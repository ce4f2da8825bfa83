"""Destructive-migration scanner: drops and renames found before anything changes.

A blue-green or canary deploy keeps the old release serving traffic while the new one starts,
on the same database. A migration that drops or renames a table, a column or an index breaks the
old release at once, and cannot be undone by switching back. So before a deploy touches any
host, the ``up()`` method of each pending Laravel migration is read (as text, PHP is never run)
and every call that removes or renames something is reported.

What is found
-------------

``destructive``
    Schema changes that lose data or break the running release: ``dropColumn``,
    ``dropColumns``, ``drop``, ``dropIfExists``, ``dropForeign``, ``dropIndex``,
    ``dropUnique``, ``dropPrimary``, ``dropMorphs``, ``dropTimestamps(Tz)``,
    ``dropSoftDeletes(Tz)``, ``dropRememberToken``, ``dropConstrainedForeignId``,
    ``dropForeignIdFor``, ``dropFullText``, ``dropSpatialIndex``, ``renameColumn``, ``rename``,
    ``renameIndex``, ``->change()``, ``Schema::drop``, ``Schema::dropIfExists``,
    ``Schema::dropColumns``, ``Schema::rename``, ``Schema::dropAllTables`` (and ``dropAllViews``,
    ``dropAllTypes``), whether called on ``$table``, ``Schema::`` or
    ``Schema::connection('x')->``.

``review``
    Raw SQL and bulk data removal, which a person has to read: ``DB::statement``,
    ``DB::unprepared``, ``->truncate()``, ``->delete()``. Raw SQL whose text visibly drops,
    renames, truncates, deletes rows or changes a column type is reported as destructive.

Only ``up()`` counts: a drop in ``down()`` runs on rollback, by choice. Strings, heredocs and
comments are skipped, so ``$table->string('dropped_at')`` or ``// we never drop this`` are not
findings.

The escape hatch
----------------

A reviewed migration carries the comment ``// bgdeploy: allow-destructive <reason>``, e.g.
``// bgdeploy: allow-destructive passport_no unused since v3.2, snapshot verified``. Its
findings are still reported, with the reason, but do not block. A comment without a reason is
not an escape hatch: the scan notes it and the migration still blocks.

.. code:: python

    scans = scan_files(sorted(Path("database/migrations").glob("*.php")))
    for scan in scans:
        if scan.blocking:
            print(format_scan(scan))
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

FindingKind = Literal["destructive", "review"]

DESTRUCTIVE_METHODS = frozenset(
    {
        "dropColumn",
        "dropColumns",
        "drop",
        "dropIfExists",
        "dropForeign",
        "dropIndex",
        "dropUnique",
        "dropPrimary",
        "dropMorphs",
        "dropTimestamps",
        "dropTimestampsTz",
        "dropDatetimes",
        "dropSoftDeletes",
        "dropSoftDeletesTz",
        "dropRememberToken",
        "dropConstrainedForeignId",
        "dropForeignIdFor",
        "dropConstrainedForeignIdFor",
        "dropFullText",
        "dropSpatialIndex",
        "renameColumn",
        "rename",
        "renameIndex",
        "change",
        "dropAllTables",
        "dropAllViews",
        "dropAllTypes",
        "dropDatabaseIfExists",
    }
)
"""Method names whose call in ``up()`` is destructive (PHP method names ignore case)."""

REVIEW_METHODS = frozenset({"statement", "unprepared", "truncate", "delete"})
"""Method names whose call in ``up()`` needs a person to read it (raw SQL, bulk deletes)."""

ESCAPE_HATCH = "bgdeploy: allow-destructive"
"""The comment that marks a migration as reviewed, followed by the reason."""

_METHODS = {name.lower(): name for name in DESTRUCTIVE_METHODS | REVIEW_METHODS}
_RAW_SQL = frozenset({"statement", "unprepared"})
_CALL_RE = re.compile(r"(->|::)\s*([A-Za-z_]\w*)\s*\(")
_RECEIVER_RE = re.compile(r"([A-Za-z_\\][\w\\]*)\s*$")
_UP_RE = re.compile(r"\bfunction\s+&?\s*up\s*\(", re.IGNORECASE)
_HATCH_RE = re.compile(r"bgdeploy:\s*allow-destructive\b(.*)", re.IGNORECASE)
_HEREDOC_RE = re.compile(r"<<<[ \t]*([\"']?)([A-Za-z_]\w*)\1\r?\n")
_DESTRUCTIVE_SQL_RE = re.compile(
    r"\b(drop|rename|truncate|delete\s+from)\b|\balter\s+column\s+\S+\s+(set\s+data\s+)?type\b",
    re.IGNORECASE,
)
_TEXT_LIMIT = 100


@dataclass(frozen=True)
class Finding:
    """One call in ``up()`` that drops, renames or needs review.

    + kind: ``"destructive"`` or ``"review"``
    + call: the method, canonical spelling, with the class for static calls
      (``"dropColumn"``, ``"Schema::drop"``, ``"DB::statement"``)
    + line: line number in the file, from 1
    + text: the statement as written, on one line (shortened when long)
    """

    kind: FindingKind
    call: str
    line: int
    text: str


@dataclass(frozen=True)
class MigrationScan:
    """The scan of one migration file.

    + name: the file name (``2026_01_01_000000_drop_x.php``)
    + findings: what ``up()`` does that drops, renames or needs review, in file order
    + allowed_reason: the reason of a ``// bgdeploy: allow-destructive <reason>`` comment
    + notes: things the operator should know that are not findings (a hatch comment without a
      reason, no ``up()`` method)
    """

    name: str
    findings: tuple[Finding, ...] = ()
    allowed_reason: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def destructive(self) -> bool:
        """True when ``up()`` drops or renames something."""
        return any(finding.kind == "destructive" for finding in self.findings)

    @property
    def needs_review(self) -> bool:
        """True when ``up()`` runs raw SQL or deletes rows (and nothing destructive)."""
        return not self.destructive and any(f.kind == "review" for f in self.findings)

    @property
    def allowed(self) -> bool:
        """True when a reviewed escape-hatch comment (with a reason) marks the file."""
        return self.allowed_reason is not None

    @property
    def blocking(self) -> bool:
        """True when the migration must stop a blue-green or canary deploy."""
        return bool(self.findings) and not self.allowed

    @property
    def verdict(self) -> str:
        """``"safe"``, ``"destructive"``, ``"review"``, or ``"allowed"`` (reviewed)."""
        if not self.findings:
            return "safe"
        if self.allowed:
            return "allowed"
        return "destructive" if self.destructive else "review"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for ``--json`` output."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "blocking": self.blocking,
            "allowed_reason": self.allowed_reason,
            "findings": [
                {"kind": f.kind, "call": f.call, "line": f.line, "text": f.text}
                for f in self.findings
            ],
            "notes": list(self.notes),
        }


# Scanning
# --------


def scan_source(source: str, name: str) -> MigrationScan:
    """Scan the PHP source of one migration.

    + source: the file's text
    + name: the file name, used in messages

    Returns a :class:`MigrationScan`. Never raises on odd PHP: when the end of ``up()`` cannot
    be found, the rest of the file is scanned and a review finding says so.
    """
    masked, code, comments = _mask(source)
    findings: list[Finding] = []
    notes: list[str] = []
    bodies = list(_up_bodies(masked))
    if not bodies:
        notes.append("no up() method found")
    for start, end, complete in bodies:
        findings.extend(_findings(source, code, masked, start, end))
        if not complete:
            findings.append(
                Finding(
                    kind="review",
                    call="up()",
                    line=_line(source, start),
                    text="could not find the end of up(): read the migration by hand",
                )
            )
    findings.sort(key=lambda finding: finding.line)

    allowed_reason = None
    for line, text in comments:
        match = _HATCH_RE.search(text)
        if not match:
            continue
        reason = match.group(1).strip().removesuffix("*/").strip().lstrip(":-").strip()
        if reason:
            allowed_reason = allowed_reason or reason
        else:
            notes.append(
                f"line {line}: '{ESCAPE_HATCH}' has no reason, so it does not mark the "
                f"migration as reviewed: write '// {ESCAPE_HATCH} <why it is safe>'"
            )
    return MigrationScan(
        name=name,
        findings=tuple(findings),
        allowed_reason=allowed_reason,
        notes=tuple(notes),
    )


def scan_files(paths: Iterable[str | Path]) -> list[MigrationScan]:
    """Scan migration files, in the order given; each scan is named by the file name."""
    scans = []
    for path in paths:
        path = Path(path)
        scans.append(scan_source(path.read_text(encoding="utf-8", errors="replace"), path.name))
    return scans


def format_scan(scan: MigrationScan) -> str:
    """The scan as operators read it, one line per finding.

    .. code::

        2026_01_01_000000_drop_x.php:14 $table->dropColumn('passport_no') — destructive
        2026_01_01_000000_drop_x.php: reviewed (bgdeploy: allow-destructive): unused since v3
    """
    lines = [
        f"{scan.name}:{finding.line} {finding.text} — {finding.kind}" for finding in scan.findings
    ]
    if not scan.findings:
        lines.append(f"{scan.name}: safe")
    elif scan.allowed:
        lines.append(f"{scan.name}: reviewed ({ESCAPE_HATCH}): {scan.allowed_reason}")
    lines.extend(f"{scan.name}: note: {note}" for note in scan.notes)
    return "\n".join(lines)


def migration_name(path: str | Path) -> str:
    """The migration's name as Laravel stores it: the file stem, without folder or ``.php``."""
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".php")


def pending_migrations(all_names: Iterable[str], applied: Iterable[str]) -> list[str]:
    """The migrations ``php artisan migrate`` would run, in the order it runs them.

    + all_names: the migrations in the release (names, file names or paths)
    + applied: the names in the database's ``migrations`` table

    Laravel runs migration files sorted by name (their timestamp prefix), skipping those
    already recorded. Returns names (file stems), without duplicates.
    """
    done = {migration_name(name) for name in applied}
    return sorted({migration_name(name) for name in all_names} - done)


# Reading PHP
# -----------


def _mask(source: str) -> tuple[str, str, list[tuple[int, str]]]:
    """Blank out comments and the contents of strings, keeping offsets and newlines.

    Returns the text with both blanked (for finding code), the text with only comments blanked
    (for showing code), and the comments as ``(line, text)``.
    """
    out = list(source)
    code = list(source)
    comments: list[tuple[int, str]] = []
    length = len(source)

    def blank(start: int, end: int, *, comment: bool = False) -> None:
        for index in range(start, end):
            if out[index] != "\n":
                out[index] = " "
                if comment:
                    code[index] = " "

    i = 0
    while i < length:
        char = source[i]
        pair = source[i : i + 2]
        if pair == "//" or (char == "#" and pair != "#["):
            end = source.find("\n", i)
            end = length if end == -1 else end
            comments.append((_line(source, i), source[i:end]))
            blank(i, end, comment=True)
            i = end
        elif pair == "/*":
            end = source.find("*/", i + 2)
            end = length if end == -1 else end + 2
            comments.append((_line(source, i), source[i:end]))
            blank(i, end, comment=True)
            i = end
        elif char in "'\"`":
            end = i + 1
            while end < length and source[end] != char:
                end += 2 if source[end] == "\\" else 1
            blank(i + 1, min(end, length))
            i = end + 1
        elif source.startswith("<<<", i) and (heredoc := _HEREDOC_RE.match(source, i)):
            closing = re.compile(rf"^[ \t]*{heredoc.group(2)}\b", re.MULTILINE)
            found = closing.search(source, heredoc.end())
            end = found.start() if found else length
            blank(heredoc.end(), end)
            i = found.end() if found else length
        else:
            i += 1
    return "".join(out), "".join(code), comments


def _up_bodies(masked: str) -> Iterable[tuple[int, int, bool]]:
    """Yield ``(start, end, complete)`` of each ``up()`` body in the masked source."""
    for match in _UP_RE.finditer(masked):
        params_end = _closing(masked, match.end() - 1, "(", ")")
        if params_end is None:
            yield match.end(), len(masked), False
            continue
        index = params_end + 1
        while index < len(masked) and masked[index] not in "{;":
            index += 1  # whitespace and a return type such as ": void"
        if index >= len(masked) or masked[index] == ";":
            continue  # abstract or interface method: no body
        body_end = _closing(masked, index, "{", "}")
        if body_end is None:
            yield index + 1, len(masked), False
        else:
            yield index + 1, body_end, True


def _closing(masked: str, opening: int, open_char: str, close_char: str) -> int | None:
    depth = 0
    for index in range(opening, len(masked)):
        if masked[index] == open_char:
            depth += 1
        elif masked[index] == close_char:
            depth -= 1
            if depth == 0:
                return index
    return None


def _findings(source: str, code: str, masked: str, start: int, end: int) -> Iterable[Finding]:
    for match in _CALL_RE.finditer(masked, start, end):
        method = _METHODS.get(match.group(2).lower())
        if method is None:
            continue
        call = method
        own_start = match.start()
        if match.group(1) == "::":
            window = max(0, match.start() - 200)
            found = _RECEIVER_RE.search(masked[window : match.start()])
            if found:
                receiver = found.group(1).rsplit("\\", 1)[-1]
                call = f"{receiver}::{method}"
                own_start = window + found.start()
        args_end = _closing(masked, match.end() - 1, "(", ")")
        call_end = len(masked) if args_end is None else args_end + 1
        kind: FindingKind = "destructive" if method in DESTRUCTIVE_METHODS else "review"
        if method in _RAW_SQL and _DESTRUCTIVE_SQL_RE.search(code[match.end() : call_end]):
            kind = "destructive"
        statement_start = max(masked.rfind(char, 0, match.start()) for char in ";{}") + 1
        text = _one_line(code[statement_start:call_end])
        if len(text) > _TEXT_LIMIT:
            own = _one_line(code[own_start:call_end])
            text = own if own == text else "…" + own
            if len(text) > _TEXT_LIMIT:
                text = text[: _TEXT_LIMIT - 1] + "…"
        yield Finding(kind=kind, call=call, line=_line(source, match.start(2)), text=text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _line(source: str, offset: int) -> int:
    return source.count("\n", 0, offset) + 1
