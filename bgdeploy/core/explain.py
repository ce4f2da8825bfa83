"""The lines of a failed command's output that explain the failure.

A release step's output is long and its last lines are rarely the cause: ``composer install``
ends with ``Script @php artisan package:discover --ansi handling the post-autoload-dump event
returned with error code 1`` several lines after the exception that made the script fail, and a
failed ``php artisan migrate`` prints its SQL error in a padded box. :func:`explain` chooses,
from the whole output, the lines a person needs, in the order they appeared:

- Symfony and Laravel console exceptions: the ``In Foo.php line 12:`` block (or a box with an
  ``[Exception]`` title), its padding removed, its lines joined; a message the terminal
  wrapped at 80 columns is joined back (a table name cut in two becomes whole again)
- ``PHP Fatal error:`` and ``PHP Parse error:``
- ``SQLSTATE[...]`` lines, PostgreSQL's ``ERROR:``/``FATAL:`` (psql, pg_dump) with its
  ``DETAIL``/``HINT``
- composer's ``Script ... returned with error code N``
- ``npm ERR!`` lines (not the pointer to npm's debug log) and vite's ``error during build:``
- git's ``fatal:`` and ``error:`` (with the files it names)
- the shell's own complaints (``sh: 1: composer: not found``)

When none is found, the last lines. Colours (ANSI sequences) and carriage-return progress are
removed, runs of spaces and Laravel's dotted leaders shortened, and the result bounded
(:data:`MAX_LINES` lines of at most :data:`MAX_LINE` characters).

.. code:: python

    explain(out, err)       # 'the payments gateway key is missing (In Payments...php line 11)\\n
                            #  Script @php artisan package:discover --ansi handling ... code 1'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LINES = 6
"""Lines kept in an explanation."""

MAX_LINE = 300
"""Characters kept of one line (a SQL statement can be long)."""

MAX_SCANNED = 5000
"""Lines of each output searched (the last ones: a step can print a lot before it fails)."""

TERMINAL_COLUMNS = 1000
"""The width bgdeploy's step commands run at (``COLUMNS``, :func:`bgdeploy.commands.shell.wide`):
wide enough that no message is wrapped."""

WRAP_WIDTHS = (80, TERMINAL_COLUMNS)
"""Terminal widths a console box may have been wrapped at: 80 (a pty's default, when nothing
sets ``COLUMNS``) and the width bgdeploy's commands export (:data:`TERMINAL_COLUMNS`)."""

NO_OUTPUT = "no output"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-B]")
_IN_FILE = re.compile(r"^In (\S.*) line (\d+):\Z")
_BOX_TITLE = re.compile(r"^\[[A-Za-z_\\][\w\\]*\]\Z")
_CARET = re.compile(r"^\s*\^\s*\Z")
_CARET_MARK = re.compile(r"(?<=\s)\^(?=\s|$)")  # PostgreSQL's pointer under "LINE 1: ..."
_DOTS = re.compile(r"\.{4,}")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True)
class _Pattern:
    """A line that explains a failure, and how many following lines belong with it."""

    regex: re.Pattern[str]
    follow: re.Pattern[str] | None = None
    follow_max: int = 0


_PATTERNS = (
    _Pattern(re.compile(r"^(?:PHP )?(?:Fatal|Parse) error:")),
    _Pattern(re.compile(r"SQLSTATE\[")),
    _Pattern(re.compile(r"^Script .+ returned with error code \d+")),
    _Pattern(
        re.compile(r"^(?:\S+: )*(?:ERROR|FATAL|PANIC):\s"),
        re.compile(r"^(?:DETAIL|HINT):\s"),
        2,
    ),
    _Pattern(re.compile(r"^(?:pg_dump|pg_restore|psql|createdb|dropdb): (?:error|fatal): ")),
    _Pattern(re.compile(r"^(?:fatal|error): "), re.compile(r"^\t\S"), 3),
    _Pattern(re.compile(r"^error during build:"), re.compile(r"^\S"), 1),
    _Pattern(re.compile(r"^(?:sh|bash|sudo)(?:: line \d+|: \d+)?: \S")),
)

_NPM = re.compile(r"^npm ERR! ?(.*)\Z")
_NPM_NOISE = re.compile(r"A complete log of this run can be found in|/_logs/\S*debug\S*\.log")
_NPM_MAX = 4


