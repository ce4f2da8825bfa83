"""Reading the deploy journals of an environment's hosts.

Every deploy, switch, rollback, snapshot, flag change, unlock and emergency action appends a
line to ``<app_root>/.bgdeploy/journal.jsonl`` on each host involved. ``bgdeploy history`` and
``bgdeploy postmortem`` read them all over SSH (in parallel, strict host keys) and merge them in
time order; a host that cannot be read is reported, not hidden, and the others still count.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgdeploy.core import settings as settings_mod
from bgdeploy.core.journal import JournalEntry, MergedHistory, journal_read_command, merge_histories
from bgdeploy.fleet import fabric_backend, remote


@dataclass
class History:
    """The merged history, and the hosts whose journal could not be read."""

    merged: MergedHistory
    unreadable: list[remote.HostResult]

    @property
    def entries(self) -> tuple[JournalEntry, ...]:
        return self.merged.entries


def read(env: str, last: int | None = None) -> History:
    """Read and merge the journals of every web and db host of ``env``."""
    hosts = remote.targets(env, groups=("web", "db"))
    paths = {host.name: settings_mod.from_data(host.data, env).journal_path for host in hosts}
    results = fabric_backend.run_all(
        hosts, lambda host: journal_read_command(paths[host.name], last)
    )
    texts = {result.host: result.stdout for result in results if result.ok}
    return History(merge_histories(texts), [result for result in results if not result.ok])
