"""Approvals and severities: who must have said yes before a deploy runs.

The runbook's rules, as data (group_data ``approvals``; None: no approval is asked for):

=================  =====================================================================
kind of deploy     what it needs (the runbook's defaults, group_data/all.py)
=================  =====================================================================
regular            2 approvals: people named with ``--approved-by`` or in the commit's
                   ``Reviewed-by:`` / ``Approved-by:`` trailers; the deploy window open
hotfix             ``--hotfix``: 1 approval and a rollback plan (``--rollback-plan TEXT``);
                   the deploy window open; a post-deployment review within 24 h
emergency, P0      ``--emergency --severity P0 --reason TEXT``: any time, nothing else
emergency, P1-P3   the same with an approver named on the command line
                   (``--approved-by``): whoever reviewed the code did not approve deploying
                   it now. Outside the window (the runbook's "approval required for P1+
                   outside regular hours") and inside it alike: ``--emergency`` is never a
                   way around the review rules. A review is due within 24 h, as for a hotfix
=================  =====================================================================

Approvers are people, counted once each (``"Rahim Uddin <rahim@example.com>"`` from a trailer
and ``--approved-by rahim`` are one person: the mail's local part, else the name, decides);
the operator who runs the deploy does not count as an approver of it.

:func:`decide` is pure: it takes the policy, what the operator asked for (:class:`Ask`), who
runs it, whether the window is open and the commit's trailers (None while they are not read
yet: ``bgdeploy deploy`` asks once before connecting, for what no trailer can supply, and the
release asks again on the migrate host once the commit is known). A refusal is exit 3 and
says what is missing.

:func:`reviews_due` reads the journals back: every hotfix or emergency deploy that left a
review due and has no ``review`` line for its run yet (``bgdeploy review ENV RUN_ID``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bgdeploy.core.errors import ConfigError

SEVERITIES = ("P0", "P1", "P2", "P3")
"""The runbook's severity levels, most urgent first."""

KINDS = ("regular", "hotfix", "emergency")
TRAILERS = ("Reviewed-by", "Approved-by")
EMERGENCY_HINT = "(an emergency deploy: --emergency --severity P0..P3 --reason TEXT)"
"""What a refusal by the deploy window adds."""
COMMAND_LINE = "--approved-by"
"""The source of an approver named on the command line."""

_NAME_RE = re.compile(r"^[^\x00-\x1f,<>]{1,80}\Z")
_TRAILER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.+?)\s*\Z")


@dataclass(frozen=True)
class ApprovalPolicy:
    """What each kind of deploy needs (group_data ``approvals``).

    + regular: approvals a regular deploy needs
    + hotfix: approvals a hotfix needs
    + hotfix_rollback_plan: a hotfix must name its rollback plan
    + emergency_any_time: severities that deploy with a reason alone
    + emergency_approvals: approvers (``--approved-by``) the other severities need
    + review_within_hours: a hotfix or emergency deploy is reviewed within this (0: never)
    + trailers: the commit trailers that name an approver
    """

    regular: int = 2
    hotfix: int = 1
    hotfix_rollback_plan: bool = True
    emergency_any_time: tuple[str, ...] = ("P0",)
    emergency_approvals: int = 1
    review_within_hours: float = 24.0
    trailers: tuple[str, ...] = TRAILERS

    @classmethod
    def from_data(cls, value: Any, source: str = "group_data") -> ApprovalPolicy | None:
        """Read group_data's ``approvals``: None (no approval asked for), ``"runbook"`` (the
        defaults above) or a dict overriding some of them. Raises :class:`ConfigError`."""
        if value is None:
            return None
        if value == "runbook":
            return cls()
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{source}: approvals must be None, 'runbook' or a dict, not {value!r}"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"{source}: approvals has unknown key(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )

        def count(key: str) -> int:
            number = value.get(key, getattr(cls, key))
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 10:
                raise ConfigError(
                    f"{source}: approvals[{key!r}] must be a whole number 0 to 10, not {number!r}"
                )
            return number

        plan = value.get("hotfix_rollback_plan", cls.hotfix_rollback_plan)
        if not isinstance(plan, bool):
            raise ConfigError(f"{source}: approvals['hotfix_rollback_plan'] must be True or False")
        any_time = tuple(value.get("emergency_any_time", cls.emergency_any_time))
        if not set(any_time) <= set(SEVERITIES) or isinstance(value.get("emergency_any_time"), str):
            raise ConfigError(
                f"{source}: approvals['emergency_any_time'] must be a list of "
                f"{', '.join(SEVERITIES)}, not {value.get('emergency_any_time')!r}"
            )
        hours = value.get("review_within_hours", cls.review_within_hours)
        if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= 720:
            raise ConfigError(
                f"{source}: approvals['review_within_hours'] must be 0 to 720, not {hours!r}"
            )
        trailers = value.get("trailers", cls.trailers)
        if isinstance(trailers, str) or not all(
            isinstance(t, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", t) for t in trailers
        ):
            raise ConfigError(
                f"{source}: approvals['trailers'] must be a list of trailer keys "
                f"like 'Reviewed-by', not {trailers!r}"
            )
        return cls(
            regular=count("regular"),
            hotfix=count("hotfix"),
            hotfix_rollback_plan=plan,
            emergency_any_time=any_time,
            emergency_approvals=count("emergency_approvals"),
            review_within_hours=float(hours),
            trailers=tuple(trailers),
        )


@dataclass(frozen=True)
class Approver:
    """A person who approved, and where that was said (``--approved-by`` or a trailer key)."""

    name: str
    source: str

    @property
    def key(self) -> str:
        """Who this is, for counting each person once: the mail's local part, else the name."""
        return person_key(self.name)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "source": self.source}


