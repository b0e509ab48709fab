-- One dead_letters row per Kafka record. Until now the key was the dead
-- letter's own id, which the bridge derives from its content (topic, stage,
-- reason, payload): three identical bad payloads were three records on
-- dlq.events but one row. Every row the sink writes now names the Kafka
-- record it came from (kafka_topic, kafka_partition, kafka_offset: the
-- dlq.events record, or the record the sink itself could not store), and
-- that is the key, so a replay writes nothing twice and count(*) agrees
-- with `drover dlq stats`. id stays the producing stage's id (shared by
-- identical payloads; count(DISTINCT id) counts distinct ones). Rows
-- without Kafka coordinates (written by other tools, or before this
-- migration) keep id as their key.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey;
ALTER TABLE dead_letters ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX dead_letters_record ON dead_letters (kafka_topic, kafka_partition, kafka_offset);
CREATE UNIQUE INDEX dead_letters_unsourced_id ON dead_letters (id) WHERE kafka_topic IS NULL;
CREATE INDEX dead_letters_id ON dead_letters (id);

-- The rollup lock. Writers hold it in ROW SHARE mode for their whole write
-- transaction, a refresh in EXCLUSIVE mode for an instant (see 0006). It
-- replaces an advisory lock, which every role may take: an analyst holding
-- it froze every write. A table lock needs a privilege on the table: the
-- analyst has none here (and SELECT, on any table, only allows ACCESS
-- SHARE, which conflicts with neither mode).
CREATE TABLE rollup_gate ();
REVOKE ALL ON rollup_gate FROM PUBLIC, {{.Analyst}};
GRANT UPDATE ON rollup_gate TO {{.Writer}};
-- The migration lock's table (created by Migrate before any migration; on a
-- database migrated before, after 0004's default privileges gave it to the
-- analyst).
REVOKE ALL ON schema_migrations_lock FROM PUBLIC, {{.Analyst}}, {{.Writer}};

-- Operators read everything analysts read, plus the raw bytes and headers
-- of dead letters, which may carry device secrets (MQTT user properties,
-- tokens in payloads): analysts read every other column of dead_letters.
-- The operator's rights are granted on the tables, as the analyst's are
-- (0004, 0006), not through membership in the analyst role: granting a role
-- takes CREATEROLE, which the sink's login need not have (like 0001, this
-- creates the role only when it is missing).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.Operator}}') THEN
        BEGIN
            CREATE ROLE {{.Operator}} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA {{.Schema}} TO {{.Operator}};
GRANT SELECT ON sensor_readings, gps_fixes, features, media_objects, alerts, device_state, dead_letters,
    sensor_readings_hourly, sensor_readings_daily, gps_distance_daily, rollup_watermarks TO {{.Operator}};
ALTER DEFAULT PRIVILEGES IN SCHEMA {{.Schema}} GRANT SELECT ON TABLES TO {{.Operator}};
REVOKE ALL ON rollup_gate, schema_migrations_lock FROM {{.Operator}};
REVOKE SELECT ON dead_letters FROM {{.Analyst}};
GRANT SELECT (id, stage, reason, message, source, tenant, device_id, payload_size, truncated, content_type,
    received_at, ts, ingested_at, kafka_topic, kafka_partition, kafka_offset, written_at) ON dead_letters TO {{.Analyst}};