def explain(stdout: str, stderr: str = "", *, max_lines: int = MAX_LINES) -> str:
    """The lines of a failed command's output (``stdout`` and ``stderr``; under a pty all of
    it arrives as stdout) that explain the failure, one cause a line, most often the first
    line naming the cause; else the last ``max_lines`` lines (of stderr when it has any).
    ``no output`` when there was none."""
    chosen: list[tuple[str, str]] = []  # (what it says, the line shown)
    for text in (stdout, stderr):
        for said, line in _explaining(_clean(text)[-MAX_SCANNED:]):
            # An exception's cause is printed after it, and usually says less (Laravel's
            # QueryException adds the SQL to PDO's message): keep the fuller one.
            if not any(said in kept for kept, _ in chosen):
                chosen = [(kept, shown) for kept, shown in chosen if kept not in said]
                chosen.append((said, line))
    found = [line for _, line in chosen]
    if not found:
        for text in (stderr, stdout):
            kept = [_tidy(line) for line in _clean(text)]
            kept = [line for line in kept if line]
            if kept:
                found = kept[-max_lines:]
                break
    return "\n".join(_bounded(line) for line in found[:max_lines]) or NO_OUTPUT


def first_line(text: str) -> str:
    """The first line of an explanation (or of any message): what a one-line summary shows."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _clean(text: str) -> list[str]:
    """Lines without colours; of a line redrawn with carriage returns, what was left."""
    lines = []
    for raw in _ANSI.sub("", text or "").split("\n"):
        raw = raw.rstrip("\r")
        if "\r" in raw:
            raw = raw.rsplit("\r", 1)[-1]
        lines.append(raw)
    return lines


def _tidy(line: str) -> str:
    return _SPACES.sub(" ", _DOTS.sub("...", line)).strip()


def _bounded(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def _blank(line: str) -> bool:
    return not line.strip()


def _explaining(lines: list[str]) -> Iterable[tuple[str, str]]:
    """Each explaining line (or block made one line) of ``lines``, in order, as (what it
    says, the line to show)."""
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        where = _IN_FILE.match(stripped)
        if where or (_is_box_edge(line) and _box_follows(lines, index)):
            block, index = _block(lines, index + 1 if where else index)
            if block:
                yield (
                    block,
                    f"{block} (In {where.group(1)} line {where.group(2)})" if where else block,
                )
            continue
        npm = _NPM.match(stripped)
        if npm:
            block, index = _npm_block(lines, index)
            if block:
                yield block, block
            continue
        for pattern in _PATTERNS:
            if pattern.regex.search(stripped):
                parts = [_tidy(stripped)]
                while (
                    pattern.follow is not None
                    and len(parts) <= pattern.follow_max
                    and index + 1 < len(lines)
                    and pattern.follow.search(lines[index + 1])
                ):
                    index += 1
                    parts.append(_tidy(lines[index]))
                said = " ".join(parts)
                yield said, said
                break
        index += 1


def _is_box_edge(line: str) -> bool:
    """The top or bottom of a console exception box: padding only (spaces)."""
    return len(line) >= 4 and _blank(line)


def _box_follows(lines: list[str], index: int) -> bool:
    """True when ``lines[index]`` opens a box: indented lines of its width, then its edge."""
    width = len(lines[index])
    end = index + 1
    while end < len(lines) and len(lines[end]) == width and not _blank(lines[end]):
        if not lines[end].startswith("  "):
            return False
        end += 1
    return end > index + 1 and end < len(lines) and lines[end] == lines[index]


def _block(lines: list[str], index: int) -> tuple[str, int]:
    """The message of the console box starting at ``lines[index]`` (after any ``In ...
    line N:``), as one line, and the index after the box."""
    while index < len(lines) and _blank(lines[index]) and not _is_box_edge(lines[index]):
        index += 1  # an empty line between the header and the box
    width = len(lines[index]) if index < len(lines) and _is_box_edge(lines[index]) else 0
    if width:
        index += 1
    content: list[str] = []
    while index < len(lines) and not _blank(lines[index]):
        content.append(lines[index])
        index += 1
    if index < len(lines) and width and len(lines[index]) == width:
        index += 1  # the bottom edge
    text = ""
    for number, raw in enumerate(content):
        piece = raw[2:] if raw.startswith("  ") else raw
        if _BOX_TITLE.match(piece.strip()) or _CARET.match(piece):
            continue
        if width and len(raw) == width and width + 1 in WRAP_WIDTHS:
            # Symfony cut the message every (width - 4) characters, mid-word: a full chunk
            # continues on the next line, with no space between.
            chunk = raw[2 : width - 2]
            wrapped = chunk[-1:] != " " and number + 1 < len(content)
            text += chunk if wrapped else chunk.rstrip() + " "
        else:
            text += piece.strip() + " "
    return _tidy(_CARET_MARK.sub(" ", text)), index


def _npm_block(lines: list[str], index: int) -> tuple[str, int]:
    """npm's ``npm ERR!`` lines from ``index`` on, without its log file's name, as one line."""
    kept: list[str] = []
    while index < len(lines):
        found = _NPM.match(lines[index].strip())
        if found is None:
            if lines[index].strip():
                break
            index += 1
            continue
        text = found.group(1).strip()
        if text and not _NPM_NOISE.search(text) and len(kept) < _NPM_MAX:
            kept.append(_tidy(text))
        index += 1
    return ("npm ERR! " + " ".join(kept)) if kept else "", index
