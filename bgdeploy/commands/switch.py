"""The blue-green colour switch and the canary, on one web host.

nginx serves the live colour through an include (``live.conf``) and the idle one through the
preview listener's (``idle.conf``); each starts with a ``# bgdeploy colour: NAME`` line. A
switch writes the new includes beside the old ones, renames them over (atomic), tests the
configuration, moves ``current`` and reloads nginx gracefully; a failing test puts the old
includes back. On a fleet the strategy (:mod:`bgdeploy.strategies.switch`) runs it on every
web host or none.

- what a host serves: :func:`colour_facts`, :func:`live_colour_dir`
- one switch, one round trip: :func:`switch_colour` (with a deadline and a watchdog that undoes
  it when no confirmation comes), :func:`switch_confirm`, :func:`switch_revert`,
  :func:`switch_cleanup`; its phases :func:`switch_prepare`, :func:`switch_apply`
- the canary's split include: :func:`canary_apply`
- :func:`move_current`: ``current`` to a colour, atomically
- :func:`locked`: under the host's switch lock (``flock``), so a watchdog never undoes a switch
  half-way through its confirmation

Example::

    switch_colour(live_inc, idle_inc, live_text, idle_text, app_root, "green",
                  deadline=now + 30, watchdog=(token, 60, "blue", journal_line))
"""

from __future__ import annotations

import re

from bgdeploy.commands.services import nginx_reload_settled, nginx_test
from bgdeploy.commands.shell import in_background, join, q, write_file
from bgdeploy.core.errors import ConfigError

SWITCH_NEW = ".bgdeploy-new"


SWITCH_PREV = ".bgdeploy-prev"


SWITCH_PENDING = ".bgdeploy-pending"
"""Beside the live include while a switch waits for the operator's confirmation: its token."""


SWITCH_LOCK = ".bgdeploy-lock"
"""Beside the live include: the lock a switch, its confirmation, its undo and its watchdog
take (``flock``), so that the watchdog never undoes a switch half-way through its
confirmation, nor an older switch's watchdog a newer switch."""


SWITCH_TOKEN = re.compile(r"^[0-9a-f]{8,32}\Z")


SWITCH_CONFIRMED = "bgdeploy-switch-confirmed"


OTHER_COLOUR = 'case "$c" in blue) c=green;; green) c=blue;; esac'
"""Shell: turns the colour in ``$c`` into the other one (anything else is left as it is)."""


def live_colour_dir(app_root: str, idle: bool = False) -> str:
    """Print the directory of the live colour (``<app_root>/<target of current>``), or with
    ``idle`` of the other colour."""
    root = q(app_root)
    swap = f" && {OTHER_COLOUR}" if idle else ""
    return f'c=$(basename "$(readlink {root}/current)"){swap} && echo {root}/"$c"'


def colour_facts(
    app_root: str,
    live_include: str,
    idle_include: str,
    lock_path: str | None = None,
    scale_path: str | None = None,
) -> str:
    """Print ``key=value`` lines about both colours of a web host: ``current`` (the target of
    ``current``), ``live`` and ``idle`` (the colours the nginx includes serve), and for each
    colour ``blue_head``/``green_head`` (its checked-out commit) and ``blue_built``/
    ``green_built`` (the commit it was last built and verified at), ``blue_built_at``/
    ``green_built_at`` (when, in epoch seconds), and ``now``: the host's
    clock (epoch seconds; a switch's deadline is set by it); with ``lock_path``, ``lock``: the
    deploy lock's one line of JSON (empty when nobody holds it); with ``scale_path``, ``scale``:
    what ``bgdeploy scale`` set (``workers=4 php_fpm_max_children=6``, empty: nothing). Never
    fails."""
    root = q(app_root)
    lines = [
        'echo "now=$(date +%s)"',
        f'echo "current=$(basename "$(readlink {root}/current 2>/dev/null)")"',
        f"echo \"live=$(sed -n 's/^# bgdeploy colour: //p' {q(live_include)} 2>/dev/null)\"",
        f"echo \"idle=$(sed -n 's/^# bgdeploy colour: //p' {q(idle_include)} 2>/dev/null)\"",
        f"echo \"canary=$(sed -n 's/^# bgdeploy canary: //p' {q(live_include)} 2>/dev/null)\"",
    ]
    for colour in ("blue", "green"):
        d = f"{root}/{colour}"
        lines.append(f'echo "{colour}_head=$(git -C {d} rev-parse -q --verify HEAD 2>/dev/null)"')
        lines.append(f'echo "{colour}_built=$(cat {d}/.git/bgdeploy-built 2>/dev/null)"')
        stamp = f"{d}/.git/bgdeploy-built"
        lines.append(f'echo "{colour}_built_at=$(stat -c %Y {stamp} 2>/dev/null)"')
    if lock_path:
        lines.append(f"echo \"lock=$(tr -d '\\n' < {q(lock_path)} 2>/dev/null)\"")
    if scale_path:
        lines.append(f"echo \"scale=$(tr '\\n' ' ' < {q(scale_path)} 2>/dev/null)\"")
    return "; ".join(lines) + "; true"


