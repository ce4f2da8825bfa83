"""Blue-green switch timings on 2 web hosts (a sandbox of its own).

    .venv/bin/python bench/switch.py [--rounds 5]

Prints, per round and the median: the switch time (from the start of `switch.switch`, colours
read included, until both hosts serve the new colour through their public ports, polled while
it runs) and when the call returned (journal written, workers signalled); and the
whole-process time of `bgdeploy rollback sandbox` as an operator runs it from a terminal.
Targets (issue 5): switch at most 1 s, rollback command at most 3 s. Asserts nothing; about
3 minutes with setup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bgdeploy import sandbox
from bgdeploy.fleet import remote, runner
from bgdeploy.strategies import switch

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def bgdeploy(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([str(BIN / "bgdeploy"), *args], cwd=ROOT, check=True, capture_output=True)
    return time.monotonic() - started


# One client, a new connection per request (a kept-alive one could stay on an old nginx worker).
CLIENT = httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))


def serving_time(
    state: sandbox.SandboxState, colour: str, started: float, stop: threading.Event
) -> float:
    """Seconds from ``started`` until every web host answered a new request from ``colour``
    (each host polled on its own, a response counted when it arrives); NaN when stopped."""

    def first(port: int) -> float:
        while not stop.is_set():
            answer = CLIENT.get(f"http://127.0.0.1:{port}/", headers={"Connection": "close"})
            if answer.headers.get("X-Colour") == colour:
                return time.monotonic() - started
            time.sleep(0.005)
        return float("nan")

    ports = [web.ports["http"] for web in state.group("web")]
    with ThreadPoolExecutor(len(ports)) as pool:
        return max(pool.map(first, ports))


def time_switch(
    state: sandbox.SandboxState, fleet: switch.FabricFleet, settings: Any, colour: str
) -> tuple[float, float, bool]:
    """(seconds until both hosts serve ``colour``, seconds until the call returned, ok)."""
    returned: list[float] = []

    def call() -> switch.SwitchReport:
        try:
            return switch.switch(fleet, settings, colour, reason="bench")
        finally:
            returned.append(time.monotonic())

    stop = threading.Event()
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call)
        running.add_done_callback(lambda done: done.result().ok or stop.set())
        serving = serving_time(state, colour, started, stop)
        report = running.result()
    return serving, returned[0] - started, report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("BGDEPLOY_STATE_DIR", tempfile.mkdtemp(prefix="bgdeploy-bench-"))
    name = "bench-switch"
    os.environ["BGDEPLOY_SANDBOX"] = name
    client = sandbox.docker_client()
    sandbox.down(name, client=client)
    state = sandbox.up(name, web=2, client=client)
    try:
        bgdeploy("provision", "sandbox")
        bgdeploy("deploy", "sandbox", "--ref", "v1")
        bgdeploy("deploy", "sandbox", "--strategy", "blue-green", "--ref", "v2")
        environment = runner.check_environment("sandbox")
        settings = environment.settings[environment.web[0]]
        fleet = switch.FabricFleet(remote.targets("sandbox", ("web",)))
        serving, returned = [], []
        try:
            colour = "green"
            for number in range(args.rounds):
                colour = switch.other(colour)
                until, back, ok = time_switch(state, fleet, settings, colour)
                serving.append(until)
                returned.append(back)
                print(
                    f"switch {number + 1} to {colour:<5} both serve {until:5.2f} s, "
                    f"returned {back:5.2f} s  {'ok' if ok else 'FAILED'}",
                    flush=True,
                )
            if colour != "green":
                switch.switch(fleet, settings, "green", reason="bench")
        finally:
            fleet.close()
        print(
            f"switch, 2 web hosts, median of {len(serving)}: both serve "
            f"{statistics.median(serving):.2f} s, returned {statistics.median(returned):.2f} s"
        )
        print(f"bgdeploy rollback sandbox (whole process): {bgdeploy('rollback', 'sandbox'):.2f} s")
    finally:
        sandbox.down(name, client=client)


if __name__ == "__main__":
    main()
