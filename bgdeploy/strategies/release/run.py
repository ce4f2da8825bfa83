"""The run: one :class:`ReleaseRun` per pyinfra run, that every host's pass through the deploy
file joins (:func:`begin`), and what it decides.

pyinfra runs each operation on every host before the next one; the release's operations read
and update this run when they execute, so each can ask whether it applies to its host now
(:meth:`ReleaseRun.changing`: the host is being released in this batch and nothing stopped it)
rather than pyinfra dropping a host half-way. The run also keeps the report that
``bgdeploy deploy`` reads (``bgdeploy_report``).

:func:`begin` checks this host's settings and the ``--data`` values, and the deploy window;
a wrong value or a deploy outside the window raises :class:`DeployRefused` before any
operation is added. :func:`rolling_batches` orders the web hosts in batches
(``rolling_batch``), the migrate host first.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from bgdeploy.checks import schema
from bgdeploy.core import approvals, journal, lock, refs, windows
from bgdeploy.core.errors import BgdeployError
from bgdeploy.core.release_report import HostOutcome, ReleaseReport
from bgdeploy.core.settings import Settings


class DeployRefused(PyinfraError):
    """The release was refused before anything changed (pyinfra prints the message)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class HostRun:
    """What the release knows about one host while it runs (the outcome is reported)."""

    name: str
    settings: Settings
    outcome: HostOutcome
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    last_step_end: float | None = None
    lock_acquired: bool = False
    deploying: bool = False
    live_dir: str = ""
    needs_restore: bool = False
    restored: bool = False
    restore_ok: bool = False

    @property
    def is_web(self) -> bool:
        return "web" in self.outcome.roles

    @property
    def is_db(self) -> bool:
        return "db" in self.outcome.roles


@dataclass
class ReleaseRun:
    """One release across the fleet: what was asked, what was decided, each host's state.

    Created by the first host's pass through the deploy file (:func:`begin`); the other hosts
    join it. Operations read and update it when they execute.
    """

    env: str
    ref: str
    run_id: str
    who: str
    force: bool
    allow_destructive: bool
    reason: str | None
    emergency_reason: str | None
    report_path: str | None
    web_order: list[str]
    db_host: str | None
    migrate_host: str
    batches: list[list[str]]
    report: ReleaseReport
    hosts: dict[str, HostRun] = field(default_factory=dict)
    window: windows.WindowDecision | None = None
    sha: str | None = None
    pending: list[str] = field(default_factory=list)
    destructive: list[str] = field(default_factory=list)
    aborted: str | None = None
    aborted_batches: dict[int, str] = field(default_factory=dict)
    snapshot_ok: bool = False
    fingerprint: schema.Fingerprint | None = None
    """The database before migrating (taken with the snapshot): what a failed migrate must
    leave it as."""
    migrated: bool = False
    strategy: str = "in-place"
    assets: bytes | None = None
    """The release's assets (``asset_paths``) as built on :attr:`asset_builders`, packed."""
    assets_sha256: str = ""
    asset_builders: dict[int, str] = field(default_factory=dict)
    log_path: str | None = None
    """The operator's log file of this run (``--data bgdeploy_log``), which the journal names."""
    ask: approvals.Ask = field(default_factory=approvals.Ask)
    """The kind of deploy and what the operator said for it (``--data deploy_kind=...``)."""
    approval: approvals.ApprovalDecision | None = None
    """The approval rules' verdict once the commit's trailers were read (:func:`guard`)."""
    review_due: datetime | None = None
    """When the post-deployment review of a hotfix or emergency deploy is due (set once)."""

    # Decisions the operations' ``_if`` read at execute time.

    def batch_of(self, name: str) -> int | None:
        for number, batch in enumerate(self.batches):
            if name in batch:
                return number
        return None

    def earlier_batches_healthy(self, batch: int) -> bool:
        """True when no host of an earlier batch failed (the rollout goes on)."""
        for number in range(batch):
            if number in self.aborted_batches:
                return False
            for name in self.batches[number]:
                if self.hosts[name].outcome.result not in ("pending", "ok", "unchanged"):
                    return False
        return True

    def changing(self, name: str, batch: int) -> bool:
        """True when host ``name`` is being released in ``batch`` and nothing stopped it."""
        run = self.hosts.get(name)
        return (
            run is not None
            and self.aborted is None
            and self.report.refusal is None
            and run.deploying
            and self.batch_of(name) == batch
            and batch not in self.aborted_batches
            and run.outcome.failed_step is None
            and self.earlier_batches_healthy(batch)
        )

    def shares_assets(self, name: str) -> bool:
        """True when one host builds the assets and the others receive them: ``asset_paths``
        is set and the release has more than one web host."""
        return bool(self.hosts[name].settings.asset_paths) and len(self.web_order) > 1

    def builds_assets(self, name: str, batch: int) -> bool:
        """True when host ``name`` runs ``npm ci`` and ``npm run build`` in ``batch``: every
        host does unless assets are shared; then only the batch's first host still being
        released, and only until the assets were built once (later batches receive them)."""
        if not self.shares_assets(name):
            return True
        if self.assets is not None:
            return False
        if batch not in self.asset_builders:
            first = next((n for n in self.batches[batch] if self.changing(n, batch)), None)
            if first is None:
                return False
            self.asset_builders[batch] = first
        return self.asset_builders[batch] == name

    def batch_deploys(self, batch: int) -> bool:
        return any(self.changing(name, batch) for name in self.batches[batch])

    def save(self) -> None:
        """Write the report file, when there is one (``bgdeploy_report``)."""
        if self.report_path:
            for run in self.hosts.values():
                end = run.finished if run.finished is not None else time.monotonic()
                run.outcome.seconds = round(end - run.started, 2)
            self.report.sha = self.sha
            self.report.migrations = list(self.pending)
            self.report.save(self.report_path)

    def refuse(self, kind: str, message: str) -> DeployRefused:
        """Record a refusal and return the exception to raise."""
        if self.report.refusal is None:
            self.report.refusal = {"kind": kind, "message": message}
        self.save()
        return DeployRefused(kind, message)


