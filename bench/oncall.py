"""The on-call commands' figures (issue 19), on 2 web hosts, as an operator runs them.

    .venv/bin/python bench/oncall.py [--runs 5] [--keep NAME] [--base DIR]

A sandbox of its own (2 web hosts and a db host) is started, provisioned, given v1 in place
and then two blue-green releases (``bench-a`` then ``bench-b``, each adding
``public/bench-colour.txt`` with a content of its own, so that a static file nginx serves says
which colour answers), not timed. Then, ``--runs`` times each, whole ``bgdeploy`` processes
with ``BGDEPLOY_PROFILE=json`` (:mod:`bgdeploy.core.timing`):

- ``bgdeploy rollback sandbox``: the switch back to ``bench-a``, smoke tests included; then
  (not timed) ``bench-b``'s colour is marked built again, as its deploy left it;
- ``bgdeploy switch sandbox COLOUR --no-smoke`` back to ``bench-b``, and when both hosts
  serve that colour (polled from a process of its own, a new connection per request), from
  the process's start;
- the switch in process (``switch.switch`` from its call, colours read included, until both
  hosts serve the new colour; what ``bench/switch.py`` measured), back and forth;
- ``bgdeploy status sandbox`` and ``bgdeploy --help``.

Prints each figure's median with its range next to the issue's goal, then each command's
profile (the median of each phase's seconds). Asserts nothing. About 3 minutes with setup.
``--keep NAME`` keeps (or reuses) the sandbox NAME (in ``$BGDEPLOY_STATE_DIR``). ``--base DIR``
also runs each command with the code of another checkout (``git archive main | tar -x -C
DIR``), in turn with this one's, and prints the ratios this/base run by run (the machine's
speed drifts; a ratio of two runs side by side does not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import httpx  # noqa: E402

from bgdeploy import commands, sandbox  # noqa: E402
from bgdeploy.core import timing  # noqa: E402
from bgdeploy.core.errors import ConfigError  # noqa: E402
from bgdeploy.core.render import COLOURS  # noqa: E402
from bgdeploy.fleet import remote, runner  # noqa: E402
from bgdeploy.fleet.colours import live_colour, other, read_colours  # noqa: E402
from bgdeploy.sandbox import sampleapp  # noqa: E402
from bgdeploy.strategies import switch  # noqa: E402

BIN = Path(sys.executable).parent
PROBE = "/bench-colour.txt"
SETTLE = 2.0
"""Seconds between two timed commands that change the fleet (the workers restart in the
background after a switch)."""

GOALS = {
    "rollback (switch back, smoke tests)": 1.0,
    "switch --no-smoke (whole process)": 0.6,
    "switch --no-smoke: both hosts serve": None,
    "switch in process: both hosts serve": 0.3,
    "status (whole process)": 0.5,
    "--help (whole process)": 0.1,
}

POLLER = """
import sys, threading, time, httpx
body, path, ports = sys.argv[1], sys.argv[2], sys.argv[3:]
client = httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))
def first(port):
    while client.get(f"http://127.0.0.1:{port}{path}").text.strip() != body:
        time.sleep(0.005)
    print(port, time.monotonic(), flush=True)
for port in ports:
    client.get(f"http://127.0.0.1:{port}{path}")
print("ready", flush=True)
for port in ports:
    threading.Thread(target=first, args=(port,)).start()