def person_key(name: str) -> str:
    """Who a name is: ``"Rahim Uddin <rahim@example.com>"``, ``"rahim"`` and
    ``"rahim@ops-laptop"`` are all ``"rahim"``."""
    mail = re.search(r"<([^<>@\s]+)@[^<>]*>", name)
    if mail:
        return mail.group(1).casefold()
    bare = name.strip()
    if "@" in bare and " " not in bare:
        bare = bare.split("@", 1)[0]
    return " ".join(bare.split()).casefold()


@dataclass(frozen=True)
class Ask:
    """What the operator asked for: the kind of deploy and what they said for it.

    + kind: ``regular``, ``hotfix`` or ``emergency``
    + severity: P0..P3, for an emergency
    + approved_by: names given with ``--approved-by``
    + rollback_plan: ``--rollback-plan TEXT``
    """

    kind: str = "regular"
    severity: str | None = None
    approved_by: tuple[str, ...] = ()
    rollback_plan: str | None = None

    @classmethod
    def from_options(
        cls,
        *,
        hotfix: bool = False,
        emergency: bool = False,
        severity: str | None = None,
        approved_by: str | Iterable[str] | None = None,
        rollback_plan: str | None = None,
    ) -> Ask:
        """Check the command line's options (or the deploy file's ``--data``). Raises
        :class:`ConfigError` (exit 2) for what cannot be meant: a hotfix that is also an
        emergency, a severity without an emergency, an unknown severity, an empty name."""
        if hotfix and emergency:
            raise ConfigError(
                "--hotfix and --emergency are two kinds of deploy: an emergency names its "
                "--severity; a hotfix goes in the deploy window with its --rollback-plan"
            )
        if severity is not None:
            severity = severity.strip().upper()
            if severity not in SEVERITIES:
                raise ConfigError(
                    f"--severity must be one of {', '.join(SEVERITIES)}, not {severity!r}"
                )
            if not emergency:
                raise ConfigError(
                    "--severity is for emergency deploys: add --emergency --reason TEXT"
                )
        if rollback_plan is not None:
            rollback_plan = " ".join(rollback_plan.split())
            if not rollback_plan:
                raise ConfigError("--rollback-plan is empty: say how this release is undone")
        return cls(
            kind="emergency" if emergency else "hotfix" if hotfix else "regular",
            severity=severity,
            approved_by=parse_names(approved_by),
            rollback_plan=rollback_plan,
        )

    def to_data(self) -> dict[str, Any]:
        """The ``--data`` values that carry this ask to the deploy file."""
        data: dict[str, Any] = {} if self.kind == "regular" else {"deploy_kind": self.kind}
        if self.severity:
            data["severity"] = self.severity
        if self.approved_by:
            data["approved_by"] = ",".join(self.approved_by)
        if self.rollback_plan:
            data["rollback_plan"] = self.rollback_plan
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Ask:
        """The ask a deploy file received through ``--data`` (see :meth:`to_data`)."""
        default = "emergency" if data.get("emergency_reason") else "regular"
        kind = str(data.get("deploy_kind") or default)
        if kind not in KINDS:
            raise ConfigError(f"deploy_kind must be one of {', '.join(KINDS)}, not {kind!r}")
        severity = data.get("severity")
        plan = data.get("rollback_plan")
        return cls.from_options(
            hotfix=kind == "hotfix",
            emergency=kind == "emergency",
            severity=str(severity) if severity is not None else None,
            approved_by=str(data.get("approved_by") or "") or None,
            rollback_plan=str(plan) if plan is not None else None,
        )


