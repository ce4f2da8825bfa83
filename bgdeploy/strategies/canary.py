"""Canary deploys: a share of the clients on the new colour, a metric gate, then all or none.

``bgdeploy deploy ENV --canary 5`` (or ``pyinfra inventories/ENV.py deploys/blue_green.py
--data canary=5``) runs the blue-green deploy up to its smoke tests (the idle colour built,
migrated once, smoke-tested through the preview listener), then, instead of switching:

1. **split**: on every web host or none, nginx sends ``PCT`` % of the clients to the new colour
   (:func:`start`). The split is :func:`bgdeploy.core.render.canary_split` (``canary.conf``, at
   nginx's http level) and the live include becomes the canary variant
   (:func:`bgdeploy.core.render.canary_live_include`): its document root and php-fpm pool are the
   colour the split chose. Written beside the old files, renamed over them, ``nginx -t``,
   reload: the switch's own steps (:func:`bgdeploy.commands.canary_apply`); a host that fails
   puts every host back.
2. **sticky per client**: nginx gives each new client a ``bgdeploy_client`` cookie holding a
   random id (``$request_id``) and splits on it (``split_clients``, a hash of the id): a browser
   keeps its colour for the whole canary, so Inertia's asset version never flip-flops, and
   clients behind one address (an office, a mobile carrier) are split one by one. The cookie
   names the client, not the colour: after the canary it means nothing, and the next canary
   splits the same clients afresh. A ``bgdeploy_colour=blue|green`` cookie pins a colour (for
   testers); nginx never sets it.
3. **gate**: for ``canary_window`` seconds (:func:`judge`). With ``prometheus_url`` the gate
   asks Prometheus about the new colour (error rate, p95, 5xx count over the window); without,
   it probes it itself through each web host's public port (the ``bgdeploy_colour`` cookie
   pinning the colour) at ``canary_probe_rate`` requests/s. Thresholds: ``canary_max_error_rate``,
   ``canary_max_p95_seconds``, ``canary_max_5xx``. With ``canary_baseline`` (the default) the new
   colour is also compared with the live one over the same window
   (:mod:`bgdeploy.checks.baseline`: error rate, p95, p99, per route with Prometheus; the probes
   probe both colours alike). With Prometheus, the queue must not back up and the new colour's
   php-fpm workers must not hold much more memory than the live colour's
   (:mod:`bgdeploy.checks.trends`, ``canary_max_queue_growth``, ``canary_max_memory_increase``;
   the probes cannot see either). Every query or probe, value, threshold and verdict is printed and
   journaled (:meth:`bgdeploy.checks.gate.GateResult.explain`). The gate fails safe: no answer
   from Prometheus is a failed check. It evaluates the window so far every ``canary_interval``
   seconds (:mod:`bgdeploy.checks.window`): a check failing ``canary_failure_limit``
   evaluations in a row sends every client back at once; only the evaluation over the whole
   window promotes.
4. **promote or send back** (:func:`decide`): a passed gate is followed by the blue-green switch
   (every host or none, :func:`bgdeploy.strategies.switch.switch`) and the usual health watch; a
   failed
   one puts the old live include back on every host (:func:`send_back`), and the new colour
   is marked not built (never switched to later).

Each web host journals one ``canary`` entry: the colour, ``percent``, the ``verdict``
(``promoted``, ``rolled back``, ``failed``) and the gate's checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bgdeploy import commands
from bgdeploy.checks import baseline, gate, sources, trends, window
from bgdeploy.core import journal, render
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.render import CANARY_INCLUDE, LIVE_INCLUDE
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import remote
from bgdeploy.fleet.executor import Executor
from bgdeploy.strategies.switch import SWITCH_TIMEOUT

CLIENT_COOKIE = "bgdeploy_client"
"""The cookie nginx sets on a first visit: the client's id, which the split hashes."""

PIN_COOKIE = "bgdeploy_colour"
"""A cookie that pins a colour (``blue`` or ``green``) during a canary; nginx never sets it."""

PROMOTE = "promote"
SEND_BACK = "send back"

Sleep = Callable[[float], None]