"""
"""Polls each web host until :data:`PROBE` answers ``body``; prints each host's first such
answer (monotonic clock, shared by processes)."""


class Poller:
    """The poller of ``body`` on ``ports``, started and ready."""

    def __init__(self, ports: list[str], body: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", POLLER, body, PROBE, *ports], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the poller did not start")

    def last(self) -> float:
        """When the last host first served ``body`` (monotonic)."""
        out, _ = self.proc.communicate(timeout=60)
        return max(float(line.split()[1]) for line in out.splitlines() if line.strip())


BASE: list[str] = []
"""The other checkout whose code runs the commands (``--base``), while :func:`as_base` says."""


def bgdeploy(*args: str) -> tuple[float, float, dict[str, Any]]:
    """Run ``bgdeploy ARGS`` with its profile: (its start, wall seconds, the profile)."""
    env = {**os.environ, "PYINFRA_PROGRESS": "off", timing.VARIABLE: "json"}
    if BASE:
        env["PYTHONPATH"] = BASE[0]  # before the editable install of this checkout
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "bgdeploy"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bgdeploy {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-5000:]}")
    return started, seconds, timing.parse_json_line(proc.stderr) or {}


def quiet_run(*args: str) -> None:
    env = {**os.environ, "PYINFRA_PROGRESS": "off"}
    proc = subprocess.run(
        [str(BIN / "bgdeploy"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"bgdeploy {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-5000:]}")


def setup(name: str) -> sandbox.SandboxState:
    """The sandbox, provisioned, with ``bench-b`` live and ``bench-a`` in the other colour."""
    os.environ["BGDEPLOY_SANDBOX"] = name
    try:
        state = sandbox.load_state(name)
    except ConfigError:
        pass
    else:
        print(f"reusing sandbox {name}", flush=True)
        normalise(state)
        return state
    started = time.monotonic()
    state = sandbox.up(name, web=2)
    quiet_run("provision", "sandbox")
    quiet_run("deploy", "sandbox", "--ref", "v1")
    for mark in ("a", "b"):
        tag = f"bench-{mark}"
        sampleapp.add_commit(
            Path(state.app_repository), {f"public{PROBE}": f"{mark}\n"}, tag, tag=tag
        )
        quiet_run("deploy", "sandbox", "--strategy", "blue-green", "--ref", tag)
    print(f"sandbox {name} ready in {time.monotonic() - started:.0f} s", flush=True)
    return state


def normalise(state: sandbox.SandboxState) -> None:
    """A reused sandbox (a bench stopped half-way) back where :func:`setup` leaves one."""
    fleet = Fleet()
    try:
        for colour in COLOURS:
            fleet.mark_built(colour)
        live = live_colour(fleet.colours())
        port = state.group("web")[0].ports["http"]
        if httpx.get(f"http://127.0.0.1:{port}{PROBE}", timeout=10).text.strip() != "b":
            switch.switch(fleet.fleet, fleet.settings, other(live), reason="bench")
    finally:
        fleet.close()


class Fleet:
    """The bench's own connections to the web hosts (not timed)."""

    def __init__(self) -> None:
        environment = runner.check_environment("sandbox")
        self.settings = environment.settings[environment.web[0]]
        self.fleet = switch.FabricFleet(remote.targets("sandbox", ("web",), environment.inventory))

    def colours(self) -> dict[str, Any]:
        return read_colours(self.fleet, self.settings)

    def mark_built(self, colour: str) -> None:
        """``colour`` marked built at its commit again (a rollback unmarked it)."""
        for name, facts in self.colours().items():
            directory = f"{self.settings.app_root}/{colour}"
            self.fleet.run(name, commands.mark_built(directory, facts.heads[colour])).check("mark")

    def close(self) -> None:
        self.fleet.close()


Figures = dict[str, list[float]]
Profiles = dict[str, list[dict[str, Any]]]


def variants(base: str | None) -> list[str | None]:
    """The code each measurement runs with, in turn: the base checkout's, then this one's."""
    return [base, None] if base else [None]


def use(variant: str | None) -> None:
    BASE[:] = [variant] if variant else []


