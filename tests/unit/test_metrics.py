"""Prometheus instant queries against a real local HTTP server giving the documented answers."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from bgdeploy.checks.metrics import (
    PrometheusError,
    Sample,
    check_window,
    count_5xx_query,
    error_rate_query,
    instant_query,
    p95_query,
    redact_url,
    window_text,
)
from bgdeploy.core.errors import OperationFailed

TS = 1435781451.781

# Answers exactly as Prometheus's HTTP API documents them (docs/querying/api.md).
VECTOR = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [TS, "0.0021"]}]},
}
VECTOR_LABELS = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {"metric": {"__name__": "up", "job": "web", "instance": "web1:80"}, "value": [TS, "1"]},
            {"metric": {"__name__": "up", "job": "web", "instance": "web2:80"}, "value": [TS, "0"]},
        ],
    },
    "warnings": ["PromQL info: metric might not be a counter"],
}
NAN = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [TS, "NaN"]}]},
}
INF = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [TS, "+Inf"]}]},
}
EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}
SCALAR = {"status": "success", "data": {"resultType": "scalar", "result": [TS, "1"]}}
MATRIX = {
    "status": "success",
    "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[TS, "1"]]}]},
}
BAD_DATA = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:6: parse error: unexpected end of input',
}
EXECUTION = {
    "status": "error",
    "errorType": "execution",
    "error": "vector cannot contain metrics with the same labelset",
}
TIMEOUT = {
    "status": "error",
    "errorType": "timeout",
    "error": "query timed out in expression evaluation",
}
PROXY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Answer = tuple[int, str, bytes]


def as_json(status: int, body: object) -> Answer:
    return status, "application/json", json.dumps(body).encode()


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers with ``answer(path, form)``, recording each."""

    def __init__(self, answer: Callable[[str, dict[str, str]], Answer], delay: float = 0.0):
        self.answer = answer
        self.delay = delay
        self.requests: list[dict[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length).decode()
                form = {key: values[0] for key, values in parse_qs(raw).items()}
                receiver.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "form": form,
                    }
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                status, ctype, body = receiver.answer(self.path, form)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(answer: Callable[[str, dict[str, str]], Answer] | Answer, delay: float = 0.0):
        handler = answer if callable(answer) else (lambda path, form: answer)
        receiver = Receiver(handler, delay)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Queries


def test_error_rate_query_is_the_runbooks_with_a_zero_numerator():
    assert error_rate_query("green", "5m") == (
        '(sum(rate(http_requests_total{colour="green",status=~"5.."}[5m])) or vector(0))'
        ' / sum(rate(http_requests_total{colour="green"}[5m]))'
    )


def test_p95_query():
    assert p95_query("blue", "30s") == (
        "histogram_quantile(0.95, sum by (le) "
        '(rate(http_request_duration_seconds_bucket{colour="blue"}[30s])))'
    )
    assert p95_query("blue", "30s", 0.99).startswith("histogram_quantile(0.99, ")


def test_count_5xx_query():
    assert count_5xx_query("green", "1h30m") == (
        'sum(increase(http_requests_total{colour="green",status=~"5.."}[1h30m]))'
    )


@pytest.mark.parametrize("colour", ["red", "Green", "", 'green"} or vector(1) #', None])
def test_queries_refuse_other_colours(colour):
    for build in (error_rate_query, p95_query, count_5xx_query):
        with pytest.raises(ValueError, match="colour must be blue or green"):
            build(colour, "5m")


@pytest.mark.parametrize("window", ["5m", "30s", "1h", "1h30m", "500ms", "2d", "1w"])
def test_windows_accepted(window):
    assert check_window(window) == window


@pytest.mark.parametrize("window", ["", "5", "0s", "0m", "-5m", "5 m", "5M", "5m]", "1.5m", 300])
def test_windows_refused(window):
    with pytest.raises(ValueError, match="window must be a duration"):
        error_rate_query("green", window)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (30, "30s"), (90, "90s"), (3600, "1h"), (5400, "90m")]
)
def test_window_text(seconds, text):
    assert window_text(seconds) == text
    assert check_window(text) == text


@pytest.mark.parametrize("seconds", [0, 0.5, 1.5, -60, math.nan, math.inf, True, "5m"])
def test_window_text_refuses(seconds):
    with pytest.raises(ValueError):
        window_text(seconds)


# Answers


def test_success_vector_and_the_request(serve):
    receiver = serve(as_json(200, VECTOR))
    samples = instant_query(receiver.url, error_rate_query("green", "5m"), timeout=3)
    assert samples == [Sample({}, 0.0021, TS)]
    (request,) = receiver.requests
    assert request["method"] == "POST"
    assert request["path"] == "/api/v1/query"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"]["query"] == error_rate_query("green", "5m")
    # Prometheus is asked to stop before the client gives up.
    assert request["form"]["timeout"] == "2500ms"


