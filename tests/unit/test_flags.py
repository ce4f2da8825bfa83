"""Feature flag actions: the artisan words, and refusal of anything else."""

from __future__ import annotations

import pytest

from bgdeploy.core.errors import ConfigError
from bgdeploy.oncall.flags import feature_words


@pytest.mark.parametrize(
    ("action", "name", "value", "words"),
    [
        (
            "disable",
            "visa_new_flow_20250601",
            None,
            ["feature:set", "visa_new_flow_20250601", "--disable"],
        ),
        ("enable", "x", None, ["feature:set", "x", "--enable"]),
        ("rollout", "x", "25", ["feature:set", "x", "--rollout=25"]),
        ("users", "x", "1,2,3", ["feature:set", "x", "--users=1,2,3"]),
        ("reset", "x", None, ["feature:set", "x", "--reset"]),
        ("list", None, None, ["feature:list", "--json"]),
    ],
)
def test_actions(action: str, name: str | None, value: str | None, words: list[str]) -> None:
    assert feature_words(action, name, value) == words


@pytest.mark.parametrize(
    ("action", "name", "value"),
    [
        ("disable", "x; rm -rf /", None),
        ("disable", "--force", None),
        ("disable", "Ünïcode", None),
        ("disable", None, None),
        ("rollout", "x", "101"),
        ("rollout", "x", "-1"),
        ("rollout", "x", "5%"),
        ("users", "x", "1,2;id"),
        ("users", "x", ""),
        ("enable", "x", "extra"),
        ("explode", "x", None),
    ],
)
def test_bad_input_is_refused(action: str, name: str | None, value: str | None) -> None:
    with pytest.raises(ConfigError):
        feature_words(action, name, value)


@pytest.mark.parametrize("name", ["a\n", "new_checkout\n", "a\nb"])
def test_a_trailing_newline_is_not_part_of_a_valid_name(name: str) -> None:
    # `$` matches before a final newline: every validating pattern ends in `\Z` (hypothesis
    # found `flags prod disable 'a\n'` accepted and sent to the hosts).
    with pytest.raises(ConfigError):
        feature_words("disable", name, None)
