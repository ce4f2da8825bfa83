"""The web hosts of a rollback: one strict SSH connection per host, opened at the start and
used for everything (the reads, the smoke tests, the switch, the restore steps, the journal).

A host that cannot be reached is set aside and reported failed while the others roll back
(exit 1), without its lock; a host whose key is unknown or changed stops the whole rollback
before anything runs anywhere (exit 3). After Ctrl-C no command starts any more and the
connections close, so that the commands running under a terminal on the hosts stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bgdeploy.core.errors import HostError, HostKeyRejected
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.fleet.executor import CommandResult


class Hosts(fabric_backend.FabricFleet):
    """The web hosts over Fabric (strict host keys), one connection each, opened once.

    :meth:`open` connects to all in parallel; a host that cannot be reached is set aside in
    ``down`` with its typed reason (:class:`bgdeploy.core.errors.HostUnreachable` or
    :class:`bgdeploy.core.errors.HostKeyRejected`), and ``names`` keeps the reachable ones
    (what the switch runs on). The same connections carry the reads, the smoke tests, the
    switch and the journal.
    """

    def __init__(self, targets: Sequence[remote.Target]) -> None:
        super().__init__(targets)
        self.targets = list(targets)
        self.all_names = list(self.names)
        self.down: dict[str, HostError] = {}
        self.stopped = False

    def stop(self) -> None:
        """After Ctrl-C: no command starts any more, and the connections close (commands
        running under a terminal on the hosts get SIGHUP)."""
        self.stopped = True
        self.close()

    def open_all(self) -> dict[str, HostError]:
        """Connect to every host in parallel; the unreachable ones go to ``down``."""
        found = super().open_all()
        self.down.update(found)
        self.names = [name for name in self.all_names if name not in self.down]
        return found

    @property
    def refused_keys(self) -> dict[str, HostError]:
        """Hosts whose host key was unknown or changed."""
        return {name: why for name, why in self.down.items() if isinstance(why, HostKeyRejected)}

    def command(
        self,
        name: str,
        command: str,
        stdin: str | None = None,
        pty: bool = False,
        timeout: float = remote.COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Run ``command`` on ``name`` (``stdin``: its input; ``pty``: under a terminal, so it
        stops when the connection drops); nothing once the rollback was stopped."""
        if self.stopped:
            return CommandResult(name, False, stderr="interrupted (Ctrl-C)")
        return self.run(name, command, stdin=stdin, pty=pty, timeout=timeout)

    def each(self, function: Callable[[str], Any], names: Sequence[str] | None = None) -> None:
        """Run ``function(name)`` for every reachable host (or ``names``) in parallel."""
        self.map(function, list(self.names if names is None else names))

    def down_results(self) -> list[remote.HostResult]:
        """A failed result for each host that could not be reached: it was not rolled back."""
        return [
            remote.HostResult(name, False, error=f"{why}: not rolled back")
            for name, why in self.down.items()
        ]
