#!/bin/sh
# Entrypoint of the sandbox target image, in both flavours of init:
#   init.d  (Dockerfile): run the container with --init (tini reaps the daemons that the init.d
#           scripts start); the services start here, then sshd runs in the foreground.
#   systemd (Dockerfile.systemd sets BGDEPLOY_INIT=systemd): the services are systemd units;
#           this host's are enabled, the others disabled, then systemd becomes PID 1.
#   AUTHORIZED_KEY    public key installed for the user `deploy` (required)
#   BGDEPLOY_SERVICES services to run, space separated (default: every installed one)
set -eu

ALL_SERVICES="postgresql redis-server php8.2-fpm nginx supervisor cron"
SERVICES=${BGDEPLOY_SERVICES:-$ALL_SERVICES}

if [ -z "${AUTHORIZED_KEY:-}" ]; then
    echo "bgdeploy-entrypoint: AUTHORIZED_KEY is not set; nobody could log in" >&2
    exit 64
fi

# A container started again (docker stop, then start) keeps its files: /run (in the init.d
# flavour; the systemd flavour's /run is a fresh tmpfs) and PostgreSQL's postmaster.pid. No
# service runs yet, so every pid file is stale, and one that names a process of this boot
# makes its service's start believe it already runs (start-stop-daemon, pg_ctl).
find /run -xdev -type f -name '*.pid' -delete
rm -f /var/lib/postgresql/*/*/postmaster.pid

ssh-keygen -A >/dev/null            # fresh host keys for every container, never baked in
mkdir -p /run/sshd /run/php

install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
printf '%s\n' "$AUTHORIZED_KEY" > /home/deploy/.ssh/authorized_keys
chown deploy:deploy /home/deploy/.ssh/authorized_keys
chmod 0600 /home/deploy/.ssh/authorized_keys

if [ "${BGDEPLOY_INIT:-}" = systemd ]; then
    for service in $ALL_SERVICES; do
        case " $SERVICES " in
            *" $service "*) systemctl enable --quiet "$service" >/dev/null 2>&1 ;;
            *) systemctl disable --quiet "$service" >/dev/null 2>&1 ;;
        esac
    done
    exec /lib/systemd/systemd
fi

for service in $SERVICES; do
    service "$service" start >/dev/null 2>&1 || echo "bgdeploy-entrypoint: $service did not start" >&2
done

exec /usr/sbin/sshd -D -e
