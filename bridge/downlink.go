package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
		done, stopped := b.deliverBatch(ctx, cm, fetches)
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

// downlinkWindow bounds how many devices' commands the downlink handles at
// once: one batch's devices go in parallel (each device's commands in
// order, one at a time on MQTT), and the next poll waits for the batch.
const downlinkWindow = 64

// deliverBatch delivers one poll's records and returns those that may be
// committed: per partition, the records before the first one not handled
// (all of them unless ctx ended). Records are grouped by key (TENANT/DEVICE):
// a device's commands go in offset order, one at a time; devices go in
// parallel, at most downlinkWindow at once.
func (b *Bridge) deliverBatch(ctx context.Context, cm *autopaho.ConnectionManager, fetches kgo.Fetches) ([]*kgo.Record, bool) {
	var all []*kgo.Record
	groups := map[string][]int{}
	var order []string
	fetches.EachRecord(func(r *kgo.Record) {
		k := strconv.Itoa(int(r.Partition)) + "\x00" + string(r.Key)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], len(all))
		all = append(all, r)
	})
	ok := make([]bool, len(all))
	sem := make(chan struct{}, downlinkWindow)
	var wg sync.WaitGroup
	for _, k := range order {
		idx := groups[k]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			recs := make([]*kgo.Record, len(idx))
			for i, j := range idx {
				recs[i] = all[j]
			}
			n := b.deliverDevice(ctx, cm, recs)
			for _, j := range idx[:n] {
				ok[j] = true
			}
		}()
	}
	wg.Wait()
	var done []*kgo.Record
	broken := map[int32]bool{}
	stopped := false
	for i, r := range all { // fetch order: each partition's records by offset
		if !ok[i] {
			broken[r.Partition], stopped = true, true
		}
		if !broken[r.Partition] {
			done = append(done, r)
		}
	}
	return done, stopped
}

