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

	"github.com/drover-iot/drover/bridge/decode"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Reasons of downlink dead letters (stage decode for command_invalid,
// validate for command_expired).
const (
	ReasonCommandExpired decode.Reason = "command_expired"
	ReasonCommandInvalid decode.Reason = "command_invalid"
)

// CommandTopic returns the MQTT topic a device receives commands on.
func CommandTopic(tenant, device string) string {
	return "devices/" + tenant + "/" + device + "/commands"
}

// CommandMessage is the JSON document published to a device.
type CommandMessage struct {
	CommandID string          `json:"command_id"`
	Name      string          `json:"name"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
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
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("downlink consumer: %w", err)
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
	if err := identity.Validate(cmd.Tenant, cmd.DeviceID); err != nil {
		// The ids would become the MQTT topic: one outside the alphabet
		// could address another device ("a/b", "+") or carry control
		// characters to it.
		b.m.commands.WithLabelValues("invalid").Inc()
		return b.commandDeadLetter(ctx, r, &cmd, decode.ReasonBadIdentity, decode.StageValidate, fmt.Sprintf("command %s: %v", strconv.Quote(cmd.CommandID), err))
	}
	now := b.cfg.Now()
	if cmd.ExpiresAt != nil && !now.Before(*cmd.ExpiresAt) {
		b.m.commands.WithLabelValues("expired").Inc()
		return b.commandDeadLetter(ctx, r, &cmd, ReasonCommandExpired, decode.StageValidate,
			fmt.Sprintf("command %s (%s) expired at %s, before delivery", cmd.CommandID, cmd.Name, cmd.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	payload := json.RawMessage(cmd.Payload)
	if !json.Valid(payload) {
		payload, _ = json.Marshal(cmd.Payload) // not JSON: send it as a JSON string
	}
	body, _ := json.Marshal(CommandMessage{CommandID: cmd.CommandID, Name: cmd.Name, Payload: payload, CreatedAt: cmd.CreatedAt.UTC(), ExpiresAt: cmd.ExpiresAt})
	props := &paho.PublishProperties{
		ContentType: "application/json",
		User:        paho.UserProperties{{Key: "command_id", Value: cmd.CommandID}, {Key: "name", Value: cmd.Name}},
	}
	if cmd.ExpiresAt != nil {
		secs := uint32(max(1, cmd.ExpiresAt.Sub(now)/time.Second))
		props.MessageExpiry = &secs
	}
	pub := &paho.Publish{Topic: CommandTopic(cmd.Tenant, cmd.DeviceID), QoS: 1, Payload: body, Properties: props}
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cm.Publish(pctx, pub)
		cancel()
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			b.stats.Commands.Add(1)
			b.m.commands.WithLabelValues("published").Inc()
			return nil
		}
		if err == nil {
			err = fmt.Errorf("broker answered reason code 0x%02x", resp.ReasonCode)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt%10 == 0 {
			b.log.Warn("downlink publish failed; retrying", "topic", pub.Topic, "command_id", cmd.CommandID, "err", err)
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
	match := Match{Device: string(r.Key)}
	if cmd != nil {
		match.Tenant, match.Device = cmd.Tenant, cmd.DeviceID
	}
	match.dropInvalidIDs() // as for MQTT messages (validateIdentity)
	de := &decode.Error{Stage: stage, Reason: reason, Message: msg}
	b.m.deadLetters.WithLabelValues(string(stage), string(reason)).Inc()
	for attempt := 0; ; attempt++ {
		rec, err := b.deadLetterRecord(m, match, de)
		if err == nil {
			err = b.kafka.ProduceSync(ctx, rec).FirstErr()
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
