-- Compression of old chunks on TimescaleDB (segment by series, newest
-- first); the policy that compresses them is applied at every start.
{{if .Timescale}}
ALTER TABLE sensor_readings SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant, device_id, metric', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE gps_fixes SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant, device_id', timescaledb.compress_orderby = 'ts DESC');
ALTER TABLE features SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant, device_id, metric', timescaledb.compress_orderby = 'ts DESC, feature_id');
{{end}}
