package ingest_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func msg(device, channel, payload string) ingest.Message {
	if device == "" {
		device = ingesttest.Registered
	}
	return ingest.Message{Door: "test", Tenant: ingesttest.Tenant, Device: device, Channel: channel, Payload: []byte(payload), ReceivedAt: time.Now()}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestIntegrationCore(t *testing.T) {
	e := ingesttest.New(t)
	e.Devices(t)

	now := time.Now().UnixMilli()
	if err := e.Core.Ingest(ctx(t), msg("", "sensor", `{"metric":"temperature","value":21.5,"ts":`+itoa(now)+`}`)); err != nil {
		t.Fatalf("valid reading: %v", err)
	}
	recs := e.Consume(t, topics.RawSensor, 1, 10*time.Second)
	if len(recs) != 1 {
		t.Fatalf("raw.sensor has %d records", len(recs))
	}
	var r schemas.SensorReading
	if _, err := e.Serde.Decode(context.Background(), recs[0].Value, &r); err != nil {
		t.Fatal(err)
	}
	if r.Tenant != "farm" || r.DeviceID != "collar-1" || r.Metric != "temperature" || r.Value != 21.5 || r.TS.UnixMilli() != now ||
		string(recs[0].Key) != "farm/collar-1" || header(recs[0], ingest.HeaderDoor) != "test" || header(recs[0], ingest.HeaderTenant) != "farm" {
		t.Fatalf("record %+v key %q headers %v", r, recs[0].Key, recs[0].Headers)
	}

	cases := ingesttest.BadInputs()
	for _, tc := range cases {
		err := e.Core.Ingest(ctx(t), msg(tc.Device, tc.Channel, tc.Payload))
		var de *decode.Error
		if !errors.As(err, &de) || de.Reason != tc.Reason {
			t.Errorf("%s: %v, want reason %s", tc.Name, err, tc.Reason)
		}
		if o := ingest.Classify(err); o.Reason != string(tc.Reason) {
			t.Errorf("%s: classified %+v", tc.Name, o)
		}
	}
	// Every refusal was answered only after its dead letter was written.
	dls := e.DeadLetters(t, e.Consume(t, topics.DLQ, len(cases), 10*time.Second))
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters for %d refusals", len(dls), len(cases))
	}
	byReason := map[string]schemas.DeadLetter{}
	for _, dl := range dls {
		byReason[dl.Reason] = dl
	}
	for _, tc := range cases {
		dl, ok := byReason[string(tc.Reason)]
		if !ok {
			t.Errorf("%s: no dead letter with reason %s", tc.Name, tc.Reason)
			continue
		}
		dev := tc.Device
		if dev == "" {
			dev = ingesttest.Registered
		}
		if dl.Source != "devices/farm/"+dev+"/"+tc.Channel || dl.Headers[ingest.HeaderDoor] != "test" || dl.Tenant == nil || *dl.Tenant != "farm" {
			t.Errorf("%s: dead letter %+v", tc.Name, dl)
		}
		if tc.Name == "too large" && (!dl.Truncated || dl.PayloadSize != int64(len(tc.Payload))) {
			t.Errorf("too large: truncated %v size %d", dl.Truncated, dl.PayloadSize)
		}
	}
}

// The same payloads get the same reason from the MQTT bridge's decode path:
// route the channel as the MQTT topic and decode with the route's decoder.
func TestBadInputsAgreeWithBridgeDecoders(t *testing.T) {
	rs := routes.Default()
	for _, tc := range ingesttest.BadInputs() {
		if tc.Device != "" {
			continue // identity cases: the registry, not the decoders
		}
		m, err := rs.Route("devices/farm/collar-1/"+tc.Channel, "")
		if err == nil {
			in := decode.Input{Tenant: m.Tenant, DeviceID: m.Device, Source: m.Source, Kind: m.Kind, Payload: []byte(tc.Payload), ReceivedAt: time.Now()}
			err = decode.Decode(m.Route.Decoder.Func, &in, decode.DefaultLimits(), &decode.Output{})
		}
		var de *decode.Error
		if !errors.As(err, &de) || de.Reason != tc.Reason {
			t.Errorf("%s: the bridge's path says %v, the table %s", tc.Name, err, tc.Reason)
		}
	}
}

