"""The canary's trends judged by Prometheus (queue backlog, php-fpm memory vs the live colour),
on a sandbox of its own.

The fleet (2 web hosts, a db host, Prometheus) is provisioned and given v1 in place. Each test
puts the fleet in its starting state (:func:`settle`, the queue emptied), commits a release on
top of v2, and runs a 50 % canary through pyinfra (a :data:`WINDOW` s window) while real clients
send first visits (each split afresh) to the web hosts' public ports, :data:`RATE` requests/s in
all. The gate's limits and baseline comparisons are as usual; the tests look at the trend
checks:

- a release each of whose requests pushes 20 jobs (each sleeps 0.2 s) onto the queue, which
  the workers (one per web host) cannot keep up with, is sent back by "queue backlog";
- a release whose requests make their php-fpm worker hold about 60 MB more (PHP's allocator
  keeps the chunks it needed for the next requests: seen in the workers' /proc RssAnon) is sent
  back by "php-fpm memory vs baseline";
- a healthy release, a fresh pool warming up beside the warm live one, passes both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import (
    APP_ROOT,
    DEPLOY_V1,
    JOURNAL,
    PROVISION,
    commit,
    own_sandbox,
    public_urls,
    settle,
    sh,
)
from .test_canary_baseline import canary as baseline_canary
from .test_canary_baseline import kernel_with

WINDOW = 45
RATE = 16.0
MEMORY = "php-fpm memory vs baseline"

BACKLOG = """<?php

namespace App\\Http\\Middleware;

use Closure;
use Illuminate\\Http\\Request;

/**
 * A job of 0.2 s. A closure made outside any class: the workers run the live release, which
 * has no QueueTwenty class to bind a closure made in one to.
 */
function slow_job(): Closure
{
    return static function () {
        usleep(200000);
    };
}

/**
 * Every answered request queues 20 jobs that each take 0.2 s: more than the workers can do.
 */
class QueueTwenty
{
    public function handle(Request $request, Closure $next)
    {
        $response = $next($request);

        for ($i = 0; $i < 20; $i++) {
            dispatch(slow_job());
        }

        return $response;
    }
}
"""

HOG = """<?php

namespace App\\Http\\Middleware;

use Closure;
use Illuminate\\Http\\Request;

/**
 * Every request needs 30 blocks of 1.9 MB for a moment: PHP's allocator keeps the 2 MB chunks
 * it needed for the worker's next requests, so each worker holds about 60 MB more.
 */
class HoldMemory
{
    public function handle(Request $request, Closure $next)
    {
        $blocks = [];

        for ($i = 0; $i < 30; $i++) {
            $blocks[] = str_repeat(chr(65 + $i % 26), 1900000);
        }

        $response = $next($request);
        unset($blocks);

        return $response;
    }
}
"""


@pytest.fixture(scope="module")
def ct(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("ct", docker_client, PROVISION, DEPLOY_V1, monitoring=True) as state:
        yield state


def start(state: sandbox.SandboxState) -> tuple[str, str, str]:
    """:func:`settle`, and the queue emptied (an earlier test's jobs)."""
    found = settle(state)
    code, out = sh(
        state,
        "web1",
        f"cd {APP_ROOT}/current && sudo -u www-data php artisan queue:clear redis --force",
    )
    assert code == 0, out
    return found


def canary(state: sandbox.SandboxState, ref: str, *data: str) -> tuple[int, str]:
    """A 50 % canary of ``ref`` judged by Prometheus over :data:`WINDOW` seconds, under
    :data:`RATE` requests/s of client traffic (evaluated every ``canary_interval``: it may be
    sent back early); ``data``: more ``--data`` settings. (exit code, output)."""
    return baseline_canary(state, ref, *data, window=WINDOW, rate=RATE)


def trend_checks(state: sandbox.SandboxState) -> dict[str, dict[str, Any]]:
    """The last canary journal entry's trend checks (web1), by name."""
    _, out = sh(state, "web1", f"cat {JOURNAL}")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    last = [entry for entry in entries if entry["event"] == "canary"][-1]
    checks = last["details"]["gate"]["checks"]
    return {c["name"]: c for c in checks if c["name"] in ("queue backlog", MEMORY)}


def worker_anon_kb(state: sandbox.SandboxState, colour: str) -> list[int]:
    """RssAnon (kB) of each php-fpm worker of ``colour``'s pool on web1, from /proc."""
    _, out = sh(
        state,
        "web1",
        f"for p in $(pgrep -f 'php-fpm: pool bideshgomon-{colour}'); do "
        "grep RssAnon /proc/$p/status; done",
    )
    return [int(n) for n in re.findall(r"RssAnon:\s+(\d+) kB", out)]


def test_a_release_that_backs_the_queue_up_is_sent_back(ct: sandbox.SandboxState) -> None:
    old, _, _ = start(ct)
    tag, _ = commit(
        ct,
        {"app/Http/Middleware/QueueTwenty.php": BACKLOG, "app/Http/Kernel.php": kernel_with(
            ct, "\\App\\Http\\Middleware\\QueueTwenty::class")},
        "Every request queues 20 slow jobs",
        prefix="queue",
    )  # fmt: skip
    code, text = canary(ct, tag)
    assert code != 0, text[-5000:]
    assert "gate FAILED (prometheus)" in text and f"every client back on {old}" in text, text[
        -5000:
    ]
    checks = trend_checks(ct)
    queue = checks["queue backlog"]
    assert queue["verdict"] == "fail", checks
    assert queue["value"] > 100 and "backing up" in queue["reason"], queue
    assert "FAIL queue backlog: " in text
    assert checks[MEMORY]["verdict"] == "pass", checks


def test_a_release_whose_workers_hold_more_memory_is_sent_back(
    ct: sandbox.SandboxState,
) -> None:
    old, _, new = start(ct)
    tag, _ = commit(
        ct,
        {"app/Http/Middleware/HoldMemory.php": HOG, "app/Http/Kernel.php": kernel_with(
            ct, "\\App\\Http\\Middleware\\HoldMemory::class")},
        "Every request needs 57 MB: the workers keep it",
        prefix="hog",
    )  # fmt: skip
    code, text = canary(ct, tag)
    assert code != 0, text[-5000:]
    assert "gate FAILED (prometheus)" in text and f"every client back on {old}" in text, text[
        -5000:
    ]
    checks = trend_checks(ct)
    memory = checks[MEMORY]
    assert memory["verdict"] == "fail", checks
    assert memory["value"] > 1.5 * memory["baseline"], memory
    assert "FAIL php-fpm memory vs baseline: " in text
    assert checks["queue backlog"]["verdict"] == "pass", checks
    # What the gate saw is what /proc says: the sent-back colour's workers still hold it.
    hog, live = worker_anon_kb(ct, new), worker_anon_kb(ct, old)
    assert hog and live and max(hog) > 40_000 + max(live), (hog, live)


def test_a_healthy_release_passes_the_trend_checks(ct: sandbox.SandboxState) -> None:
    _, _, new = start(ct)
    tag, _ = commit(ct, {"docs/healthy.txt": "A healthy release.\n"}, "Healthy", prefix="ok")
    code, text = canary(ct, tag)
    checks = trend_checks(ct)
    assert checks["queue backlog"]["verdict"] == "pass", checks
    assert checks[MEMORY]["verdict"] == "pass", checks
    assert code == 0, text[-5000:]
    assert "gate passed (prometheus)" in text, text[-5000:]
    answer = httpx.get(public_urls(ct)[0], timeout=15)
    assert answer.headers.get("X-Colour") == new
