package topics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newCluster starts an in-process Kafka (kfake) with the given number of
// brokers and returns an admin client for it and its address.
func newCluster(t *testing.T, brokers int) (*kadm.Client, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl), c.ListenAddrs()[0]
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func devCatalogue(t *testing.T) *Catalogue {
	t.Helper()
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	return cat.WithReplicationCap(1)
}

func smallCatalogue(t *testing.T) *Catalogue {
	t.Helper()
	cat, err := Load("testdata/small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func mustDiff(t *testing.T, adm *kadm.Client, cat *Catalogue) Plan {
	t.Helper()
	plan, err := Diff(testCtx(t), adm, cat)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	return plan
}

func mustApply(t *testing.T, adm *kadm.Client, plan Plan, dryRun bool) Report {
	t.Helper()
	rep, err := Apply(testCtx(t), adm, plan, dryRun)
	if err != nil {
		t.Fatalf("Apply: %v\n%s", err, rep)
	}
	return rep
}

func kinds(cs []Change) map[ChangeKind]int {
	m := map[ChangeKind]int{}
	for _, c := range cs {
		m[c.Kind]++
	}
	return m
}

// checkCluster asserts every catalogue topic exists with its partitions and
// configs.
func checkCluster(t *testing.T, adm *kadm.Client, cat *Catalogue) {
	t.Helper()
	ctx := testCtx(t)
	tds, err := adm.ListTopics(ctx, cat.Names()...)
	if err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, cat.Names()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range cat.Topics {
		td, ok := tds[tp.Name]
		if !ok || td.Err != nil {
			t.Errorf("%s: not on the cluster (%v)", tp.Name, td.Err)
			continue
		}
		if got := len(td.Partitions); got != int(tp.Partitions) {
			t.Errorf("%s: %d partitions, want %d", tp.Name, got, tp.Partitions)
		}
		rc, err := rcs.On(tp.Name, nil)
		if err != nil {
			t.Errorf("%s: configs: %v", tp.Name, err)
			continue
		}
		have := map[string]string{}
		for _, c := range rc.Configs {
			have[c.Key] = c.MaybeValue()
		}
		for k, v := range tp.Configs {
			if have[k] != v {
				t.Errorf("%s: %s = %q, want %q", tp.Name, k, have[k], v)
			}
		}
	}
}

func TestIntegrationApplyCatalogue(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := devCatalogue(t)

	plan := mustDiff(t, adm, cat)
	if got := kinds(plan.Changes); got[CreateTopic] != len(cat.Topics) || len(plan.Changes) != len(cat.Topics) {
		t.Fatalf("first plan: %v, want %d creates:\n%s", got, len(cat.Topics), plan)
	}
	if plan.Brokers != 1 {
		t.Errorf("Brokers = %d, want 1", plan.Brokers)
	}
	rep := mustApply(t, adm, plan, false)
	if len(rep.Applied) != len(cat.Topics) || len(rep.Failed) != 0 {
		t.Fatalf("report: %d applied, %d failed:\n%s", len(rep.Applied), len(rep.Failed), rep)
	}
	checkCluster(t, adm, cat)

	// Idempotent: the diff is empty, and applying it does nothing.
	again := mustDiff(t, adm, cat)
	if !again.Empty() {
		t.Fatalf("diff after apply not empty:\n%s", again)
	}
	if s := again.String(); !strings.Contains(s, "no changes") {
		t.Errorf("empty plan renders %q", s)
	}
	rep = mustApply(t, adm, again, false)
	if len(rep.Applied)+len(rep.Failed)+len(rep.Drift) != 0 {
		t.Errorf("second apply did something:\n%s", rep)
	}
}

func TestIntegrationDryRun(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := devCatalogue(t)
	plan := mustDiff(t, adm, cat)
	rep := mustApply(t, adm, plan, true)
	if !rep.DryRun || len(rep.Applied) != len(cat.Topics) {
		t.Fatalf("dry run report:\n%s", rep)
	}
	if !strings.Contains(rep.String(), "dry run, would apply: create raw.gps") {
		t.Errorf("dry run report does not say so:\n%s", rep)
	}
	tds, err := adm.ListTopics(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(tds) != 0 {
		t.Fatalf("dry run created topics: %v", tds.Names())
	}

	// Dry run of a raise and a config change leaves both alone.
	small := smallCatalogue(t)
	ctx := testCtx(t)
	if _, err := adm.CreateTopic(ctx, 4, 1, map[string]*string{RetentionMs: kadm.StringPtr("1000")}, RawGPS); err != nil {
		t.Fatal(err)
	}
	plan = mustDiff(t, adm, small)
	mustApply(t, adm, plan, true)
	if after := mustDiff(t, adm, small); after.String() != plan.String() {
		t.Errorf("dry run changed the cluster:\nbefore:\n%s\nafter:\n%s", plan, after)
	}
}

func TestIntegrationRaisePartitions(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := smallCatalogue(t)
	if _, err := adm.CreateTopic(testCtx(t), 6, 1, nil, RawGPS); err != nil {
		t.Fatal(err)
	}
	plan := mustDiff(t, adm, cat)
	var raise *Change
	for i, c := range plan.Changes {
		if c.Kind == RaisePartitions {
			raise = &plan.Changes[i]
		}
	}
	if raise == nil || raise.Topic.Name != RawGPS || raise.From != "6" || raise.To != "24" {
		t.Fatalf("want raise raw.gps 6 → 24, got:\n%s", plan)
	}
	if !strings.Contains(plan.String(), "raise  raw.gps: partitions 6 → 24") {
		t.Errorf("plan rendering:\n%s", plan)
	}
	mustApply(t, adm, plan, false)
	checkCluster(t, adm, cat)
	if after := mustDiff(t, adm, cat); !after.Empty() {
		t.Errorf("diff after raise:\n%s", after)
	}
}

func TestIntegrationConfigDrift(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := smallCatalogue(t)
	mustApply(t, adm, mustDiff(t, adm, cat), false)

	// Someone changes retention by hand, and another key the catalogue
	// does not manage (which must be left alone).
	ctx := testCtx(t)
	_, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: RetentionMs, Value: kadm.StringPtr("1000")},
		{Op: kadm.SetConfig, Name: "segment.bytes", Value: kadm.StringPtr("1048576")},
	}, Alerts)
	if err != nil {
		t.Fatal(err)
	}
	plan := mustDiff(t, adm, cat)
	if len(plan.Changes) != 1 {
		t.Fatalf("want one change, got:\n%s", plan)
	}
	c := plan.Changes[0]
	if c.Kind != AlterConfig || c.Topic.Name != Alerts || c.Key != RetentionMs || c.From != "1000" || c.To != "2592000000" {
		t.Fatalf("change: %+v", c)
	}
	if want := "alter  alerts.events: retention.ms 1000 → 2592000000"; !strings.Contains(plan.String(), want) {
		t.Errorf("plan rendering %q lacks %q", plan, want)
	}
	mustApply(t, adm, plan, false)
	if after := mustDiff(t, adm, cat); !after.Empty() {
		t.Errorf("diff after fixing configs:\n%s", after)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, Alerts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rcs[0].Configs {
		if c.Key == "segment.bytes" && c.MaybeValue() != "1048576" {
			t.Errorf("unmanaged key segment.bytes changed to %q", c.MaybeValue())
		}
	}
}

