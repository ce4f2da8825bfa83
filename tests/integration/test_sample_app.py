"""The sample app installed by hand on a sandbox web host, as the runbook's manual steps do.

Automating this is the job of provisioning and the release path; this test proves the test bed:
a real Laravel app on Debian's framework package, a real PostgreSQL and Redis, and the
runbook's health JSON (200 when healthy, 503 naming the database when PostgreSQL is down).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import sh, unique_name

INSTALL = r"""
set -e
sudo service postgresql start >/dev/null
sudo service redis-server start >/dev/null 2>&1
sudo -u postgres psql -q -c "CREATE ROLE handapp LOGIN PASSWORD 'handpw'"
sudo -u postgres createdb -O handapp handapp
git clone -q /srv/sandbox/app.git ~/app
cd ~/app
git checkout -q v1
composer install --no-dev --optimize-autoloader --no-interaction --quiet
npm ci --silent && npm run build --silent
cp .env.example .env
sed -i -e 's/^DB_HOST=.*/DB_HOST=127.0.0.1/' -e 's/^DB_DATABASE=.*/DB_DATABASE=handapp/' \
    -e 's/^DB_USERNAME=.*/DB_USERNAME=handapp/' -e 's/^DB_PASSWORD=.*/DB_PASSWORD=handpw/' \
    -e 's/^REDIS_HOST=.*/REDIS_HOST=127.0.0.1/' -e 's/^REDIS_PASSWORD=.*/REDIS_PASSWORD=null/' .env
php artisan key:generate --force --no-interaction
php artisan migrate --force --no-interaction
php artisan config:cache && php artisan route:cache && php artisan view:cache
php artisan migrate:status
(setsid nohup php -S 0.0.0.0:8080 -t public server.php >/tmp/serve.log 2>&1 &)
"""


@pytest.fixture(scope="module")
def hand_installed(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    name = unique_name("hand")
    state = sandbox.up(name, web=1, client=docker_client)
    try:
        code, output = sh(state, "web1", INSTALL, timeout=600)
        assert code == 0, output
        assert "create_visa_applications_table" in output
        yield state
    finally:
        sandbox.down(name, client=docker_client)


def health(state: sandbox.SandboxState) -> httpx.Response:
    port = state.group("web")[0].ports["preview"]
    for _ in range(50):
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=15)
        except httpx.TransportError:
            import time

            time.sleep(0.2)
    raise AssertionError("the PHP server did not answer")


def test_health_is_the_runbooks_json(hand_installed: sandbox.SandboxState) -> None:
    response = health(hand_installed)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body) >= {"status", "timestamp", "response_time_ms", "checks"}
    assert body["timestamp"].endswith("Z") or "+00:00" in body["timestamp"]
    assert isinstance(body["response_time_ms"], int | float)
    assert set(body["checks"]) == {"database", "cache", "queue", "storage"}
    for check in body["checks"].values():
        assert check["status"] == "healthy" and check["message"]
    assert body["checks"]["storage"]["message"].endswith("% free space")
    assert response.headers["X-Release"] == hand_installed.releases["v1"]
    assert response.headers["X-Colour"] in ("blue", "green", "none")


def test_database_down_gives_503_naming_database(hand_installed: sandbox.SandboxState) -> None:
    code, output = sh(hand_installed, "web1", "sudo service postgresql stop")
    assert code == 0, output
    try:
        response = health(hand_installed)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["checks"]["database"]["status"] == "unhealthy"
        assert body["checks"]["cache"]["status"] == "healthy"
    finally:
        sh(hand_installed, "web1", "sudo service postgresql start")
    assert health(hand_installed).status_code == 200
