-- Downlink commands (issue 20): one row per command, folded from its
-- lifecycle records on commands.status (queued, sent, delivered, then
-- succeeded, failed or expired; late_reply keeps the time of a reply that
-- came after the deadline). The first terminal status wins; an earlier
-- state arriving late only fills in its time; a replay writes nothing new.
-- round_trip_ms is sent → reply, for commands that ended by a reply.
CREATE TABLE commands (
    tenant        text        NOT NULL,
    command_id    text        NOT NULL,
    device_id     text        NOT NULL,
    name          text        NOT NULL,
    status        text        NOT NULL,
    params        jsonb,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    queued_at     timestamptz,
    sent_at       timestamptz,
    delivered_at  timestamptz,
    ended_at      timestamptz,
    result        jsonb,
    message       text,
    late_reply_at timestamptz,
    round_trip_ms double precision GENERATED ALWAYS AS (
        CASE WHEN status IN ('succeeded', 'failed') THEN extract(epoch FROM (ended_at - sent_at)) * 1000 END) STORED,
    updated_at    timestamptz NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, command_id)
);
CREATE INDEX commands_device ON commands (tenant, device_id, created_at);
CREATE INDEX commands_open ON commands (status, expires_at) WHERE status IN ('queued', 'sent', 'delivered');

GRANT SELECT, INSERT, UPDATE ON commands TO {{.Writer}};
GRANT SELECT ON commands TO {{.Analyst}}, {{.Operator}};
