"""Hostile values at every command: refused with exit 2 before any connection, or quoted.

Every network attempt of this process (name lookups included) trips a wire: a command that
reaches for a host before it has validated its input fails the test, whatever exit code it
then gives. Free text (reasons) is not refused: it must reach the shell as one quoted word,
which a real ``sh`` proves by writing it back byte for byte.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bgdeploy.cli import cli
from bgdeploy.core import journal

SECRETS = {
    "BGDEPLOY_APP_KEY": "base64:" + "k" * 44,
    "BGDEPLOY_DB_PASSWORD": "db-secret-value",
    "BGDEPLOY_REDIS_PASSWORD": "redis-secret-value",
    "BGDEPLOY_API_TOKEN": "api-token-value",
}

NASTY = [";", "&&", "|", "$(id)", "`id`", "\n", "'", '"', " ", "../", "\\", ">", "<", "*", "?",
         "~", "#", "!", "{a,b}", "\t", "é", "字", "\x00", "\r"]  # fmt: skip
"""Fragments that make a value hostile anywhere in it: shell metacharacters, newlines, quotes,
path climbing, unicode."""

OPTIONS = ["--upload-pack=touch /tmp/x", "-x", "--exec=id", "-oProxyCommand=id"]
"""Values that a program would read as an option when they come first."""


def hostile() -> st.SearchStrategy[str]:
    """A value with a hostile fragment inside ordinary text, or starting like an option."""
    word = st.text(alphabet="abcv12._", max_size=8)
    inside = st.builds(lambda h, f, t: h + f + t, word, st.sampled_from(NASTY), word)
    leading = st.builds(lambda o, t: o + t, st.sampled_from(OPTIONS), word)
    return st.one_of(inside, leading)


class Tripped(AssertionError):
    """A connection was attempted before the input was validated."""


@pytest.fixture(autouse=True)
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any socket connect or name lookup from this process fails the test."""
    attempts: list[str] = []

    def refuse(*args: object, **_kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise Tripped(f"network attempted before validation: {args[:2]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    yield attempts
    assert not attempts, attempts


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, input="n\n")
    if isinstance(result.exception, Tripped):
        raise result.exception
    return result.exit_code, result.output


COMMANDS = [
    ["deploy", "prod", "--ref", "{}"],
    ["deploy", "prod", "--ref", "v1", "--strategy", "{}"],
    ["deploy", "{}", "--ref", "v1"],
    ["switch", "prod", "{}"],
    ["switch", "{}", "blue"],
    ["flags", "prod", "disable", "{}"],
    ["flags", "prod", "rollout", "visa_v2", "{}"],
    ["flags", "prod", "users", "visa_v2", "{}"],
    ["flags", "{}", "list"],
    ["window", "{}"],
    ["window", "prod", "--at", "{}"],
    ["history", "{}"],
    ["status", "{}"],
    ["smoke", "{}"],
    ["unlock", "{}"],
    ["rollback", "{}"],
    ["emergency", "{}", "logs"],
    ["emergency", "prod", "logs", "--source", "{}"],
    ["emergency", "prod", "logs", "--lines", "{}"],
    ["emergency", "prod", "restart", "{}"],
    ["emergency", "prod", "kill-long-queries", "--older-than", "{}"],
    ["postmortem", "prod", "--since", "{}"],
    ["postmortem", "{}", "--since", "2026-11-01"],
]
"""Each command with ``{}`` where the hostile value goes."""


@pytest.mark.parametrize("template", COMMANDS, ids=lambda t: " ".join(t))
@example(value="\n1")  # int() takes it: a count is digits only
@example(value=" 2")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile())
def test_hostile_value_exits_2_before_any_connection(template: list[str], value: str) -> None:
    if "\x00" in value:
        value = value.replace("\x00", ";")  # argv cannot carry NUL; the shell word is the risk
    args = [part.replace("{}", value) for part in template]
    code, output = invoke(args)
    assert code == 2, f"{args!r} gave exit {code}:\n{output}"


@pytest.mark.parametrize(
    "value",
    ["main; rm -rf /", "--upload-pack=touch /tmp/pwned", "v1\nv2", "$(reboot)", "v1'", "ß字"],
)
def test_named_hostile_refs_are_refused_with_the_reason(value: str) -> None:
    code, output = invoke(["deploy", "prod", "--ref", value])
    assert code == 2 and "ref" in output, output


@settings(max_examples=200, deadline=None)
@given(reason=st.text(max_size=80))
def test_a_reason_reaches_the_shell_as_one_quoted_word(reason: str, tmp_path_factory) -> None:
    """Reasons are free text: whatever the operator types is journaled exactly, never run."""
    path = Path(tmp_path_factory.mktemp("journal")) / "sub dir" / "journal.jsonl"
    entry = journal.new_entry("unlock", host="web1", env="prod", result="ok", reason=reason)
    command = journal.journal_append_command(str(path), entry)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert (json.loads(line)["reason"] or "") == reason


def test_the_tripwire_catches_a_command_that_connects(tripwire: list[str]) -> None:
    """The wire is live: a valid command that reaches for the production hosts trips it."""
    invoke_quietly = CliRunner().invoke(cli, ["status", "prod"])
    assert tripwire, invoke_quietly.output
    assert any("bideshgomon.com" in attempt for attempt in tripwire)
    tripwire.clear()
