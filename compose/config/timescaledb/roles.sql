-- drover's database roles, before the sink's migrations (db-init.sh roles,
-- as the superuser). Passwords are set on every run, so a changed secret
-- file takes effect at the next start.
\getenv sink_password DROVER_SINK_PASSWORD
\getenv grafana_password DROVER_GRAFANA_PASSWORD
\getenv console_password DROVER_CONSOLE_PASSWORD

-- TimescaleDB, when the server has it: the sink's login may not create
-- extensions.
SELECT 'CREATE EXTENSION IF NOT EXISTS timescaledb'
WHERE EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb') \gexec

-- The group roles the migrations grant to. processors/timescale/migrations
-- creates them only when missing, which the sink's login may not do.
SELECT format('CREATE ROLE %I NOLOGIN', r)
FROM unnest(ARRAY['drover_writer', 'drover_analyst', 'drover_operator']) AS r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

-- The sink: owns what its migrations create (tables, partitions, views,
-- TimescaleDB jobs), so it can add and drop partitions; no superuser, no
-- role or database creation.
SELECT 'CREATE ROLE drover_sink' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drover_sink') \gexec
ALTER ROLE drover_sink WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'sink_password';
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO drover_sink', current_database()) \gexec
GRANT USAGE, CREATE ON SCHEMA public TO drover_sink;

-- Grafana: read-only, a few connections, short statements; the tables it
-- may read are granted by grafana.sql once the migrations created them.
SELECT 'CREATE ROLE drover_grafana' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drover_grafana') \gexec
ALTER ROLE drover_grafana WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT
    CONNECTION LIMIT 10 PASSWORD :'grafana_password';
ALTER ROLE drover_grafana SET default_transaction_read_only = on;
ALTER ROLE drover_grafana SET statement_timeout = '30s';
SELECT format('GRANT CONNECT ON DATABASE %I TO drover_grafana', current_database()) \gexec
GRANT USAGE ON SCHEMA public TO drover_grafana;

-- The console (drover console): an analyst's reads (drover_analyst, whose
-- grants the migrations make), in read-only transactions, a few connections,
-- short statements. The console refuses a superuser or BYPASSRLS role.
SELECT 'CREATE ROLE drover_console' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drover_console') \gexec
ALTER ROLE drover_console WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT
    CONNECTION LIMIT 8 PASSWORD :'console_password';
ALTER ROLE drover_console SET default_transaction_read_only = on;
ALTER ROLE drover_console SET statement_timeout = '5s';
GRANT drover_analyst TO drover_console;
SELECT format('GRANT CONNECT ON DATABASE %I TO drover_console', current_database()) \gexec
GRANT USAGE ON SCHEMA public TO drover_console;

-- Nobody else creates objects in public (the default since PostgreSQL 15).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
