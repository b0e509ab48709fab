-- What Grafana may read (db-init.sh grants, as the superuser, after the
-- sink's migrations): exactly what the dashboards in config/grafana/dashboards
-- query. dead_letters: the columns the dashboards count by, never the
-- payload bytes, headers or message (device-supplied content). A dashboard
-- query needing more fails compose's TestIntegrationGrafanaRole: grant it here.
BEGIN;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM drover_grafana;
GRANT SELECT ON sensor_readings, gps_fixes, alerts, device_state TO drover_grafana;
GRANT SELECT (ts, stage, reason) ON dead_letters TO drover_grafana;
COMMIT;
