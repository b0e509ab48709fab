package dlq

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// HeaderRedriven is set on records Redrive produces: the id of the dead
// letter they came from.
const HeaderRedriven = "drover.redriven_from"

// Letter is one dead letter read from the topic.
type Letter struct {
	schemas.DeadLetter
	Partition int32
	Offset    int64
	Time      time.Time // Kafka record timestamp
}

// Read calls fn for every dead letter of topic with a record timestamp in
// [since, until) (zero until = up to the end offsets at the call).
// Undecodable records are reported through fn's error-free path as a
// Letter with Stage "undecodable".
func Read(ctx context.Context, kc *kgo.Client, serde *schemas.Serde, topic string, since, until time.Time, fn func(Letter) error) error {
	adm := kadm.NewClient(kc)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return fmt.Errorf("topic %s: %w", topic, err)
	}
	starts, err := cli.OffsetsAfter(ctx, adm, since, topic)
	if err != nil {
		return fmt.Errorf("listing offsets of %s after %s: %w", topic, since.Format(time.RFC3339), err)
	}
	offs := map[string]map[int32]kgo.Offset{topic: {}}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, o.Partition)
		start := int64(0)
		if ok && s.Err == nil {
			start = s.Offset
		}
		if start < 0 { // no record at or after since
			return
		}
		if start < o.Offset {
			offs[topic][o.Partition] = kgo.NewOffset().At(start)
			remaining[o.Partition] = o.Offset
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	// A client of its own, with kc's connection options, reads the range.
	// Control records (transaction markers) are kept: when one is the last
	// offset of the range, it is what tells the loop the range is read.
	cl, err := kgo.NewClient(append(kc.Opts(), kgo.ConsumePartitions(offs), kgo.KeepControlRecords())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("reading %s: %w", topic, ferr)
		}
		var stop error
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if stop != nil || !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			// Offsets by time are a lower bound: timestamps need not grow.
			if r.Timestamp.Before(since) || !until.IsZero() && !r.Timestamp.Before(until) {
				return
			}
			l := Letter{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp}
			if _, err := serde.Decode(ctx, r.Value, &l.DeadLetter); err != nil {
				l.DeadLetter = schemas.DeadLetter{Stage: "undecodable", Reason: "undecodable", Message: err.Error(), Source: topic}
			}
			stop = fn(l)
		})
		if stop != nil {
			return stop
		}
	}
	return nil
}

// Count is one row of Stats.
type Count struct {
	Key      string   `json:"key"`
	Count    int      `json:"count"`
	Examples []string `json:"examples,omitempty"`
}

// Summary is what Stats found.
type Summary struct {
	Total    int     `json:"total"`
	ByStage  []Count `json:"by_stage"`
	ByReason []Count `json:"by_reason"`
	BySource []Count `json:"by_source"`
}

// Stats counts the dead letters from since on by stage, stage/reason and
// source (s3://bucket, or the MQTT topic's family in the default routes
// table: devices/+/+/sensor), keeping up to examples messages per reason.
func Stats(ctx context.Context, kc *kgo.Client, serde *schemas.Serde, topic string, since time.Time, examples int) (Summary, error) {
	stage, reason, source := map[string]*Count{}, map[string]*Count{}, map[string]*Count{}
	families := routes.Default()
	var s Summary
	bump := func(m map[string]*Count, k, example string) {
		c := m[k]
		if c == nil {
			c = &Count{Key: k}
			m[k] = c
		}
		c.Count++
		if example != "" && len(c.Examples) < examples {
			c.Examples = append(c.Examples, example)
		}
	}
	err := Read(ctx, kc, serde, topic, since, time.Time{}, func(l Letter) error {
		s.Total++
		bump(stage, l.Stage, "")
		bump(reason, l.Stage+"/"+l.Reason, fmt.Sprintf("%s: %s", l.Source, clip(l.Message, 200)))
		src := l.Source
		if len(src) > 5 && src[:5] == "s3://" {
			src = "s3://" + firstSeg(src[5:])
		} else {
			src = families.Family(src)
		}
		bump(source, src, "")
		return nil
	})
	s.ByStage, s.ByReason, s.BySource = sorted(stage), sorted(reason), sorted(source)
	return s, err
}

func firstSeg(s string) string {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i]
		}
	}
	return s
}

