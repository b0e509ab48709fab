package topics

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/drover-iot/drover/cli"
)

func TestIntegrationDescribe(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	adm, addr := newCluster(t, 1)
	ctx := testCtx(t)
	// raw.gps as the catalogue says (capped for one broker), with records.
	cat := devCatalogue(t)
	gps, _ := cat.Lookup(RawGPS)
	mustApply(t, adm, mustDiff(t, adm, &Catalogue{Topics: []Topic{gps}}), false)
	// raw.sensor created by hand: too few partitions, no configs.
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, RawSensor); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "scratch"); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	recs := []*kgo.Record{
		{Topic: RawGPS, Partition: 0, Value: []byte("a")},
		{Topic: RawGPS, Partition: 0, Value: []byte("b")},
		{Topic: RawGPS, Partition: 3, Value: []byte("c")},
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := srfake.New()
	defer reg.Close()
	rc, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	schema := `{"type":"record","name":"GPSFix","namespace":"io.drover","fields":[{"name":"lat","type":"double"}]}`
	ss, err := rc.CreateSchema(ctx, RawGPS+"-value", sr.Schema{Schema: schema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}

	conn := []string{"--kafka-brokers", addr, "--schema-registry-url", reg.URL(), "--replication-cap", "1"}
	t.Run("matching topic", func(t *testing.T) {
		out, _, err := run(t, append([]string{"describe", RawGPS}, conn...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("output:\n%s", out)
		for _, want := range []string{
			"Topic:        raw.gps",
			"Partitions:   " + itoa(gps.Partitions) + " (replication 1)",
			"Records:      3 (end minus start offsets)",
			"Schema:       raw.gps-value version 1, id " + itoa(int32(ss.ID)) + " (AVRO)",
			"Catalogue:    matches",
			"PARTITION  LEADER  REPLICAS  ISR",
			"retention.ms",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		out, _, err := run(t, append([]string{"describe", RawGPS, "--format", "json"}, conn...)...)
		if err != nil {
			t.Fatal(err)
		}
		var d Description
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(d.Partitions) != int(gps.Partitions) || d.Partitions[0].End != 2 || d.Partitions[3].End != 1 || d.Partitions[0].Leader < 0 {
			t.Errorf("partitions %+v", d.Partitions[:4])
		}
		var ret *ConfigDescription
		for i, c := range d.Configs {
			if c.Key == RetentionMs {
				ret = &d.Configs[i]
			}
		}
		if ret == nil || ret.Value != gps.Configs[RetentionMs] || ret.Catalogue != gps.Configs[RetentionMs] || ret.Source != "topic" {
			t.Errorf("retention.ms config %+v, want %s from the topic", ret, gps.Configs[RetentionMs])
		}
		if d.Schema == nil || d.Schema.ID != ss.ID || !d.InCatalogue || len(d.Drift) != 0 {
			t.Errorf("description %+v", d)
		}
	})
	t.Run("drift", func(t *testing.T) {
		out, _, err := run(t, append([]string{"describe", RawSensor}, conn...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Catalogue:    ", "difference(s)", "raw.sensor: partitions 2 → 24", "Schema:       subject raw.sensor-value is not registered"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("goka table", func(t *testing.T) {
		table, _ := cat.Lookup("features-table")
		mustApply(t, adm, mustDiff(t, adm, &Catalogue{Topics: []Topic{table}}), false)
		out, _, err := run(t, append([]string{"describe", "features-table"}, conn...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Catalogue:    ", "format goka", "no registered schema", "cleanup.policy"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("unmanaged", func(t *testing.T) {
		out, _, err := run(t, append([]string{"describe", "scratch"}, conn...)...)
		if err != nil || !strings.Contains(out, "not in the catalogue (unmanaged)") {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("registry down", func(t *testing.T) {
		out, _, err := run(t, "describe", RawGPS, "--kafka-brokers", addr, "--schema-registry-url", "http://127.0.0.1:1", "--replication-cap", "1")
		if err != nil || !strings.Contains(out, "Schema:       schema registry: ") {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("completion", func(t *testing.T) {
		out, _, err := run(t, "__complete", "describe", "")
		if err != nil || !strings.Contains(out, RawGPS+"\n") || !strings.Contains(out, StateLatest+"\n") {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			args    []string
			wantErr string
		}{
			{"unknown topic", []string{"describe", "no.such.topic"}, `unknown topic "no.such.topic"`},
			{"bad format", []string{"describe", RawGPS, "--format", "xml"}, `--format: unknown format "xml"`},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, _, err := run(t, append(c.args, conn...)...)
				var ue *cli.UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %v, want one-line usage error with %q", err, c.wantErr)
				}
			})
		}
		if _, _, err := run(t, "describe"); err == nil || !strings.Contains(err.Error(), "accepts 1 arg") {
			t.Errorf("no topic: %v", err)
		}
	})
}