func TestIntegrationMorePartitionsIsDriftNotShrunk(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := smallCatalogue(t)
	if _, err := adm.CreateTopic(testCtx(t), 48, 1, nil, RawGPS); err != nil {
		t.Fatal(err)
	}
	plan := mustDiff(t, adm, cat)
	rep := mustApply(t, adm, plan, false)
	if len(rep.Drift) != 1 || rep.Drift[0].Kind != DriftPartitions || rep.Drift[0].From != "48" {
		t.Fatalf("want partition drift reported, got:\n%s", rep)
	}
	if !strings.Contains(rep.String(), "not applied: drift  raw.gps: partitions 48 on the cluster > 24 in the catalogue; not shrunk") {
		t.Errorf("report:\n%s", rep)
	}
	tds, err := adm.ListTopics(testCtx(t), RawGPS)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tds[RawGPS].Partitions); n != 48 {
		t.Errorf("raw.gps has %d partitions after apply, want 48 (never shrink)", n)
	}
	after := mustDiff(t, adm, cat)
	if after.Empty() || len(after.Actions()) != 0 || len(after.Drift()) != 1 {
		t.Errorf("after apply: want the drift only, got:\n%s", after)
	}
}

func TestIntegrationReplicationDrift(t *testing.T) {
	adm, _ := newCluster(t, 3)
	cat := smallCatalogue(t) // replication 1
	if _, err := adm.CreateTopic(testCtx(t), 24, 3, nil, RawGPS); err != nil {
		t.Fatal(err)
	}
	plan := mustDiff(t, adm, cat)
	var found bool
	for _, c := range plan.Drift() {
		if c.Kind == DriftReplication && c.Topic.Name == RawGPS && c.From == "3" && c.To == "1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no replication drift for raw.gps:\n%s", plan)
	}
	if !strings.Contains(plan.String(), "partition reassignment") {
		t.Errorf("replication drift does not say it is a reassignment:\n%s", plan)
	}
}

