#!/usr/bin/env bash
# Installs what bgdeploy needs on a fresh machine with Docker and Python 3.11+: a virtualenv in
# .venv with bgdeploy, its sandbox extra (the Docker SDK) and its test tools, and debootstrap when
# no Debian base image is present locally (no registry is needed: the sandbox image is built from
# packages).
# Sourced by demo.sh and test.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[sandbox,test]'

if ! command -v debootstrap >/dev/null 2>&1 \
    && ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing debootstrap (to build the sandbox's Debian base image)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
        echo "bgdeploy needs debootstrap (or a local debian:bookworm-slim image): apt-get install debootstrap" >&2
        exit 2
    fi
fi
