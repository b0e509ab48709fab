#!/bin/sh
# db-init.sh roles|grants — drover's database roles, run by the compose
# services db-init (roles, before the sink's migrations) and db-grants
# (grants, after them) as the database superuser, with psql from the
# TimescaleDB image. Idempotent: safe on every start.
#
# Environment: libpq's PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE,
# PGSSLROOTCERT; POSTGRES_PASSWORD_FILE (the superuser's password),
# SINK_PGPASS_FILE (the sink's pgpass file: its drover_sink line holds the
# sink's password), GRAFANA_PASSWORD_FILE and CONSOLE_PASSWORD_FILE (the
# console's drover_console).
set -eu
phase=${1:?usage: db-init.sh roles|grants}
dir=$(dirname "$0")
PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
export PGPASSWORD
case "$phase" in
roles)
	# host:port:database:user:password; the password is the rest of the line.
	DROVER_SINK_PASSWORD=$(sed -n 's/^[^:]*:[^:]*:[^:]*:drover_sink://p' "$SINK_PGPASS_FILE" | head -n 1)
	DROVER_GRAFANA_PASSWORD=$(cat "$GRAFANA_PASSWORD_FILE")
	DROVER_CONSOLE_PASSWORD=$(cat "$CONSOLE_PASSWORD_FILE")
	if [ -z "$DROVER_SINK_PASSWORD" ] || [ -z "$DROVER_GRAFANA_PASSWORD" ] || [ -z "$DROVER_CONSOLE_PASSWORD" ]; then
		echo "db-init: empty password: want a drover_sink line in $SINK_PGPASS_FILE and a password in $GRAFANA_PASSWORD_FILE and $CONSOLE_PASSWORD_FILE" >&2
		exit 1
	fi
	export DROVER_SINK_PASSWORD DROVER_GRAFANA_PASSWORD DROVER_CONSOLE_PASSWORD
	exec psql -X -q -v ON_ERROR_STOP=1 -f "$dir/roles.sql"
	;;
grants)
	exec psql -X -q -v ON_ERROR_STOP=1 -f "$dir/grafana.sql"
	;;
*)
	echo "db-init: unknown phase $phase (want roles or grants)" >&2
	exit 2
	;;
esac