func sorted(m map[string]*Count) []Count {
	out := make([]Count, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RedriveOptions select and control a re-drive.
type RedriveOptions struct {
	Since, Until time.Time // record time window; zero Until = now
	Reason       string    // only this reason ("" = all)
	DryRun       bool
	// Routes are the current routes (default routes.Default()).
	Routes *routes.Table
	// Limits are the current validation limits (default
	// decode.DefaultLimits()); ts is checked against the original receive
	// time.
	Limits        *decode.Limits
	DefaultTenant string // default routes.DefaultTenant
	// Admission is the bridge's device registry check (nil = none): a
	// letter whose device it refuses still fails (unknown_device,
	// device_revoked).
	Admission *ingest.Admission
	DLQTopic  string // default dlq.events
	// StateFile remembers re-driven dead letter ids ("" = none).
	StateFile string
	Log       *slog.Logger
	// Select, if set, picks dead letters on top of Reason (the console
	// selects by partition and offset).
	Select func(Letter) bool
	// OnLetter, if set, is called with the outcome of every selected dead
	// letter, so a dry run can show what would go where.
	OnLetter func(Letter, Outcome)
}

// Outcome is what Redrive did, or would do in a dry run, with one dead
// letter.
type Outcome struct {
	// Status is redriven, still_failing, not_redrivable or
	// already_redriven.
	Status string `json:"status"`
	// Topic and Key are where the records go (redriven), Records how many.
	Topic   string `json:"topic,omitempty"`
	Key     string `json:"key,omitempty"`
	Records int    `json:"records,omitempty"`
	// Reason and Message say why a letter still fails.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// RedriveResult counts a re-drive.
type RedriveResult struct {
	Scanned       int            `json:"scanned"`
	Selected      int            `json:"selected"`
	Redriven      int            `json:"redriven"`
	Records       int            `json:"records"`
	StillFailing  int            `json:"still_failing"`
	AlreadyDone   int            `json:"already_redriven"`
	NotRedrivable int            `json:"not_redrivable"`
	Reasons       map[string]int `json:"still_failing_reasons,omitempty"`
	DryRun        bool           `json:"dry_run"`
}

// RedrivableReasons are the reasons of the bridge's dead letters (stages
// decode, validate, route and produce), the ones --reason may select: every
// decode.Reason (decode.Reasons, which a test there keeps complete).
var RedrivableReasons = decode.Reasons()

// CheckReason returns an error naming the known reasons when reason (""
// = all) is none of RedrivableReasons, so a typo does not select nothing.
func CheckReason(reason string) error {
	if reason == "" || slices.Contains(RedrivableReasons, decode.Reason(reason)) {
		return nil
	}
	known := make([]string, len(RedrivableReasons))
	for i, r := range RedrivableReasons {
		known[i] = string(r)
	}
	slices.Sort(known)
	return fmt.Errorf("unknown reason %q (re-drivable reasons: %s)", reason, strings.Join(known, ", "))
}

// redrivable are the stages whose input was an MQTT payload the bridge
// can decode again.
var redrivable = map[string]bool{string(decode.StageDecode): true, string(decode.StageValidate): true,
	string(decode.StageRoute): true, string(decode.StageProduce): true}

// Redrive re-runs routing, decoding and validation on the selected dead
// letters and produces what now passes (key = device id, the bridge's
// event ids, header HeaderRedriven). Letters that still fail stay where
// they are: Redrive writes nothing to the DLQ. Letters of other stages
// (backfill, media) and truncated payloads are counted not_redrivable.
func Redrive(ctx context.Context, kc *kgo.Client, serde *schemas.Serde, o RedriveOptions) (RedriveResult, error) {
	if o.Routes == nil {
		o.Routes = routes.Default()
	}
	lim := decode.DefaultLimits()
	if o.Limits != nil {
		lim = *o.Limits
	}
	if o.DefaultTenant == "" {
		o.DefaultTenant = routes.DefaultTenant
	}
	if o.DLQTopic == "" {
		o.DLQTopic = topics.DLQ
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	until := o.Until
	if until.IsZero() {
		until = time.Now()
	}
	res := RedriveResult{DryRun: o.DryRun, Reasons: map[string]int{}}
	done, err := loadState(o.StateFile)
	if err != nil {
		return res, err
	}
	var newlyDone []string
	var prodErr error
	var out decode.Output
	report := func(l Letter, oc Outcome) {
		if o.OnLetter != nil {
			o.OnLetter(l, oc)
		}
	}
	err = Read(ctx, kc, serde, o.DLQTopic, o.Since, until, func(l Letter) error {
		res.Scanned++
		if o.Reason != "" && l.Reason != o.Reason || o.Select != nil && !o.Select(l) {
			return nil
		}
		res.Selected++
		if !redrivable[l.Stage] || l.Truncated {
			res.NotRedrivable++
			report(l, Outcome{Status: "not_redrivable"})
			return nil
		}
		if done[l.ID] {
			res.AlreadyDone++
			report(l, Outcome{Status: "already_redriven"})
			return nil
		}
		m, err := o.Routes.Route(l.Source, o.DefaultTenant)
		if err == nil && m.Route.Ignore {
			res.NotRedrivable++
			report(l, Outcome{Status: "not_redrivable", Message: "route " + m.Route.Name + " ignores " + l.Source})
			return nil
		}
		if err == nil && m.Route.Decoder.Func == nil {
			// Sparkplug B: its birth certificates live in the bridge's
			// session, not in the dead letter.
			res.NotRedrivable++
			report(l, Outcome{Status: "not_redrivable", Message: "route " + m.Route.Name + " needs the MQTT bridge's " + m.Route.Decoder.Name + " session"})
			return nil
		}
		var recs []*kgo.Record
		if err == nil {
			_, _, err = o.Admission.Check(&m)
		}
		if err == nil {
			in := decode.Input{Tenant: m.Tenant, DeviceID: m.Device, Source: m.Source, Kind: m.Kind, Payload: l.Payload,
				ReceivedAt: l.ReceivedAt.UTC().Truncate(time.Millisecond)}
			err = safeDecode(m, &in, lim, &out)
			if err == nil {
				recs, err = encodeAll(ctx, serde, m, &out, l)
			}
		}
		if err != nil {
			res.StillFailing++
			reason := "other"
			var de *decode.Error
			if errors.As(err, &de) {
				reason = string(de.Reason)
			}
			res.Reasons[reason]++
			report(l, Outcome{Status: "still_failing", Reason: reason, Message: err.Error()})
			return nil
		}
		res.Redriven++
		res.Records += len(recs)
		report(l, Outcome{Status: "redriven", Topic: m.Topic, Key: identity.Key(m.Tenant, m.Device), Records: len(recs)})
		if o.DryRun {
			return nil
		}
		if err := kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			prodErr = err
			return err
		}
		newlyDone = append(newlyDone, l.ID)
		return nil
	})
	if serr := appendState(o.StateFile, newlyDone); serr != nil && err == nil {
		err = serr
	}
	if prodErr != nil {
		return res, fmt.Errorf("producing re-driven records: %w", prodErr)
	}
	return res, err
}

func safeDecode(m routes.Match, in *decode.Input, lim decode.Limits, out *decode.Output) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError, Message: fmt.Sprint(r)}
		}
	}()
	return decode.Decode(m.Route.Decoder.Func, in, lim, out)
}