// deliverDevice handles one device's records of a batch, in order, and
// returns how many of them (a prefix) are done: fewer than all only when
// ctx ended. The lifecycle records are batched: every queued and sent
// record of the batch is written (and acknowledged by Kafka) before the
// first publish, then the commands are published one by one, each awaited
// until the broker's PUBACK, and the delivered records are written
// together after the last PUBACK. A record is done once everything it
// caused is durable.
func (b *Bridge) deliverDevice(ctx context.Context, cm *autopaho.ConnectionManager, recs []*kgo.Record) int {
	type pending struct {
		c          control.Command
		replyTopic string
		at         int // index in recs
	}
	var (
		statuses []*schemas.CommandStatus
		sends    []pending
		seen     = map[string]bool{}
	)
	// n is the prefix of recs that is done as soon as statuses are durable.
	n := 0
	for i, r := range recs {
		p, st, err := b.prepareCommand(ctx, r, seen)
		if err != nil {
			break // ctx ended
		}
		statuses = append(statuses, st...)
		if p != nil {
			sends = append(sends, pending{c: p.c, replyTopic: p.replyTopic, at: i})
		}
		n = i + 1
	}
	if len(statuses) > 0 {
		if err := b.produceStatus(ctx, statuses...); err != nil {
			return 0
		}
	}
	// Publish in order, each awaited until its PUBACK; the delivered
	// records are written asynchronously and awaited at the end. Stop at
	// the first command that cannot be published (ctx ended).
	limit := n // records before this index are done once delivered is durable
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel() // written even when ctx ended (bounded): what the broker took is recorded
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for _, s := range sends {
		if s.at >= n {
			break
		}
		rec, err := b.publishCommand(ctx, cm, s.c, s.replyTopic)
		if err != nil {
			limit = s.at
			break
		}
		if rec != nil {
			wg.Add(1)
			b.produceStatusAsync(dctx, rec, func(err error) {
				if err != nil {
					failed.Store(true)
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
	if failed.Load() {
		return min(limit, sends[0].at)
	}
	return limit
}

// preparedSend is a command to publish: its sent record is among the
// statuses prepareCommand returned.
type preparedSend struct {
	c          control.Command
	replyTopic string
}

// prepareCommand decodes and checks one command record: it returns the
// status records to write (queued, sent or expired) and, when the command
// is to be published now, the command. Invalid and expired commands are
// dead-lettered here (synchronously). seen holds the command ids of the
// batch already handled (a redelivered duplicate within one batch is sent
// once). It fails only when ctx ends.
func (b *Bridge) prepareCommand(ctx context.Context, r *kgo.Record, seen map[string]bool) (*preparedSend, []*schemas.CommandStatus, error) {
	var cmd schemas.DeviceCommand
	if _, err := b.cfg.Serde.Decode(ctx, r.Value, &cmd); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		b.m.commands.WithLabelValues("invalid").Inc()
		return nil, nil, b.commandDeadLetter(ctx, r, nil, ReasonCommandInvalid, decode.StageDecode, fmt.Sprintf("command record at %s/%d@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err))
	}
	if cmd.Name == control.DesiredCommand {
		// Desired state: the state processor merges it into the shadow and
		// the device gets the delta (shadow/delta), not a command.
		b.m.commands.WithLabelValues("desired_state").Inc()
		return nil, nil, nil
	}
	if err := identity.Validate(cmd.Tenant, cmd.DeviceID); err != nil {
		// The ids would become the MQTT topic: one outside the alphabet
		// could address another device ("a/b", "+") or carry control
		// characters to it.
		b.m.commands.WithLabelValues("invalid").Inc()
		return nil, nil, b.commandDeadLetter(ctx, r, &cmd, decode.ReasonBadIdentity, decode.StageValidate, fmt.Sprintf("command %s: %v", strconv.Quote(cmd.CommandID), err))
	}
	if err := control.ValidID(cmd.CommandID); err != nil {
		b.m.commands.WithLabelValues("invalid").Inc()
		return nil, nil, b.commandDeadLetter(ctx, r, &cmd, ReasonCommandInvalid, decode.StageValidate, err.Error())
	}
	now := b.cfg.Now()
	c, known := b.tracker.Get(cmd.CommandID)
	if seen[cmd.CommandID] || (known && (c.Status.Terminal() || c.Status == control.Delivered)) {
		// Delivered before a restart, whose offset was not committed yet
		// (or earlier in this batch).
		b.m.commands.WithLabelValues("duplicate").Inc()
		return nil, nil, nil
	}
	seen[cmd.CommandID] = true
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
				return nil, nil, ctx.Err()
			}
		}
		return nil, nil, b.commandDeadLetter(ctx, r, &cmd, ReasonCommandExpired, decode.StageValidate,
			fmt.Sprintf("command %s (%s) expired at %s, before delivery", cmd.CommandID, cmd.Name, cmd.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if b.presence != nil && !b.presence.online(identity.Key(cmd.Tenant, cmd.DeviceID)) {
		// The device is not connected: the command waits in Kafka
		// (queued on commands.status) and is sent when it connects.
		b.m.commands.WithLabelValues("waiting").Inc()
		return nil, recs, nil
	}
	replyTopic := ""
	if cmd.ReplyTopic != nil && control.ValidReplyTopic(cmd.Tenant, cmd.DeviceID, *cmd.ReplyTopic) {
		replyTopic = *cmd.ReplyTopic
	}
	return &preparedSend{c: c, replyTopic: replyTopic}, append(recs, c.Record(control.Sent, now)), nil
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
	if err := b.produceStatus(ctx, c.Record(control.Sent, b.cfg.Now())); err != nil {
		return ctx.Err()
	}
	rec, err := b.publishCommand(ctx, cm, c, replyTopic)
	if err != nil || rec == nil {
		return err
	}
	if err := b.produceStatus(ctx, rec); err != nil {
		return ctx.Err()
	}
	return nil
}

// publishCommand publishes command c (whose sent record is durable) with
// QoS 1, retrying until the broker acknowledges it, and returns its
// delivered record to write (nil when nobody subscribed). It fails only
// when ctx ends.
func (b *Bridge) publishCommand(ctx context.Context, cm *autopaho.ConnectionManager, c control.Command, replyTopic string) (*schemas.CommandStatus, error) {
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
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cm.Publish(pctx, pub)
		cancel()
		if err == nil && resp != nil && resp.ReasonCode == 0x10 {
			// No matching subscribers: the device is not listening.
			b.m.commands.WithLabelValues("no_subscriber").Inc()
			b.log.Debug("downlink: nobody subscribed", "command_id", c.ID)
			return nil, nil
		}
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			if b.testPuback != nil {
				b.testPuback(c.ID)
			}
			b.stats.Commands.Add(1)
			b.m.commands.WithLabelValues("published").Inc()
			return c.Record(control.Delivered, b.cfg.Now()), nil
		}
		if err == nil {
			err = fmt.Errorf("broker answered reason code 0x%02x", resp.ReasonCode)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt%10 == 0 {
			b.log.Warn("downlink publish failed; retrying", "topic", pub.Topic, "command_id", c.ID, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
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
