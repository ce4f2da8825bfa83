#!/usr/bin/env bash
# The main job, on a local fleet of Docker containers: start the sandbox (building its image
# on first use), provision it, and deploy the sample app; ends with URLs to open and the
# health of each host. Run scripts/demo.sh down to remove it all again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYINFRA_PROGRESS=off PATH="$PWD/.venv/bin:$PATH"
name=${BGDEPLOY_SANDBOX:-default}
export BGDEPLOY_SANDBOX=$name
if [ "${1:-}" = down ]; then
    exec bgdeploy sandbox down --name "$name"
fi
bgdeploy sandbox up --name "$name" --web "${WEB_HOSTS:-2}"
bgdeploy provision sandbox
echo "== release v1, in place (the live colour, blue)" >&2
bgdeploy deploy sandbox --ref v1
echo "== release v2, blue-green (build green, smoke-test, switch, watch)" >&2
bgdeploy deploy sandbox --strategy blue-green --ref v2
bgdeploy status sandbox
bgdeploy sandbox status --name "$name"
