#!/bin/sh
# Entrypoint of the EMQX nodes (compose.prod.yaml): exports the Erlang cookie
# and the dashboard admin password from their secret files into the variables
# EMQX reads, so no secret value is written into a compose file, then runs the
# image's own entrypoint with the command (emqx foreground).
set -eu
EMQX_NODE__COOKIE="$(cat /run/secrets/emqx_cookie)"
EMQX_DASHBOARD__DEFAULT_PASSWORD="$(cat /run/secrets/emqx_dashboard_password)"
export EMQX_NODE__COOKIE EMQX_DASHBOARD__DEFAULT_PASSWORD
exec /usr/bin/docker-entrypoint.sh "$@"