def move_current(app_root: str, colour: str) -> str:
    """Point ``current`` at ``colour`` atomically (a new link renamed over the old one)."""
    if colour not in ("blue", "green"):
        raise ConfigError(f"colour {colour!r} is not blue or green")
    root = q(app_root)
    new = f"{root}/current.bgdeploy-new"
    return f"ln -sfn {colour} {new} && mv -fT {new} {root}/current"


def locked(live_include: str, command: str, wait: int = 10) -> str:
    """``command`` in a subshell holding the switch lock (:data:`SWITCH_LOCK`); fails when the
    lock is not free within ``wait`` seconds."""
    lock = q(live_include + SWITCH_LOCK)
    busy = "bgdeploy: another switch holds the switch lock on this host"
    return f"( flock -w {int(wait)} 9 || {{ echo {q(busy)} >&2; exit 1; }}; {command} ) 9>{lock}"


def _token(token: str) -> str:
    if not SWITCH_TOKEN.match(token):
        raise ConfigError(f"switch token {token!r} is not valid")
    return token


def switch_prepare(live_include: str, idle_include: str, live: str, idle: str) -> str:
    """Phase 1 of a switch: the new includes written beside the old ones (nothing changes)."""
    return join(
        write_file(live_include + SWITCH_NEW, live), write_file(idle_include + SWITCH_NEW, idle)
    )


def switch_apply(live_include: str, idle_include: str, before_reload: str = "") -> str:
    """Phase 2 of a switch: keep the old includes, rename the new ones over them (atomic),
    ``nginx -t``, ``before_reload``, reload (graceful: requests in flight finish). A failing
    test puts the old includes back and fails."""
    steps = []
    for path in (live_include, idle_include):
        steps.append(f"cp -p {q(path)} {q(path + SWITCH_PREV)}")
    for path in (live_include, idle_include):
        steps.append(f"mv -fT {q(path + SWITCH_NEW)} {q(path)}")
    restore = "; ".join(f"mv -fT {q(p + SWITCH_PREV)} {q(p)}" for p in (live_include, idle_include))
    undo = f"{{ {restore}; echo 'bgdeploy: nginx -t failed, switch undone' >&2; exit 1; }}"
    tested = join(*steps) + f" && {{ {nginx_test()} || {undo}; }}"
    return join(tested, before_reload, nginx_reload_settled())


