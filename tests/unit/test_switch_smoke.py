"""Colour facts, switch commands and smoke-test judgement, without hosts."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import pytest

from bgdeploy import commands
from bgdeploy.checks import smoke
from bgdeploy.core import lock
from bgdeploy.core.errors import ConfigError, LockHeld, PolicyRefusal
from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.core.render import COLOURS, NGINX_DIR
from bgdeploy.fleet import fleetlock, runner
from bgdeploy.fleet.colours import HostColours, live_colour, other, parse_facts, read_colours
from bgdeploy.strategies import recovery, switch

T = TypeVar("T")

SHA_A = "a" * 40
SHA_B = "b" * 40


def facts(name: str, live: str, current: str | None = None, built: bool = True) -> HostColours:
    idle = other(live)
    text = "\n".join(
        [
            f"current={current or live}",
            f"live={live}",
            f"idle={idle}",
            f"blue_head={SHA_A}",
            f"blue_built={SHA_A if built else ''}",
            f"green_head={SHA_B}",
            f"green_built={SHA_B}",
        ]
    )
    return parse_facts(name, text)


def test_facts_parse_and_readiness() -> None:
    web1 = facts("web1", "blue", built=False)
    assert web1.live == "blue" and web1.idle == "green" and web1.consistent
    assert web1.ready("green") and not web1.ready("blue")


def test_one_live_colour() -> None:
    assert live_colour({"w1": facts("w1", "blue"), "w2": facts("w2", "blue")}) == "blue"


def test_hosts_that_disagree_are_named() -> None:
    with pytest.raises(PolicyRefusal) as info:
        live_colour({"w1": facts("w1", "blue"), "w2": facts("w2", "green")})
    assert "w1 blue" in str(info.value) and "w2 green" in str(info.value)
    with pytest.raises(PolicyRefusal, match=r"current -> green"):
        live_colour({"w1": facts("w1", "blue", current="green")})


def test_other_colour() -> None:
    assert other("blue") == "green"
    with pytest.raises(ConfigError):
        other("red; reboot")


def test_switch_apply_restores_on_failed_test(tmp_path: Path) -> None:
    """Run the real phase commands against files, with an `nginx -t` that fails."""
    live, idle = tmp_path / "live.conf", tmp_path / "idle.conf"
    live.write_text("# bgdeploy colour: blue\n")
    idle.write_text("# bgdeploy colour: green\n")
    prepare = commands.switch_prepare(
        str(live), str(idle), "# bgdeploy colour: green\n", "# bgdeploy colour: blue\n"
    )
    assert subprocess.run(["sh", "-c", prepare], check=False).returncode == 0
    assert live.read_text().endswith("blue\n"), "prepare changes nothing that is live"
    apply = commands.switch_apply(str(live), str(idle)).replace("nginx -t -q", "false")
    proc = subprocess.run(["sh", "-c", apply], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "switch undone" in proc.stderr
    assert live.read_text().endswith("blue\n") and idle.read_text().endswith("green\n")


APP_ROOT = "/srv/bgdeploy-unit"


class ShellFleet:
    """Web hosts as directories on this machine, for :func:`switch.switch`: its real commands
    run with ``sh``, each host's paths moved into its directory; ``nginx -t`` (``false`` where
    :attr:`broken`), the nginx reload and its look for old workers stand in as ``true``, sudo
    is left out, and ``php artisan queue:restart`` leaves a file in the directory it ran in."""

    def __init__(self, root: Path, names: Sequence[str] = ("web1", "web2")) -> None:
        self.names = list(names)
        self.root = root
        self.broken: set[str] = set()
        self.interrupt: Callable[[str, str], bool] = lambda name, command: False
        self.commands: list[tuple[str, str]] = []
        for name in names:
            (root / name / "nginx").mkdir(parents=True)
            for colour in COLOURS:
                (root / name / "app" / colour).mkdir(parents=True)
            (root / name / "app" / "current").symlink_to("blue")
            self.write(name, "live.conf", "blue")
            self.write(name, "idle.conf", "green")

    def write(self, name: str, include: str, colour: str) -> None:
        (self.root / name / "nginx" / include).write_text(f"# bgdeploy colour: {colour}\n")

    def localise(self, name: str, command: str) -> str:
        here = self.root / name
        text = command.replace(NGINX_DIR, f"{here}/nginx").replace(APP_ROOT, f"{here}/app")
        test = "false" if name in self.broken else "true"
        text = text.replace("nginx -t -q", test).replace("service nginx reload", "true")
        text = text.replace(commands.NGINX_PID, f"{here}/nginx.pid")  # none: the fallback
        # Also where the command is quoted inside another (a watchdog): never this machine's.
        text = text.replace("pgrep -d ", "true -d ")
        text = re.sub(r"sudo -u \S+ -H ", "", text).replace("install -d -o deploy", "install -d")
        return text.replace("php artisan queue:restart", "touch queue-restarted")

    def run(
        self, name: str, command: str, sudo: bool = False, timeout: float | None = None
    ) -> tuple[bool, str, str]:
        self.commands.append((name, command))
        if self.interrupt(name, command):
            raise KeyboardInterrupt
        done = subprocess.run(
            ["sh", "-c", self.localise(name, command)], capture_output=True, text=True, check=False
        )
        return done.returncode == 0, done.stdout, done.stderr

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        return [function(name) for name in names]

    def close(self) -> None:
        pass

    def serves(self, name: str) -> tuple[str, str, str]:
        """(live include's colour, idle include's colour, current's target)."""
        here = self.root / name
        found = [
            (here / "nginx" / f).read_text().splitlines()[0].removeprefix("# bgdeploy colour: ")
            for f in ("live.conf", "idle.conf")
        ]
        return found[0], found[1], (here / "app" / "current").readlink().name

    def journal(self, name: str) -> list[dict[str, object]]:
        path = self.root / name / "app" / ".bgdeploy" / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def leftovers(self, name: str) -> list[str]:
        return sorted(
            p.name
            for p in (self.root / name / "nginx").iterdir()
            if "bgdeploy" in p.name and not p.name.endswith(commands.SWITCH_LOCK)
        )


@pytest.fixture
def unit_settings() -> object:
    base = next(iter(runner.check_environment("staging").settings.values()))
    return dataclasses.replace(base, app_root=APP_ROOT)


@pytest.fixture
def hosts(tmp_path: Path) -> ShellFleet:
    return ShellFleet(tmp_path)


def blue_live(names: Sequence[str] = ("web1", "web2")) -> dict[str, HostColours]:
    return {name: facts(name, "blue") for name in names}


def wait_for(path: Path, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()


def test_switch_moves_every_host_in_one_round_trip(hosts: ShellFleet, unit_settings) -> None:
    report = switch.switch(hosts, unit_settings, "green", reason="test", colours=blue_live())
    assert report.ok and not report.undone
    for name in hosts.names:
        assert hosts.serves(name) == ("green", "blue", "green")
        assert hosts.leftovers(name) == []
        (entry,) = hosts.journal(name)
        assert (entry["event"], entry["result"], entry["colour"]) == ("switch", "ok", "green")
        # The workers' restart signal ran in the new colour, in the background.
        assert wait_for(hosts.root / name / "app" / "green" / "queue-restarted")
    # Per host: one command switches it, one more cleans up, journals and signals the workers.
    assert [n for n, _ in hosts.commands] == ["web1", "web2", "web1", "web2"]


def test_a_failing_host_puts_every_host_back(hosts: ShellFleet, unit_settings) -> None:
    hosts.broken.add("web2")
    report = switch.switch(hosts, unit_settings, "green", colours=blue_live())
    assert report.undone and not report.ok
    for name in hosts.names:
        assert hosts.serves(name) == ("blue", "green", "blue"), name
        assert hosts.leftovers(name) == []
        assert [e["result"] for e in hosts.journal(name)] == ["failed"]
    errors = {r.host: r.error for r in report.results}
    assert "nginx -t failed" in errors["web2"] and "web2 failed" in errors["web1"]


def test_ctrl_c_during_a_switch_puts_every_host_back(hosts: ShellFleet, unit_settings) -> None:
    # web1 has switched when the interrupt comes, before web2's switch.
    pressed: list[str] = []

    def ctrl_c(name: str, command: str) -> bool:
        if name == "web2" and not pressed:
            pressed.append(command)
            return True
        return False

    hosts.interrupt = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        switch.switch(hosts, unit_settings, "green", colours=blue_live())
    for name in hosts.names:
        assert hosts.serves(name) == ("blue", "green", "blue"), name
        (entry,) = hosts.journal(name)
        assert entry["result"] == "failed" and "interrupted" in str(entry["message"])


def test_a_switch_that_arrives_late_is_not_applied(hosts: ShellFleet, unit_settings) -> None:
    colours = blue_live()
    # web2's clock was read long ago: its deadline is already past when the command runs.
    colours["web2"].clock = int(time.time()) - 3600
    colours["web2"].read_at = time.time()
    colours["web1"].clock = int(time.time())
    report = switch.switch(hosts, unit_settings, "green", colours=colours)
    assert report.undone
    assert "after its deadline" in next(r.error for r in report.results if r.host == "web2")
    assert all(hosts.serves(name) == ("blue", "green", "blue") for name in hosts.names)


def test_failed_worker_signal_is_journaled_by_the_host(hosts: ShellFleet, unit_settings) -> None:
    local = hosts.localise
    hosts.localise = lambda name, command: local(name, command).replace(  # type: ignore[method-assign]
        "touch queue-restarted", "false"
    )
    report = switch.switch(hosts, unit_settings, "green", colours=blue_live())
    assert report.ok
    deadline = time.monotonic() + 5
    while len(hosts.journal("web1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    results = [e["result"] for e in hosts.journal("web1")]
    assert results == ["ok", "partial"]
    assert "queue:restart failed" in str(hosts.journal("web1")[1]["message"])


def lose_confirmation(hosts: ShellFleet, name: str) -> None:
    """The confirmation of a switch never reaches ``name`` (its connection was cut after it
    switched): the command fails without running."""
    run = hosts.run

    def cut(host: str, command: str, sudo: bool = False, timeout: float | None = None):
        if host == name and "already undone the switch" in command:
            hosts.commands.append((host, command))
            return False, "", f"no answer in {timeout:g} s: unreachable"
        return run(host, command, sudo, timeout)

    hosts.run = cut  # type: ignore[method-assign]


def test_a_host_that_never_hears_the_confirmation_undoes_the_switch_itself(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(switch, "WATCHDOG_SECONDS", 1)
    lose_confirmation(hosts, "web2")
    report = switch.switch(hosts, unit_settings, "green", reason="test", colours=blue_live())
    assert report.undone and not report.ok
    errors = {r.host: r.error for r in report.results}
    assert "puts itself back on blue" in errors["web2"]
    assert "web2 did not confirm" in errors["web1"]
    # web1, which confirmed, was switched back at once; web2 switched and heard nothing more:
    # its watchdog puts it back by itself and journals why.
    assert hosts.serves("web1") == ("blue", "green", "blue")
    deadline = time.monotonic() + 10
    while hosts.serves("web2") != ("blue", "green", "blue") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hosts.serves("web2") == ("blue", "green", "blue")
    while len(hosts.journal("web2")) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    (entry,) = hosts.journal("web2")
    assert entry["result"] == "failed" and "confirmation never came" in str(entry["message"])
    assert hosts.leftovers("web2") == []
    assert [e["result"] for e in hosts.journal("web1")] == ["ok", "failed"]


def test_a_confirmed_switch_stands_its_watchdog_down(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(switch, "WATCHDOG_SECONDS", 1)
    assert switch.switch(hosts, unit_settings, "green", colours=blue_live()).ok
    time.sleep(2)
    for name in hosts.names:
        assert hosts.serves(name) == ("green", "blue", "green")
        assert [e["result"] for e in hosts.journal(name)] == ["ok"]


def test_an_older_watchdog_leaves_a_newer_switch_alone(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A switch to green whose confirmation is lost on every host (both stay on green, pending),
    # then at once the operator's switch back to blue, confirmed: the first switch's watchdog,
    # which fires after it, must not touch the hosts.
    monkeypatch.setattr(switch, "WATCHDOG_SECONDS", 2)
    run = hosts.run
    lose_confirmation(hosts, "web1")
    lose_confirmation(hosts, "web2")
    assert switch.switch(hosts, unit_settings, "green", colours=blue_live()).undone
    assert all(hosts.serves(name) == ("green", "blue", "green") for name in hosts.names)
    hosts.run = run  # type: ignore[method-assign]
    monkeypatch.setattr(switch, "WATCHDOG_SECONDS", 60)
    green = {name: facts(name, "green") for name in hosts.names}
    assert switch.switch(hosts, unit_settings, "blue", colours=green).ok
    time.sleep(3)
    for name in hosts.names:
        assert hosts.serves(name) == ("blue", "green", "blue")
        assert hosts.leftovers(name) == []
        assert [
            e["message"] for e in hosts.journal(name) if "never came" in str(e["message"])
        ] == []


def test_recover_puts_a_half_switched_fleet_back(hosts: ShellFleet, unit_settings) -> None:
    # An interrupted deploy left web1 on green, web2 on blue.
    hosts.write("web1", "live.conf", "green")
    hosts.write("web1", "idle.conf", "blue")
    (hosts.root / "web1" / "app" / "current").unlink()
    (hosts.root / "web1" / "app" / "current").symlink_to("green")
    report = switch.recover(hosts, unit_settings, "blue")
    assert report is not None and report.ok
    assert all(hosts.serves(name) == ("blue", "green", "blue") for name in hosts.names)
    assert switch.recover(hosts, unit_settings, "blue") is None, "nothing left to do"


def test_interrupted_blue_green_deploy_goes_back_to_the_colour_it_left(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bgdeploy deploy --strategy blue-green`, Ctrl-C after web1 switched to green."""
    hosts.write("web1", "live.conf", "green")
    hosts.write("web1", "idle.conf", "blue")
    (hosts.root / "web1" / "app" / "current").unlink()
    (hosts.root / "web1" / "app" / "current").symlink_to("green")
    report = ReleaseReport(env="staging", ref="v2", run="run-1")
    for name in hosts.names:
        report.host(name, ["web"]).colour = "green"  # the colour the deploy built
    monkeypatch.setattr(recovery.switch, "FabricFleet", lambda targets: hosts)
    monkeypatch.setattr(recovery.remote, "targets", lambda env, groups: [])
    environment = SimpleNamespace(settings={"web1": unit_settings}, web=["web1"])
    lines: list[str] = []
    note = recovery._recover_colours("staging", environment, report, lines.append)
    assert note == lines[-1] == "blue serves again (switched back)"
    assert all(hosts.serves(name) == ("blue", "green", "blue") for name in hosts.names)
    # Interrupted before the switch: nothing to put back.
    assert recovery._recover_colours("staging", environment, report, lines.append).startswith(
        "blue serves, as before"
    )


def test_move_current_is_a_rename(tmp_path: Path) -> None:
    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    (tmp_path / "current").symlink_to("blue")
    subprocess.run(["sh", "-c", commands.move_current(str(tmp_path), "green")], check=True)
    assert (tmp_path / "current").readlink() == Path("green")
    with pytest.raises(ConfigError):
        commands.move_current(str(tmp_path), "../etc")


def line(
    name: str, status: int, body: object = "", release: str = SHA_A, colour: str = "green"
) -> str:
    text = json.dumps(body) if not isinstance(body, str) else body
    return f"bgdeploy-smoke {name}|{status}|{release}|{colour}|0.012|{text}"


HEALTHY = {
    "status": "healthy",
    "checks": {
        "database": {"status": "healthy", "message": "Connected"},
        "cache": {"status": "healthy", "message": "Read/write successful"},
    },
}


def smoke_output(**overrides: str) -> str:
    lines = {
        "health": line("health", 200, HEALTHY),
        "homepage": line("homepage", 200, "<html>"),
        "api auth": line("api auth", 200, {"ok": True}),
        "api without token": line("api without token", 401, {"message": "Unauthenticated."}),
        "database": line("database", 200, {"data": []}),
    }
    lines.update(overrides)
    return "noise\n" + "\n".join(lines.values())


def test_all_five_smoke_tests_pass() -> None:
    checks = smoke.evaluate(smoke.parse(smoke_output()), sha=SHA_A, colour="green")
    assert [c.name for c in checks] == [
        "health",
        "homepage",
        "api authentication",
        "database",
        "cache",
    ]
    assert all(c.ok for c in checks)


@pytest.mark.parametrize(
    ("override", "failing"),
    [
        (
            {"health": line("health", 503, {"status": "unhealthy", "checks": {}})},
            {"health", "database", "cache"},
        ),
        ({"homepage": line("homepage", 200, "<html>", release=SHA_B)}, {"homepage"}),
        ({"homepage": line("homepage", 200, "<html>", colour="blue")}, {"homepage"}),
        ({"api without token": line("api without token", 200, {})}, {"api authentication"}),
        ({"database": line("database", 500, "")}, {"database"}),
        ({"homepage": "bgdeploy-smoke homepage|000||||"}, {"homepage"}),
    ],
)
def test_each_failure_is_named(override: dict[str, str], failing: set[str]) -> None:
    checks = smoke.evaluate(smoke.parse(smoke_output(**override)), sha=SHA_A, colour="green")
    assert {c.name for c in checks if not c.ok} == failing


def test_token_reaches_curl_on_stdin_only() -> None:
    script = commands.smoke_requests(8080)
    assert "read -r token" in script
    assert "-H @-" in script
    assert '$token" |' in script


def test_a_held_deploy_lock_refuses_a_switch_by_hand(hosts: ShellFleet, unit_settings) -> None:
    colours = read_colours(hosts, unit_settings)
    assert all(not c.lock for c in colours.values())
    switch.refuse_if_locked(colours, "staging", "switched")  # nobody holds it: no refusal
    held = lock.new_lock("v2.4.0", "run42", pid=4242)
    lock_file = hosts.root / "web2" / "app" / ".bgdeploy" / "lock"
    lock_file.parent.mkdir()
    lock_file.write_text(held.to_json() + "\n")
    colours = read_colours(hosts, unit_settings)
    assert not colours["web1"].lock and lock.parse_lock(colours["web2"].lock) == held
    with pytest.raises(PolicyRefusal, match=r"web2: .*v2\.4\.0.*bgdeploy unlock staging"):
        switch.refuse_if_locked(colours, "staging", "switched")


def test_a_switch_under_its_own_lock_accepts_it_and_refuses_another(
    hosts: ShellFleet, unit_settings
) -> None:
    paths = dict.fromkeys(hosts.names, unit_settings.lock_path)
    with fleetlock.hold(hosts, paths, "staging", "switch green", what="switched") as held:
        colours = read_colours(hosts, unit_settings)
        assert all(lock.parse_lock(c.lock).run == held.run for c in colours.values())
        switch.refuse_if_locked(colours, "staging", "switched", run=held.run)  # its own
        with pytest.raises(LockHeld, match=r"web1: held by .*switch green"):
            switch.refuse_if_locked(colours, "staging", "switched")  # anyone's, as before
        with pytest.raises(LockHeld):
            switch.switch(
                hosts, unit_settings, "green", colours=colours, lock_run="another", force=True
            )
        report = switch.switch(
            hosts, unit_settings, "green", colours=colours, lock_run=held.run, force=True
        )
        assert report.ok and {hosts.serves(n)[0] for n in hosts.names} == {"green"}
    assert not (hosts.root / "web1" / "app" / ".bgdeploy" / "lock").exists()
    # The lock gone (broken by hand) when the colours are read: not switched.
    with pytest.raises(PolicyRefusal, match="lock is gone on web1, web2"):
        switch.switch(hosts, unit_settings, "blue", lock_run=held.run, force=True)
    assert {hosts.serves(n)[0] for n in hosts.names} == {"green"}


def test_an_automatic_switch_back_that_came_late_is_tried_again(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt read web2's clock long ago (a loaded machine): undone, every host
    # back where it was; the second reads the colours afresh and switches every host.
    colours = blue_live()
    colours["web2"].clock = int(time.time()) - 3600
    colours["web2"].read_at = time.time()
    colours["web1"].clock = int(time.time())
    reads: list[str] = []

    def read_again(fleet: object, settings: object) -> dict[str, HostColours]:
        reads.append("read")
        return blue_live()

    monkeypatch.setattr(switch, "read_colours", read_again)
    report = switch.switch_back(
        hosts, unit_settings, "green", reason="automatic: health", colours=colours, pause=0
    )
    assert report.ok and not report.undone and reads == ["read"]
    assert all(hosts.serves(name) == ("green", "blue", "green") for name in hosts.names)
    assert [e["result"] for e in hosts.journal("web2")] == ["failed", "ok"]


def test_a_switch_back_is_tried_twice_at_most(
    hosts: ShellFleet, unit_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts.broken.add("web2")
    monkeypatch.setattr(switch, "read_colours", lambda fleet, settings: blue_live())
    report = switch.switch_back(hosts, unit_settings, "green", colours=blue_live(), pause=0)
    assert report.undone and not report.ok
    assert [e["result"] for e in hosts.journal("web1")] == ["failed", "failed"]
    assert all(hosts.serves(name) == ("blue", "green", "blue") for name in hosts.names)
