package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
)

// Reasons of downlink dead letters (stage decode for command_invalid,
// validate for command_expired).
const (
	ReasonCommandExpired decode.Reason = "command_expired"
	ReasonCommandInvalid decode.Reason = "command_invalid"
)

// CommandTopic returns the filter a device subscribes to for its
// commands: devices/{tenant}/{device}/commands/+ (each command is
// published on .../commands/{command_id}).
func CommandTopic(tenant, device string) string {
	return "devices/" + tenant + "/" + device + "/commands/+"
}

// CommandMessage is the JSON document published to a device.
type CommandMessage struct {
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	// ReplyTopic is where the device replies (MQTT v3.1.1 clients, which
	// have no Response Topic property).
	ReplyTopic string `json:"reply_topic"`
}

// runDownlink consumes the commands topic and publishes each command to its
// device with QoS 1, committing offsets only after the broker's PUBACK
// (or after the command's dead letter was acknowledged).
func (b *Bridge) runDownlink(ctx context.Context, cm *autopaho.ConnectionManager) error {
	opts := append([]kgo.Opt{}, b.cfg.KafkaOpts...)
	opts = append(opts,
		kgo.ConsumerGroup(b.cfg.CommandsGroup),
		kgo.ConsumeTopics(b.cfg.CommandsTopic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	opts = append(opts, b.ownerOpts()...)
	opts = append(opts, b.cfg.DownlinkOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("downlink consumer: %w", err)
	}
	if err := b.owner.learnParts(ctx, cl, b.cfg.CommandsTopic); err != nil {
		cl.Close()
		return nil // ctx ended
	}
	defer func() {
		// Leave the group within a bound: Close alone waits for the leave,
		// which hangs while the coordinator is unreachable (seen in the
		// chaos run: a bridge ignored SIGTERM for over a minute).
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := cl.LeaveGroupContext(lctx); err != nil {
			b.log.Warn("downlink: leaving the consumer group", "err", err)
		}
		cancel()
		cl.Close()
	}()
	b.log.Info("downlink consuming", "topic", b.cfg.CommandsTopic, "group", b.cfg.CommandsGroup)
	for {
		fetches := cl.PollRecords(ctx, 256)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			b.log.Warn("downlink fetch error", "topic", t, "partition", p, "err", err)
		})
		var done []*kgo.Record
		stopped := false
		fetches.EachRecord(func(r *kgo.Record) {
			if stopped {
				return
			}
			if err := b.deliverCommand(ctx, cm, r); err != nil {
				stopped = true // ctx cancelled: commit what was delivered
				return
			}
			done = append(done, r)
		})
		if len(done) > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := cl.CommitRecords(cctx, done...); err != nil {
				b.log.Warn("downlink commit failed; commands may be delivered again", "err", err)
			}
			cancel()
		}
		cl.AllowRebalance()
		if stopped {
			return nil
		}
	}
}

