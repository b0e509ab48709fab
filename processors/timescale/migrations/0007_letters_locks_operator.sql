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
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{.Operator}}') THEN
        BEGIN
            CREATE ROLE {{.Operator}} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    BEGIN
        GRANT {{.Analyst}} TO {{.Operator}};
    EXCEPTION WHEN unique_violation THEN NULL;
    END;
END
$roles$;
REVOKE SELECT ON dead_letters FROM {{.Analyst}};
GRANT SELECT (id, stage, reason, message, source, tenant, device_id, payload_size, truncated, content_type,
    received_at, ts, ingested_at, kafka_topic, kafka_partition, kafka_offset, written_at) ON dead_letters TO {{.Analyst}};
GRANT SELECT ON dead_letters TO {{.Operator}};
GRANT USAGE ON SCHEMA {{.Schema}} TO {{.Operator}};
