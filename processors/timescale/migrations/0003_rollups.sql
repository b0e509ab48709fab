-- Rollups with the same names and columns on both paths. Buckets are UTC
-- (time_bucket and date_bin both align to UTC midnight).
{{if .Timescale}}
CREATE MATERIALIZED VIEW sensor_readings_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT {{.TS}}.time_bucket(INTERVAL '1 hour', ts) AS bucket, tenant, device_id, metric,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max, sum(value) AS sum
FROM sensor_readings
GROUP BY {{.TS}}.time_bucket(INTERVAL '1 hour', ts), tenant, device_id, metric
WITH NO DATA;

CREATE MATERIALIZED VIEW sensor_readings_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT {{.TS}}.time_bucket(INTERVAL '1 day', ts) AS bucket, tenant, device_id, metric,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max, sum(value) AS sum
FROM sensor_readings
GROUP BY {{.TS}}.time_bucket(INTERVAL '1 day', ts), tenant, device_id, metric
WITH NO DATA;

SELECT {{.TS}}.add_continuous_aggregate_policy('sensor_readings_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '{{.RefreshInterval}}');
SELECT {{.TS}}.add_continuous_aggregate_policy('sensor_readings_daily',
    start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '{{.RefreshInterval}}');
{{else}}
CREATE MATERIALIZED VIEW sensor_readings_hourly AS
SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, tenant, device_id, metric,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max, sum(value) AS sum
FROM sensor_readings
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX sensor_readings_hourly_key ON sensor_readings_hourly (bucket, tenant, device_id, metric);

CREATE MATERIALIZED VIEW sensor_readings_daily AS
SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, tenant, device_id, metric,
       count(*) AS n, avg(value) AS mean, min(value) AS min, max(value) AS max, sum(value) AS sum
FROM sensor_readings
GROUP BY 1, 2, 3, 4;
CREATE UNIQUE INDEX sensor_readings_daily_key ON sensor_readings_daily (bucket, tenant, device_id, metric);
{{end}}
-- Distance needs the previous fix of each device (a window function, which
-- continuous aggregates do not allow): a materialized view on both paths,
-- refreshed concurrently by the sink. A segment counts on the day of its
-- later fix; distances are great-circle (haversine, mean Earth radius).
CREATE MATERIALIZED VIEW gps_distance_daily AS
WITH steps AS (
    SELECT tenant, device_id, ts, lat, lon,
           lag(lat) OVER w AS prev_lat, lag(lon) OVER w AS prev_lon
    FROM gps_fixes
    WINDOW w AS (PARTITION BY tenant, device_id ORDER BY ts)
)
SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day, tenant, device_id,
       count(*) AS fixes,
       coalesce(sum(CASE WHEN prev_lat IS NULL THEN 0 ELSE
           2 * 6371008.8 * asin(least(1, sqrt(
               power(sin(radians(lat - prev_lat) / 2), 2) +
               cos(radians(prev_lat)) * cos(radians(lat)) * power(sin(radians(lon - prev_lon) / 2), 2))))
       END), 0) AS distance_m
FROM steps
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX gps_distance_daily_key ON gps_distance_daily (day, tenant, device_id);
