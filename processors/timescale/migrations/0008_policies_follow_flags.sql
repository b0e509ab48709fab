-- Compression settings that fit the keys. Every column of a unique key must
-- be a segmentby or orderby column, or TimescaleDB cannot check the key
-- against a compressed batch without decompressing it (and warns "column
-- ... should be used for segmenting or ordering" at every compression):
-- features is keyed by (feature_id, ts), so feature_id follows ts in its
-- order (0005 now says so too; this brings databases that applied the
-- earlier 0005 in line). Since TimescaleDB 2.18 the settings are kept per
-- chunk: chunks compressed before keep theirs, later ones take these. An
-- older TimescaleDB refuses to change them while compressed chunks exist:
-- the migration then leaves them and says so (compression is a matter of
-- speed, not of what is stored).
--
-- The TimescaleDB policies (retention, compression, continuous aggregate
-- refresh) are no longer written into migrations: Migrate reconciles them
-- with the flags after the migrations (policies.go), so 0003's refresh
-- schedule is rendered with the default and the job follows
-- --refresh-interval.
{{if .Timescale}}
DO $compress$
BEGIN
    ALTER TABLE features SET (timescaledb.compress,
        timescaledb.compress_segmentby = 'tenant, device_id, metric', timescaledb.compress_orderby = 'ts DESC, feature_id');
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'features keeps its compression settings (%); set compress_orderby = ''ts DESC, feature_id'' once its chunks are decompressed', SQLERRM;
END
$compress$;
{{end}}
