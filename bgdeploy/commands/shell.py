"""Shell building blocks every command builder uses.

A command is a string for a POSIX shell on a host, run as the deploy user by either engine
(pyinfra's ``server.shell`` or the Fabric executor). The rule of the package: every value that
reaches a shell is validated by its builder or quoted with :func:`q`; nothing formats a command
line by hand.

- :func:`q`, :func:`join`: quote one value; chain commands, stopping at the first failure
- :func:`as_root`, :func:`as_user`: the same command through ``sudo`` (never prompting)
- :func:`in_dir`: in a directory with ``umask 002``: a colour and the shared storage are
  group-writable by php-fpm's group, and what a deploy writes there stays so
- :func:`wide`: at :data:`TERMINAL_COLUMNS` columns, so an error is never wrapped
- :func:`write_file`, :func:`in_background`, :func:`tail`
- :func:`record_group`, :func:`stop_group`, :func:`forget_group`: stop a long build step whose
  client went away

Example::

    from bgdeploy.commands import as_root, join, q

    as_root(join(f"mkdir -p {q(path)}", f"chmod 0750 {q(path)}"))
"""

from __future__ import annotations

import re
import shlex

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.explain import TERMINAL_COLUMNS


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def join(*commands: str) -> str:
    """Run commands one after the other, stopping at the first failure."""
    return " && ".join(f"{c}" for c in commands if c)


"""The console width artisan and composer run at (``COLUMNS``, :func:`wide`)."""


def wide(command: str) -> str:
    """``command`` (one simple command) with ``COLUMNS`` at :data:`TERMINAL_COLUMNS` in its
    environment. Symfony's console (artisan, composer) reads ``COLUMNS`` before asking the
    terminal, so under the release's pty (80 columns) an error is not wrapped and a table
    name in it not cut in two (:mod:`bgdeploy.core.explain` reads those messages). Set on the
    command itself: bash (``checkwinsize``) resets an exported ``COLUMNS`` to the terminal's
    width after each program it runs."""
    return f"COLUMNS={TERMINAL_COLUMNS} {command}"


def as_user(user: str, command: str) -> str:
    """Run a shell command as another user (through sudo, with a login-free shell)."""
    return f"sudo -u {q(user)} -H sh -c {q(command)}"


def as_root(command: str) -> str:
    """Run a shell command as root through ``sudo -n`` (fails instead of prompting)."""
    return f"sudo -n -H sh -c {q(command)}"


def in_dir(directory: str, command: str) -> str:
    """``command`` in ``directory``, with ``umask 002`` (files stay group-writable)."""
    return f"cd {q(directory)} && umask 002 && {command}"


def write_file(path: str, content: str, mode: str = "0644") -> str:
    """Write ``content`` to ``path`` (no secret: the content is part of the command)."""
    if not re.match(r"^0[0-7]{3}\Z", mode):
        raise ConfigError(f"file mode {mode!r} is not valid")
    return f"printf '%s' {q(content)} > {q(path)} && chmod {mode} {q(path)}"


def in_background(command: str, on_failure: str = "") -> str:
    """Start ``command`` detached from the session (``setsid``, no input, output discarded) and
    go on at once; ``on_failure`` runs when it fails."""
    body = f"{{ {command}; }} || {{ {on_failure}; }}" if on_failure else command
    # fd 9 closed: a switch lock (:func:`locked`) stays with the caller.
    return f"{{ setsid sh -c {q(body)} </dev/null >/dev/null 2>&1 9>&- & }}"


def tail(path: str, lines: int, follow: bool = False) -> str:
    """The last ``lines`` lines of a log (``follow``: and every new one, across rotations).

    A log that does not exist yet (nothing logged since the last rotation) is said so, and is
    not a failure; ``follow`` waits for it to appear.
    """
    if follow:
        return f"tail -n {int(lines)} -F {q(path)}"
    return (
        f"if [ -e {q(path)} ]; then tail -n {int(lines)} {q(path)}; "
        f"else echo {q(f'(no log yet: {path} does not exist)')}; fi"
    )


def record_group(path: str) -> str:
    """Write the process group of this command's shell to ``path`` (under a terminal the
    shell leads its own session and group), for :func:`stop_group`."""
    return f"echo $$ > {q(path)}"


def stop_group(path: str) -> str:
    """Terminate the process group recorded in ``path`` (a build step still running after
    its client went away: composer, npm and their children), then remove the file."""
    return (
        f'if [ -f {q(path)} ]; then kill -TERM "-$(cat {q(path)})" 2>/dev/null; '
        f"rm -f {q(path)}; fi; true"
    )


def forget_group(path: str) -> str:
    """Remove a :func:`record_group` file once its steps are over."""
    return f"rm -f {q(path)}"
