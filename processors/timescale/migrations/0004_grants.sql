-- The writer may write every table; the analyst may only read. Default
-- privileges cover partitions the sink creates later.
GRANT USAGE ON SCHEMA {{.Schema}} TO {{.Writer}}, {{.Analyst}};
GRANT SELECT, INSERT, UPDATE ON sensor_readings, gps_fixes, features, media_objects, alerts, device_state, dead_letters TO {{.Writer}};
GRANT SELECT ON sensor_readings, gps_fixes, features, media_objects, alerts, device_state, dead_letters,
    sensor_readings_hourly, sensor_readings_daily, gps_distance_daily TO {{.Analyst}};
ALTER DEFAULT PRIVILEGES IN SCHEMA {{.Schema}} GRANT SELECT ON TABLES TO {{.Analyst}};
ALTER DEFAULT PRIVILEGES IN SCHEMA {{.Schema}} GRANT SELECT, INSERT, UPDATE ON TABLES TO {{.Writer}};
