"""Where the canary window's numbers come from, at each evaluation
(:func:`bgdeploy.checks.window.watch` asks a source for a :class:`~bgdeploy.checks.window.Reading`
every ``canary_interval`` seconds).

- :class:`PrometheusSource`: the runbook's limits
  (:func:`bgdeploy.checks.gate.evaluate_prometheus`), the comparisons with the live colour
  (:func:`bgdeploy.checks.baseline.prometheus_checks`) and any further checks, over the seconds
  since the window began (the whole window at its end), and each colour's requests, 5xx and
  p95 for the live view (:func:`colour_numbers`). When Prometheus does not answer, the reading
  is one failed check, ``prometheus answers``.
- :class:`ProbeSource`: probes of both colours alike, sent from the window's start
  (:func:`bgdeploy.checks.probes.probe`), judged over those answered so far
  (:func:`bgdeploy.checks.gate.evaluate_probes`, :func:`bgdeploy.checks.baseline.probe_checks`).

Before the window's end the comparisons test at the stricter significance of :func:`interim`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from bgdeploy.checks import baseline as baseline_mod
from bgdeploy.checks.gate import (
    FAIL,
    GateCheck,
    ProbeSample,
    Thresholds,
    evaluate_probes,
    evaluate_prometheus,
    gate_result,
    p95_nearest_rank,
)
from bgdeploy.checks.metrics import (
    PrometheusError,
    instant_query,
    quantile_by_query,
    requests_by_query,
)
from bgdeploy.checks.probes import probe
from bgdeploy.checks.window import ANSWERS, ColourNumbers, Reading, WindowRules

Extra = Callable[[float], Sequence[GateCheck]]
"""More checks over a window of so many seconds (the queue and memory trends)."""


class PrometheusSource:
    """The gate's numbers from Prometheus: the limits (:func:`evaluate_prometheus`), the
    comparisons (:func:`bgdeploy.checks.baseline.prometheus_checks`, at the stricter
    significance before the end) and ``extra`` checks, over the seconds so far."""

    name = "prometheus"

    def __init__(
        self,
        base_url: str,
        canary: str,
        live: str,
        thresholds: Thresholds,
        rules: baseline_mod.Baseline | None,
        window: WindowRules,
        *,
        extra: Extra | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.canary, self.live = base_url, canary, live
        self.thresholds, self.rules, self.window = thresholds, rules, window
        self.more, self.transport = extra, transport

    def read(self, elapsed: float, final: bool) -> Reading:
        seconds = self.window.window if final else max(1, math.ceil(elapsed - 1e-9))
        limits = dataclasses.replace(self.thresholds, window_seconds=int(seconds))
        timeout = 10.0 if final else max(2.0, min(10.0, float(self.window.interval)))
        try:
            colours = colour_numbers(
                self.base_url, limits.window, timeout=timeout, transport=self.transport
            )
        except PrometheusError as error:
            check = GateCheck(ANSWERS, self.base_url, None, math.nan, FAIL, str(error))
            return Reading(gate_result([check], self.name))
        checks = list(
            evaluate_prometheus(
                self.base_url, self.canary, limits, timeout=timeout, transport=self.transport
            ).checks
        )
        if self.rules is not None:
            rules = self.rules if final else interim(self.rules, self.window)
            checks += baseline_mod.prometheus_checks(
                self.base_url, self.canary, self.live, limits, rules, timeout=timeout,
                transport=self.transport,
            )  # fmt: skip
        if self.more is not None:
            checks += self.more(seconds)
        return Reading(gate_result(checks, self.name), colours)

    def close(self) -> None:
        """Nothing runs in the background."""


def interim(rules: baseline_mod.Baseline, window: WindowRules) -> baseline_mod.Baseline:
    """The comparisons' rules before the window's end: the significance shared among the
    evaluations before it (see the module)."""
    return dataclasses.replace(rules, significance=rules.significance / max(1, window.looks))


def colour_numbers(
    base_url: str,
    window: str,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, ColourNumbers]:
    """Each colour's requests, 5xx and p95 over ``window``, from Prometheus (three queries);
    raises :class:`PrometheusError` when it does not answer."""
    found: dict[str, dict[str, float]] = {}
    plan = {
        "requests": requests_by_query(window, errors=False),
        "errors": requests_by_query(window, errors=True),
        "p95": quantile_by_query(0.95, window, by_route=False),
    }
    for key, query in plan.items():
        for sample in instant_query(base_url, query, timeout, transport=transport):
            colour = sample.labels.get("colour", "")
            if math.isfinite(sample.value):
                into = found.setdefault(colour, {})
                into[key] = sample.value + (into.get(key, 0.0) if key != "p95" else 0.0)
    return {
        colour: ColourNumbers(
            round(values.get("requests", 0.0)),
            min(round(values.get("requests", 0.0)), round(values.get("errors", 0.0))),
            values.get("p95"),
        )
        for colour, values in found.items()
        if colour
    }


class ProbeSource:
    """The gate's numbers from its own probes of each colour (each URL, the colour pinned by
    ``pin(colour)``'s headers), sent from the moment the source is made until the window
    ends (or :meth:`close`): the limits (:func:`evaluate_probes`) and the comparisons
    (:func:`bgdeploy.checks.baseline.probe_checks`) over the probes answered so far."""

    name = "probe"

    def __init__(
        self,
        urls: Sequence[str],
        canary: str,
        live: str | None,
        thresholds: Thresholds,
        rules: baseline_mod.Baseline | None,
        window: WindowRules,
        *,
        rate: float,
        timeout: float,
        pin: Callable[[str], Mapping[str, str]],
        target: str,
    ) -> None:
        self.canary, self.live = canary, live
        self.thresholds, self.rules, self.window = thresholds, rules, window
        self.target = target
        self.colours = [canary] if live is None else [canary, live]
        self.seen: dict[str, list[ProbeSample]] = {colour: [] for colour in self.colours}
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.began = time.monotonic()
        jobs = [(colour, url) for colour in self.colours for url in urls]
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(jobs)))
        self.futures: list[tuple[str, Future[list[ProbeSample]]]] = []
        for colour, url in jobs:

            def keep(sample: ProbeSample, colour: str = colour) -> None:
                with self.lock:
                    self.seen[colour].append(sample)

            future = self.pool.submit(
                probe, url, window.window, rate, headers=pin(colour), timeout=timeout,
                on_sample=keep, cancel=self.cancel,
            )  # fmt: skip
            self.futures.append((colour, future))

    def read(self, elapsed: float, final: bool) -> Reading:
        if final:  # every probe of the window, each answered or timed out
            samples: dict[str, list[ProbeSample]] = {colour: [] for colour in self.colours}
            for colour, future in self.futures:
                samples[colour].extend(future.result())
        else:
            with self.lock:
                samples = {colour: list(found) for colour, found in self.seen.items()}
        canary = samples[self.canary]
        where = f"{self.target}{self.canary}"
        checks = list(evaluate_probes(canary, self.thresholds, target=where).checks)
        if self.rules is not None and self.live is not None:
            rules = self.rules if final else interim(self.rules, self.window)
            checks += baseline_mod.probe_checks(
                canary, samples[self.live], self.thresholds, rules,
                target=f"{where} and ={self.live}",
            )  # fmt: skip
        colours = {colour: _probe_numbers(found) for colour, found in samples.items()}
        failed = [s.started for s in canary if not s.ok]
        return Reading(gate_result(checks, self.name), colours, min(failed) if failed else None)

    def close(self) -> None:
        self.cancel.set()
        self.pool.shutdown(wait=False)


def _probe_numbers(samples: Sequence[ProbeSample]) -> ColourNumbers:
    answered = [s.seconds for s in samples if s.status is not None]
    errors = sum(1 for s in samples if not s.ok)
    return ColourNumbers(len(samples), errors, p95_nearest_rank(answered))
