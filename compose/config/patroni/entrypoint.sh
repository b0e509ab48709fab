#!/bin/sh
# Patroni reads passwords from its configuration or the environment only:
# export them from the secret files, then run the command (patroni).
set -eu
PATRONI_SUPERUSER_PASSWORD="$(cat /run/secrets/postgres_password)"
PATRONI_REWIND_PASSWORD="$PATRONI_SUPERUSER_PASSWORD"
PATRONI_REPLICATION_PASSWORD="$(cat /run/secrets/postgres_replication_password)"
export PATRONI_SUPERUSER_PASSWORD PATRONI_REWIND_PASSWORD PATRONI_REPLICATION_PASSWORD
exec "$@"
