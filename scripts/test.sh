#!/usr/bin/env bash
# The whole test suite: lint, format check, unit tests and the integration tests against a
# real sandbox fleet (Docker is required; the integration tests fail, never skip, without it).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYINFRA_PROGRESS=off
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -p no:cacheprovider "$@"