def switch_colour(
    live_include: str,
    idle_include: str,
    live: str,
    idle: str,
    app_root: str,
    colour: str,
    deadline: int | None = None,
    watchdog: tuple[str, int, str, str] | None = None,
) -> str:
    """A whole switch of one host to ``colour``, in one round trip: the new includes written
    (:func:`switch_prepare`) and renamed over the old ones, ``nginx -t``, ``current`` moved,
    nginx reloaded (:func:`switch_apply`); :func:`switch_revert` undoes it.

    + deadline: the host's clock (epoch seconds) after which the command refuses to start: a
      switch that reaches a host late (it stopped answering, the switch gave up on it) must
      not switch it afterwards
    + watchdog: ``(token, seconds, colour back, on undo)``: the switch stays pending under
      ``token`` until :func:`switch_confirm`; a host that hears nothing more within
      ``seconds`` (its network was cut after it switched, the operator's process died) undoes
      the switch by itself (back on ``colour back``) and runs ``on undo`` (a journal line)
    """
    guard = ""
    if deadline is not None:
        late = "bgdeploy: the switch reached this host after its deadline: not applied"
        guard = f'{{ [ "$(date +%s)" -lt {int(deadline)} ] || {{ echo {q(late)} >&2; exit 1; }}; }}'
    steps = [guard]
    if watchdog is not None:
        token, seconds, back, on_undo = watchdog
        pending = q(live_include + SWITCH_PENDING)
        undo = join(
            f"grep -qxF {_token(token)} {pending} || exit 0",
            switch_revert(live_include, idle_include, app_root, back, lock=False),
            on_undo,
        )
        # Armed before anything changes: a switch that dies half-way is undone too.
        steps.append(f"echo {token} > {pending}")
        steps.append(in_background(f"sleep {int(seconds)}; {locked(live_include, undo, wait=60)}"))
    steps += [
        switch_prepare(live_include, idle_include, live, idle),
        switch_apply(live_include, idle_include, move_current(app_root, colour)),
    ]
    if watchdog is None:
        return join(*steps)
    # The operator's connection may drop at any moment: finish (or be undone), never be killed
    # by the hangup half-way.
    return f"trap '' HUP PIPE; {locked(live_include, join(*steps))}"


def switch_confirm(live_include: str, idle_include: str, token: str) -> str:
    """Confirm a pending switch (:func:`switch_colour`'s watchdog) and remove its leftovers;
    fails when the host's watchdog already undid it."""
    pending = q(live_include + SWITCH_PENDING)
    undone = "bgdeploy: this host had already undone the switch (no confirmation in time)"
    return locked(
        live_include,
        join(
            f"{{ grep -qxF {_token(token)} {pending} || {{ echo {q(undone)} >&2; exit 1; }}; }}",
            switch_cleanup(live_include, idle_include),
            f"echo {SWITCH_CONFIRMED}",
        ),
    )


def switch_revert(
    live_include: str, idle_include: str, app_root: str, colour: str, lock: bool = True
) -> str:
    """Undo :func:`switch_colour` on a host where it ran, even in part: the old includes back,
    ``current`` back on ``colour``, nginx tested and reloaded; then the leftovers removed. A
    host the switch never reached is left as it is. Under the switch lock unless ``lock`` is
    False (the caller holds it)."""
    prev = [(p + SWITCH_PREV, p) for p in (live_include, idle_include)]
    any_prev = " || ".join(f"[ -e {q(kept)} ]" for kept, _ in prev)
    back = join(
        *(f"{{ [ ! -e {q(kept)} ] || mv -fT {q(kept)} {q(path)}; }}" for kept, path in prev),
        move_current(app_root, colour),
        nginx_test(),
        nginx_reload_settled(),
    )
    command = (
        f"{{ if {any_prev}; then {back}; fi; }} && {switch_cleanup(live_include, idle_include)}"
    )
    return locked(live_include, command) if lock else command


def switch_cleanup(live_include: str, idle_include: str) -> str:
    """Remove what a switch left beside the includes."""
    paths = [
        p + suffix for p in (live_include, idle_include) for suffix in (SWITCH_NEW, SWITCH_PREV)
    ]
    return "rm -f " + " ".join(q(p) for p in [*paths, live_include + SWITCH_PENDING])


def canary_apply(live_include: str, split_include: str, live: str, split: str) -> str:
    """Start or end a canary on one host, in one round trip, with the switch's own steps: the
    split (``split_include``, at nginx's http level; created empty when missing) and the live
    include written beside the old ones (:func:`switch_prepare`), renamed over them,
    ``nginx -t``, reload (:func:`switch_apply`). :func:`switch_revert` undoes it;
    :func:`switch_cleanup` removes the leftovers."""
    ensure = f"{{ [ -e {q(split_include)} ] || : > {q(split_include)}; }}"
    return join(
        ensure,
        switch_prepare(live_include, split_include, live, split),
        switch_apply(live_include, split_include),
    )