func TestIntegrationUnmanagedTopics(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat := smallCatalogue(t)
	for _, name := range []string{"_schemas", "zz.other"} {
		if _, err := adm.CreateTopic(testCtx(t), 1, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, adm, mustDiff(t, adm, cat), false)
	plan := mustDiff(t, adm, cat)
	if !plan.Empty() {
		t.Errorf("unmanaged topics count as drift:\n%s", plan)
	}
	if got := strings.Join(plan.Unmanaged, ","); got != "_schemas,zz.other" {
		t.Errorf("Unmanaged = %q", got)
	}
	if !strings.Contains(plan.String(), "unmanaged _schemas: not in the catalogue; left alone") {
		t.Errorf("plan rendering:\n%s", plan)
	}
}

func TestIntegrationNotEnoughBrokers(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat, err := Default() // replication 3, uncapped
	if err != nil {
		t.Fatal(err)
	}
	plan := mustDiff(t, adm, cat)
	rep, err := Apply(testCtx(t), adm, plan, false)
	if !errors.Is(err, ErrNotEnoughBrokers) {
		t.Fatalf("Apply: got %v, want ErrNotEnoughBrokers", err)
	}
	if len(rep.Applied) != 0 {
		t.Errorf("applied %d changes before refusing", len(rep.Applied))
	}
	if tds, _ := adm.ListTopics(testCtx(t)); len(tds) != 0 {
		t.Errorf("topics created: %v", tds.Names())
	}
}

// TestIntegrationKafkaErrorNamesTopic bypasses the broker check so the
// cluster itself refuses, and checks the error names the topic.
func TestIntegrationKafkaErrorNamesTopic(t *testing.T) {
	adm, _ := newCluster(t, 1)
	cat, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	tp, _ := cat.Lookup(RawGPS)
	plan := Plan{Changes: []Change{{Kind: CreateTopic, Topic: tp}}} // Brokers unknown
	rep, err := Apply(testCtx(t), adm, plan, false)
	if err == nil {
		t.Fatal("creating a replication-3 topic on one broker succeeded")
	}
	if !strings.Contains(err.Error(), `topic "raw.gps": create: `) || !strings.Contains(err.Error(), "INVALID_REPLICATION_FACTOR") {
		t.Errorf("error %q does not name the topic and the Kafka error", err)
	}
	if len(rep.Failed) != 1 {
		t.Errorf("report: %+v", rep)
	}
}

func TestPlanOrderAndRendering(t *testing.T) {
	a := Topic{Name: "a", Partitions: 3, Replication: 1, Configs: map[string]string{RetentionMs: "1", CleanupPolicy: "delete"}}
	b := Topic{Name: "b", Partitions: 3, Replication: 3}
	cs := []Change{
		{Kind: DriftReplication, Topic: b, From: "1", To: "3"},
		{Kind: AlterConfig, Topic: a, Key: RetentionMs, From: "", To: "1"},
		{Kind: AlterConfig, Topic: a, Key: CleanupPolicy, From: "compact", To: "delete"},
		{Kind: RaisePartitions, Topic: a, From: "1", To: "3"},
		{Kind: CreateTopic, Topic: b},
	}
	sortChanges(cs)
	p := Plan{Changes: cs, Unmanaged: []string{"x"}}
	want := `raise  a: partitions 1 → 3 (keys hash to new partitions from now on)
alter  a: cleanup.policy compact → delete
alter  a: retention.ms (unset) → 1
create b: 3 partitions, replication 3
drift  b: replication 1 on the cluster ≠ 3 in the catalogue; not changed (changing replication is a partition reassignment, e.g. kafka-reassign-partitions.sh)
unmanaged x: not in the catalogue; left alone
`
	if got := p.String(); got != want {
		t.Errorf("rendering:\n%s\nwant:\n%s", got, want)
	}
	if p.Empty() || len(p.Actions()) != 4 || len(p.Drift()) != 1 {
		t.Errorf("Empty %v, Actions %d, Drift %d", p.Empty(), len(p.Actions()), len(p.Drift()))
	}
}

func TestSameConfig(t *testing.T) {
	cases := []struct {
		name      string
		key, a, b string
		want      bool
	}{
		{"policy set", CleanupPolicy, "delete,compact", "compact,delete", true},
		{"policy differs", CleanupPolicy, "delete", "compact", false},
		{"numbers", RetentionMs, "0604800000", "604800000", true},
		{"strings", "compression.type", "zstd", "lz4", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := sameConfig(c.key, c.a, c.b); got != c.want {
				t.Errorf("sameConfig(%q, %q, %q) = %v", c.key, c.a, c.b, got)
			}
		})
	}
}