# The run state
# -------------
#
# One :class:`ReleaseRun` per pyinfra run, shared by every host's operations: kept here, by
# pyinfra ``State``, rather than as an attribute of pyinfra's own objects.

_RUNS: weakref.WeakKeyDictionary[Any, ReleaseRun] = weakref.WeakKeyDictionary()


def current_state() -> Any:
    """The pyinfra ``State`` of the run in progress (not the context proxy)."""
    from pyinfra.context import ctx_state

    return ctx_state.get()


def current_host() -> Any:
    """The pyinfra ``Host`` whose operations are being added or run (not the proxy)."""
    from pyinfra.context import ctx_host

    return ctx_host.get()


def current() -> tuple[ReleaseRun, str]:
    """The release this pyinfra run makes, and the current host's name: what every step
    function starts with."""
    return _RUNS[current_state()], current_host().name


def _data_bool(data: Any, key: str) -> bool:
    value = data.get(key, False)
    if value in (None, False, "", 0, "false", "no"):
        return False
    if value in (True, 1, "true", "yes"):
        return True
    raise DeployRefused("config", f"--data {key}={value!r}: must be true or false")


def _data_text(data: Any, key: str) -> str | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.strip():
        raise DeployRefused("config", f"--data {key}={value!r}: must be text")
    return value.strip()


