"""``config/features.php``, read as text (PHP is never run), and the ``feature flags`` check.

The file returns an array of flags, each ``'name' => [settings]``; a flag's ``remove_after``
is the date it is to be removed by (``YYYY-MM-DD``)::

    return [
        'visa_new_flow_20250601' => [
            'enabled' => true,
            'rollout_percentage' => 5,
            'remove_after' => '2025-07-01',
        ],
    ];

:func:`parse_features` turns literal values (strings, numbers, booleans, null, arrays) into
Python values and keeps anything else as an :class:`Expression` (its text).
:func:`check_flags` compares the release's file with the live one and warns (never fails) on a
flag past its ``remove_after`` date, on a new flag without a valid one (runbook: "Flag removal
date documented"), and on a file it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from bgdeploy.checks.preflight.report import PASS, WARN, Check

FEATURES_FILE = "config/features.php"


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
