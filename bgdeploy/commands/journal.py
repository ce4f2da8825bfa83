"""The journal on a host: one JSON line per event (deploy, switch, rollback, snapshot).

The journal (``<app_root>/.bgdeploy/journal.jsonl``) belongs to the deploy user;
:mod:`bgdeploy.core.journal` defines its entries and the append itself
(``journal_append_command``). :func:`journal_append` makes sure its directory exists and appends
an entry as the deploy user, from whichever engine runs it.

Example::

    journal_append(settings, entry)   # install -d ... && sudo -u deploy -H sh -c '... >> journal'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bgdeploy.commands.shell import as_user, join, q
from bgdeploy.core.journal import journal_append_command

if TYPE_CHECKING:
    from bgdeploy.core.settings import Settings


def journal_append(settings: Settings, entry: Any) -> str:
    """Append a journal entry on a host, as the deploy user (the journal's owner)."""
    directory = settings.journal_path.rsplit("/", 1)[0]
    return join(
        f"install -d -o {q(settings.deploy_user)} -m 0750 {q(directory)}",
        as_user(settings.deploy_user, journal_append_command(settings.journal_path, entry)),
    )
