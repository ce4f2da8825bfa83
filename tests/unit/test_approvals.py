"""Approvals and severities (bgdeploy.core.approvals): each of the runbook's rules, allowed
and refused; the policy as group_data states it; the trailers of a real commit; the reviews a
journal leaves due; how history, the postmortem and the notifications tell it."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import load_group_data

from bgdeploy import commands
from bgdeploy.cli import cli
from bgdeploy.core import approvals, journal
from bgdeploy.core.approvals import ApprovalPolicy, Approver, Ask, decide
from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.fleet import runner
from bgdeploy.oncall import messages, postmortem
from bgdeploy.strategies import deploying

RUNBOOK = ApprovalPolicy()
OPERATOR = "rahim@ops-laptop"
KARIM = Approver("Karim Ahmed <karim@example.com>", "Reviewed-by")
NADIA = Approver("Nadia <nadia@example.com>", "Approved-by")
THURSDAY_NOON = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka
THURSDAY_EVENING = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)  # 19:00 in Dhaka


def verdict(
    ask: Ask, trailers: list[Approver] | None = (), **kw: object
) -> approvals.ApprovalDecision:
    return decide(
        kw.get("policy", RUNBOOK),  # type: ignore[arg-type]
        ask,
        operator=str(kw.get("operator", OPERATOR)),
        window_open=bool(kw.get("window_open", True)),
        trailers=None if trailers is None else list(trailers),
    )


# The policy as group_data states it
# ----------------------------------


def test_prod_has_the_runbooks_rules_and_the_sandbox_and_staging_none() -> None:
    assert load_group_data("prod")["approvals"] is not None
    from bgdeploy.core import settings

    prod = settings.from_data(load_group_data("prod"), "prod")
    assert prod.approvals == RUNBOOK
    assert RUNBOOK.regular == 2 and RUNBOOK.hotfix == 1 and RUNBOOK.hotfix_rollback_plan
    assert RUNBOOK.emergency_any_time == ("P0",) and RUNBOOK.review_within_hours == 24
    for env in ("sandbox", "staging"):
        assert settings.from_data(load_group_data(env), env).approvals is None


def test_policy_forms() -> None:
    assert ApprovalPolicy.from_data(None) is None
    assert ApprovalPolicy.from_data("runbook") == RUNBOOK
    relaxed = ApprovalPolicy.from_data({"regular": 1, "review_within_hours": 0})
    assert relaxed == ApprovalPolicy(regular=1, review_within_hours=0)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"regullar": 2}, "unknown key(s) 'regullar'"),
        ({"regular": -1}, "whole number 0 to 10"),
        ({"regular": True}, "whole number 0 to 10"),
        ({"emergency_any_time": ["P5"]}, "must be a list of P0"),
        ({"emergency_any_time": "P0"}, "must be a list of P0"),
        ({"review_within_hours": 10_000}, "0 to 720"),
        ({"trailers": "Reviewed-by"}, "list of trailer keys"),
        ({"trailers": ["Reviewed by"]}, "list of trailer keys"),
        ({"hotfix_rollback_plan": "yes"}, "True or False"),
        ("strict", "None, 'runbook' or a dict"),
    ],
)
def test_a_broken_policy_names_its_key(value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=r"group_data/all.py: approvals") as error:
        ApprovalPolicy.from_data(value, "group_data/all.py")
    assert says in str(error.value)


# Regular deploys: 2 approvals, from the command line or the commit's trailers
# ----------------------------------------------------------------------------


def test_regular_needs_two_approvals() -> None:
    refused = verdict(Ask(), [KARIM])
    assert not refused.allowed
    assert refused.missing == (
        "a regular deploy needs 2 approval(s), has 1 (Karim Ahmed <karim@example.com>): "
        "--approved-by NAME or the commit's Reviewed-by:/Approved-by: trailers",
    )
    assert refused.describe().startswith("deploy refused (regular): a regular deploy needs 2")
    assert verdict(Ask(), [KARIM, NADIA]).allowed
    both = verdict(Ask(approved_by=("Salma",)), [KARIM])
    assert both.allowed
    assert [(a.name, a.source) for a in both.approvers] == [
        ("Salma", "--approved-by"),
        ("Karim Ahmed <karim@example.com>", "Reviewed-by"),
    ]
    assert both.review_within_hours == 0  # a regular deploy leaves no review due


def test_one_person_counts_once_and_never_for_their_own_deploy() -> None:
    # Karim by trailer and by name on the command line: one person.
    assert not verdict(Ask(approved_by=("karim",)), [KARIM]).allowed
    # The operator (rahim@ops-laptop) approving their own deploy does not count.
    mine = verdict(Ask(approved_by=("Rahim",)), [KARIM])
    assert not mine.allowed
    assert "Rahim: runs this deploy, cannot approve it" in mine.missing
    own_trailer = Approver("Rahim Uddin <rahim@example.com>", "Reviewed-by")
    assert not verdict(Ask(), [KARIM, own_trailer]).allowed


def test_before_the_trailers_are_read_a_shortfall_is_not_a_refusal() -> None:
    early = verdict(Ask(), None)
    assert early.allowed and early.deferred
    assert verdict(Ask(), [KARIM, NADIA], window_open=False).allowed  # the window is windows'


def test_no_policy_asks_for_nothing_but_records_what_was_said() -> None:
    free = verdict(Ask(approved_by=("Salma",)), [], policy=None)
    assert free.allowed and [a.name for a in free.approvers] == ["Salma"]
    assert verdict(Ask(kind="emergency"), [], policy=None).allowed  # no severity needed


# Hotfixes: 1 approval, a rollback plan, a review within 24 h
# -----------------------------------------------------------


def test_hotfix_rules() -> None:
    no_plan = verdict(Ask(kind="hotfix"), [KARIM])
    assert not no_plan.allowed
    assert no_plan.missing == ("a hotfix names its rollback plan (--rollback-plan TEXT)",)
    # The missing plan refuses before the trailers are read: nothing can supply it later.
    assert not verdict(Ask(kind="hotfix"), None).allowed
    no_one = verdict(Ask(kind="hotfix", rollback_plan="switch back"), [])
    assert not no_one.allowed and "needs 1 approval(s), has 0" in no_one.missing[0]
    ok = verdict(Ask(kind="hotfix", rollback_plan="switch back"), [KARIM])
    assert ok.allowed and ok.review_within_hours == 24
    done = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    assert ok.review_due(done) == done + timedelta(hours=24)
    assert ok.to_dict() == {
        "kind": "hotfix",
        "approvers": [{"name": KARIM.name, "source": "Reviewed-by"}],
        "rollback_plan": "switch back",
    }


# Emergencies: P0 any time with a reason; P1+ an approver named for the deploy itself
# -----------------------------------------------------------------------------------


def test_emergency_rules() -> None:
    nameless = verdict(Ask(kind="emergency"), [])
    assert not nameless.allowed and "--severity P0|P1|P2|P3" in nameless.missing[0]
    p0 = verdict(Ask(kind="emergency", severity="P0"), [], window_open=False)
    assert p0.allowed and p0.review_within_hours == 24
    p1 = verdict(Ask(kind="emergency", severity="P1"), [KARIM, NADIA], window_open=False)
    assert not p1.allowed  # the code's reviewers did not approve deploying it now
    assert "--approved-by NAME (the person who approved deploying it now)" in p1.missing[0]
    # Refused on the command line already: no trailer can supply it.
    assert not verdict(Ask(kind="emergency", severity="P2"), None).allowed
    approved = verdict(Ask(kind="emergency", severity="P1", approved_by=("Salma",)), None)
    assert approved.allowed and approved.review_within_hours == 24
    # Inside the window too: --emergency is never a way around the review rules.
    assert not verdict(Ask(kind="emergency", severity="P3"), [], window_open=True).allowed


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"hotfix": True, "emergency": True}, "two kinds of deploy"),
        ({"severity": "P1"}, "--severity is for emergency deploys"),
        ({"emergency": True, "severity": "P9"}, "--severity must be one of P0, P1, P2, P3"),
        ({"hotfix": True, "rollback_plan": "   "}, "--rollback-plan is empty"),
        ({"approved_by": "Salma,,Karim"}, "--approved-by has an empty name"),
        ({"approved_by": "Salma <x"}, "is not a name"),
        ({"approved_by": "Salma\x07"}, "is not a name"),
    ],
)
def test_options_that_cannot_be_meant(options: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as error:
        Ask.from_options(**options)
    assert error.value.exit_code == 2


def test_the_ask_travels_to_the_deploy_file_and_back() -> None:
    ask = Ask.from_options(hotfix=True, approved_by="Salma, Karim", rollback_plan="switch  back")
    data = ask.to_data()
    assert data == {
        "deploy_kind": "hotfix",
        "approved_by": "Salma,Karim",
        "rollback_plan": "switch back",
    }
    assert Ask.from_data(data) == ask
    assert Ask().to_data() == {}  # a regular deploy adds nothing to --data
    # A plain pyinfra run with --data emergency_reason=... is an emergency.
    assert Ask.from_data({"emergency_reason": "down", "severity": "p0"}).severity == "P0"
    with pytest.raises(ConfigError, match="deploy_kind must be one of"):
        Ask.from_data({"deploy_kind": "yolo"})


# The command line: refused before any host is contacted
# ------------------------------------------------------


def test_check_request_refuses_what_no_trailer_can_supply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDEPLOY_OPERATOR", OPERATOR)
    with pytest.raises(PolicyRefusal, match="rollback plan") as refused:
        deploying.check_request("prod", "v2.4.1", hotfix=True, now=THURSDAY_NOON)
    assert refused.value.exit_code == 3
    with pytest.raises(PolicyRefusal, match="needs 1 approval"):
        deploying.check_request(
            "prod", "v2.4.1", emergency=True, severity="P1", reason="queue down",
            now=THURSDAY_EVENING,
        )  # fmt: skip
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, severity="P1", reason="queue down",
        approved_by="Salma", now=THURSDAY_EVENING,
    )  # fmt: skip
    assert request.window.emergency
    assert request.data("r", "p")["deploy_kind"] == "emergency"
    assert request.data("r", "p")["approved_by"] == "Salma"
    # A regular deploy waits for the commit's trailers.
    assert deploying.check_request("prod", "v2.4.1", now=THURSDAY_NOON).ask == Ask()


def test_cli_bad_severity_is_exit_2_without_pyinfra(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pyinfra(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pyinfra must not start")

    monkeypatch.setattr(runner, "run_deploy", no_pyinfra)
    result = CliRunner().invoke(cli, ["deploy", "prod", "--ref", "v1", "--severity", "P1"])
    assert result.exit_code == 2 and "--severity is for emergency deploys" in result.output
    result = CliRunner().invoke(
        cli, ["deploy", "prod", "--ref", "v1", "--hotfix", "--emergency", "--reason", "x"]
    )
    assert result.exit_code == 2 and "two kinds of deploy" in result.output


# The commit's trailers
# ---------------------


def test_trailers_of_a_real_commit(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        env = {"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com",
               "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com",
               "HOME": str(tmp_path)}  # fmt: skip
        return subprocess.run(
            ["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    message = (
        "Fix the visa form\n\nThe body mentions Reviewed-by: nobody in prose.\n\n"
        f"Reviewed-by: {KARIM.name}\napproved-by: Nadia\n  <nadia@example.com>\n"
        "Signed-off-by: Someone <s@example.com>\n"
    )
    git("commit", "-q", "--allow-empty", "-m", message)
    sha = git("rev-parse", "HEAD").strip()
    out = subprocess.run(
        commands.git_trailers(sha), shell=True, cwd=tmp_path, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = approvals.parse_trailers(out, RUNBOOK.trailers)
    assert found == [KARIM, Approver("Nadia <nadia@example.com>", "Approved-by")]


# Reviews due, and how the journal tells it
# -----------------------------------------


def finish_line(host: str, run: str, due: str | None, **extra: object) -> journal.JournalEntry:
    approval: dict = {"kind": "hotfix", "approvers": [{"name": "Karim", "source": "Reviewed-by"}],
                      "rollback_plan": "switch back"}  # fmt: skip
    if due:
        approval["review_due"] = due
    return journal.new_entry(
        "deploy_finish", host=host, env="prod", ref="v2.4.1", sha="4f1c2e9a" * 5, result="ok",
        details={"run": run, "approval": approval}, who=OPERATOR,
        at=datetime(2026, 12, 3, 6, 0, tzinfo=UTC), **extra,
    )  # fmt: skip


def test_reviews_due_one_per_run_until_reviewed() -> None:
    due = "2026-12-04T06:00:00Z"
    entries = [
        finish_line("web1", "run1", due),
        finish_line("web2", "run1", due),
        finish_line("web1", "run2", None),  # a regular deploy: nothing due
    ]
    [item] = approvals.reviews_due(entries)
    assert item.run == "run1" and item.hosts == ("web1", "web2") and item.kind == "hotfix"
    before = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert item.describe(before) == (
        "review due by 2026-12-04 06:00 UTC (in 22 h): hotfix v2.4.1 by rahim@ops-laptop, "
        "run run1 (bgdeploy review ENV run1)"
    )
    assert "OVERDUE by 2 h" in item.describe(datetime(2026, 12, 4, 8, 0, tzinfo=UTC))
    review = journal.new_entry("review", host="web1", env="prod", details={"run": "run1"})
    assert approvals.reviews_due([*entries, review]) == []


def test_history_postmortem_and_notifications_tell_the_approval() -> None:
    line = finish_line("web1", "run1", "2026-12-04T06:00:00Z")
    table = journal.format_history([line])
    assert "[hotfix, approved by Karim; rollback plan: switch back; review due" in table
    said = postmortem.describe_event(line)
    assert said == (
        "Deploy of v2.4.1 (4f1c2e9) finished (hotfix, approved by Karim; rollback plan: "
        "switch back; review due 2026-12-04 06:00:00 UTC)"
    )
    review = journal.new_entry(
        "review", host="web1", env="prod", details={"run": "run1"}, who="nadia@desk",
        reason="cause found",
    )  # fmt: skip
    assert postmortem.describe_event(review) == (
        "Post-deployment review of run run1 recorded by nadia@desk; reason: cause found"
    )
    event = messages.DeployEvent(
        "succeeded", env="prod", app="bideshgomon", ref="v2.4.1",
        approval="hotfix, approved by Karim; rollback plan: switch back",
    )  # fmt: skip
    slack = messages.slack_message(event)
    fields = [f["text"] for f in slack["blocks"][1]["fields"]]
    assert "*Approval*\nhotfix, approved by Karim; rollback plan: switch back" in fields
    page = messages.pagerduty_trigger(event, "k" * 32)
    assert page["payload"]["custom_details"]["approval"].startswith("hotfix, approved by Karim")


def test_the_notification_says_what_the_command_line_asked_before_the_hosts_decide() -> None:
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, severity="P0", reason="payments down",
        now=THURSDAY_EVENING,
    )  # fmt: skip
    assert deploying.approval_line(request, None) == "emergency P0"
    plain = deploying.check_request("prod", "v2.4.1", now=THURSDAY_NOON)
    assert deploying.approval_line(plain, None) == ""
