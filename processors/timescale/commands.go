package timescale

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/schemas"
)

// commandMerge folds one commands.status record into its commands row
// (migration 0010) the way control.Fold does: the first terminal status
// wins, a state reached earlier than the stored one only fills in its time
// (LEAST ignores NULLs), a late reply only sets late_reply_at. A replayed
// record changes nothing, so the row is not even rewritten.
const commandMerge = `INSERT INTO commands AS t (tenant, command_id, device_id, name, status, params, created_at, expires_at,
	queued_at, sent_at, delivered_at, ended_at, result, message, late_reply_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (tenant, command_id) DO UPDATE SET
	status = CASE
		WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.status
		WHEN excluded.status IN ('succeeded', 'failed', 'expired') THEN excluded.status
		WHEN coalesce(array_position(ARRAY['queued', 'sent', 'delivered'], excluded.status), 0)
		   > coalesce(array_position(ARRAY['queued', 'sent', 'delivered'], t.status), 0) THEN excluded.status
		ELSE t.status END,
	params = coalesce(t.params, excluded.params),
	expires_at = coalesce(t.expires_at, excluded.expires_at),
	queued_at = least(t.queued_at, excluded.queued_at),
	sent_at = least(t.sent_at, excluded.sent_at),
	delivered_at = least(t.delivered_at, excluded.delivered_at),
	ended_at = CASE WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.ended_at ELSE coalesce(excluded.ended_at, t.ended_at) END,
	result = CASE WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.result ELSE coalesce(excluded.result, t.result) END,
	message = CASE WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.message ELSE coalesce(excluded.message, t.message) END,
	late_reply_at = greatest(t.late_reply_at, excluded.late_reply_at),
	updated_at = greatest(t.updated_at, excluded.updated_at),
	written_at = now()
WHERE (t.status, t.params, t.expires_at, t.queued_at, t.sent_at, t.delivered_at, t.ended_at, t.late_reply_at)
	IS DISTINCT FROM (
		CASE WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.status
			WHEN excluded.status IN ('succeeded', 'failed', 'expired') THEN excluded.status
			WHEN coalesce(array_position(ARRAY['queued', 'sent', 'delivered'], excluded.status), 0)
			   > coalesce(array_position(ARRAY['queued', 'sent', 'delivered'], t.status), 0) THEN excluded.status
			ELSE t.status END,
		coalesce(t.params, excluded.params), coalesce(t.expires_at, excluded.expires_at),
		least(t.queued_at, excluded.queued_at), least(t.sent_at, excluded.sent_at),
		least(t.delivered_at, excluded.delivered_at),
		CASE WHEN t.status IN ('succeeded', 'failed', 'expired') THEN t.ended_at ELSE coalesce(excluded.ended_at, t.ended_at) END,
		greatest(t.late_reply_at, excluded.late_reply_at))`

// commandRow returns the commandMerge arguments of one record: its status
// goes into the column its status names.
func commandRow(r *schemas.CommandStatus) []any {
	at := r.TS.UTC()
	var queued, sent, delivered, ended, late *time.Time
	var result *string
	var message *string
	switch s := control.Status(r.Status); {
	case s == control.Queued:
		queued = &at
	case s == control.Sent:
		sent = &at
	case s == control.Delivered:
		delivered = &at
	case s == control.LateReply:
		late = &at
	case s.Terminal():
		ended, result, message = &at, jsonText(r.Result), r.Message
	}
	status := r.Status
	if status == string(control.LateReply) {
		status = string(control.Expired) // only when the row is new: a reply after the deadline
	}
	return []any{r.Tenant, r.CommandID, r.DeviceID, r.Name, status, jsonText(r.Payload), r.CreatedAt.UTC(), r.ExpiresAt,
		queued, sent, delivered, ended, result, message, late, at}
}

// jsonText returns s when it is JSON, else s as a JSON string (jsonb
// columns refuse anything else, and one bad value must not stop the batch).
func jsonText(s *string) *string {
	if s == nil || json.Valid([]byte(*s)) {
		return s
	}
	b, _ := json.Marshal(*s)
	q := string(b)
	return &q
}

// writeCommands folds recs into the commands table, in order, in tx.
func writeCommands(ctx context.Context, tx pgx.Tx, recs []schemas.CommandStatus, res *Result) error {
	if len(recs) == 0 {
		return nil
	}
	var batch pgx.Batch
	for i := range recs {
		batch.Queue(commandMerge, commandRow(&recs[i])...)
	}
	br := tx.SendBatch(ctx, &batch)
	for i := range recs {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("folding command %s (%s) into commands: %w", recs[i].CommandID, recs[i].Status, err)
		}
		if tag.RowsAffected() > 0 {
			res.Written["commands"]++
		} else {
			res.Skipped["commands"]++
		}
	}
	return br.Close()
}
