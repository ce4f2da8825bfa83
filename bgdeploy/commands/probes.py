"""Requests to the app through nginx on a web host: health checks and smoke tests.

The requests run ON the host (``curl`` to ``127.0.0.1``), so they reach nginx exactly as a
client would and need no port open to the operator. Both never fail: the caller reads the
status from the output.

- :func:`health_probe`: one request: status and ``X-Release``
- :func:`health_request`: one request: the body, status, ``X-Release``, ``X-Colour``, time
- :func:`smoke_requests`: the runbook's smoke tests (:data:`SMOKE_REQUESTS`), all at once,
  the API token on stdin

Example::

    health_probe(80, "/api/health")   # prints "200 v2-3f9c1e2"
"""

from __future__ import annotations

import re

from bgdeploy.commands.shell import q
from bgdeploy.core.errors import ConfigError

HEALTH_PATH = re.compile(r"^/[A-Za-z0-9_./-]*\Z")


def _local_url(port: int, path: str) -> str:
    """``http://127.0.0.1:PORT/PATH`` (nginx on the host itself), the path checked."""
    if not HEALTH_PATH.match(path):
        raise ConfigError(f"health path {path!r} is not valid")
    return f"http://127.0.0.1:{int(port)}{path}"


def health_request(port: int, path: str) -> str:
    """GET ``http://127.0.0.1:PORT/PATH`` through nginx: prints the body (4 KiB at most), then
    a last line ``bgdeploy-health STATUS X-RELEASE X-COLOUR SECONDS`` (``000`` when nothing
    answered). Never fails."""
    url = q(_local_url(port, path))
    meta = "bgdeploy-health %{http_code} %header{x-release} %header{x-colour} %{time_total}"
    return (
        "d=$(mktemp) && trap 'rm -f \"$d\"' EXIT; "
        f"m=$(curl -s -m 10 -H 'Accept: application/json' -o \"$d\" -w {q(meta)} {url}); "
        'head -c 4096 "$d"; printf \'\\n%s\\n\' "${m:-bgdeploy-health 000}"; true'
    )


def health_probe(port: int, path: str) -> str:
    """One request to ``http://127.0.0.1:PORT/PATH`` through nginx: prints the HTTP status and
    the ``X-Release`` header (``000`` when nothing answered). Never fails."""
    url = _local_url(port, path)
    return (
        f"curl -s -m 5 -o /dev/null -H 'Cache-Control: no-cache' "
        f"-w '%{{http_code}} %header{{x-release}}\\n' {q(url)} || true"
    )


SMOKE_REQUESTS = (
    # name, path, with the API token
    ("health", "/api/health", False),
    ("homepage", "/", False),
    ("api auth", "/api/me", True),
    ("api without token", "/api/me", False),
    ("database", "/api/visa-applications", True),
)


def smoke_requests(port: int) -> str:
    """The runbook's smoke-test requests against ``127.0.0.1:PORT`` on a host (the public
    listener, or the preview listener for the idle colour), all at once: the time of the
    slowest, not of the five.

    The API token arrives on stdin (first line) and reaches curl on stdin too, so it never
    shows in a process list. For each request, in order, one line: ``bgdeploy-smoke
    NAME|STATUS|X-RELEASE|X-COLOUR|SECONDS|BODY`` (the body cut to 4 KiB, newlines removed).
    Never fails.
    """
    lines = [
        "IFS= read -r token || true",
        "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT",
    ]
    for number, (_name, path, auth) in enumerate(SMOKE_REQUESTS):
        url = q(f"http://127.0.0.1:{int(port)}{path}")
        header = 'printf "Authorization: Bearer %s\\n" "$token"' if auth else "printf ''"
        lines.append(
            f"{{ {header} | curl -s -m 10 -H @- -H 'Accept: application/json' "
            f'-o "$d/{number}.body" -w \'%{{http_code}}|%header{{x-release}}|%header{{x-colour}}|'
            f'%{{time_total}}\' {url} > "$d/{number}.meta" || true; }} &'
        )
    lines.append("wait")
    for number, (name, _path, _auth) in enumerate(SMOKE_REQUESTS):
        lines.append(
            f'printf \'bgdeploy-smoke {name}|%s|%s\\n\' "$(cat "$d/{number}.meta" 2>/dev/null)" '
            f'"$(head -c 4096 "$d/{number}.body" 2>/dev/null | tr -d \'\\n\\r\')"'
        )
    return "\n".join(lines)