func TestIntegrationCoreLoRaWAN(t *testing.T) {
	e := ingesttest.New(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm", ID: "gate-1", AltIDs: map[string]string{registry.AltDevEUI: "0004A30B001C0530"}})
	body, err := os.ReadFile("lorawan/testdata/tts-uplink.json")
	if err != nil {
		t.Fatal(err)
	}
	// The example was received in 2020, older than the default max age:
	// refused like an MQTT reading that old.
	old := ingest.Message{Door: ingest.LoRaWAN, Channel: "lorawan/tts", Payload: body, ReceivedAt: time.Now()}
	var de *decode.Error
	if err := e.Core.Ingest(ctx(t), old); !errors.As(err, &de) || de.Reason != decode.ReasonTSTooOld {
		t.Fatalf("a 2020 uplink: %v", err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	fresh := ingest.Message{Door: ingest.LoRaWAN, Channel: "lorawan/tts", ReceivedAt: time.Now(),
		Payload: []byte(strings.ReplaceAll(string(body), "2020-02-12T15:15:45.787Z", now))}
	if err := e.Core.Ingest(ctx(t), fresh); err != nil {
		t.Fatalf("uplink: %v", err)
	}
	fixes := e.Consume(t, topics.RawGPS, 1, 10*time.Second)
	if len(fixes) != 1 {
		t.Fatalf("raw.gps has %d records", len(fixes))
	}
	var f schemas.GPSFix
	if _, err := e.Serde.Decode(context.Background(), fixes[0].Value, &f); err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "farm" || f.DeviceID != "gate-1" || f.Lat != 52.2345 {
		t.Fatalf("fix %+v", f)
	}
	unknown := ingest.Message{Door: ingest.LoRaWAN, Channel: "lorawan/tts", ReceivedAt: time.Now(),
		Payload: []byte(`{"end_device_ids":{"dev_eui":"0102030405060708"},"uplink_message":{"received_at":"2026-12-07T01:00:00Z","f_cnt":1}}`)}
	if err := e.Core.Ingest(ctx(t), unknown); !errors.As(err, &de) || de.Reason != ingest.ReasonUnknownDevice {
		t.Fatalf("unknown DevEUI: %v", err)
	}
}

// deadKafkaCore is a core on e's registry whose Kafka never answers.
func deadKafkaCore(t *testing.T, e *ingesttest.Env) *ingest.Core {
	t.Helper()
	dead, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.RecordDeliveryTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	core, err := ingest.NewCore(ingest.Config{Kafka: dead, Serde: e.Serde, Routes: routes.Default(), Registry: e.View, Log: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return core
}

// A Kafka that does not answer makes Ingest return ErrUnavailable when the
// caller's deadline passes: nothing was acknowledged, the client retries.
func TestIntegrationCoreKafkaDown(t *testing.T) {
	e := ingesttest.New(t)
	e.Devices(t)
	core := deadKafkaCore(t, e)
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := core.Ingest(c, msg("", "sensor", `{"metric":"t","value":1}`))
	if !errors.Is(err, ingest.ErrUnavailable) || ingest.Classify(err).Kind != ingest.Unavailable {
		t.Fatalf("Kafka down: %v", err)
	}
	c2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if err := core.Ingest(c2, msg("", "sensor", `{nope`)); !errors.Is(err, ingest.ErrUnavailable) {
		t.Fatalf("a refusal whose dead letter cannot be written: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestIntegrationCoreBatch: in one IngestBatch, valid readings between the
// bad inputs (other devices, other channels) are accepted, and every bad
// input gets the reason and dead-letter source it gets alone: the batch's
// shared routing follows each item's device and channel.
func TestIntegrationCoreBatch(t *testing.T) {
	e := ingesttest.New(t)
	e.Devices(t)
	now := time.Now().UnixMilli()
	good := msg("", "sensor", `{"metric":"temperature","value":21.5,"ts":`+itoa(now)+`}`)
	cases := ingesttest.BadInputs()
	var ms []ingest.Message
	for _, tc := range cases {
		ms = append(ms, good, msg(tc.Device, tc.Channel, tc.Payload))
	}
	ms = append(ms, good)
	errs := e.Core.IngestBatch(ctx(t), ms)
	if len(errs) != len(ms) {
		t.Fatalf("%d results for %d messages", len(errs), len(ms))
	}
	for i, err := range errs {
		if i%2 == 0 {
			if err != nil {
				t.Errorf("item %d (valid, after %v): %v", i, ms[max(i-1, 0)].Channel, err)
			}
			continue
		}
		tc := cases[i/2]
		var de *decode.Error
		if !errors.As(err, &de) || de.Reason != tc.Reason {
			t.Errorf("%s: %v, want reason %s", tc.Name, err, tc.Reason)
		}
	}
	if recs := e.Consume(t, topics.RawSensor, len(cases)+1, 10*time.Second); len(recs) != len(cases)+1 {
		t.Fatalf("raw.sensor has %d records, want %d", len(recs), len(cases)+1)
	}
	dls := e.DeadLetters(t, e.Consume(t, topics.DLQ, len(cases), 10*time.Second))
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters for %d refusals", len(dls), len(cases))
	}
	sources := map[string]string{} // reason → source (the DLQ's partitions do not keep the batch's order)
	for _, dl := range dls {
		sources[dl.Reason] = dl.Source
	}
	for _, tc := range cases {
		dev := tc.Device
		if dev == "" {
			dev = ingesttest.Registered
		}
		if src, ok := sources[string(tc.Reason)]; !ok || src != "devices/farm/"+dev+"/"+tc.Channel {
			t.Errorf("%s: dead letter of reason %s: source %q (found %v)", tc.Name, tc.Reason, src, ok)
		}
	}
}

// TestIntegrationCoreBatchRecordsAsAlone: the records of a batch, whose
// items share their device's Kafka headers and key, are byte for byte the
// records each item makes alone (topic, value, key, headers), with the
// items' devices and channels interleaved.
func TestIntegrationCoreBatchRecordsAsAlone(t *testing.T) {
	e := ingesttest.New(t)
	e.Devices(t)
	e.AddDevice(t, registry.NewDevice{Tenant: ingesttest.Tenant, ID: "collar-2"})
	at := time.Now().Truncate(time.Millisecond)
	now := at.UnixMilli()
	var ms []ingest.Message
	sensor, gps := 0, 0
	for i := range 12 {
		dev := []string{ingesttest.Registered, ingesttest.Registered, "collar-2"}[i%3]
		m := msg(dev, "sensor", fmt.Sprintf(`{"metric":"m%d","value":%d,"ts":%d,"attrs":{"i":"%d"}}`, i, i, now-int64(i), i))
		if i%4 == 3 {
			m = msg(dev, "gps", fmt.Sprintf(`{"ts":%d,"lat":1.5,"lon":%d,"alt":3}`, now-int64(i), i))
			gps++
		} else {
			sensor++
		}
		m.ReceivedAt = at
		ms = append(ms, m)
	}
	for i, m := range ms {
		if err := e.Core.Ingest(ctx(t), m); err != nil {
			t.Fatalf("item %d alone: %v", i, err)
		}
	}
	for i, err := range e.Core.IngestBatch(ctx(t), ms) {
		if err != nil {
			t.Fatalf("item %d in the batch: %v", i, err)
		}
	}
	recs := append(e.Consume(t, topics.RawSensor, 2*sensor, 10*time.Second), e.Consume(t, topics.RawGPS, 2*gps, 10*time.Second)...)
	if len(recs) != 2*len(ms) {
		t.Fatalf("%d records, want %d", len(recs), 2*len(ms))
	}
	seen := map[string]int{}
	for _, r := range recs {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		if string(r.Key) == "" || len(hs) < 2 {
			t.Fatalf("record without key or headers: %+v", r)
		}
		seen[fmt.Sprintf("%s %x %q %q", r.Topic, r.Value, r.Key, hs)]++
	}
	if len(seen) != len(ms) {
		t.Fatalf("%d distinct records, want %d (each alone and batched alike)", len(seen), len(ms))
	}
	for k, n := range seen {
		if n != 2 {
			t.Errorf("record made %d times, not once alone and once batched: %s", n, k)
		}
	}
}

// TestIntegrationCoreBatchMixedOutcomes: the items of one IngestBatch,
// which share one completion channel, each get the result they get alone —
// accepted, refused (its dead letter written), refused by Kafka for good
// (raw.gps with max.message.bytes 300: a produce/produce_failed dead
// letter of its own), ignored (accepted, nothing produced) — and, with a
// Kafka that does not answer, ErrUnavailable for every item that waits
// for an acknowledgement when the deadline passes, while an ignored item
// is still accepted.
func TestIntegrationCoreBatchMixedOutcomes(t *testing.T) {
	e := ingesttest.New(t)
	e.Devices(t)
	limit := "300"
	adm := kadm.NewClient(e.Env.Producer)
	if rs, err := adm.AlterTopicConfigs(ctx(t), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, topics.RawGPS); err != nil || rs[0].Err != nil {
		t.Fatalf("max.message.bytes of %s: %v %v", topics.RawGPS, err, rs)
	}
	now := time.Now().UnixMilli()
	noise := make([]byte, 1500) // incompressible, so the batch stays above the limit
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	big := fmt.Sprintf(`{"ts":%d,"lat":1,"lon":2,"attrs":{"note":"%s"}}`, now, base64.StdEncoding.EncodeToString(noise))
	ms := []ingest.Message{
		msg("", "sensor", `{"metric":"t","value":1,"ts":`+itoa(now)+`}`),
		msg("", "sensor", `{nope`),
		msg("", "gps", big),
		msg("", "commands", `{"anything":1}`),
		msg("", "sensor", `{"metric":"t","value":2,"ts":`+itoa(now)+`}`),
		msg("", "replies/7", `{"status":"ok"}`),
	}
	errs := e.Core.IngestBatch(ctx(t), ms)
	if len(errs) != len(ms) {
		t.Fatalf("%d results for %d messages", len(errs), len(ms))
	}
	refusal := func(i int, stage decode.Stage, reason decode.Reason) {
		t.Helper()
		var de *decode.Error
		if !errors.As(errs[i], &de) || de.Stage != stage || (reason != "" && de.Reason != reason) {
			t.Errorf("item %d: %v, want a refusal of stage %s (reason %q)", i, errs[i], stage, reason)
		}
	}
	for _, i := range []int{0, 3, 4} {
		if errs[i] != nil {
			t.Errorf("item %d: %v, want accepted", i, errs[i])
		}
	}
	refusal(1, decode.StageDecode, "")
	refusal(2, decode.StageProduce, decode.ReasonProduceFailed)
	refusal(5, decode.StageRoute, decode.ReasonUnknownChannel)
	if recs := e.Consume(t, topics.RawSensor, 2, 10*time.Second); len(recs) != 2 {
		t.Fatalf("raw.sensor has %d records, want 2", len(recs))
	}
	dls := e.DeadLetters(t, e.Consume(t, topics.DLQ, 3, 10*time.Second))
	if len(dls) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dls))
	}
	produceFailed := 0
	for _, dl := range dls {
		if dl.Reason == string(decode.ReasonProduceFailed) {
			produceFailed++
			if dl.Stage != string(decode.StageProduce) || string(dl.Payload) != big {
				t.Errorf("produce_failed dead letter: stage %s, payload of %d bytes", dl.Stage, len(dl.Payload))
			}
		}
	}
	if produceFailed != 1 {
		t.Errorf("%d produce_failed dead letters, want 1", produceFailed)
	}

	core := deadKafkaCore(t, e)
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	errs = core.IngestBatch(c, ms[:4])
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the batch took %v past a 500ms deadline", took)
	}
	for i, err := range errs {
		if i == 3 {
			if err != nil {
				t.Errorf("ignored item with Kafka down: %v, want accepted", err)
			}
			continue
		}
		if !errors.Is(err, ingest.ErrUnavailable) || ingest.Classify(err).Kind != ingest.Unavailable {
			t.Errorf("item %d with Kafka down: %v, want ErrUnavailable", i, err)
		}
	}
}
