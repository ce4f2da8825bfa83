"""No secret leaks: a full sequence of deploy, rollback and emergency commands on the session
fleet, everything it printed, every journal line on every host and every file the tool left in
its state directory searched for the database password, the Redis password, APP_KEY, the API
token, the Slack webhook URLs and the PagerDuty routing key.

The webhooks point at a receiver on 127.0.0.1 that answers 500 to everything, so any
notification sent on the way fails, and its failure report is searched too.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgdeploy import sandbox

from .conftest import run, sandbox_run_env, sh

WEBHOOK_TOKEN = "T0SECRET/B0SECRET/hook-5ecret-t0ken"
ROUTING_KEY = "pd-routing-key-5ecret-0123456789ab"


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"receiver says no")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_no_secret_in_any_output_journal_or_state_file(
    provisioned: sandbox.SandboxState, receiver: str, state_dir: Path
) -> None:
    state = provisioned
    env = {
        **sandbox_run_env(state),
        "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": f"{receiver}/services/{WEBHOOK_TOKEN}/d",
        "BGDEPLOY_SLACK_INCIDENTS_WEBHOOK": f"{receiver}/services/{WEBHOOK_TOKEN}/i",
        "BGDEPLOY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "BGDEPLOY_PAGERDUTY_URL": receiver,
    }
    sequence = [
        (["bgdeploy", "deploy", "sandbox", "--ref", "v1", "--reason", "secrets sweep"], 0),
        (["bgdeploy", "deploy", "sandbox", "--ref", "v2", "--strategy", "blue-green"], 0),
        (["bgdeploy", "status", "sandbox", "--json"], 0),
        (["bgdeploy", "smoke", "sandbox"], 0),
        (["bgdeploy", "rollback", "sandbox", "--reason", "secrets sweep"], 0),
        (["bgdeploy", "preflight", "sandbox", "--ref", "v2"], None),
        (["bgdeploy", "emergency", "sandbox", "logs", "--lines", "50"], 0),
        (["bgdeploy", "emergency", "sandbox", "logs", "--source", "nginx-error"], 0),
        (["bgdeploy", "emergency", "sandbox", "clear-caches"], 0),
        (["bgdeploy", "emergency", "sandbox", "restart", "php-fpm", "workers"], 0),
        (["bgdeploy", "emergency", "sandbox", "db-connections"], 0),
        (["bgdeploy", "flags", "sandbox", "disable", "visa_new_flow_20250601"], 0),
        (["bgdeploy", "flags", "sandbox", "enable", "visa_new_flow_20250601"], 0),
        (["bgdeploy", "snapshot", "sandbox", "create"], 0),
        (["bgdeploy", "snapshot", "sandbox", "list"], 0),
        (["bgdeploy", "history", "sandbox", "--json"], 0),
        (["bgdeploy", "postmortem", "sandbox", "--since", "2026-01-01"], 0),
    ]
    captured: list[str] = []
    for args, expected in sequence:
        proc = run(args, env=env)
        captured.append(f"$ {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
        if expected is not None:
            assert proc.returncode == expected, captured[-1][-3000:]
    newest = json.loads(run(["bgdeploy", "snapshot", "sandbox", "list", "--json"], env=env).stdout)
    args = ["bgdeploy", "snapshot", "sandbox", "restore", newest[0]["name"], "--yes"]
    proc = run(args, env=env)
    captured.append(f"$ {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    assert proc.returncode == 0, captured[-1][-3000:]
    # Every deploy, rollback and restore left its full log (in the state directory here:
    # conftest sets BGDEPLOY_RUN_LOG_DIR), named at the end of its output; searched below.
    named = re.findall(r"^log: (\S+)$", "\n".join(captured), re.MULTILINE)
    assert len(named) == 4, named  # two deploys, the rollback, the restore
    for path in map(Path, named):
        assert path.is_file() and path.is_relative_to(state_dir), path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    assert "--> Starting operation: Install dependencies" in Path(named[0]).read_text()

    journal = "/var/www/bideshgomon/.bgdeploy/journal.jsonl"
    for host in [web.name for web in state.group("web")] + ["db"]:
        code, text = sh(state, host, f"cat {journal} 2>/dev/null; true")
        assert code == 0
        captured.append(f"# journal of {host}\n{text}")
    for path in state_dir.rglob("*"):
        if path.name in ("secrets.env", "id_ed25519"):
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        elif path.is_file():
            captured.append(f"# {path}\n{path.read_text(errors='replace')}")

    everything = "\n".join(captured)
    assert "rollback" in everything and "visa_new_flow_20250601" in everything
    secrets = {**sandbox.load_secrets(state.name)}
    secrets["webhook"] = WEBHOOK_TOKEN
    secrets["routing key"] = ROUTING_KEY
    for what, value in secrets.items():
        assert value and len(value) >= 8, what
        for piece in {value, value.removeprefix("base64:")}:
            assert piece not in everything, f"the {what} appears in the captured output"
