#!/usr/bin/env bash
# The runbook's blue-green interface, on bgdeploy:
#   ./scripts/deploy-blue-green.sh v2.1.0          build the idle colour at v2.1.0, smoke-test
#                                                  it, switch every web host, watch, keep the old
#   ./scripts/deploy-blue-green.sh --rollback      switch back to the previous colour
# The environment: -e ENV / --env ENV, or BGDEPLOY_ENV (default prod).
set -euo pipefail
cd "$(dirname "$0")/.."
bgdeploy=bgdeploy
[ -x .venv/bin/bgdeploy ] && bgdeploy=.venv/bin/bgdeploy
env=${BGDEPLOY_ENV:-prod}
action=""
ref=""
while [ $# -gt 0 ]; do
    case "$1" in
        -e|--env) env=${2:?--env needs a value}; shift 2 ;;
        --rollback) action=rollback; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        -*) echo "deploy-blue-green.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$ref" ] || { echo "deploy-blue-green.sh: one ref only" >&2; exit 2; }; ref=$1; shift ;;
    esac
done
if [ "$action" = rollback ]; then
    [ -z "$ref" ] || { echo "deploy-blue-green.sh: --rollback takes no ref" >&2; exit 2; }
    exec "$bgdeploy" rollback "$env"
fi
[ -n "$ref" ] || { echo "usage: deploy-blue-green.sh REF | --rollback [-e ENV]" >&2; exit 2; }
exec "$bgdeploy" deploy "$env" --strategy blue-green --ref "$ref"