// deliverCommand publishes one command (retrying until the broker
// acknowledges it) or dead-letters it. It fails only when ctx ends.
func (b *Bridge) deliverCommand(ctx context.Context, cm *autopaho.ConnectionManager, r *kgo.Record) error {
	var cmd schemas.DeviceCommand
	if _, err := b.cfg.Serde.Decode(ctx, r.Value, &cmd); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.m.commands.WithLabelValues("invalid").Inc()
		return b.commandDeadLetter(ctx, r, nil, ReasonCommandInvalid, decode.StageDecode, fmt.Sprintf("command record at %s/%d@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err))
	}
	if cmd.Name == control.DesiredCommand {
		// Desired state: the state processor merges it into the shadow and
		// the device gets the delta (shadow/delta), not a command.
		b.m.commands.WithLabelValues("desired_state").Inc()
		return nil
	}
	if err := identity.Validate(cmd.Tenant, cmd.DeviceID); err != nil {
		// The ids would become the MQTT topic: one outside the alphabet
		// could address another device ("a/b", "+") or carry control
		// characters to it.
		b.m.commands.WithLabelValues("invalid").Inc()
		return b.commandDeadLetter(ctx, r, &cmd, decode.ReasonBadIdentity, decode.StageValidate, fmt.Sprintf("command %s: %v", strconv.Quote(cmd.CommandID), err))
	}
	if err := control.ValidID(cmd.CommandID); err != nil {
		b.m.commands.WithLabelValues("invalid").Inc()
		return b.commandDeadLetter(ctx, r, &cmd, ReasonCommandInvalid, decode.StageValidate, err.Error())
	}
	now := b.cfg.Now()
	c, known := b.tracker.Get(cmd.CommandID)
	if known && (c.Status.Terminal() || c.Status == control.Delivered) {
		// Delivered before a restart, whose offset was not committed yet.
		b.m.commands.WithLabelValues("duplicate").Inc()
		return nil
	}
	var recs []*schemas.CommandStatus
	if !known {
		c = *control.FromCommand(&cmd)
		q := c.Record(control.Queued, now)
		q.Payload = c.Payload
		recs = append(recs, q)
	}
	if cmd.ExpiresAt != nil && !now.Before(*cmd.ExpiresAt) {
		b.m.commands.WithLabelValues("expired").Inc()
		if !c.Status.Terminal() {
			e := c.Record(control.Expired, now)
			msg := "the deadline passed before the command could be sent"
			e.Message = &msg
			if err := b.produceStatus(ctx, append(recs, e)...); err != nil {
				return ctx.Err()
			}
		}
		return b.commandDeadLetter(ctx, r, &cmd, ReasonCommandExpired, decode.StageValidate,
			fmt.Sprintf("command %s (%s) expired at %s, before delivery", cmd.CommandID, cmd.Name, cmd.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if len(recs) > 0 {
		if err := b.produceStatus(ctx, recs...); err != nil {
			return ctx.Err()
		}
	}
	if b.presence != nil && !b.presence.online(identity.Key(cmd.Tenant, cmd.DeviceID)) {
		// The device is not connected: the command waits in Kafka
		// (queued on commands.status) and is sent when it connects.
		b.m.commands.WithLabelValues("waiting").Inc()
		return nil
	}
	replyTopic := ""
	if cmd.ReplyTopic != nil && control.ValidReplyTopic(cmd.Tenant, cmd.DeviceID, *cmd.ReplyTopic) {
		replyTopic = *cmd.ReplyTopic
	}
	return b.send(ctx, cm, c, replyTopic)
}

// send publishes command c to its device: sent is recorded before the
// publish (a crash between the two leaves the command open, and it is sent
// again), delivered after the broker's PUBACK: the broker took it for the
// device's subscription (with --command-presence events, sent only once
// the device is connected and subscribed). A PUBACK saying that nobody
// subscribed (possible only when the bridge's own filters do not cover
// the command topics) leaves the command sent: it goes again when the
// device next connects or subscribes. replyTopic "" means the default. It
// fails only when ctx ends.
func (b *Bridge) send(ctx context.Context, cm *autopaho.ConnectionManager, c control.Command, replyTopic string) error {
	if replyTopic == "" {
		replyTopic = control.ReplyTopic(c.Tenant, c.Device, c.ID)
	}
	raw := ""
	if c.Payload != nil {
		raw = *c.Payload
	}
	payload := json.RawMessage(raw)
	if !json.Valid(payload) {
		payload, _ = json.Marshal(raw) // not JSON: send it as a JSON string
	}
	body, _ := json.Marshal(CommandMessage{CommandID: c.ID, Name: c.Name, Payload: payload,
		CreatedAt: c.CreatedAt.UTC(), ExpiresAt: c.ExpiresAt, ReplyTopic: replyTopic})
	now := b.cfg.Now()
	props := &paho.PublishProperties{
		ContentType:     "application/json",
		ResponseTopic:   replyTopic,
		CorrelationData: []byte(c.ID),
		User:            paho.UserProperties{{Key: "command_id", Value: c.ID}, {Key: "name", Value: c.Name}},
	}
	if c.ExpiresAt != nil {
		secs := uint32(max(1, c.ExpiresAt.Sub(now)/time.Second))
		props.MessageExpiry = &secs
	}
	pub := &paho.Publish{Topic: control.CommandTopic(c.Tenant, c.Device, c.ID), QoS: 1, Payload: body, Properties: props}
	if err := b.produceStatus(ctx, c.Record(control.Sent, now)); err != nil {
		return ctx.Err()
	}
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cm.Publish(pctx, pub)
		cancel()
		if err == nil && resp != nil && resp.ReasonCode == 0x10 {
			// No matching subscribers: the device is not listening.
			b.m.commands.WithLabelValues("no_subscriber").Inc()
			b.log.Debug("downlink: nobody subscribed", "command_id", c.ID)
			return nil
		}
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			b.stats.Commands.Add(1)
			b.m.commands.WithLabelValues("published").Inc()
			if err := b.produceStatus(ctx, c.Record(control.Delivered, b.cfg.Now())); err != nil {
				return ctx.Err()
			}
			return nil
		}
		if err == nil {
			err = fmt.Errorf("broker answered reason code 0x%02x", resp.ReasonCode)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt%10 == 0 {
			b.log.Warn("downlink publish failed; retrying", "topic", pub.Topic, "command_id", c.ID, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
}

func (b *Bridge) commandDeadLetter(ctx context.Context, r *kgo.Record, cmd *schemas.DeviceCommand, reason decode.Reason, stage decode.Stage, msg string) error {
	pub := &paho.Publish{Topic: r.Topic, Payload: r.Value}
	m := &message{pub: pub, received: b.cfg.Now()}
	match := routes.Match{Device: string(r.Key)}
	if cmd != nil {
		match.Tenant, match.Device = cmd.Tenant, cmd.DeviceID
	}
	match.DropInvalidIDs() // as for MQTT messages (validateIdentity)
	de := &decode.Error{Stage: stage, Reason: reason, Message: msg}
	b.m.deadLetters.WithLabelValues(string(stage), string(reason)).Inc()
	for attempt := 0; ; attempt++ {
		rec, err := b.deadLetterRecord(m, match, de)
		if err == nil {
			err = b.status.ProduceSync(ctx, rec).FirstErr()
		}
		if err == nil {
			b.stats.DeadLetters.Add(1)
			b.m.produced.WithLabelValues(rec.Topic).Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, kgo.ErrClientClosed) {
			return err
		}
		b.log.Error("command dead letter refused; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
