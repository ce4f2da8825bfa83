#!/usr/bin/env bash
# The whole test suite: lint, format check, unit tests and the integration tests against a
# real sandbox fleet (Docker is required; the integration tests fail, never skip, without it).
# Extra arguments go to pytest instead, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYINFRA_PROGRESS=off
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ $# -gt 0 ]; then
    exec .venv/bin/pytest -p no:cacheprovider "$@"
fi
.venv/bin/pytest -p no:cacheprovider tests/unit
# The integration files run side by side, a whole file on one worker (a module's sandbox is
# started once; each worker that runs a file of the session fleet starts a fleet of its own):
# the machine waits on containers far more than it computes.
exec .venv/bin/pytest -p no:cacheprovider -n "${BGDEPLOY_TEST_WORKERS:-3}" --dist loadfile \
    tests/integration
