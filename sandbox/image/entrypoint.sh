#!/bin/sh
# Entrypoint of the sandbox target image. Run the container with --init (tini reaps the
# daemons that the init.d scripts start).
#   AUTHORIZED_KEY    public key installed for the user `deploy` (required)
#   BGDEPLOY_SERVICES services to start, space separated (default: every installed one)
set -eu

ssh-keygen -A >/dev/null            # fresh host keys for every container, never baked in
mkdir -p /run/sshd /run/php

if [ -z "${AUTHORIZED_KEY:-}" ]; then
    echo "bgdeploy-entrypoint: AUTHORIZED_KEY is not set; nobody could log in" >&2
    exit 64
fi
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
printf '%s\n' "$AUTHORIZED_KEY" > /home/deploy/.ssh/authorized_keys
chown deploy:deploy /home/deploy/.ssh/authorized_keys
chmod 0600 /home/deploy/.ssh/authorized_keys

for service in ${BGDEPLOY_SERVICES:-postgresql redis-server php8.2-fpm nginx supervisor cron}; do
    service "$service" start >/dev/null 2>&1 || echo "bgdeploy-entrypoint: $service did not start" >&2
done

exec /usr/sbin/sshd -D -e
