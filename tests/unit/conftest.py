"""Helpers shared by the unit tests."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

GroupData = Callable[..., dict[str, Any]]


def bgdeploy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A whole ``bgdeploy`` process of this checkout, run from the repository root."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "bgdeploy"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def load_group_data(*names: str) -> dict[str, Any]:
    """``group_data/all.py`` then each of ``names`` (``"prod"``, ``"sandbox"`` ...), merged as
    pyinfra merges them: their settings only (no dunders, no imported functions, no helpers
    such as the sandbox's ``CONTAINER_REPOSITORY``)."""
    data: dict[str, Any] = {}
    for name in ("all", *names):
        values = runpy.run_path(str(ROOT / "group_data" / f"{name}.py"))
        data.update({k: v for k, v in values.items() if not k.startswith("__")})
    return {k: v for k, v in data.items() if not callable(v) and k != "CONTAINER_REPOSITORY"}


@pytest.fixture
def group_data() -> GroupData:
    """The group_data loader: ``group_data("prod")`` is all.py and prod.py, merged."""
    return load_group_data


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 standing in for a service the tests cannot reach
    (Slack, Sentry): each POST recorded in ``posts`` as (path, headers, JSON body), answered
    with ``status`` and ``body``."""

    def __init__(self, status: int = 200, body: bytes = b"ok") -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((self.path, dict(self.headers), json.loads(raw or b"null")))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def received(self) -> list[tuple[str, Any]]:
        """Each POST's path and JSON body."""
        return [(path, body) for path, _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks() -> Iterator[WebhookReceiver]:
    """A :class:`WebhookReceiver` answering 200, closed after the test."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def prometheus(answers: dict[str, list[tuple[dict[str, str], float]]]) -> httpx.MockTransport:
    """A stand-in for Prometheus's query API (``httpx`` transport): each query whose text
    contains a key of ``answers`` gets that key's series (the first key that matches), as an
    instant vector; any other query fails the test."""

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(request.content.decode())["query"][0]
        for key, series in answers.items():
            if key in query:
                result = [{"metric": m, "value": [1.0, repr(v)]} for m, v in series]
                return httpx.Response(
                    200,
                    json={"status": "success", "data": {"resultType": "vector", "result": result}},
                )
        raise AssertionError(f"unexpected query {query}")

    return httpx.MockTransport(handler)
