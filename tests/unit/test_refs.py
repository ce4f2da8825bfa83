"""Refs that may be deployed: checked before any connection, never escaped into a shell."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.refs import ALLOWED, is_sha, short, validate_ref


@pytest.mark.parametrize(
    "ref",
    [
        "main",
        "v2",
        "v2.4.0",
        "release/2026-12",
        "refs/tags/v2.4.0",
        "refs/heads/main",
        "feature/visa+flow",
        "user@host-fix",
        "4f1c2e9",
        "4f1c2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e",
    ],
)
def test_good_refs_pass(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    ("ref", "says"),
    [
        ("main; rm -rf /", "not allowed in a ref"),
        ("$(reboot)", "not allowed in a ref"),
        ("`id`", "not allowed in a ref"),
        ("v1 && curl x", "not allowed in a ref"),
        ("a|b", "not allowed in a ref"),
        ("a>b", "not allowed in a ref"),
        ("it's", "not allowed in a ref"),
        ("new\nline", "not allowed in a ref"),
        ("tab\tref", "not allowed in a ref"),
        ("vé", "not allowed in a ref"),
        ("-x", "starts with '-'"),
        ("--upload-pack=evil", "not allowed in a ref"),
        ("--output", "starts with '-'"),
        ("a..b", "'..'"),
        ("a@{1}", "not allowed in a ref"),
        ("@", "'@' alone"),
        ("/main", "starts or ends with '/'"),
        ("main/", "starts or ends with '/'"),
        ("a//b", "'//'"),
        ("main.", "ends with '.'"),
        (".hidden", "starts with '.'"),
        ("refs/.x/y", "starts with '.'"),
        ("main.lock", "ends with '.lock'"),
        ("a.lock/b", "ends with '.lock'"),
        ("a~1", "not allowed in a ref"),
        ("a^{commit}", "not allowed in a ref"),
        ("a:b", "not allowed in a ref"),
        ("a*", "not allowed in a ref"),
        ("a?", "not allowed in a ref"),
        ("a[b", "not allowed in a ref"),
        ("a\\b", "not allowed in a ref"),
        ("HEAD", "not HEAD"),
        ("origin/HEAD", "not HEAD"),
        ("", "empty"),
        ("x" * 201, "characters long"),
    ],
)
def test_bad_refs_are_refused_with_the_reason(ref: str, says: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_ref(ref)
    assert says in str(error.value)
    assert error.value.exit_code == 2


@pytest.mark.parametrize("value", [123, 1.5, None, ["main"], True])
def test_refs_that_are_not_text_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="not text"):
        validate_ref(value)


@given(st.text(max_size=60))
def test_anything_accepted_needs_no_quoting(ref: str) -> None:
    """Whatever passes is a single shell word already: quoting changes nothing."""
    try:
        validate_ref(ref)
    except ConfigError:
        return
    assert ALLOWED.match(ref)
    assert shlex.quote(ref) == ref
    assert not ref.startswith("-")


def test_sha_helpers() -> None:
    assert is_sha("4f1c2e9")
    assert not is_sha("4f1c2e")  # too short to be unambiguous
    assert not is_sha("main")
    assert short("4f1c2e9a8b7c6d5e4f3a") == "4f1c2e9a8b7c"
    assert short(None) == "-"


def test_no_validating_pattern_accepts_a_trailing_newline() -> None:
    import re
    from pathlib import Path

    import bgdeploy

    package = Path(bgdeploy.__file__).parent
    source = "\n".join(p.read_text() for p in package.rglob("*.py"))
    # Patterns that read lines of a command's output (re.MULTILINE) are not validators.
    loose = re.findall(r're\.(?:compile|match)\(r"\^[^"]*\$"(?!, re\.M)', source)
    assert loose == [], "use \\Z: `$` also matches before a final newline"
