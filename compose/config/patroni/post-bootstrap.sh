#!/bin/sh
# Run once by Patroni on the node that bootstraps the cluster, as the
# superuser over the local socket: the database the stages use (the base
# file's POSTGRES_DB), with TimescaleDB. db-init creates the roles.
set -eu
psql -X -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE DATABASE drover'
psql -X -v ON_ERROR_STOP=1 -d drover -c 'CREATE EXTENSION IF NOT EXISTS timescaledb'
