#!/usr/bin/env bash
# The whole test suite: lint, format check, unit tests and the integration tests against a
# real sandbox fleet (Docker is required; the integration tests fail, never skip, without it).
# Extra arguments go to pytest instead, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYINFRA_PROGRESS=off
if [ $# -gt 0 ]; then
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    exec .venv/bin/pytest -p no:cacheprovider "$@"
fi
# The sandbox images (both flavours, Prometheus) build while lint and the unit tests run.
build_log=$(mktemp)
.venv/bin/bgdeploy sandbox build --init initd --init systemd --monitoring >"$build_log" 2>&1 &
build=$!
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest -p no:cacheprovider tests/unit
if ! wait "$build"; then
    echo "building the sandbox images failed:" >&2
    cat "$build_log" >&2
    exit 1
fi
rm -f "$build_log"
# The integration files run side by side, a whole file on one worker (a module's sandbox is
# started once; each worker that runs a file of the session fleet starts a fleet of its own):
# the machine waits on containers far more than it computes.
exec .venv/bin/pytest -p no:cacheprovider -n "${BGDEPLOY_TEST_WORKERS:-3}" --dist loadfile \
    tests/integration