def check_percent(value: Any) -> float:
    """The canary share: a number above 0 and below 100, at most two decimals (what nginx's
    ``split_clients`` takes). Raises :class:`ConfigError` (exit 2) otherwise."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"--canary {value!r} is not a number of percent") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 100:
        raise ConfigError(f"--canary must be a percentage above 0 and below 100, not {value!r}")
    if abs(round(value, 2) - value) > 1e-9:
        raise ConfigError(f"--canary {value:g}: at most two decimals (nginx splits by 0.01 %)")
    return float(value)


def percent_text(percent: float) -> str:
    """``5``, ``2.5``, ``0.25``: the share as nginx and people read it."""
    return f"{round(percent, 2):g}"


def thresholds(settings: Settings) -> gate.Thresholds:
    """The gate's thresholds from the ``canary_*`` settings (ConfigError naming the key)."""
    return gate.Thresholds(
        max_error_rate=settings.canary_max_error_rate,
        max_p95_seconds=settings.canary_max_p95_seconds,
        max_5xx=settings.canary_max_5xx,
        window_seconds=settings.canary_window,
    )


def baseline_rules(settings: Settings) -> baseline.Baseline:
    """How the canary is compared with the live colour, from the ``canary_*`` settings."""
    return baseline.Baseline(
        min_requests=settings.canary_min_requests,
        significance=settings.canary_significance,
        max_latency_increase=settings.canary_max_latency_increase,
        latency_slack=settings.canary_latency_slack,
    )


def trend_rules(settings: Settings) -> trends.Trends:
    """What the canary's trends may do over the window (queue backlog, php-fpm memory), from
    the ``canary_*`` settings."""
    return trends.Trends(
        max_queue_growth=settings.canary_max_queue_growth,
        max_memory_increase=settings.canary_max_memory_increase,
    )


def probe_url(address: str, port: int, path: str) -> str:
    """A listener of one web host (the public port), as the gate's probes reach it."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{int(port)}{path}"


def probe_timeout(settings: Settings) -> float:
    """How long one probe waits for its answer: twice the p95 limit, at least 5 s (a probe
    unanswered by then is a transport error, counted in the error rate; the latency check
    judges the slow answers that do come)."""
    return max(5.0, 2 * settings.canary_max_p95_seconds)


def decide(result: gate.GateResult) -> str:
    """:data:`PROMOTE` when the gate passed, else :data:`SEND_BACK` (no checks: send back)."""
    return PROMOTE if result.passed and result.checks else SEND_BACK


# nginx, on every web host or none


def start(
    fleet: Executor, settings: Settings, live: str, canary: str, percent: float
) -> list[remote.HostResult]:
    """Split ``percent`` % of the clients to ``canary`` on every host of ``fleet``, or on
    none: when one host fails, every host is put back (its previous includes, tested,
    reloaded). Returns each host's result; all ok means the canary is live."""
    text = percent_text(check_percent(percent))
    live_text = render.canary_live_include(settings, live, canary, text)
    split_text = render.canary_split(settings, live, canary, text)
    results = _apply(fleet, settings, live_text, split_text, f"{text}% to {canary}")
    if all(result.ok for result in results):
        return results
    failed = {r.host: r.error for r in results if not r.ok}
    revert = commands.switch_revert(LIVE_INCLUDE, CANARY_INCLUDE, settings.app_root, live)

    def back(name: str) -> remote.HostResult:
        why = failed.get(name) or f"put back ({', '.join(failed)} failed)"
        ok, out, err = fleet.run(name, revert, sudo=True, timeout=SWITCH_TIMEOUT)
        if not ok:
            why += f"; COULD NOT BE PUT BACK ({(err or out).strip()[-200:]})"
        return remote.HostResult(name, False, error=why)

    return fleet.map(back, fleet.names)


def send_back(fleet: Executor, settings: Settings, live: str) -> list[remote.HostResult]:
    """Every client back on ``live``: the plain live include and an empty split, on every
    host (a host that fails is named: ``bgdeploy switch ENV LIVE`` repairs it)."""
    live_text = render.colour_include(settings, live)
    return _apply(fleet, settings, live_text, render.canary_split(settings), f"all on {live}")


def clear_split(fleet: Executor, settings: Settings) -> None:
    """After a promotion (the live include no longer reads the split): the split file emptied,
    for whoever reads it. Best effort: nginx does not need it."""
    command = commands.write_file(CANARY_INCLUDE, render.canary_split(settings))
    fleet.map(lambda name: fleet.run(name, command, sudo=True, timeout=SWITCH_TIMEOUT), fleet.names)


def _apply(
    fleet: Executor, settings: Settings, live_text: str, split_text: str, what: str
) -> list[remote.HostResult]:
    command = commands.join(
        commands.canary_apply(LIVE_INCLUDE, CANARY_INCLUDE, live_text, split_text),
        commands.switch_cleanup(LIVE_INCLUDE, CANARY_INCLUDE),
    )

    def one(name: str) -> remote.HostResult:
        began = time.monotonic()
        ok, out, err = fleet.run(name, command, sudo=True, timeout=SWITCH_TIMEOUT)
        seconds = time.monotonic() - began
        if ok:
            return remote.HostResult(name, True, seconds=seconds, detail=what)
        return remote.HostResult(name, False, seconds=seconds, error=(err or out).strip()[-300:])

    return fleet.map(one, fleet.names)


