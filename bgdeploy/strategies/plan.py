"""``bgdeploy deploy ENV --ref REF --plan``: what the deploy would do on each host, from the
facts it would read, changing nothing.

The facts are the preflight's (:mod:`bgdeploy.checks.preflight`, read over Fabric: the only
change it makes is fetching the repository into the colour's ``.git``, as a deploy does): each
web host's colours and the commit each holds and was built at, the commit REF names, the
pending migrations, and the checklist. From them and the settings, :func:`make_plan` decides
as the deploy files do (:mod:`bgdeploy.strategies.release`, :mod:`bgdeploy.strategies.blue_green`):
which colour is built, which hosts run ``npm`` and which receive the assets, whether a snapshot
is taken and where ``migrate`` runs, the steps of every host in the order the deploy records
them, or that nothing changes (the commit is live and built, without ``--force``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bgdeploy.checks.preflight.report import FAIL, Checklist
from bgdeploy.core import refs
from bgdeploy.fleet import runner

LIVE_STEPS = ("caches", "storage link", "reload php-fpm", "reload nginx", "restart workers")
WARM_UP_STEPS = ("caches", "storage link", "reload php-fpm")
"""The go-live and warm-up steps (:mod:`bgdeploy.strategies.release.live`; a unit test keeps
them equal)."""


@dataclass
class HostPlan:
    """What the deploy would do on one host."""

    host: str
    role: str
    before: str = ""
    after: str = ""
    colour: str = ""
    steps: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Plan:
    """What ``bgdeploy deploy`` would do, host by host."""

    env: str
    ref: str
    strategy: str
    sha: str | None
    checklist: Checklist
    hosts: list[HostPlan] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)
    snapshot_host: str | None = None
    migrate_host: str = ""
    unchanged: bool = False

    @property
    def refused(self) -> bool:
        """The deploy would be refused or fail its preflight (or a host was not read)."""
        return self.checklist.exit_code() != 0

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("checklist", "hosts")}
        data["hosts"] = [asdict(host) for host in self.hosts]
        data["preflight"] = self.checklist.to_dict()
        return data


def make_plan(
    checklist: Checklist, environment: runner.Environment, strategy: str, force: bool = False
) -> Plan:
    """The plan of a deploy of ``checklist.ref`` with ``strategy``, from what the preflight
    read (a pure function of it and the settings)."""
    settings = environment.settings[environment.web[0]]
    migrate_host = environment.migrate_host
    pending = next((list(c.items) for c in checklist.checks if c.name == "migrations"), [])
    plan = Plan(
        checklist.env, checklist.ref, strategy, checklist.sha, checklist,
        migrations=pending, migrate_host=migrate_host,
    )  # fmt: skip
    sha = checklist.sha or ""
    webs = [environment.migrate_host] + [n for n in environment.web if n != migrate_host]
    live_everywhere = bool(sha) and all(
        (c := checklist.colours.get(name)) is not None
        and c.heads.get(c.current) == sha
        and c.ready(c.current)
        for name in webs
    )
    plan.unchanged = live_everywhere and not force
    shares = bool(settings.asset_paths) and len(webs) > 1
    for name in webs:
        colours = checklist.colours.get(name)
        live = colours.current if colours is not None else ""
        built = live if strategy == "in-place" else ("green" if live == "blue" else "blue")
        host = HostPlan(name, "web", colour=built)
        host.before = colours.heads.get(live, "") if colours is not None else ""
        host.after = sha
        plan.hosts.append(host)
        if name in checklist.unreachable or colours is None:
            host.note = "not read: unreachable"
            continue
        if plan.unchanged or not sha or plan.refused:
            host.after, host.colour = host.before, live
            host.note = _why_nothing(plan, name)
            continue
        host.steps = ["take the deploy lock", "preflight", "check out", "composer install"]
        if not shares or name == webs[0]:
            host.steps += ["npm ci", "npm run build"] + (["pack the assets"] if shares else [])
        else:
            host.steps.append("receive the assets")
        if pending and name == migrate_host:
            host.steps.append("migrate")
        if strategy == "in-place":
            host.steps += [*LIVE_STEPS, "verify health"]
            host.note = f"{live} rebuilt in place"
        else:
            host.steps += [*WARM_UP_STEPS, "smoke tests", "switch", "monitor health"]
            host.note = f"{built} built, smoke-tested, switched to ({live} stays warm)"
    for name in environment.db:
        host = HostPlan(name, "db")
        plan.hosts.append(host)
        if pending and plan.hosts[0].steps:
            host.steps = ["snapshot"]
            plan.snapshot_host = name
            host.note = f"verified snapshot before {len(pending)} migration(s)"
    return plan


def _why_nothing(plan: Plan, name: str) -> str:
    if plan.unchanged:
        return "already live and built at this commit: nothing changes (--force deploys it)"
    if not plan.sha:
        return "the ref names no one commit: refused"
    failed = [c for c in plan.checklist.checks if c.status == FAIL and c.host in (name, None)]
    return (
        "refused: " + "; ".join(f"{c.name}: {c.detail}" for c in failed[:2])
        if failed
        else ("refused: a preflight check fails on another host")
    )


def format_plan(plan: Plan) -> str:
    """The plan as the operator reads it: one block per host, the migrations, the checklist's
    verdict."""
    sha = refs.short(plan.sha) if plan.sha else "?"
    lines = [f"plan: deploy {plan.ref} ({sha}) to {plan.env}, {plan.strategy}; nothing changes yet"]
    for host in plan.hosts:
        before = refs.short(host.before) if host.before else "-"
        after = refs.short(host.after) if host.after else "-"
        moves = f"{before} -> {after}" if host.role == "web" else ""
        colour = f"[{host.colour}]" if host.colour else ""
        lines.append(f"{host.host:<6} {host.role:<3} {moves:<30} {colour:<8} {host.note}".rstrip())
        if host.steps:
            lines.append(f"         steps: {', '.join(host.steps)}")
    if plan.migrations:
        lines.append(
            f"migrations: {len(plan.migrations)} pending, run once on {plan.migrate_host} after "
            f"a snapshot on {plan.snapshot_host or '-'}: {', '.join(plan.migrations)}"
        )
    else:
        lines.append("migrations: none pending (no snapshot taken)")
    failed = [c for c in plan.checklist.checks if c.status == FAIL]
    verdict = "the deploy would be refused" if plan.refused else "the deploy would go ahead"
    lines.append(f"preflight: {len(failed)} failed: {verdict} (bgdeploy preflight for details)")
    return "\n".join(lines)
