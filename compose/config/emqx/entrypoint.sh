#!/bin/sh
# Entrypoint of the EMQX nodes (compose.prod.yaml): exports the Erlang cookie
# and the dashboard admin password (and the registry's token) from their secret files into the variables
# EMQX reads, so no secret value is written into a compose file, then runs the
# image's own entrypoint with the command (emqx foreground).
set -eu
EMQX_NODE__COOKIE="$(cat /run/secrets/emqx_cookie)"
EMQX_DASHBOARD__DEFAULT_PASSWORD="$(cat /run/secrets/emqx_dashboard_password)"
# The device registry's HTTP authentication and authorization (emqx.conf:
# authentication.1, authorization.sources.1) require its bearer token.
REGISTRY_AUTH="\"Bearer $(cat /run/secrets/registry_emqx_token)\""
EMQX_AUTHENTICATION__1__HEADERS__AUTHORIZATION="$REGISTRY_AUTH"
EMQX_AUTHORIZATION__SOURCES__1__HEADERS__AUTHORIZATION="$REGISTRY_AUTH"
export EMQX_NODE__COOKIE EMQX_DASHBOARD__DEFAULT_PASSWORD EMQX_AUTHENTICATION__1__HEADERS__AUTHORIZATION EMQX_AUTHORIZATION__SOURCES__1__HEADERS__AUTHORIZATION
exec /usr/bin/docker-entrypoint.sh "$@"