# The gate


def window_rules(settings: Settings) -> window.WindowRules:
    """How the window is watched, from the ``canary_*`` settings (ConfigError naming the key)."""
    return window.WindowRules(
        window=settings.canary_window,
        interval=settings.canary_interval,
        failure_limit=settings.canary_failure_limit,
        min_requests=settings.canary_min_requests,
    )


def judge(
    settings: Settings,
    live: str,
    canary: str,
    probe_urls: Sequence[str],
    *,
    report: Callable[[window.Watch], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = time.sleep,
) -> window.Watch:
    """Watch ``canary`` for ``canary_window`` seconds, evaluating every ``canary_interval``
    (:func:`bgdeploy.checks.window.watch`: sent back early on a clear failure, promoted only by
    the whole window): Prometheus when ``prometheus_url`` is set, else probes of each URL in
    ``probe_urls`` (the web hosts' public ports, each colour pinned by its cookie) at
    ``canary_probe_rate`` requests/s per colour, all at once. With ``canary_baseline``,
    ``live`` is compared with ``canary`` over the same seconds (and probed alike). ``report``
    gets the record after each evaluation. Never raises for an unreachable Prometheus or host:
    those are failed checks. The record's ``result`` is the deciding evaluation's."""
    limits = thresholds(settings)
    rules = baseline_rules(settings) if settings.canary_baseline else None
    timing = window_rules(settings)
    source: window.Source
    if settings.prometheus_url:
        url, over_time = settings.prometheus_url, trend_rules(settings)

        def trend_checks(seconds: float) -> list[gate.GateCheck]:
            return trends.prometheus_trend_checks(url, canary, live, seconds, over_time)

        source = sources.PrometheusSource(
            url, canary, live, limits, rules, timing, extra=trend_checks
        )
    elif not probe_urls:
        record = window.Watch(timing, canary, live, "probe")
        empty = gate.evaluate_probes([], limits, target=f"{canary}: no web host")
        record.add(window.Evaluation(1, 0.0, window.Reading(empty), final=True))
        return record
    else:
        source = sources.ProbeSource(
            probe_urls, canary, live if rules is not None else None, limits, rules, timing,
            rate=settings.canary_probe_rate, timeout=probe_timeout(settings),
            pin=lambda colour: {"Cookie": f"{PIN_COOKIE}={colour}"},
            target=f"the public port of {len(probe_urls)} web hosts, cookie {PIN_COOKIE}=",
        )  # fmt: skip
    return window.watch(source, timing, canary, live, report=report, clock=clock, sleep=sleep)


def summary(result: gate.GateResult) -> str:
    """The failed checks in one line (``error rate 10.00% > max 1.00%; ...``), or the pass."""
    failed = [c for c in result.checks if c.failed]
    if not result.checks:
        return "the gate checked nothing"
    if not failed:
        return f"gate passed ({result.source}): " + "; ".join(
            f"{_named(c)} {c.reason}" for c in result.checks if not c.route
        )
    return f"gate FAILED ({result.source}): " + "; ".join(
        f"{_named(c)}: {c.reason}" for c in failed
    )


def _named(check: gate.GateCheck) -> str:
    return f"{check.name} [route {check.route}]" if check.route else check.name


def journal_entry(
    settings: Settings,
    host: str,
    canary: str,
    percent: float,
    verdict: str,
    result: gate.GateResult | None,
    *,
    who: str | None = None,
    sha: str | None = None,
    sha_before: str | None = None,
    message: str = "",
    reason: str | None = None,
    watched: window.Watch | None = None,
) -> journal.JournalEntry:
    """The ``canary`` journal entry of one host: ``percent``, ``verdict``, the gate (the
    deciding evaluation's checks) and the ``window`` (each evaluation, how and when it
    ended, how fast every client was back: :meth:`bgdeploy.checks.window.Watch.to_dict`)."""
    outcome = {"promoted": "ok", "rolled back": "rolled_back"}.get(verdict, "failed")
    return journal.new_entry(
        "canary", who=who, host=host, env=settings.env, colour=canary, sha=sha,
        sha_before=sha_before, result=outcome, reason=reason, message=message,
        details={
            "percent": percent,
            "verdict": verdict,
            "gate": result.to_dict() if result is not None else None,
            "window": watched.to_dict() if watched is not None else None,
        },
    )  # fmt: skip
