package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Reasons of command-reply dead letters (stage validate).
const (
	// ReasonReplyInvalid: the reply is not {"status": "succeeded"|"failed",
	// ...}, or its MQTT v5 correlation data names another command.
	ReasonReplyInvalid decode.Reason = "reply_invalid"
	// ReasonReplyUnknown: no command with the reply's id is known (never
	// sent, forgotten, or the bridge runs with --downlink=false).
	ReasonReplyUnknown decode.Reason = "reply_unknown_command"
	// ReasonReplyWrongDevice: the command is for another device: a device
	// may reply only to its own commands.
	ReasonReplyWrongDevice decode.Reason = "reply_wrong_device"
)

// Reply is the JSON document a device publishes on its reply topic.
type Reply struct {
	// Status is "succeeded" or "failed".
	Status string `json:"status"`
	// Result is any JSON value the command produced (optional).
	Result json.RawMessage `json:"result,omitempty"`
	// Message is a human-readable detail, e.g. why it failed (optional).
	Message string `json:"message,omitempty"`
}

// statusTopic is where lifecycle records go.
const statusTopic = topics.CommandStatus

// produceStatus writes status records synchronously (retrying until Kafka
// takes them or ctx ends) and folds them into the tracker.
func (b *Bridge) produceStatus(ctx context.Context, recs ...*schemas.CommandStatus) error {
	krs := make([]*kgo.Record, 0, len(recs))
	for _, r := range recs {
		v, err := b.cfg.Serde.Encode(ctx, statusTopic, r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("encoding %s record: %w", statusTopic, err)
		}
		krs = append(krs, &kgo.Record{Topic: statusTopic, Key: []byte(identity.Key(r.Tenant, r.DeviceID)), Value: v})
	}
	for attempt := 0; ; attempt++ {
		err := b.status.ProduceSync(ctx, krs...).FirstErr()
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
			return err
		}
		if attempt%10 == 0 {
			b.log.Warn("command status refused; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
	for _, r := range recs {
		b.tracker.Apply(r)
		b.m.statuses.WithLabelValues(r.Status).Inc()
		b.m.produced.WithLabelValues(statusTopic).Inc()
	}
	return nil
}

// replyWrites are the commands whose reply record (succeeded or failed) is
// being written and not yet acknowledged by Kafka, each with the duplicate
// replies that came in meanwhile: those are acknowledged on MQTT only
// together with the first one, once its record is durable, and left to the
// broker with it when the write fails (shutdown). An entry is dropped when
// the write ends either way, after the tracker folded a written record, so
// a later reply finds the command ended (a duplicate) and a reply
// redelivered after a failed write is handled anew. Safe for concurrent
// use.
type replyWrites struct {
	mu sync.Mutex
	m  map[string][]*message
}

func newReplyWrites() *replyWrites { return &replyWrites{m: map[string][]*message{}} }

// busy reports whether a reply record of command id is being written.
func (w *replyWrites) busy(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.m[id]
	return ok
}

// reply handles a device's reply to a command (a message on a reply
// route): it records succeeded, failed or late_reply, ignores a duplicate,
// or dead-letters what is not a reply to one of the device's commands.
// The record is written without waiting (the worker goes on with the next
// message); the MQTT message is acknowledged once Kafka has the record.
func (w *worker) reply(m *message, match routes.Match) {
	b := w.b
	bad := func(reason decode.Reason, format string, args ...any) {
		b.m.replies.WithLabelValues("rejected").Inc()
		w.deadLetter(m, match, &decode.Error{Stage: decode.StageValidate, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	id := match.ID
	if b.tracker == nil {
		bad(ReasonReplyUnknown, "reply to command %s: this bridge does not track commands (--downlink=false)", strconv.Quote(id))
		return
	}
	if p := m.pub.Properties; p != nil && len(p.CorrelationData) > 0 && string(p.CorrelationData) != id {
		bad(ReasonReplyInvalid, "reply on %s carries correlation data %q, which is not the command id %q", m.pub.Topic, p.CorrelationData, id)
		return
	}
	var rep Reply
	if err := json.Unmarshal(m.pub.Payload, &rep); err != nil {
		bad(ReasonReplyInvalid, "reply to command %s is not a JSON object: %v", strconv.Quote(id), err)
		return
	}
	st := control.Status(rep.Status)
	if st != control.Succeeded && st != control.Failed {
		bad(ReasonReplyInvalid, "reply to command %s: status %q, want \"succeeded\" or \"failed\"", strconv.Quote(id), rep.Status)
		return
	}
	if len(rep.Result) > 0 && !json.Valid(rep.Result) {
		bad(ReasonReplyInvalid, "reply to command %s: result is not JSON", strconv.Quote(id))
		return
	}
	c, ok := b.tracker.Get(id)
	if !ok {
		bad(ReasonReplyUnknown, "reply to command %s: no such command is known", strconv.Quote(id))
		return
	}
	if c.Tenant != match.Tenant || c.Device != match.Device {
		bad(ReasonReplyWrongDevice, "device %s replied to command %s, which is for %s",
			identity.Key(match.Tenant, match.Device), strconv.Quote(id), identity.Key(c.Tenant, c.Device))
		return
	}
	// Decide under the lock, from the tracker read again: the command's
	// status cannot change from a reply of ours in between (the tracker
	// folds a reply record before its entry is dropped).
	rw := b.replyWrites
	rw.mu.Lock()
	if dups, ok := rw.m[id]; ok {
		rw.m[id] = append(dups, m) // a duplicate of a reply being written
		rw.mu.Unlock()
		return
	}
	c, _ = b.tracker.Get(id)
	if c.Status == control.Succeeded || c.Status == control.Failed {
		rw.mu.Unlock()
		b.m.replies.WithLabelValues("duplicate").Inc()
		b.finish(m) // a duplicate changes nothing
		return
	}
	at := m.received
	rec := c.Record(st, at)
	result := "applied"
	if c.Status == control.Expired || (c.ExpiresAt != nil && !at.Before(*c.ExpiresAt)) {
		rec.Status, result = string(control.LateReply), "late"
	} else {
		rw.m[id] = nil
	}
	rw.mu.Unlock()
	if len(rep.Result) > 0 {
		s := string(rep.Result)
		rec.Result = &s
	}
	if rep.Message != "" {
		rec.Message = &rep.Message
	}
	b.produceStatusAsync(b.prodCtx, rec, func(err error) {
		var dups []*message
		if result == "applied" {
			rw.mu.Lock()
			dups = rw.m[id]
			delete(rw.m, id)
			rw.mu.Unlock()
		}
		if err != nil {
			// Shutting down: the broker redelivers the reply (and its
			// duplicates) to the next session.
			b.abandon(m)
			for _, d := range dups {
				b.abandon(d)
			}
			return
		}
		b.m.replies.WithLabelValues(result).Inc()
		b.finish(m)
		for _, d := range dups {
			b.m.replies.WithLabelValues("duplicate").Inc()
			b.finish(d)
		}
	})
}

// produceStatusAsync writes one status record without waiting and calls
// done once Kafka acknowledged it (nil) or ctx ended (the error); a record
// Kafka refuses is retried as produceStatus does. The tracker folds it once
// acknowledged.
func (b *Bridge) produceStatusAsync(ctx context.Context, r *schemas.CommandStatus, done func(error)) {
	v, err := b.cfg.Serde.Encode(ctx, statusTopic, r)
	if err != nil {
		go func() { done(b.produceStatus(ctx, r)) }()
		return
	}
	kr := &kgo.Record{Topic: statusTopic, Key: []byte(identity.Key(r.Tenant, r.DeviceID)), Value: v}
	b.status.Produce(ctx, kr, func(_ *kgo.Record, err error) {
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
				done(err)
				return
			}
			go func() { done(b.produceStatus(ctx, r)) }()
			return
		}
		if b.testStatusAcked != nil {
			b.testStatusAcked(r)
		}
		b.tracker.Apply(r)
		b.m.statuses.WithLabelValues(r.Status).Inc()
		b.m.produced.WithLabelValues(statusTopic).Inc()
		done(nil)
	})
}

// followStatus keeps the tracker up to date with commands.status (records
// written by other bridge replicas too) until ctx ends; caughtUp is called
// once the topic was read to its end at the start.
func (b *Bridge) followStatus(ctx context.Context, caughtUp func()) error {
	return control.Follow(ctx, b.cfg.KafkaOpts, b.cfg.Serde, func(r *schemas.CommandStatus) { b.tracker.Apply(r) },
		caughtUp, func(err error) { b.log.Warn("commands.status: record skipped", "err", err) })
}

// expireLoop records expired for every open command whose deadline passed
// and whose device this replica sends to (every replica follows every
// command on commands.status: without the ownership check each would
// write its own expired record), every tick, until ctx ends; it also
// forgets commands that ended more than a day ago.
func (b *Bridge) expireLoop(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := b.cfg.Now()
		for _, c := range b.tracker.Overdue(now) {
			if !b.owns(identity.Key(c.Tenant, c.Device)) {
				continue // another replica's device: it expires the command
			}
			if b.replyWrites.busy(c.ID) {
				continue // a reply in time is being recorded: it ends the command
			}
			rec := c.Record(control.Expired, now)
			msg := "the deadline passed before the device replied"
			if c.Status == control.Queued {
				msg = "the deadline passed before the command could be sent"
			}
			rec.Message = &msg
			if err := b.produceStatus(ctx, rec); err != nil {
				return
			}
			b.m.commands.WithLabelValues("expired").Inc()
		}
		b.tracker.Prune(now.Add(-24 * time.Hour))
	}
}
