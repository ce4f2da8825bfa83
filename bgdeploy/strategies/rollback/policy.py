"""Which release ``bgdeploy rollback`` goes back to, and which way: pure functions of what the
hosts said (their journals and their colours), nothing read or run here.

The previous good commit is read from the journals of every web host, merged in time order
(:func:`select_target`): the latest release that went live (a deploy, a switch or a
rollback) before the live one, leaving out every release marked bad (:func:`bad_releases`).
A release is marked bad when a rollback left it (``details.bad_release`` of its
``rollback`` line) or when a deploy of it was rolled back automatically; deploying it again,
or rolling back to it, clears the mark.

The way back (:func:`switch_back_colour`): switch back when every host agrees on the live
colour and the other one holds, on each, a release built and verified at its commit that is
not the live one; otherwise in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from bgdeploy.core import refs
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.journal import JournalEntry
from bgdeploy.core.render import COLOURS
from bgdeploy.fleet.colours import HostColours, other

LIVE_EVENTS = ("deploy_finish", "switch", "rollback")


def bad_releases(entries: Sequence[JournalEntry]) -> set[str]:
    """Commits marked bad in the journals (in time order): the release a rollback left
    (``details.bad_release``, ``sha_before``), and a release rolled back automatically
    (``deploy_fail`` with result ``rolled_back``). A later successful deploy of the same
    commit, or a rollback to it, clears the mark."""
    bad: set[str] = set()
    for entry in entries:
        if entry.event == "rollback" and entry.result == "ok":
            bad.discard(entry.sha or "")
            for sha in (entry.details.get("bad_release"), entry.sha_before):
                if isinstance(sha, str) and sha:
                    bad.add(sha)
        elif entry.event == "deploy_fail" and entry.result == "rolled_back" and entry.sha:
            bad.add(entry.sha)
        elif entry.event == "deploy_finish" and entry.result == "ok" and entry.sha:
            bad.discard(entry.sha)
    return bad


def live_releases(entries: Sequence[JournalEntry]) -> list[str]:
    """The commits that went live, in time order: successful deploys, switches, rollbacks."""
    return [
        entry.sha
        for entry in entries
        if entry.event in LIVE_EVENTS and entry.result == "ok" and entry.sha
    ]


def select_target(entries: Sequence[JournalEntry], live: dict[str, str]) -> str:
    """The commit an automatic rollback goes back to.

    + entries: every web host's journal, merged in time order
    + live: each reachable web host's live commit

    When some hosts serve a release marked bad and all the others one good release (a
    rollback that did not reach every host), that release. Otherwise the latest release that
    went live, is not live now and is not marked bad. Raises :class:`OperationFailed` when
    there is none.
    """
    bad = bad_releases(entries)
    serving = {sha for sha in live.values() if sha}
    good = serving - bad
    if serving & bad and len(good) == 1:
        return next(iter(good))
    for sha in reversed(live_releases(entries)):
        if sha not in serving and sha not in bad:
            return sha
    shown = ", ".join(sorted(refs.short(sha) for sha in bad)) or "none"
    raise OperationFailed(
        f"the journals name no good release before {', '.join(sorted(map(refs.short, serving)))}"
        f" (marked bad: {shown})"
    )


def switch_back_colour(colours: dict[str, HostColours], to_sha: str | None = None) -> str | None:
    """The colour every host can switch back to, or None: all hosts agree on the live colour,
    and the other one holds on each a built, verified release other than the live one (when
    ``to_sha`` is given, that one)."""
    if not colours or any(c.error or not c.consistent for c in colours.values()):
        return None
    lives = {c.live for c in colours.values()}
    if len(lives) != 1:
        return None
    live = lives.pop()
    previous = other(live)
    for facts in colours.values():
        head = facts.heads.get(previous, "")
        if not facts.ready(previous) or head == facts.heads.get(live):
            return None
        if to_sha and head != to_sha:
            return None
    return previous


def built_at(facts: HostColours, sha: str) -> bool:
    """The live colour is checked out at ``sha`` and was built and verified there (a host
    left half rolled back is not): an in-place rollback to ``sha`` leaves it as it is."""
    return facts.heads.get(facts.current) == sha and facts.built.get(facts.current) == sha


def parse_resolved(output: str) -> set[str]:
    """The commits :func:`bgdeploy.commands.git_resolve` printed (``kind sha`` lines)."""
    return {
        parts[1]
        for parts in (line.split() for line in output.splitlines())
        if len(parts) == 2 and refs.FULL_SHA.match(parts[1])
    }


def nothing_message(env: str, colours: dict[str, HostColours], why: str) -> str:
    """What to say when there is no release to go back to (``why``: the journals' account),
    and how to name one."""
    holds_colour = any(c.heads.get(other(c.live)) for c in colours.values() if c.live in COLOURS)
    start = "nothing to switch back to (the other colour holds no built, verified release)"
    start = start if holds_colour else "nothing to roll back to"
    return (
        f"{start}: {why}. Roll back to a given release with `bgdeploy rollback {env} --to REF` "
        f"(`bgdeploy history {env}` lists them)"
    )
