-- Rollups maintained incrementally. 0003 made them materialized views that
-- every refresh rebuilt from every row: a cost that grows with the table
-- (at 10k readings/s the one-minute refresh of a one-minute-old table took
-- the machine for a second), and worse every day. They are now tables with
-- the same names, columns and keys, which the sink's refresh brings up to
-- date from the rows written since the last refresh only (refreshRollups):
--
--   * Each row carries written_at, the start of the statement that wrote it.
--     The sink's writers take the rollup lock shared for their whole write
--     transaction, before that statement; the refresh takes it exclusively
--     for an instant to read the clock: every row stamped before that reading
--     is committed, every row not yet committed will be stamped after it.
--   * rollup_watermarks keeps, per source table, the time up to which rows
--     are in the rollups; a refresh covers [watermark, clock reading).
--
-- On TimescaleDB the reading rollups stay continuous aggregates (0003).
ALTER TABLE gps_fixes ALTER COLUMN written_at SET DEFAULT statement_timestamp();
CREATE INDEX gps_fixes_written_brin ON gps_fixes USING brin (written_at) WITH (autosummarize = on);

CREATE TABLE rollup_watermarks (
    source text        PRIMARY KEY,
    upto   timestamptz NOT NULL
);
INSERT INTO rollup_watermarks VALUES ('gps_fixes', '-infinity');

DROP MATERIALIZED VIEW gps_distance_daily;
CREATE TABLE gps_distance_daily (
    day        timestamptz      NOT NULL,
    tenant     text             NOT NULL,
    device_id  text             NOT NULL,
    fixes      bigint           NOT NULL,
    distance_m double precision NOT NULL,
    PRIMARY KEY (day, tenant, device_id)
);
{{if not .Timescale}}
ALTER TABLE sensor_readings ALTER COLUMN written_at SET DEFAULT statement_timestamp();
CREATE INDEX sensor_readings_written_brin ON sensor_readings USING brin (written_at) WITH (autosummarize = on);
INSERT INTO rollup_watermarks VALUES ('sensor_readings', '-infinity');

DROP MATERIALIZED VIEW sensor_readings_hourly;
DROP MATERIALIZED VIEW sensor_readings_daily;
CREATE TABLE sensor_readings_hourly (
    bucket    timestamptz      NOT NULL,
    tenant    text             NOT NULL,
    device_id text             NOT NULL,
    metric    text             NOT NULL,
    n         bigint           NOT NULL,
    mean      double precision GENERATED ALWAYS AS (sum / n) STORED,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    sum       double precision NOT NULL,
    PRIMARY KEY (bucket, tenant, device_id, metric)
);
CREATE TABLE sensor_readings_daily (LIKE sensor_readings_hourly INCLUDING ALL);
{{end}}
-- The writer refreshes (the sink runs as it); the analyst reads. Default
-- privileges (0004) already gave SELECT, INSERT, UPDATE and SELECT.
GRANT SELECT, INSERT, UPDATE ON rollup_watermarks TO {{.Writer}};
GRANT SELECT, INSERT, UPDATE, DELETE ON gps_distance_daily TO {{.Writer}};
GRANT SELECT ON gps_distance_daily, rollup_watermarks TO {{.Analyst}};
{{if not .Timescale}}
GRANT SELECT, INSERT, UPDATE, DELETE ON sensor_readings_hourly, sensor_readings_daily TO {{.Writer}};
GRANT SELECT ON sensor_readings_hourly, sensor_readings_daily TO {{.Analyst}};
{{end}}
