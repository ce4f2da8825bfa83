"""The metric gate: Prometheus answers and probes, each from a real local HTTP server."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from bgdeploy.checks.gate import (
    COUNT_5XX,
    ERROR_RATE,
    NO_TRAFFIC,
    P95,
    GateCheck,
    ProbeSample,
    Thresholds,
    evaluate_probes,
    evaluate_prometheus,
    judge,
    p95_nearest_rank,
    probe,
)
from bgdeploy.checks.metrics import count_5xx_query, error_rate_query, p95_query
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.journal import new_entry

TS = 1767225600.0


def vector(*values: str) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [TS, value]} for value in values],
        },
    }


PROXY_HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class Server:
    """A real HTTP/1.1 server on 127.0.0.1; ``handle(handler, path, form)`` gives each answer.

    The answer is ``(status, headers, body, delay)``; every request is recorded.
    """

    def __init__(self, handle: Callable[..., tuple[int, dict[str, str], bytes, float]]):
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive possible: the probe must not use it

            def answer(self, form: dict[str, str]) -> None:
                with server.lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "form": form,
                            "client": self.client_address,
                            "at": time.monotonic(),
                        }
                    )
                status, headers, body, delay = handle(self, urlsplit(self.path).path, form)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            def do_GET(self) -> None:
                self.answer({})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                self.answer({key: values[0] for key, values in parse_qs(raw).items()})

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handle):
        server = Server(handle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def prometheus(serve, error_rate=None, p95=None, count=None, delay=0.0):
    """A Prometheus that answers each of the gate's three queries with a canned answer.

    Each answer is a JSON body (HTTP 200), or (status, body) where body is a dict or bytes.
    """

    def pick(form):
        query = form.get("query", "")
        if query.startswith("histogram_quantile"):
            return p95
        if query.startswith("sum(increase"):
            return count
        return error_rate

    def handle(handler, path, form):
        assert path == "/api/v1/query"
        answer = pick(form)
        status, body = answer if isinstance(answer, tuple) else (200, answer)
        if isinstance(body, bytes):
            return status, {"Content-Type": "text/html"}, body, delay
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode(), delay

    return serve(handle)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def by_name(result):
    return {check.name: check for check in result.checks}


# Thresholds


def test_threshold_defaults_are_the_runbooks():
    t = Thresholds()
    assert (t.max_error_rate, t.max_p95_seconds, t.max_5xx, t.window_seconds, t.no_traffic) == (
        0.01,
        0.5,
        0,
        300,
        "fail",
    )
    assert t.window == "5m"


def test_thresholds_from_settings_like_values():
    t = Thresholds.from_mapping(
        {"max_error_rate": 0.02, "window_seconds": 30, "no_traffic": "pass"}
    )
    assert (t.max_error_rate, t.window, t.no_traffic, t.max_p95_seconds) == (
        0.02,
        "30s",
        "pass",
        0.5,
    )


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"max_error_rate": 1.5}, "max_error_rate must be a number from 0 to 1"),
        ({"max_error_rate": "1%"}, "max_error_rate"),
        ({"max_p95_seconds": -0.1}, "max_p95_seconds"),
        ({"max_p95_seconds": math.nan}, "max_p95_seconds"),
        ({"max_5xx": True}, "max_5xx"),
        ({"window_seconds": 0}, "window_seconds"),
        ({"window_seconds": 30.5}, "window_seconds must be whole seconds"),
        ({"no_traffic": "ignore"}, "no_traffic must be 'fail' or 'pass'"),
        ({"max_error_rte": 0.01}, "unknown gate setting 'max_error_rte'"),
    ],
)
def test_thresholds_refuse_bad_values(data, words):
    with pytest.raises(ConfigError, match=words):
        Thresholds.from_mapping(data)


# Judging single values: the exact edges


@pytest.mark.parametrize(
    ("value", "threshold", "verdict"),
    [
        (0.01, 0.01, "pass"),
        (1 / 100, 0.01, "pass"),
        (math.nextafter(0.01, 1), 0.01, "fail"),
        (0.0, 0.01, "pass"),
        (0.5, 0.5, "pass"),
        (0.5000001, 0.5, "fail"),
        (0, 0, "pass"),
        (1, 0, "fail"),
        (0.3, 0, "fail"),
        (math.inf, 0.5, "fail"),
        (-math.inf, 0.5, "pass"),
    ],
)
def test_judge_edges(value, threshold, verdict):
    check = judge("x", "q", value, threshold, Thresholds())
    assert check.verdict == verdict
    assert check.passed is (verdict == "pass")


def test_judge_nan_and_none():
    nan = judge("x", "q", math.nan, 0.01, Thresholds())
    assert (nan.verdict, nan.reason) == ("fail", NO_TRAFFIC)
    lenient = judge("x", "q", math.nan, 0.01, Thresholds(no_traffic="pass"))
    assert lenient.verdict == "pass" and lenient.reason.startswith(NO_TRAFFIC)
    none = judge("x", "q", None, 0.01, Thresholds(no_traffic="pass"), empty="no data")
    assert (none.verdict, none.reason) == ("fail", "no data")


# Prometheus


def test_healthy_colour_passes(serve):
    server = prometheus(serve, vector("0.0021"), vector("0.21"), vector("0"))
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    assert result.passed and result.source == "prometheus"
    checks = by_name(result)
    assert [c.name for c in result.checks] == [ERROR_RATE, P95, COUNT_5XX]
    assert checks[ERROR_RATE].value == 0.0021 and checks[ERROR_RATE].threshold == 0.01
    assert checks[ERROR_RATE].query_or_probe == error_rate_query("green", "5m")
    assert checks[P95].query_or_probe == p95_query("green", "5m")
    assert checks[COUNT_5XX].query_or_probe == count_5xx_query("green", "5m")
    assert sorted(r["form"]["query"] for r in server.requests) == sorted(
        c.query_or_probe for c in result.checks
    )


def test_window_comes_from_the_thresholds(serve):
    server = prometheus(serve, vector("0"), vector("0.1"), vector("0"))
    evaluate_prometheus(server.url, "blue", Thresholds(window_seconds=30), timeout=2)
    for request in server.requests:
        assert '{colour="blue"' in request["form"]["query"]
        assert "[30s]" in request["form"]["query"] and "[5m]" not in request["form"]["query"]


def test_failing_colour_fails_with_the_values(serve):
    server = prometheus(serve, vector("0.1"), vector("0.74"), vector("12.5"))
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    assert not result.passed
    checks = by_name(result)
    assert checks[ERROR_RATE].reason == "0.1 > 0.01"
    assert checks[P95].reason == "0.74 > 0.5"
    assert checks[COUNT_5XX].reason == "12.5 > 0"
    lines = result.explain()
    assert lines[0] == "gate FAILED (prometheus): 3 of 3 checks failed"
    assert "  FAIL error rate: 10.00% (max 1.00%): 0.1 > 0.01" in lines
    assert "  FAIL p95 latency: 740.0ms (max 500.0ms): 0.74 > 0.5" in lines
    assert "  FAIL 5xx responses: 12.5 (max 0): 12.5 > 0" in lines
    assert f"       {error_rate_query('green', '5m')}" in lines


def test_thresholds_at_exact_edges_pass(serve):
    server = prometheus(serve, vector("0.01"), vector("0.5"), vector("2"))
    result = evaluate_prometheus(server.url, "green", Thresholds(max_5xx=2), timeout=2)
    assert result.passed, result.explain()


def test_just_over_the_edges_fails(serve):
    server = prometheus(serve, vector("0.010001"), vector("0.500001"), vector("2.0001"))
    result = evaluate_prometheus(server.url, "green", Thresholds(max_5xx=2), timeout=2)
    assert [c.verdict for c in result.checks] == ["fail", "fail", "fail"]


def test_nan_is_no_traffic_and_fails_by_default(serve):
    server = prometheus(serve, vector("NaN"), vector("NaN"), vector("0"))
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    assert not result.passed
    checks = by_name(result)
    assert checks[ERROR_RATE].reason == NO_TRAFFIC == "no traffic to judge"
    assert math.isnan(checks[P95].value) and checks[P95].reason == NO_TRAFFIC
    assert checks[COUNT_5XX].passed
    data = result.to_dict()
    assert data["checks"][0]["value"] == "NaN"
    json.dumps(data, allow_nan=False)


def test_nan_passes_when_configured(serve):
    server = prometheus(serve, vector("NaN"), vector("NaN"), vector("0"))
    result = evaluate_prometheus(server.url, "green", Thresholds(no_traffic="pass"), timeout=2)
    assert result.passed
    assert "no_traffic=pass" in by_name(result)[ERROR_RATE].reason


def test_empty_results_count_as_zero_for_5xx_but_no_data_for_ratios(serve):
    server = prometheus(serve, vector(), vector(), vector())
    result = evaluate_prometheus(server.url, "green", Thresholds(no_traffic="pass"), timeout=2)
    checks = by_name(result)
    assert checks[COUNT_5XX].passed and checks[COUNT_5XX].value == 0
    assert checks[COUNT_5XX].reason.startswith("no series (counted as 0)")
    for name in (ERROR_RATE, P95):
        assert not checks[name].passed and checks[name].value is None
        assert checks[name].reason.startswith("no data: no series for this colour")
    assert not result.passed


def test_inf_p95_fails(serve):
    server = prometheus(serve, vector("0"), vector("+Inf"), vector("0"))
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    p95 = by_name(result)[P95]
    assert not p95.passed and p95.reason == "inf > 0.5"
    assert p95.to_dict()["value"] == "+Inf"
    assert "  FAIL p95 latency: +Inf (max 500.0ms): inf > 0.5" in result.explain()


def test_several_series_fail(serve):
    server = prometheus(serve, vector("0", "0.5"), vector("0.1"), vector("0"))
    check = by_name(evaluate_prometheus(server.url, "green", Thresholds(), timeout=2))[ERROR_RATE]
    assert not check.passed and "expected one series, got 2" in check.reason


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
            "HTTP 400 bad_data: parse error",
        ),
        (
            (422, {"status": "error", "errorType": "execution", "error": "many-to-many"}),
            "HTTP 422 execution: many-to-many",
        ),
        (
            (503, {"status": "error", "errorType": "timeout", "error": "query timed out"}),
            "HTTP 503 timeout: query timed out",
        ),
        ((502, PROXY_HTML), "HTTP 502 with text/html, not the API's JSON: 502 Bad Gateway"),
    ],
)
def test_prometheus_errors_fail_closed_with_the_error(serve, answer, words):
    server = prometheus(serve, answer, vector("0.1"), vector("0"))
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    assert not result.passed
    check = by_name(result)[ERROR_RATE]
    assert check.value is None and words in check.reason
    # The other queries were still asked and judged.
    assert len(server.requests) == 3 and by_name(result)[COUNT_5XX].passed


def test_unreachable_prometheus_fails_every_check_without_retrying(serve):
    url = f"http://127.0.0.1:{closed_port()}"
    result = evaluate_prometheus(url, "green", Thresholds(), timeout=2)
    assert not result.passed
    assert [c.verdict for c in result.checks] == ["fail"] * 3
    assert "is unreachable" in result.checks[0].reason
    assert result.checks[1].reason.startswith("not asked: Prometheus at")


def test_prometheus_timeout_asks_once(serve):
    server = prometheus(serve, vector("0"), vector("0"), vector("0"), delay=1.0)
    started = time.monotonic()
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert not result.passed and len(server.requests) == 1
    assert "did not answer within 0.3s" in result.checks[2].reason


def test_bad_colour_is_refused():
    with pytest.raises(ValueError, match="blue or green"):
        evaluate_prometheus("http://127.0.0.1:1", "red", Thresholds())


def test_result_goes_into_the_journal(serve):
    server = prometheus(serve, vector("NaN"), vector("+Inf"), vector())
    result = evaluate_prometheus(server.url, "green", Thresholds(), timeout=2)
    entry = new_entry(
        "canary",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        host="web1",
        details={"gate": result.to_dict()},
    )
    line = json.loads(entry.to_json_line())
    assert line["details"]["gate"]["passed"] is False
    assert [c["value"] for c in line["details"]["gate"]["checks"]] == ["NaN", "+Inf", 0.0]
    assert set(line["details"]["gate"]["checks"][0]) == {
        "name",
        "query_or_probe",
        "value",
        "threshold",
        "verdict",
        "reason",
    }


# p95, nearest rank


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([0.3], 0.3),
        ([0.2, 0.1], 0.2),
        (list(range(1, 20)), 19),  # 19 values: ceil(18.05) = 19th, the largest
        (list(range(1, 21)), 19),  # 20 values: ceil(19.0) = 19th
        (list(range(1, 22)), 20),  # 21 values: ceil(19.95) = 20th
        (list(range(1, 101)), 95),
        (list(range(100, 0, -1)), 95),  # unsorted input
        (list(range(1, 102)), 96),  # ceil(95.95)
        ([0.1] * 95 + [9.0] * 5, 0.1),
        ([0.1] * 94 + [9.0] * 6, 9.0),
    ],
)
def test_p95_nearest_rank(values, expected):
    assert p95_nearest_rank(values) == expected


def test_nearest_rank_other_quantiles():
    assert p95_nearest_rank(range(1, 11), 0.5) == 5
    assert p95_nearest_rank(range(1, 11), 0.99) == 10


# Evaluating probes


def sample(status=200, seconds=0.01, error=None):
    return ProbeSample(started=0.0, seconds=seconds, status=status, error=error)


def test_probes_healthy():
    result = evaluate_probes([sample() for _ in range(100)], Thresholds(), target="green preview")
    assert result.passed and result.source == "probe"
    assert by_name(result)[ERROR_RATE].query_or_probe.startswith("GET green preview: 100 probes")


def test_probe_error_rate_edges():
    one_in_100 = [sample(500)] + [sample() for _ in range(99)]
    checks = by_name(evaluate_probes(one_in_100, Thresholds(max_5xx=1)))
    assert checks[ERROR_RATE].value == 0.01 and checks[ERROR_RATE].passed
    assert checks[COUNT_5XX].value == 1 and checks[COUNT_5XX].passed
    two_in_100 = [sample(503), sample(500)] + [sample() for _ in range(98)]
    checks = by_name(evaluate_probes(two_in_100, Thresholds(max_5xx=1)))
    assert checks[ERROR_RATE].value == 0.02 and not checks[ERROR_RATE].passed
    assert not checks[COUNT_5XX].passed


def test_probe_errors_are_every_non_2xx_and_transport_errors():
    samples = [
        sample(200),
        sample(204),
        sample(301),
        sample(404),
        sample(None, 0.001, "ConnectError: refused"),
        sample(None, 5.0, "timeout (5s)"),
        sample(502),
        sample(299),
    ]
    result = evaluate_probes(samples, Thresholds())
    checks = by_name(result)
    assert checks[ERROR_RATE].value == 5 / 8
    assert "5 not 2xx (2 transport errors)" in checks[ERROR_RATE].query_or_probe
    assert checks[COUNT_5XX].value == 1
    # p95 over the 6 answers only: the largest of them.
    assert "nearest-rank p95 of 6 answered" in checks[P95].query_or_probe


def test_probe_p95_edges():
    at_edge = [sample(seconds=0.5)] * 5 + [sample(seconds=0.01)] * 95
    assert by_name(evaluate_probes(at_edge, Thresholds()))[P95].value == 0.01
    slow = [sample(seconds=0.51)] * 6 + [sample(seconds=0.01)] * 94
    p95 = by_name(evaluate_probes(slow, Thresholds()))[P95]
    assert p95.value == 0.51 and not p95.passed
    exact = [sample(seconds=0.5)] * 20
    assert by_name(evaluate_probes(exact, Thresholds()))[P95].passed


def test_no_probes_and_no_answers_fail():
    result = evaluate_probes([], Thresholds(no_traffic="pass"))
    assert not result.passed
    assert {c.reason for c in result.checks} == {"no probes were sent"}
    refused = [sample(None, 0.001, "ConnectError") for _ in range(5)]
    checks = by_name(evaluate_probes(refused, Thresholds()))
    assert checks[ERROR_RATE].value == 1.0
    assert checks[P95].reason == "no data: no probe got an answer"
    assert checks[COUNT_5XX].passed


def test_empty_gate_never_passes():
    from bgdeploy.checks.gate import gate_result

    assert not gate_result([]).passed
    assert gate_result([]).explain() == ["gate FAILED: nothing was checked"]
    assert gate_result([GateCheck("x", "q", 0.0, 0.0, "pass", "ok")]).passed


# Probing a real server


def app(statuses=None, delay=0.0, colour="green"):
    """A web app answering GET: statuses[i % len] for the i-th request, after ``delay``."""
    counter = iter(range(1_000_000))
    lock = threading.Lock()

    def handle(handler, path, form):
        with lock:
            index = next(counter)
        status = statuses[index % len(statuses)] if statuses else 200
        return status, {"X-Colour": colour, "Content-Type": "text/plain"}, b"ok\n", delay

    return handle


def test_probe_fixed_rate_fresh_connections_and_headers(serve):
    server = serve(app())
    started = time.monotonic()
    samples = probe(server.url + "/api/health", 0.5, 20, headers={"Cookie": "colour=green"})
    elapsed = time.monotonic() - started
    assert len(samples) == 10 and 0.42 <= elapsed < 1.5
    assert all(s.status == 200 and s.colour == "green" and s.error is None for s in samples)
    # The i-th request went out at i/rate (a thread may start late on a loaded machine: the
    # unit tests run beside the image build; a schedule that drifted would be late by more).
    for index, s in enumerate(samples):
        assert abs(s.started - index * 0.05) < 0.25, (index, s.started)
    assert len(server.requests) == 10
    # A fresh connection per request, though the server speaks HTTP/1.1 keep-alive.
    assert len({r["client"] for r in server.requests}) == 10
    for request in server.requests:
        assert request["method"] == "GET" and request["path"] == "/api/health"
        assert request["headers"]["Connection"] == "close"
        assert request["headers"]["Cookie"] == "colour=green"


def test_probe_keeps_its_rate_when_answers_are_slow(serve):
    server = serve(app(delay=0.25))
    started = time.monotonic()
    samples = probe(server.url, 0.4, 20, timeout=2)
    elapsed = time.monotonic() - started
    assert len(samples) == 8 and elapsed < 1.2  # not 8 x 0.25 s in a row
    assert all(s.status == 200 and 0.24 <= s.seconds < 1.0 for s in samples)
    arrivals = sorted(r["at"] for r in server.requests)
    assert arrivals[-1] - arrivals[0] < 0.7


def test_probe_records_statuses_and_gate_fails_on_them(serve):
    server = serve(app(statuses=[200] * 9 + [500]))
    samples = probe(server.url, 0.25, 80)
    assert len(samples) == 20
    assert sorted(s.status for s in samples).count(500) == 2
    # (A generous p95 limit: this machine's own latency under load is not the point here.)
    result = evaluate_probes(samples, Thresholds(max_p95_seconds=30), target="green")
    checks = by_name(result)
    assert not result.passed
    assert checks[ERROR_RATE].value == 0.1 and checks[COUNT_5XX].value == 2
    assert checks[P95].passed


def test_probe_timeouts_are_errors_and_the_probe_stops_by_itself(serve):
    server = serve(app(delay=2.0))
    started = time.monotonic()
    samples = probe(server.url, 0.2, 10, timeout=0.3)
    elapsed = time.monotonic() - started
    assert len(samples) == 2 and elapsed < 1.3
    assert all(s.status is None and s.error for s in samples)
    assert all("timeout" in s.error or "no answer" in s.error for s in samples)
    assert not evaluate_probes(samples, Thresholds()).passed


def test_probe_connection_refused():
    url = f"http://127.0.0.1:{closed_port()}/api/health"
    samples = probe(url, 0.2, 10, timeout=1)
    assert len(samples) == 2
    assert all(s.status is None and s.error.startswith("ConnectError") for s in samples)
    assert all(url not in s.error for s in samples)
    result = evaluate_probes(samples, Thresholds())
    assert by_name(result)[ERROR_RATE].value == 1.0


def test_probe_latency_is_measured(serve):
    server = serve(app(delay=0.1))
    samples = probe(server.url, 0.3, 10, timeout=2)
    assert len(samples) == 3
    assert all(0.09 <= s.seconds < 0.5 for s in samples)
    assert (
        by_name(evaluate_probes(samples, Thresholds(max_p95_seconds=0.05)))[P95].verdict == "fail"
    )


def test_probe_does_not_follow_redirects(serve):
    def handle(handler, path, form):
        return 302, {"Location": "/elsewhere"}, b"", 0.0

    server = serve(handle)
    samples = probe(server.url, 0.1, 10)
    assert [s.status for s in samples] == [302]
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("ftp://127.0.0.1/", 1, 1), "http"),
        (("http://127.0.0.1/", 0, 1), "duration"),
        (("http://127.0.0.1/", 1, 0), "rate"),
        (("http://127.0.0.1/", 1, 5000), "rate"),
    ],
)
def test_probe_refuses_bad_arguments(args, words):
    with pytest.raises(ValueError, match=words):
        probe(*args)


def test_probe_url_credentials_not_shown():
    with pytest.raises(ValueError) as caught:
        probe("gopher://user:pw@127.0.0.1/", 1, 1)
    assert "pw" not in str(caught.value)