func encodeAll(ctx context.Context, serde *schemas.Serde, m routes.Match, out *decode.Output, l Letter) ([]*kgo.Record, error) {
	hdr := []kgo.RecordHeader{
		{Key: ingest.HeaderMQTTTopic, Value: []byte(l.Source)},
		{Key: ingest.HeaderTenant, Value: []byte(m.Tenant)},
		{Key: HeaderRedriven, Value: []byte(l.ID)},
	}
	var recs []*kgo.Record
	add := func(v any) error {
		b, err := serde.Encode(ctx, m.Topic, v)
		if err != nil {
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonSchemaInvalid, Message: err.Error()}
		}
		recs = append(recs, &kgo.Record{Topic: m.Topic, Key: []byte(identity.Key(m.Tenant, m.Device)), Value: b, Headers: hdr})
		return nil
	}
	for i := range out.Sensor {
		if err := add(&out.Sensor[i]); err != nil {
			return nil, err
		}
	}
	for i := range out.GPS {
		if err := add(&out.GPS[i]); err != nil {
			return nil, err
		}
	}
	for i := range out.Media {
		if err := add(&out.Media[i]); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// The state file is one re-driven dead letter id per line, appended.
func loadState(path string) (map[string]bool, error) {
	done := map[string]bool{}
	if path == "" {
		return done, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return done, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redrive state %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if id := sc.Text(); id != "" {
			done[id] = true
		}
	}
	return done, sc.Err()
}

func appendState(path string, ids []string) error {
	if path == "" || len(ids) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("redrive state: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("redrive state: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, id := range ids {
		w.WriteString(id + "\n")
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("redrive state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