def rolling_batches(web: list[str], size: int | None, first: str) -> list[list[str]]:
    """The web hosts in the batches a release goes through, in order.

    + web: the web hosts, in inventory order
    + size: hosts per batch (``rolling_batch``); ``None`` or 0: all of them in one batch
    + first: the host that goes first, in batch 0 (the migrate host, which migrates the
      database before the others run the new code); ignored when it is not in ``web``

    A batch starts only when the earlier ones are healthy, so with ``rolling_batch: 2`` a
    failure on the first two hosts leaves the rest on the previous release::

        rolling_batches(["web1", "web2", "web3"], 2, "web3")  # [["web3", "web1"], ["web2"]]
    """
    ordered = [first, *[name for name in web if name != first]] if first in web else list(web)
    if not size:
        return [ordered] if ordered else []
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def begin(settings_factory: Callable[[], Settings], strategy: str = "in-place") -> ReleaseRun:
    """Join (or start) the release this pyinfra run makes, for the current host.

    Reads and checks this host's settings (``settings_factory``, normally
    :func:`bgdeploy.fleet.runner.current_settings`) and the ``--data`` values, and decides the
    deploy
    window. Raises :class:`DeployRefused` on a wrong value or outside the window; nothing has
    been added or run then.
    """
    real_state, real_host = current_state(), current_host()
    try:
        settings = settings_factory()
    except BgdeployError as error:
        raise DeployRefused("config", str(error)) from None
    run: ReleaseRun | None = _RUNS.get(real_state)
    if run is None:
        run = _new_run(real_state, real_host, settings, strategy)
        _RUNS[real_state] = run
    roles = [group for group in ("web", "db") if group in real_host.groups]
    outcome = run.report.host(real_host.name, roles)
    outcome.batch = run.batch_of(real_host.name)
    run.hosts[real_host.name] = HostRun(real_host.name, settings, outcome)
    return run


def _new_run(
    real_state: Any, real_host: Any, settings: Settings, strategy: str = "in-place"
) -> ReleaseRun:
    data = real_host.data
    raw_ref = data.get("ref", settings.ref)
    if isinstance(raw_ref, int) and not isinstance(raw_ref, bool):
        raise DeployRefused(
            "config",
            f"ref {raw_ref!r} reached the deploy as a number (pyinfra parses --data values): "
            f"quote it as JSON, --data 'ref=\"{raw_ref}\"'",
        )
    try:
        ref = refs.validate_ref(raw_ref)
    except BgdeployError as error:
        raise DeployRefused("config", str(error)) from None
    run_id = str(data.get("bgdeploy_run_id") or lock.new_run_id())
    if not re.match(r"^[A-Za-z0-9_-]{1,64}\Z", run_id):
        raise DeployRefused("config", f"bgdeploy_run_id {run_id!r} is not valid")
    inventory = real_state.inventory
    active = {h.name for h in inventory.iter_activated_hosts()} or {h.name for h in inventory}
    web = [h.name for h in inventory.get_group("web", []) if h.name in active]
    db = [h.name for h in inventory.get_group("db", [])]
    migrate_host = settings.migrate_host or (web[0] if web else "")
    if settings.migrate_host and settings.migrate_host not in web:
        if settings.migrate_host not in {h.name for h in inventory.get_group("web", [])}:
            raise DeployRefused(
                "config",
                f"migrate_host {settings.migrate_host!r} is not a web host of "
                f"inventories/{settings.env}.py",
            )
        migrate_host = web[0] if web else ""
    report_path = data.get("bgdeploy_report")
    run = ReleaseRun(
        env=settings.env,
        ref=ref,
        run_id=run_id,
        who=journal.operator_name(),
        force=_data_bool(data, "force"),
        allow_destructive=_data_bool(data, "allow_destructive"),
        reason=_data_text(data, "reason"),
        emergency_reason=_data_text(data, "emergency_reason"),
        report_path=str(report_path) if report_path else None,
        web_order=web,
        db_host=db[0] if db else None,
        migrate_host=migrate_host,
        # Blue-green switches every web host at once: one batch.
        batches=rolling_batches(
            web, None if strategy == "blue-green" else settings.rolling_batch, migrate_host
        ),
        report=ReleaseReport(env=settings.env, ref=ref, run=run_id),
        strategy=strategy,
        log_path=_data_text(data, "bgdeploy_log"),
    )
    run.report.who = run.who
    decision = windows.decide(settings.window, datetime.now(UTC), run.emergency_reason)
    run.window = decision
    if not decision.allowed:
        raise run.refuse("window", decision.describe())
    try:
        run.ask = approvals.Ask.from_data(data)
    except BgdeployError as error:
        raise run.refuse("config", str(error)) from None
    verdict = approvals.decide(
        settings.approvals, run.ask, operator=run.who, window_open=decision.regular, trailers=None
    )
    if not verdict.allowed:
        raise run.refuse("approval", verdict.describe())
    if not web:
        raise run.refuse("config", f"inventories/{settings.env}.py has no web host in this run")
    return run