def parse_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"Rahim, Karim"`` (or a list of such) -> ``("Rahim", "Karim")``; each name checked."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    names: list[str] = []
    for part in parts:
        name = " ".join(part.split())
        if not name:
            raise ConfigError("--approved-by has an empty name: NAME[,NAME]")
        if not _NAME_RE.match(name):
            raise ConfigError(f"--approved-by {name!r} is not a name")
        names.append(name)
    return tuple(names)


def parse_trailers(text: str, keys: Sequence[str] = TRAILERS) -> list[Approver]:
    """The approvers a commit's trailers name (``git log -1 --format=%(trailers:only,unfold)``
    output): lines ``Key: value`` whose key is one of ``keys`` (any case)."""
    wanted = {key.casefold(): key for key in keys}
    found: list[Approver] = []
    for line in text.splitlines():
        match = _TRAILER_RE.match(line.strip())
        if match and match.group(1).casefold() in wanted:
            name = " ".join(match.group(2).split())
            if _NAME_RE.match(name.replace("<", "").replace(">", "")):
                found.append(Approver(name, wanted[match.group(1).casefold()]))
    return found


@dataclass(frozen=True)
class ApprovalDecision:
    """Whether the deploy may run on its approvals, and what is missing.

    + allowed: the rules are met (or there are none)
    + missing: what is missing, in the operator's words; empty when allowed
    + approvers: the people counted, each once, with the source
    + ignored: approvers not counted, and why (the operator themselves)
    + review_within_hours: a review is due this long after the deploy (0: none)
    + deferred: the commit's trailers were not read yet (a later decision may count them)
    """

    ask: Ask
    allowed: bool
    missing: tuple[str, ...] = ()
    approvers: tuple[Approver, ...] = ()
    ignored: tuple[str, ...] = ()
    needed: int = 0
    review_within_hours: float = 0.0
    deferred: bool = False

    def describe(self) -> str:
        """One line: ``"hotfix, approved by Karim (Reviewed-by); rollback plan: ..."``."""
        kind = self.ask.kind + (f" {self.ask.severity}" if self.ask.severity else "")
        if self.approvers:
            names = ", ".join(f"{a.name} ({a.source})" for a in self.approvers)
            text = f"{kind}, approved by {names}"
        else:
            text = f"{kind}, no approval"
        if self.ask.rollback_plan:
            text += f"; rollback plan: {self.ask.rollback_plan}"
        if not self.allowed:
            text = f"deploy refused ({kind}): {'; '.join(self.missing)}"
        return text

    def review_due(self, finished: datetime) -> datetime | None:
        """When the post-deployment review is due for a deploy that finished at ``finished``."""
        if not self.review_within_hours:
            return None
        return finished + timedelta(hours=self.review_within_hours)

    def to_dict(self) -> dict[str, Any]:
        """The journal's and the report's form (``details["approval"]``)."""
        data: dict[str, Any] = {"kind": self.ask.kind}
        if self.ask.severity:
            data["severity"] = self.ask.severity
        data["approvers"] = [a.to_dict() for a in self.approvers]
        if self.ask.rollback_plan:
            data["rollback_plan"] = self.ask.rollback_plan
        if self.ignored:
            data["ignored"] = list(self.ignored)
        return data


def decide(
    policy: ApprovalPolicy | None,
    ask: Ask,
    *,
    operator: str,
    window_open: bool,
    trailers: Sequence[Approver] | None,
) -> ApprovalDecision:
    """Decide whether ``ask`` may deploy on its approvals (the window is
    :func:`bgdeploy.core.windows.decide`'s: an emergency reason overrides it, a hotfix does
    not).

    + policy: None asks for nothing (the deploy is allowed and recorded as asked)
    + operator: who runs the deploy (:func:`bgdeploy.core.journal.operator_name`); never
      counted as an approver of their own deploy
    + window_open: a regular deploy would be allowed now
    + trailers: the commit's approvers (:func:`parse_trailers`); None when not read yet,
      then a shortfall of approvals is not a refusal (``deferred``)
    """
    named = [Approver(name, COMMAND_LINE) for name in ask.approved_by]
    if ask.kind == "emergency" and ask.severity is None and policy is not None:
        return ApprovalDecision(
            ask, False, ("an emergency deploy names its severity: --severity P0|P1|P2|P3",)
        )
    # Whoever reviewed the code did not approve deploying it now, in an emergency.
    candidates = named if ask.kind == "emergency" else named + list(trailers or ())
    me = person_key(operator)
    approvers: list[Approver] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for approver in candidates:
        if approver.key == me:
            ignored.append(f"{approver.name}: runs this deploy, cannot approve it")
        elif approver.key not in seen:
            seen.add(approver.key)
            approvers.append(approver)
    if policy is None:
        return ApprovalDecision(ask, True, approvers=tuple(approvers), ignored=tuple(ignored))
    missing: list[str] = []
    needed = 0
    review = 0.0
    if ask.kind == "regular":
        needed = policy.regular
    elif ask.kind == "hotfix":
        needed = policy.hotfix
        review = policy.review_within_hours
        if policy.hotfix_rollback_plan and not ask.rollback_plan:
            missing.append("a hotfix names its rollback plan (--rollback-plan TEXT)")
    else:
        review = policy.review_within_hours
        if ask.severity not in policy.emergency_any_time:
            needed = policy.emergency_approvals
    deferred = trailers is None and ask.kind != "emergency"
    if len(approvers) < needed and not deferred:
        where = (
            "--approved-by NAME (the person who approved deploying it now)"
            if ask.kind == "emergency"
            else f"--approved-by NAME or the commit's {'/'.join(t + ':' for t in policy.trailers)} "
            "trailers"
        )
        what = ask.kind + (f" {ask.severity}" if ask.severity else "")
        have = f"has {len(approvers)}" + (
            f" ({', '.join(a.name for a in approvers)})" if approvers else ""
        )
        missing.append(f"a {what} deploy needs {needed} approval(s), {have}: {where}")
    if ignored and missing:
        missing.append("; ".join(ignored))
    return ApprovalDecision(
        ask,
        allowed=not missing,
        missing=tuple(missing),
        approvers=tuple(approvers),
        ignored=tuple(ignored),
        needed=needed,
        review_within_hours=review,
        deferred=deferred and len(approvers) < needed,
    )