def test_base_url_with_a_trailing_slash_or_prefix(serve):
    receiver = serve(as_json(200, VECTOR))
    instant_query(receiver.url + "/", "up", timeout=2)
    instant_query(receiver.url + "/prometheus/", "up", timeout=2)
    assert [r["path"] for r in receiver.requests] == ["/api/v1/query", "/prometheus/api/v1/query"]


def test_labels_several_series_and_warnings(serve):
    samples = instant_query(serve(as_json(200, VECTOR_LABELS)).url, "up", timeout=2)
    assert [(s.labels["instance"], s.value) for s in samples] == [
        ("web1:80", 1.0),
        ("web2:80", 0.0),
    ]


def test_nan_and_inf_are_floats(serve):
    (nan,) = instant_query(serve(as_json(200, NAN)).url, "q", timeout=2)
    assert math.isnan(nan.value)
    (inf,) = instant_query(serve(as_json(200, INF)).url, "q", timeout=2)
    assert inf.value == math.inf


def test_empty_result(serve):
    assert instant_query(serve(as_json(200, EMPTY)).url, "q", timeout=2) == []


def test_scalar(serve):
    assert instant_query(serve(as_json(200, SCALAR)).url, "1", timeout=2) == [Sample({}, 1.0, TS)]


def test_matrix_is_refused(serve):
    with pytest.raises(PrometheusError, match="resultType 'matrix'") as caught:
        instant_query(serve(as_json(200, MATRIX)).url, "up[5m]", timeout=2)
    assert caught.value.kind == "bad_response"


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (400, BAD_DATA, "bad_data", "HTTP 400 bad_data: invalid parameter"),
        (422, EXECUTION, "execution", "HTTP 422 execution: vector cannot contain"),
        (503, TIMEOUT, "timeout", "HTTP 503 timeout: query timed out"),
    ],
)
def test_error_answers(serve, status, body, kind, words):
    receiver = serve(as_json(status, body))
    with pytest.raises(PrometheusError) as caught:
        instant_query(receiver.url, "sum(", timeout=2)
    error = caught.value
    assert isinstance(error, OperationFailed)
    assert (error.kind, error.http_status) == (kind, status)
    assert words in str(error)
    assert str(error).startswith(f"Prometheus at {receiver.url} refused the query")
    assert error.detail == body["error"]
    assert not error.unreachable


def test_html_from_a_proxy(serve):
    receiver = serve((502, "text/html", PROXY_HTML))
    with pytest.raises(PrometheusError) as caught:
        instant_query(receiver.url, "up", timeout=2)
    message = str(caught.value)
    assert caught.value.kind == "proxy"
    assert caught.value.http_status == 502
    assert "HTTP 502 with text/html, not the API's JSON: 502 Bad Gateway" in message
    assert "proxy" in message
    assert "<" not in message


def test_json_that_is_not_the_envelope(serve):
    with pytest.raises(PrometheusError, match="not a Prometheus API response"):
        instant_query(serve(as_json(200, {"hello": "world"})).url, "up", timeout=2)


def test_timeout(serve):
    receiver = serve(as_json(200, VECTOR), delay=1.0)
    started = time.monotonic()
    with pytest.raises(PrometheusError, match=r"did not answer within 0\.3s") as caught:
        instant_query(receiver.url, "up", timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert caught.value.kind == "timeout" and caught.value.unreachable


def test_connection_refused():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(PrometheusError, match=r"is unreachable .*ConnectError") as caught:
        instant_query(url, "up", timeout=2)
    assert caught.value.kind == "connection" and caught.value.unreachable


def test_credentials_in_the_url_are_never_shown():
    url = f"http://admin:s3cret@127.0.0.1:{closed_port()}/prom?token=abc"
    with pytest.raises(PrometheusError) as caught:
        instant_query(url, "up", timeout=2)
    assert "s3cret" not in str(caught.value) and "admin" not in str(caught.value)
    assert "token" not in str(caught.value)
    assert redact_url(url).startswith("http://127.0.0.1:") and redact_url(url).endswith("/prom")


@pytest.mark.parametrize("url", ["http://[::1", "127.0.0.1:9090", "ftp://127.0.0.1/"])
def test_bad_urls_are_prometheus_errors(url):
    with pytest.raises(PrometheusError) as caught:
        instant_query(url, "up", timeout=1)
    assert caught.value.unreachable
