"""Probes: GET requests at a fixed rate against the colour under test, every answer recorded.

The metric gate's own numbers when no Prometheus is configured (:func:`probe`, then
:func:`bgdeploy.checks.gate.evaluate_probes`): each request opens a fresh connection and is
timed until its whole answer is read, so a probe sees what a new visitor would. The p95 of
probes is the nearest-rank quantile (:func:`p95_nearest_rank`): always a measured value.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from bgdeploy.checks.metrics import redact_url, ssl_context

MAX_PROBES = 100_000
"""The most requests one :func:`probe` call sends."""

MAX_PROBE_THREADS = 64

NOT_SENT = "not sent: the probe was over"


@dataclass(frozen=True)
class ProbeSample:
    """One probe request.

    + started: seconds after the probe began that the request was sent
    + seconds: how long it took until the whole answer was read (or the error)
    + status: the HTTP status, or None after a transport error
    + error: the transport error (``"ConnectError: ..."``, ``"no answer within 5s"``), or None
    + colour: the answer's ``X-Colour`` header, or None
    """

    started: float
    seconds: float
    status: int | None = None
    error: str | None = None
    colour: str | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def probe(
    url: str,
    duration_s: float,
    rate_per_s: float,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    *,
    on_sample: Callable[[ProbeSample], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[ProbeSample]:
    """GET ``url`` at a fixed rate for ``duration_s`` seconds and record every answer.

    Sends ``ceil(duration_s * rate_per_s)`` requests (at least 1, at most :data:`MAX_PROBES`),
    the i-th at ``i / rate_per_s`` seconds, whether earlier ones have answered or not (up to
    :data:`MAX_PROBE_THREADS` at once). Each request opens a fresh connection
    (``Connection: close``, no keep-alive), does not follow redirects, and is given ``timeout``
    seconds; one still unanswered ``timeout`` seconds after the last was sent is recorded as a
    transport error. So the call returns after about ``duration_s + timeout`` seconds at most.
    Samples come back in the order they were sent. ``headers`` are added to every request
    (``Host``, a cookie pinning a canary colour ...).

    ``on_sample`` is called with each sample as soon as its answer (or error) is in, from the
    probe's threads: the canary's evaluations read the samples so far. ``cancel``, once set,
    sends no more requests (the canary was judged before its window ended); the call then
    returns what was sent.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"probe URL must be http(s)://host/..., not {redact_url(url)!r}")
    if not (isinstance(duration_s, int | float) and 0 < duration_s <= 86_400):
        raise ValueError(f"probe duration must be 0 < seconds <= 86400, not {duration_s!r}")
    if not (isinstance(rate_per_s, int | float) and 0 < rate_per_s <= 1000):
        raise ValueError(f"probe rate must be 0 < requests/s <= 1000, not {rate_per_s!r}")
    if not (isinstance(timeout, int | float) and 0 < timeout <= 600):
        raise ValueError(f"probe timeout must be 0 < seconds <= 600, not {timeout!r}")
    count = max(1, min(MAX_PROBES, math.ceil(duration_s * rate_per_s - 1e-9)))
    interval = 1.0 / rate_per_s
    sent_headers = {**(headers or {}), "Connection": "close"}
    threads = max(2, min(MAX_PROBE_THREADS, count, math.ceil(rate_per_s * timeout) + 1))
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=threads)
    stop = threading.Event()

    def one() -> ProbeSample:
        sample = _one()
        if on_sample is not None and sample.error != NOT_SENT:
            on_sample(sample)
        return sample

    def _one() -> ProbeSample:
        started = time.monotonic()
        offset = started - began
        if stop.is_set():
            return ProbeSample(offset, 0.0, error=NOT_SENT)
        try:
            response = client.get(url, headers=sent_headers)
        except httpx.TimeoutException:
            return ProbeSample(offset, time.monotonic() - started, error=f"timeout ({timeout:g}s)")
        except httpx.HTTPError as error:
            text = str(error).replace(url, "<url>") or "no detail"
            return ProbeSample(
                offset, time.monotonic() - started, error=f"{type(error).__name__}: {text}"
            )
        return ProbeSample(
            offset,
            time.monotonic() - started,
            status=response.status_code,
            colour=response.headers.get("x-colour"),
        )

    futures: list[Future[ProbeSample]] = []
    sent_at: list[float] = []
    client = httpx.Client(
        timeout=timeout, limits=limits, follow_redirects=False, verify=ssl_context()
    )
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bgdeploy-probe")
    began = time.monotonic()
    try:
        for index in range(count):
            if _wait_until(began + index * interval, cancel):
                break
            sent_at.append(time.monotonic() - began)
            futures.append(pool.submit(one))
        deadline = time.monotonic() + timeout + 0.5
        samples = []
        for future, offset in zip(futures, sent_at, strict=True):
            try:
                samples.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                elapsed = time.monotonic() - began - offset
                samples.append(ProbeSample(offset, elapsed, error=f"no answer within {timeout:g}s"))
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        threading.Thread(target=_close_later, args=(pool, client), daemon=True).start()
    return samples


def _wait_until(when: float, cancel: threading.Event | None) -> bool:
    """Sleep until the monotonic time ``when``; True (at once) when ``cancel`` is set. Polls
    in short sleeps rather than ``Event.wait``: inside pyinfra (gevent's patched threads) a
    wait was seen to miss the event being set."""
    while True:
        if cancel is not None and cancel.is_set():
            return True
        left = when - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.1) if cancel is not None else left)


def _close_later(pool: ThreadPoolExecutor, client: httpx.Client) -> None:
    pool.shutdown(wait=True)
    client.close()


def p95_nearest_rank(latencies: Iterable[float], quantile: float = 0.95) -> float | None:
    """The nearest-rank quantile: the ``ceil(quantile * n)``-th smallest value, or None if empty.

    No interpolation: the result is always one of the measured values, and it is the smallest
    value that at least ``quantile`` of all values are less than or equal to. For p95: with 100
    values the 95th smallest, with 20 the 19th, with fewer than 20 the largest (one slow
    request out of 19 fails a p95 gate).
    """
    ordered = sorted(latencies)
    if not ordered:
        return None
    rank = max(1, math.ceil(quantile * len(ordered) - 1e-9))
    return ordered[rank - 1]
