-- name: hourly_body_temperature
-- Hourly mean body temperature per device over the last 7 days.
SELECT bucket, device_id, round(mean::numeric, 2) AS mean_celsius, n
FROM sensor_readings_hourly
WHERE tenant = 'demo' AND metric = 'temperature'
  AND bucket >= now() - INTERVAL '7 days'
ORDER BY device_id, bucket;

-- name: distance_per_day
-- Distance walked per animal per day, in metres.
SELECT day, device_id, round(distance_m::numeric) AS metres, fixes
FROM gps_distance_daily
WHERE tenant = 'demo'
ORDER BY device_id, day;

-- name: alerts_per_rule_per_day
-- Alerts fired per rule per day (UTC days).
SELECT date_bin(INTERVAL '1 day', fired_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day, rule, count(*) AS fired
FROM alerts
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: dead_letter_rate_by_reason
-- Dead letters per reason over the last 7 days, and each reason's share.
SELECT reason, count(*) AS dead_letters,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
FROM dead_letters
WHERE received_at >= now() - INTERVAL '7 days'
GROUP BY reason
ORDER BY dead_letters DESC, reason;

-- name: herd_latest_state
-- Latest state of a herd (here: the devices named collar-*, as the simulator names them).
SELECT device_id, online, last_seen, battery, lat, lon, active_alerts
FROM device_state
WHERE tenant = 'demo' AND device_id LIKE 'collar-%'
ORDER BY device_id;

-- name: temperature_by_herd
-- Body temperature per herd over the last 7 days: readings joined with the registry's labels (table devices).
SELECT d.labels->>'herd' AS herd, count(DISTINCT r.device_id) AS devices, count(*) AS readings,
       round(avg(r.value)::numeric, 2) AS mean_celsius
FROM sensor_readings r
JOIN devices d USING (tenant, device_id)
WHERE r.tenant = 'demo' AND r.metric = 'temperature' AND d.labels ? 'herd'
  AND r.ts >= now() - INTERVAL '7 days'
GROUP BY 1
ORDER BY 1;