def measure(
    state: sandbox.SandboxState, runs: int, base: str | None = None
) -> dict[str | None, tuple[Figures, Profiles]]:
    found: dict[str | None, tuple[Figures, Profiles]] = {}
    for variant in variants(base):
        found[variant] = (
            {key: [] for key in GOALS},
            {"rollback": [], "switch --no-smoke": [], "status": [], "--help": []},
        )
    ports = [str(web.ports["http"]) for web in state.group("web")]
    fleet = Fleet()
    try:
        live = live_colour(fleet.colours())  # bench-b's; the other colour holds bench-a
        bodies = {live: "b", other(live): "a"}
        for number, variant in ((n, v) for n in range(runs) for v in variants(base)):
            use(variant)
            figures, profiles = found[variant]
            time.sleep(SETTLE)
            _, seconds, profile = bgdeploy("rollback", "sandbox")
            figures["rollback (switch back, smoke tests)"].append(seconds)
            profiles["rollback"].append(profile)
            fleet.mark_built(live)
            time.sleep(SETTLE)
            poller = Poller(ports, bodies[live])
            started, seconds, profile = bgdeploy("switch", "sandbox", live, "--no-smoke")
            serving = poller.last() - started
            figures["switch --no-smoke (whole process)"].append(seconds)
            figures["switch --no-smoke: both hosts serve"].append(serving)
            profiles["switch --no-smoke"].append(profile)
            back = figures["rollback (switch back, smoke tests)"][-1]
            print(f"run {number + 1}{' (base)' if variant else ''}: rollback {back:.2f} s, "
                  f"switch --no-smoke {seconds:.2f} s (both serve at {serving:.2f} s)",
                  flush=True)  # fmt: skip
        use(None)
        colour = live
        for _ in range(runs if runs % 2 == 0 else runs + 1):
            colour = other(colour)
            time.sleep(SETTLE)
            poller = Poller(ports, bodies[colour])
            started = time.monotonic()
            report = switch.switch(fleet.fleet, fleet.settings, colour, reason="bench")
            if not report.ok:
                raise SystemExit(f"the switch to {colour} failed")
            serving = poller.last() - started
            for variant in found:
                found[variant][0]["switch in process: both hosts serve"].append(serving)
    finally:
        fleet.close()
    for command, key, profile_key in (
        (("status", "sandbox"), "status (whole process)", "status"),
        (("--help",), "--help (whole process)", "--help"),
    ):
        for _, variant in ((n, v) for n in range(runs) for v in variants(base)):
            use(variant)
            _, seconds, profile = bgdeploy(*command)
            found[variant][0][key].append(seconds)
            found[variant][1][profile_key].append(profile)
    use(None)
    return found


def show(figures: Figures, profiles: Profiles, base: Figures | None = None) -> None:
    print(f"{'measure':<38} {'median':>7}  {'range':>13}  goal")
    for key, values in figures.items():
        goal = GOALS[key]
        print(
            f"{key:<38} {statistics.median(values):6.2f}s  "
            f"{min(values):5.2f}-{max(values):5.2f} s  {f'<= {goal} s' if goal else ''}"
        )
    if base:
        print(f"\n{'this code / the base code':<38} {'median':>7}  {'range':>13}  base median")
        for key, values in figures.items():
            ratios = [new / old for new, old in zip(values, base[key], strict=False)]
            old = statistics.median(base[key])
            print(f"{key:<38} {statistics.median(ratios):6.2f}x  "
                  f"{min(ratios):5.2f}-{max(ratios):5.2f}    {old:.2f} s")  # fmt: skip
    for command, runs in profiles.items():
        print(f"\nprofile of `bgdeploy {command}` (median of {len(runs)} runs; from: start)")
        names: list[str] = []
        for run in runs:
            names += [name for name in run if name not in names]
        whole = statistics.median(run["whole process"]["seconds"] for run in runs)
        order = sorted(names, key=lambda n: statistics.median(_get(runs, n, "from")))
        for name in order:
            seconds = statistics.median(_get(runs, name, "seconds"))
            start = statistics.median(_get(runs, name, "from"))
            count = max(_get(runs, name, "count"))
            label = name + (f" (x{count:.0f})" if count > 1 else "")
            print(f"  {label:<30} {start:6.3f}  {seconds:6.3f} s  {100 * seconds / whole:4.0f}%")


def _get(runs: list[dict[str, Any]], name: str, field: str) -> list[float]:
    return [float(run[name][field]) for run in runs if name in run] or [0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", metavar="NAME", help="keep (or reuse) this sandbox")
    parser.add_argument("--base", metavar="DIR", help="also time the code of this checkout")
    args = parser.parse_args()
    os.environ.setdefault("BGDEPLOY_STATE_DIR", tempfile.mkdtemp(prefix="bgdeploy-bench-"))
    name = args.keep or "bench-oncall"
    state = setup(name)
    try:
        load = os.getloadavg()[0]
        found = measure(state, args.runs, args.base)
        print(f"\nload average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} cores)")  # fmt: skip
        figures, profiles = found[None]
        show(figures, profiles, found[args.base][0] if args.base else None)
    finally:
        if not args.keep:
            sandbox.down(name)


if __name__ == "__main__":
    main()