def summary(approval: Mapping[str, Any]) -> str:
    """A journal's ``details["approval"]`` in a few words, for ``history``, the postmortem
    and the notifications: ``"hotfix, approved by Karim, Salma; rollback plan: switch back;
    review due 2026-12-05 04:12 UTC"``."""
    kind = str(approval.get("kind") or "deploy")
    if approval.get("severity"):
        kind += f" {approval['severity']}"
    names = [str(a.get("name")) for a in approval.get("approvers") or () if isinstance(a, Mapping)]
    text = kind + (f", approved by {', '.join(names)}" if names else "")
    if approval.get("rollback_plan"):
        text += f"; rollback plan: {approval['rollback_plan']}"
    due = approval.get("review_due")
    if isinstance(due, str):
        text += f"; review due {due.replace('T', ' ').replace('Z', ' UTC')}"
    return text


# Reviews due
# -----------


@dataclass(frozen=True)
class ReviewDue:
    """A hotfix or emergency deploy whose post-deployment review is not recorded yet."""

    run: str
    due: datetime
    kind: str
    severity: str | None
    release: str
    who: str
    hosts: tuple[str, ...] = field(default=())

    def overdue(self, now: datetime) -> bool:
        return now >= self.due

    def describe(self, now: datetime) -> str:
        """``"review due by 2026-12-05 04:12 UTC (in 20 h): hotfix v2.4.1 by rahim, run R"``."""
        kind = self.kind + (f" {self.severity}" if self.severity else "")
        stamp = self.due.strftime("%Y-%m-%d %H:%M UTC")
        left = self.due - now
        hours = abs(left.total_seconds()) / 3600
        when = f"OVERDUE by {hours:.0f} h" if left.total_seconds() <= 0 else f"in {hours:.0f} h"
        return (
            f"review due by {stamp} ({when}): {kind} {self.release} by {self.who}, "
            f"run {self.run} (bgdeploy review ENV {self.run})"
        )


def reviews_due(entries: Iterable[Any]) -> list[ReviewDue]:
    """The reviews still due in a merged journal (``JournalEntry`` objects, oldest first):
    every ``deploy_finish`` whose ``details["approval"]["review_due"]`` is set and whose run
    has no ``review`` line. One per run, however many hosts journaled it."""
    due: dict[str, ReviewDue] = {}
    reviewed: set[str] = set()
    for entry in entries:
        run = str(entry.details.get("run") or "")
        if not run:
            continue
        if entry.event == "review":
            reviewed.add(run)
            continue
        approval = entry.details.get("approval")
        if entry.event != "deploy_finish" or not isinstance(approval, Mapping):
            continue
        stamp = approval.get("review_due")
        if not isinstance(stamp, str):
            continue
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        known = due.get(run)
        hosts = (known.hosts if known else ()) + ((entry.host,) if entry.host else ())
        due[run] = ReviewDue(
            run=run,
            due=when,
            kind=str(approval.get("kind") or "?"),
            severity=approval.get("severity"),
            release=entry.ref or (entry.sha or "")[:12] or "?",
            who=entry.who or "?",
            hosts=hosts,
        )
    return [item for run, item in due.items() if run not in reviewed]
